//! ss-core stays sans-IO: its sources never read a clock, open a socket, spawn
//! a thread or ask the OS for randomness, and it depends on no runtime.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read ss-core/src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn ss_core_sources_touch_no_os() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ss-core/src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    assert!(
        files.len() > 5,
        "found too few sources under {}",
        src.display()
    );
    let forbidden = [
        "Instant::now",
        "SystemTime::now",
        "std::net::TcpStream",
        "std::net::TcpListener",
        "std::net::UdpSocket",
        "TcpStream::connect",
        "std::thread",
        "thread::spawn",
        "getrandom",
        "OsRng",
        "thread_rng",
        "std::fs::",
    ];
    let mut hits = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        for (n, line) in text.lines().enumerate() {
            for bad in forbidden {
                if line.contains(bad) && !line.trim_start().starts_with("//") {
                    hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "ss-core must stay sans-IO:\n{}",
        hits.join("\n")
    );
}

#[test]
fn ss_core_depends_on_no_runtime() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ss-core/Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    for dep in tree.lines().filter_map(|l| l.split_whitespace().next()) {
        assert!(
            !["tokio", "mio", "async-io", "smol", "async-net", "async-std"].contains(&dep),
            "ss-core depends on {dep}:\n{tree}"
        );
    }
}
