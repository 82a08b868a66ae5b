//! Policy loading: reference policies, README example, located errors, overlays, proptest.

use proptest::prelude::*;
use ss_core::policy::{Protocol, MAX_DEPTH, MAX_POLICY_LEN};
use ss_core::{Policy, PolicyError};
use std::path::PathBuf;

fn policies_dir() -> PathBuf {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/lws-policies"
    ));
    assert!(
        d.is_dir(),
        "reference policies missing at {} (shared/ must be checked out beside the repo)",
        d.display()
    );
    d
}

fn readme_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/secure-streams-README.md"
    ))
}

/// Replace each `@VAR@`: ports (after `"port":`) by a number, others by a host name.
fn substitute_vars(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(a) = rest.find('@') {
        let Some(len) = rest[a + 1..].find('@') else {
            break;
        };
        let var = &rest[a + 1..a + 1 + len];
        out.push_str(&rest[..a]);
        out.push_str(if var.starts_with("PORT") {
            "4443"
        } else {
            "localhost"
        });
        rest = &rest[a + 2 + len..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_reference_policy_loads() {
    let mut n = 0;
    for e in std::fs::read_dir(policies_dir()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if name.ends_with(".json.in") {
            substitute_vars(&text)
        } else if name.ends_with(".json") {
            text
        } else {
            continue;
        };
        let p = Policy::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.streamtypes.is_empty(), "{name}");
        assert!(!p.summary().is_empty());
        n += 1;
    }
    assert_eq!(n, 17, "expected 17 reference policies");
}

#[test]
fn reference_details() {
    let text = std::fs::read_to_string(
        policies_dir().join("ll__secure-streams__minimal-secure-streams-sigv4__policy.json"),
    )
    .unwrap();
    let p = Policy::parse(&text).unwrap();
    let r = p.retry_policy("default").unwrap();
    assert_eq!(r.backoff_ms, [100, 200, 300, 500, 1000]);
    assert_eq!((r.conceal, r.jitter_pc), (5, Some(20)));
    assert_eq!((r.svalidping_s, r.svalidhup_s), (Some(30), Some(35)));
    assert_eq!(p.trust_store("s3-root-cert").unwrap().stack.len(), 3);
    assert_eq!(p.auth[0].name, "sigv4_br");
    let st = p.streamtype("s3PutObj").unwrap();
    assert_eq!(st.protocol, Protocol::H1);
    assert_eq!(st.port, 443);
    assert_eq!(st.use_auth.as_deref(), Some("sigv4_br"));
    assert_eq!(st.metadata.len(), 8);
    assert_eq!(st.metadata[0].header, None);
    assert_eq!(st.metadata[4].header.as_deref(), Some("content-type:"));
    assert_eq!(st.aws_region.as_deref(), Some("region"));
}

/// The README's example policy, verbatim.
fn readme_example() -> String {
    let md = std::fs::read_to_string(readme_path()).expect("reference README missing");
    let start = md.find("# JSON Policy Database").unwrap();
    let block = &md[start..];
    let a = block.find("```\n").unwrap() + 4;
    let b = block[a..].find("```").unwrap();
    block[a..a + b].to_string()
}

fn static_policy_cert(name: &str) -> String {
    let text = std::fs::read_to_string(
        policies_dir()
            .join("ll__secure-streams__minimal-secure-streams-staticpolicy__static-policy.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for c in v["certs"].as_array().unwrap() {
        if let Some(s) = c.get(name) {
            return s.as_str().unwrap().to_string();
        }
    }
    panic!("no cert {name}");
}

#[test]
fn readme_example_rejects_truncated_cert_then_loads() {
    let text = readme_example();
    let e = Policy::parse(&text).unwrap_err();
    assert_eq!(e.path, "certs[0].isrg_root_x1");
    assert!(e.message.contains("isrg_root_x1"), "{e}");
    assert_eq!((e.line, e.column), (13, 19));

    let real = static_policy_cert("isrg_root_x1");
    let fixed = text
        .replace("MIIFazCCA1OgAw...AnX5iItreGCc=", &real)
        .replace("MIIFjTCCA3WgAwIB...WEsikxqEt", &real);
    let p = Policy::parse(&fixed).unwrap_or_else(|e| panic!("{e}"));
    let st = p.streamtype("mintest").unwrap();
    assert_eq!(st.protocol, Protocol::H1);
    assert_eq!(st.http.method.as_deref(), Some("GET"));
    assert_eq!(st.http.url.as_deref(), Some("index.html"));
    assert_eq!(st.port, 4443);
    assert_eq!(st.tls_trust_store.as_deref(), Some("le_via_isrg"));
    assert_eq!(p.trust_store("le_via_isrg").unwrap().stack.len(), 2);
    assert_eq!(p.retry_policy("default").unwrap().jitter_pc, Some(20));
}

fn err(json: &str) -> PolicyError {
    match Policy::parse(json) {
        Ok(_) => panic!("policy unexpectedly loaded:\n{json}"),
        Err(e) => e,
    }
}

fn at(e: &PolicyError, path: &str, line: usize, column: usize) {
    assert_eq!(
        (e.path.as_str(), e.line, e.column),
        (path, line, column),
        "{e}"
    );
}

const BASE: &str = r#"{
  "retry": [{"default": {"backoff": [1000], "conceal": 3}}],
  "s": [{"a": {"endpoint": "x.com", "port": 443, "protocol": "h1", "retry": "default"}}]
}"#;

#[test]
fn retry_defined_later() {
    let e = err(r#"{
  "s": [{"a": {"retry": "fast"}}],
  "retry": [{"fast": {"backoff": [1]}}]
}"#);
    at(&e, "s[0].a.retry", 2, 25);
    assert_eq!(e.message, "unknown retry policy \"fast\"");
    assert_eq!(
        e.to_string(),
        "s[0].a.retry: unknown retry policy \"fast\" at 2:25"
    );
}

#[test]
fn undefined_retry() {
    let e = err(r#"{"retry": [], "s": [{"a": {}}, {"b": {"port": 1,
    "retry": "fast"}}]}"#);
    at(&e, "s[1].b.retry", 2, 14);
    assert_eq!(e.message, "unknown retry policy \"fast\"");
}

