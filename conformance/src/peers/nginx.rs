//! nginx as a real HTTP/1.1 (and optionally HTTP/2) server peer, plain and
//! TLS, run unprivileged-style from a temp dir (no /var, no system config).

use super::pki::LeafCert;
use super::{require, PeerProcess, TestPki};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Size of `/big.bin` in the nginx docroot (8 MiB).
pub const BIG_BIN_LEN: usize = 8 * 1024 * 1024;

/// Byte `i` of `/big.bin`: `(i*7+3) % 251`, so offsets and lost or
/// duplicated spans show up in a comparison.
pub fn big_bin_byte(i: usize) -> u8 {
    ((i as u64 * 7 + 3) % 251) as u8
}

/// The first `len` bytes of `/big.bin`'s content.
pub fn big_bin_content(len: usize) -> Vec<u8> {
    (0..len).map(big_bin_byte).collect()
}

/// Debian's nginx echo module (package `libnginx-mod-http-echo`), for `/echo`.
pub const ECHO_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_echo_module.so";

/// The small `/index.html` nginx serves.
pub const INDEX_HTML: &str = "<html><body>ss nginx peer</body></html>\n";

/// Options for [`Nginx::start`].
#[derive(Clone, Debug, Default)]
pub struct NginxOpts {
    /// Offer HTTP/2 (ALPN `h2`) on the TLS port besides HTTP/1.1.
    pub http2: bool,
    /// Require a client certificate signed by the PKI's CA on the TLS port.
    pub verify_client: bool,
    /// Serve this leaf on the TLS port instead of the PKI's server leaf
    /// (e.g. an expired one, or one for another name).
    pub server_cert: Option<LeafCert>,
    /// Requests per connection before nginx closes it (HTTP/2: sends
    /// GOAWAY); default 10000.
    pub keepalive_requests: Option<u32>,
}

/// A running nginx on 127.0.0.1: plain HTTP on [`Nginx::http_port`], TLS on
/// [`Nginx::https_port`] with a leaf of [`Nginx::pki`] for `localhost` and
/// `127.0.0.1`. Docroot: `/index.html`, `/big.bin` (see [`big_bin_byte`]),
/// `/204` (204), `/redirect` (302 to `/index.html`), `/rst` (444: the
/// connection is closed, or with HTTP/2 the stream reset), `/echo` answering a
/// `POST`/`PUT` with its request body (Debian's echo module), and `/dav/`
/// accepting `PUT` of any file which can then be fetched back with `GET`.
/// Killed on drop.
pub struct Nginx {
    proc: PeerProcess,
    pki: TestPki,
    http_port: u16,
    https_port: u16,
}

impl Nginx {
    /// Starts nginx with `opts`, waiting until both ports accept. Panics
    /// (with nginx's logs) if it does not come up, or if it is not installed.
    pub fn start(opts: NginxOpts) -> Nginx {
        let bin = require("nginx");
        if !Path::new(ECHO_MODULE).exists() {
            panic!(
                "peer `nginx` echo module ({ECHO_MODULE}) not installed: run scripts/install.sh"
            );
        }
        if opts.http2 && !Self::supports_http2() {
            panic!("peer `nginx` was built without http_v2_module (needed for http2 tests)");
        }
        let pki = TestPki::new(&["localhost", "127.0.0.1"]);
        let mut last_err = String::new();
        // Free ports are racy: retry with fresh ones if a bind fails.
        for _ in 0..3 {
            let (dir, path) = PeerProcess::prepare("nginx");
            let http_port = super::free_port();
            let https_port = super::free_port();
            write_site(&path, &pki, &opts, http_port, https_port);
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(&path)
                .arg("-c")
                .arg(path.join("nginx.conf"))
                .arg("-e")
                .arg(path.join("error.log"))
                .args(["-g", "daemon off;"]);
            let mut proc = PeerProcess::spawn("nginx", dir, cmd);
            let up = proc
                .wait_port(http_port)
                .and_then(|_| proc.wait_port(https_port));
            match up {
                Ok(()) => {
                    return Nginx {
                        proc,
                        pki,
                        http_port,
                        https_port,
                    }
                }
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nginx could not bind its ports after 3 tries:\n{last_err}");
    }

    /// Whether the installed nginx has the HTTP/2 module (`nginx -V`).
    pub fn supports_http2() -> bool {
        let out = Command::new(require("nginx"))
            .arg("-V")
            .output()
            .expect("run nginx -V");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        text.contains("--with-http_v2_module")
    }

    /// Plain HTTP/1.1 port on 127.0.0.1.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// TLS port on 127.0.0.1 (HTTP/1.1, and `h2` if asked for).
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// The PKI whose server leaf nginx presents (unless overridden) and whose
    /// CA verifies client certificates.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// nginx's error and access logs (and stdout/stderr), for messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// The access log so far, one line per request:
    /// `connection-serial requests-on-it protocol "request-line" status bytes`
    /// (so requests that shared a connection share the first field).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("access.log")).unwrap_or_default()
    }

    /// The temp dir nginx runs in (docroot is `www/` inside it).
    pub fn dir(&self) -> &Path {
        self.proc.dir()
    }
}

fn write_site(dir: &Path, pki: &TestPki, opts: &NginxOpts, http_port: u16, https_port: u16) {
    let www = dir.join("www");
    fs::create_dir_all(www.join("dav")).expect("mkdir www");
    fs::create_dir_all(dir.join("tmp")).expect("mkdir tmp");
    fs::create_dir_all(dir.join("logs")).expect("mkdir logs");
    fs::write(www.join("index.html"), INDEX_HTML).expect("index.html");
    fs::write(www.join("big.bin"), big_bin_content(BIG_BIN_LEN)).expect("big.bin");
    let [ca, server_pem, server_key, ..] = pki.write_files(dir);
    let (cert, key) = match &opts.server_cert {
        Some(leaf) => {
            let c = dir.join("alt-server.pem");
            let k = dir.join("alt-server.key");
            fs::write(&c, &leaf.cert_pem).expect("alt cert");
            fs::write(&k, &leaf.key_pem).expect("alt key");
            (c, k)
        }
        None => (server_pem, server_key),
    };
    let d = dir.display();
    let mut tls = format!(
        "listen 127.0.0.1:{https_port} ssl{h2};\n        \
         ssl_certificate {cert};\n        ssl_certificate_key {key};\n        \
         ssl_protocols TLSv1.2 TLSv1.3;\n",
        h2 = if opts.http2 { " http2" } else { "" },
        cert = cert.display(),
        key = key.display(),
    );
    if opts.verify_client {
        let _ = write!(
            tls,
            "        ssl_client_certificate {};\n        ssl_verify_client on;\n",
            ca.display()
        );
    }
    let keepalive_requests = opts.keepalive_requests.unwrap_or(10_000);
    let conf = format!(
        r#"# Generated by conformance::peers::Nginx.
load_module {ECHO_MODULE};
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format ss '$connection $connection_requests $server_protocol "$request" $status $body_bytes_sent';
    access_log {d}/access.log ss;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ text/html html; application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests {keepalive_requests};
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{http_port};
        {tls}
        server_name localhost;
        root {d}/www;
        location = /204 {{ return 204; }}
        location = /redirect {{ return 302 /index.html; }}
        location = /rst {{ return 444; }}
        location = /echo {{
            client_body_buffer_size 64m;
            echo_read_request_body;
            echo_request_body;
        }}
        location /dav/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
    }}
}}
"#
    );
    fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
}
