//! ss-core stays sans-IO: its sources never read a clock, open a socket, spawn
//! a thread or ask the OS for randomness, and it depends on no runtime (tokio
//! only for its I/O traits, with no runtime feature: see
//! `tokio_in_ss_core_has_no_runtime_features`).

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

/// The dependency tree of ss-core as built alone (normal edges only), in
/// `cargo tree` output with the given extra arguments.
fn ss_core_tree(extra: &[&str]) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ss-core/Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--prefix", "none"])
        .args(extra)
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ss_core_depends_on_no_runtime() {
    let tree = ss_core_tree(&["-e", "normal"]);
    for dep in tree.lines().filter_map(|l| l.split_whitespace().next()) {
        assert!(
            ![
                "mio",
                "async-io",
                "smol",
                "async-net",
                "async-std",
                "async-executor"
            ]
            .contains(&dep),
            "ss-core depends on {dep}:\n{tree}"
        );
    }
}

/// tokio is allowed in ss-core's tree for one reason: the `h2` crate (used by
/// `proto::h2`) is written against tokio's `AsyncRead`/`AsyncWrite` traits and
/// tokio-util's codec, so it needs tokio's `io-util` (and tokio-util pulls in
/// `sync`, plain data structures). ss-core drives h2 over in-memory queues
/// with a no-op waker; no runtime is involved. This test pins that: none of
/// tokio's features that bring a runtime, a reactor, timers or OS access may
/// be enabled in ss-core's build. (Feature resolution here is for ss-core
/// built alone, as `cargo tree -p ss-core` does, so the adapters' tokio
/// features do not leak in.)
#[test]
fn tokio_in_ss_core_has_no_runtime_features() {
    let tree = ss_core_tree(&["-e", "features,normal", "-i", "tokio"]);
    if !tree.lines().any(|l| l.starts_with("tokio v")) {
        return; // tokio is not in the tree at all
    }
    let enabled: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.strip_prefix("tokio feature \""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(
        enabled.contains(&"io-util"),
        "expected to see tokio's features in:\n{tree}"
    );
    let runtime = [
        "rt",
        "rt-multi-thread",
        "net",
        "time",
        "process",
        "signal",
        "fs",
        "io-std",
        "full",
        "macros",
        "test-util",
    ];
    let bad: Vec<&&str> = enabled.iter().filter(|f| runtime.contains(f)).collect();
    assert!(
        bad.is_empty(),
        "ss-core's build enables tokio runtime features {bad:?}:\n{tree}"
    );
}