#[test]
fn unknown_key() {
    let e = err("{\"s\": [{\"a\": {\n  \"prot\": \"h1\"}}]}");
    at(&e, "s[0].a.prot", 2, 3);
    assert_eq!(e.message, "unknown key \"prot\"");
    let e = err("{\"bogus\": 1}");
    at(&e, "bogus", 1, 2);
}

#[test]
fn wrong_type() {
    let e = err("{\"s\": [{\"a\": {\"tls\": \"yes\"}}]}");
    at(&e, "s[0].a.tls", 1, 22);
    assert_eq!(e.message, "expected a boolean, found a string");
    let e = err("{\"s\": [{\"a\": {\"port\": \"443\"}}]}");
    at(&e, "s[0].a.port", 1, 23);
}

#[test]
fn out_of_range() {
    let e = err("{\"s\": [{\"a\": {\"protocol\": \"mqtt\",\n \"mqtt_qos\": 3}}]}");
    at(&e, "s[0].a.mqtt_qos", 2, 14);
    assert_eq!(e.message, "3 is out of range 0..=2");
    let e = err("{\"s\": [{\"a\": {\"port\": 65536}}]}");
    at(&e, "s[0].a.port", 1, 23);
    let e = err("{\"retry\": [{\"r\": {\"jitterpc\": 101}}]}");
    at(&e, "retry[0].r.jitterpc", 1, 31);
    let e = err("{\"s\": [{\"a\": {\"attr_priority\": 8}}]}");
    at(&e, "s[0].a.attr_priority", 1, 32);
    let e = err("{\"auth\": [{\"name\": \"x\", \"blob\": 4}]}");
    at(&e, "auth[0].blob", 1, 33);
}

#[test]
fn bad_base64() {
    let e = err("{\"certs\": [{\"c1\": \"MIIB$$$\"}]}");
    at(&e, "certs[0].c1", 1, 19);
    assert!(e.message.contains("base64"), "{e}");
}

#[test]
fn der_not_a_certificate() {
    // "hello world" in base64, without padding.
    let e = err("{\"certs\": [{\"c1\": \"aGVsbG8gd29ybGQ\"}]}");
    at(&e, "certs[0].c1", 1, 19);
    assert!(e.message.contains("not a valid X.509"), "{e}");
}

#[test]
fn server_key_is_not_x509_checked() {
    let cert = static_policy_cert("isrg_root_x1");
    let json = format!(
        r#"{{"certs": [{{"crt": "{cert}"}}, {{"key": "aGVsbG8gd29ybGQ="}}],
        "s": [{{"srv": {{"server": true, "server_cert": "crt", "server_key": "key"}}}}]}}"#
    );
    let p = Policy::parse(&json).unwrap();
    assert_eq!(p.cert("key").unwrap().der, b"hello world");
}

#[test]
fn trust_store_unknown_cert() {
    let e = err(r#"{"trust_stores": [{"name": "t", "stack": ["nope"]}]}"#);
    at(&e, "trust_stores[0].stack[0]", 1, 43);
    assert_eq!(e.message, "unknown cert \"nope\"");
}

#[test]
fn undeclared_metadata() {
    let e = err(r#"{"s": [{"a": {
  "metadata": [{"ok": ""}],
  "http_url": "x/${nope}"}}]}"#);
    at(&e, "s[0].a.http_url", 3, 15);
    assert!(e.message.contains("\"nope\""), "{e}");
    // Declared after use within the streamtype is fine.
    Policy::parse(r#"{"s": [{"a": {"http_url": "${x}", "metadata": [{"x": ""}]}}]}"#).unwrap();
}

#[test]
fn duplicate_streamtype() {
    let e = err("{\"s\": [{\"a\": {}},\n {\"a\": {}}]}");
    at(&e, "s[1].a", 2, 3);
    assert_eq!(e.message, "duplicate streamtype \"a\"");
}

#[test]
fn rideshare_checked_at_end() {
    Policy::parse(r#"{"s": [{"a": {"rideshare": "b"}}, {"b": {}}]}"#).unwrap();
    let e = err(r#"{"s": [{"a": {"rideshare": "c"}}, {"b": {}}]}"#);
    at(&e, "s[0].a.rideshare", 1, 28);
}

#[test]
fn syntax_error() {
    let e = err("{\n  \"s\": [,]\n}");
    assert_eq!((e.path.as_str(), e.line, e.column), ("", 2, 9), "{e}");
    assert!(e.message.starts_with("JSON syntax error"));
}

#[test]
fn limits() {
    let deep = format!(
        "{{\"s\": {}{}}}",
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    assert!(err(&deep).message.contains("nesting"));
    let big = format!("{{\"release\": \"{}\"}}", "x".repeat(MAX_POLICY_LEN));
    assert!(err(&big).message.contains("limit"));
}

#[test]
fn overlay_changes_endpoint_and_port() {
    let mut p = Policy::parse(BASE).unwrap();
    p.apply_overlay(r#"{"s": [{"a": {"endpoint": "y.org", "port": 8443}}]}"#)
        .unwrap();
    let st = p.streamtype("a").unwrap();
    assert_eq!(st.endpoint.as_deref(), Some("y.org"));
    assert_eq!(st.port, 8443);
    assert_eq!(st.retry.as_deref(), Some("default"), "other keys kept");
    assert_eq!(st.protocol, Protocol::H1);
}

#[test]
fn overlay_adds_streamtype() {
    let mut p = Policy::parse(BASE).unwrap();
    p.apply_overlay(r#"{"s": [{"b": {"protocol": "ws", "retry": "default"}}]}"#)
        .unwrap();
    assert_eq!(p.streamtypes.len(), 2);
    assert_eq!(p.streamtype("b").unwrap().protocol, Protocol::Ws);
}

#[test]
fn overlay_rejects_top_level_retry() {
    let mut p = Policy::parse(BASE).unwrap();
    let before = p.clone();
    let e = p
        .apply_overlay("{\"s\": [],\n \"retry\": [{\"x\": {}}]}")
        .unwrap_err();
    at(&e, "retry", 2, 2);
    assert_eq!(p, before);
}

#[test]
fn overlay_error_leaves_policy_unchanged() {
    let mut p = Policy::parse(BASE).unwrap();
    let before = p.clone();
    let e = p
        .apply_overlay(r#"{"s": [{"a": {"port": 1}}, {"b": {"retry": "nope"}}]}"#)
        .unwrap_err();
    at(&e, "s[1].b.retry", 1, 44);
    assert_eq!(p, before);
}

// ---- property tests ----

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}"
}

#[derive(Debug, Clone)]
struct St {
    port: u16,
    proto: &'static str,
    tls: bool,
    qos: u8,
    endpoint: String,
    timeout: Option<u32>,
}

fn st() -> impl Strategy<Value = St> {
    (
        any::<u16>(),
        prop::sample::select(vec!["raw", "h1", "h2", "ws", "mqtt"]),
        any::<bool>(),
        0u8..=2,
        "[a-z.]{1,12}",
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(port, proto, tls, qos, endpoint, timeout)| St {
            port,
            proto,
            tls,
            qos,
            endpoint,
            timeout,
        })
}

fn build(
    retry: &str,
    backoff: &[u32],
    conceal: u16,
    jit: Option<u8>,
    sts: &[(String, St)],
) -> String {
    let mut r = format!(r#"{{"{retry}": {{"backoff": {backoff:?}, "conceal": {conceal}"#);
    if let Some(j) = jit {
        r.push_str(&format!(r#", "jitterpc": {j}"#));
    }
    r.push_str("}}");
    let s: Vec<String> = sts
        .iter()
        .map(|(n, s)| {
            let mut b = format!(
                r#"{{"{n}": {{"endpoint": "{}", "port": {}, "protocol": "{}", "tls": {}, "mqtt_qos": {}, "retry": "{retry}""#,
                s.endpoint, s.port, s.proto, s.tls, s.qos
            );
            if let Some(t) = s.timeout {
                b.push_str(&format!(r#", "timeout_ms": {t}"#));
            }
            b.push_str("}}");
            b
        })
        .collect();
    format!(
        "{{\"release\": \"r\", \"retry\": [{r}],\n \"s\": [{}]}}",
        s.join(",\n")
    )
}

proptest! {
    #[test]
    fn random_valid_policies_round_trip(
        retry in name(),
        backoff in prop::collection::vec(any::<u32>(), 0..5),
        conceal in any::<u16>(),
        jit in prop::option::of(0u8..=100),
        sts in prop::collection::btree_map(name(), st(), 1..5),
    ) {
        let sts: Vec<(String, St)> = sts.into_iter().collect();
        let json = build(&retry, &backoff, conceal, jit, &sts);
        let p = Policy::parse(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        let r = p.retry_policy(&retry).unwrap();
        prop_assert_eq!(&r.backoff_ms, &backoff);
        prop_assert_eq!(r.conceal, conceal);
        prop_assert_eq!(r.jitter_pc, jit);
        prop_assert_eq!(p.streamtypes.len(), sts.len());
        for (st, (n, s)) in p.streamtypes.iter().zip(&sts) {
            prop_assert_eq!(&st.name, n);
            prop_assert_eq!(st.port, s.port);
            prop_assert_eq!(st.protocol.name(), s.proto);
            prop_assert_eq!(st.tls, s.tls);
            prop_assert_eq!(st.mqtt.qos, s.qos);
            prop_assert_eq!(st.endpoint.as_deref(), Some(s.endpoint.as_str()));
            prop_assert_eq!(st.timeout_ms, s.timeout);
            prop_assert_eq!(st.retry.as_deref(), Some(retry.as_str()));
        }
        // Applying the policy to itself as an overlay is refused (it has "retry").
        let mut q = p.clone();
        prop_assert!(q.apply_overlay(&json).is_err());
        prop_assert_eq!(q, p);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
        if let Ok(mut p) = Policy::parse(&s) {
            let _ = p.apply_overlay(&s);
        }
    }

    #[test]
    fn mutated_policies_never_panic(
        sts in prop::collection::btree_map(name(), st(), 1..3),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let sts: Vec<(String, St)> = sts.into_iter().collect();
        let mut bytes = build("d", &[1, 2], 3, Some(5), &sts).into_bytes();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(mut p) = Policy::parse(&s) {
            let _ = p.apply_overlay(&s);
            let _ = p.summary();
        }
    }
}
