//! JSON policy parser: turns the policy text into a validated [`Policy`].
//!
//! The document is read in order, so anything a value refers to (retry
//! policy, trust store, cert, auth scheme) must be defined earlier; names of
//! streamtypes (`rideshare`, `auth[].streamtype`) are checked once the whole
//! document is read. See `docs/policy.md` for every key.

use super::json::{self, Kind, Node};
use super::{
    AuthScheme, Cert, MetadataDecl, MetricsPolicy, Policy, PolicyError, Protocol, StreamType,
    TrustStore,
};
use crate::metadata::references;
use crate::retry::RetryPolicy;
use base64::Engine as _;

/// A check that can only be made once the whole document is read.
struct Deferred {
    path: String,
    off: usize,
    streamtype: String,
    what: &'static str,
}

/// A cert waiting for its end-of-document X.509 check.
struct PendingCert {
    name: String,
    path: String,
    off: usize,
}

/// Parser state for one document.
struct Parser<'a> {
    src: &'a str,
    deferred: Vec<Deferred>,
    certs: Vec<PendingCert>,
}

type R<T> = Result<T, PolicyError>;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Every string field of a streamtype that may hold `${metadata}`.
fn template_fields(st: &StreamType) -> Vec<(&'static str, &str)> {
    let mut v = Vec::new();
    let fields: [(&'static str, &Option<String>); 6] = [
        ("endpoint", &st.endpoint),
        ("http_url", &st.http.url),
        ("mqtt_topic", &st.mqtt.topic),
        ("mqtt_subscribe", &st.mqtt.subscribe),
        ("mqtt_will_topic", &st.mqtt.will_topic),
        ("mqtt_birth_topic", &st.mqtt.birth_topic),
    ];
    for (k, val) in fields {
        if let Some(s) = val {
            v.push((k, s.as_str()));
        }
    }
    v
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            deferred: Vec::new(),
            certs: Vec::new(),
        }
    }

    fn err(&self, path: &str, off: usize, msg: impl Into<String>) -> PolicyError {
        json::error(self.src, path, off, msg)
    }

    fn wrong(&self, n: &Node, path: &str, want: &str) -> PolicyError {
        self.err(
            path,
            n.off,
            format!("expected {want}, found {}", n.kind.type_name()),
        )
    }

    fn string<'n>(&self, n: &'n Node, path: &str) -> R<&'n str> {
        match &n.kind {
            Kind::Str(s) => Ok(s),
            _ => Err(self.wrong(n, path, "a string")),
        }
    }

    fn boolean(&self, n: &Node, path: &str) -> R<bool> {
        match &n.kind {
            Kind::Bool(b) => Ok(*b),
            _ => Err(self.wrong(n, path, "a boolean")),
        }
    }

    fn uint(&self, n: &Node, path: &str, max: u64) -> R<u64> {
        match &n.kind {
            Kind::Num(num) => match num.as_u64() {
                Some(v) if v <= max => Ok(v),
                _ => Err(self.err(path, n.off, format!("{num} is out of range 0..={max}"))),
            },
            _ => Err(self.wrong(n, path, "an integer")),
        }
    }

    fn u8(&self, n: &Node, path: &str, max: u8) -> R<u8> {
        let v = self.uint(n, path, max.into())?;
        u8::try_from(v).map_err(|_| self.err(path, n.off, "out of range"))
    }

    fn u16(&self, n: &Node, path: &str) -> R<u16> {
        let v = self.uint(n, path, u16::MAX.into())?;
        u16::try_from(v).map_err(|_| self.err(path, n.off, "out of range"))
    }

    fn u32(&self, n: &Node, path: &str) -> R<u32> {
        let v = self.uint(n, path, u32::MAX.into())?;
        u32::try_from(v).map_err(|_| self.err(path, n.off, "out of range"))
    }

    fn array<'n>(&self, n: &'n Node, path: &str) -> R<&'n [Node]> {
        match &n.kind {
            Kind::Arr(a) => Ok(a),
            _ => Err(self.wrong(n, path, "an array")),
        }
    }

    /// An object's members; a key given twice is an error.
    fn object<'n>(&self, n: &'n Node, path: &str) -> R<&'n [(String, usize, Node)]> {
        match &n.kind {
            Kind::Obj(m) => {
                for (i, (k, koff, _)) in m.iter().enumerate() {
                    if m.iter().take(i).any(|(k2, _, _)| k2 == k) {
                        return Err(self.err(
                            &join(path, k),
                            *koff,
                            format!("duplicate key \"{k}\""),
                        ));
                    }
                }
                Ok(m)
            }
            _ => Err(self.wrong(n, path, "an object")),
        }
    }

    fn unknown_key(&self, path: &str, key: &str, koff: usize) -> PolicyError {
        self.err(&join(path, key), koff, format!("unknown key \"{key}\""))
    }

    // ---- top level ----

    fn document(&mut self, root: &Node) -> R<Policy> {
        let mut p = Policy::default();
        for (key, koff, v) in self.object(root, "")? {
            let path = key.as_str();
            match path {
                "release" => p.release = Some(self.string(v, path)?.to_string()),
                "product" => p.product = Some(self.string(v, path)?.to_string()),
                "schema-version" => p.schema_version = Some(self.u32(v, path)?),
                "via-socks5" => p.via_socks5 = Some(self.string(v, path)?.to_string()),
                "retry" => self.retry_section(&mut p, v)?,
                "certs" => self.certs_section(&mut p, v)?,
                "trust_stores" => self.trust_stores_section(&mut p, v)?,
                "auth" => self.auth_section(&mut p, v)?,
                "metrics" => self.metrics_section(&mut p, v)?,
                "s" => self.streamtypes_section(&mut p, v, false)?,
                _ => return Err(self.unknown_key("", key, *koff)),
            }
        }
        self.finish(&p)?;
        Ok(p)
    }

    /// End-of-document checks: streamtype names, and certs that must be X.509.
    fn finish(&self, p: &Policy) -> R<()> {
        for d in &self.deferred {
            if p.streamtype(&d.streamtype).is_none() {
                return Err(self.err(
                    &d.path,
                    d.off,
                    format!("{} names unknown streamtype \"{}\"", d.what, d.streamtype),
                ));
            }
        }
        for pc in &self.certs {
            let is_key = p
                .streamtypes
                .iter()
                .any(|s| s.server_key.as_deref() == Some(pc.name.as_str()));
            if is_key {
                continue;
            }
            let Some(cert) = p.cert(&pc.name) else {
                continue;
            };
            let der = rustls_pki_types::CertificateDer::from(cert.der.as_slice());
            if let Err(e) = webpki::anchor_from_trusted_cert(&der) {
                return Err(self.err(
                    &pc.path,
                    pc.off,
                    format!(
                        "cert \"{}\" is not a valid X.509 certificate ({e:?})",
                        pc.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn retry_section(&self, p: &mut Policy, v: &Node) -> R<()> {
        for (i, item) in self.array(v, "retry")?.iter().enumerate() {
            let ipath = format!("retry[{i}]");
            for (name, koff, body) in self.object(item, &ipath)? {
                let path = join(&ipath, name);
                if p.retry_policy(name).is_some() {
                    return Err(self.err(
                        &path,
                        *koff,
                        format!("duplicate retry policy \"{name}\""),
                    ));
                }
                let mut r = RetryPolicy {
                    name: name.clone(),
                    backoff_ms: Vec::new(),
                    conceal: 0,
                    jitter_pc: None,
                    svalidping_s: None,
                    svalidhup_s: None,
                };
                for (k, kkoff, val) in self.object(body, &path)? {
                    let kp = join(&path, k);
                    match k.as_str() {
                        "backoff" => {
                            r.backoff_ms = Vec::new();
                            for (j, ms) in self.array(val, &kp)?.iter().enumerate() {
                                r.backoff_ms.push(self.u32(ms, &format!("{kp}[{j}]"))?);
                            }
                        }
                        "conceal" => r.conceal = self.u16(val, &kp)?,
                        "jitterpc" => r.jitter_pc = Some(self.u8(val, &kp, 100)?),
                        "svalidping" => r.svalidping_s = Some(self.u16(val, &kp)?.into()),
                        "svalidhup" => r.svalidhup_s = Some(self.u16(val, &kp)?.into()),
                        _ => return Err(self.unknown_key(&path, k, *kkoff)),
                    }
                }
                p.retry.push(r);
            }
        }
        Ok(())
    }

    fn certs_section(&mut self, p: &mut Policy, v: &Node) -> R<()> {
        for (i, item) in self.array(v, "certs")?.iter().enumerate() {
            let ipath = format!("certs[{i}]");
            for (name, koff, body) in self.object(item, &ipath)? {
                let path = join(&ipath, name);
                if p.cert(name).is_some() {
                    return Err(self.err(&path, *koff, format!("duplicate cert \"{name}\"")));
                }
                let b64 = self.string(body, &path)?;
                let cleaned: String = b64
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace() && *c != '=')
                    .collect();
                let der = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(cleaned.as_bytes())
                    .map_err(|e| {
                        self.err(
                            &path,
                            body.off,
                            format!("cert \"{name}\" is not valid base64 ({e})"),
                        )
                    })?;
                if der.is_empty() {
                    return Err(self.err(&path, body.off, format!("cert \"{name}\" is empty")));
                }
                self.certs.push(PendingCert {
                    name: name.clone(),
                    path,
                    off: body.off,
                });
                p.certs.push(Cert {
                    name: name.clone(),
                    der,
                });
            }
        }
        Ok(())
    }

    fn stack(&self, p: &Policy, v: &Node, path: &str) -> R<Vec<String>> {
        let mut out = Vec::new();
        for (j, c) in self.array(v, path)?.iter().enumerate() {
            let cp = format!("{path}[{j}]");
            let name = self.string(c, &cp)?;
            if p.cert(name).is_none() {
                return Err(self.err(&cp, c.off, format!("unknown cert \"{name}\"")));
            }
            out.push(name.to_string());
        }
        Ok(out)
    }

    fn trust_stores_section(&self, p: &mut Policy, v: &Node) -> R<()> {
        for (i, item) in self.array(v, "trust_stores")?.iter().enumerate() {
            let ipath = format!("trust_stores[{i}]");
            let members = self.object(item, &ipath)?;
            let has_name = members.iter().any(|(k, _, _)| k == "name");
            let mut found = Vec::new();
            if has_name {
                let mut name: Option<(String, usize)> = None;
                let mut stack = Vec::new();
                for (k, koff, val) in members {
                    let kp = join(&ipath, k);
                    match k.as_str() {
                        "name" => name = Some((self.string(val, &kp)?.to_string(), val.off)),
                        "stack" => stack = self.stack(p, val, &kp)?,
                        _ => return Err(self.unknown_key(&ipath, k, *koff)),
                    }
                }
                if let Some((n, off)) = name {
                    found.push((n, off, join(&ipath, "name"), stack));
                }
            } else {
                // README short form: { "<name>": ["cert", ...] }.
                for (k, koff, val) in members {
                    let kp = join(&ipath, k);
                    if k == "stack" {
                        return Err(self.err(&kp, *koff, "trust store has a stack but no name"));
                    }
                    let stack = self.stack(p, val, &kp)?;
                    found.push((k.clone(), *koff, kp, stack));
                }
            }
            for (name, off, path, stack) in found {
                if p.trust_store(&name).is_some() {
                    return Err(self.err(&path, off, format!("duplicate trust store \"{name}\"")));
                }
                p.trust_stores.push(TrustStore { name, stack });
            }
        }
        Ok(())
    }

    fn auth_section(&mut self, p: &mut Policy, v: &Node) -> R<()> {
        for (i, item) in self.array(v, "auth")?.iter().enumerate() {
            let ipath = format!("auth[{i}]");
            let mut a = AuthScheme {
                name: String::new(),
                kind: String::new(),
                streamtype: None,
                blob: 0,
            };
            let mut name_off = None;
            for (k, koff, val) in self.object(item, &ipath)? {
                let kp = join(&ipath, k);
                match k.as_str() {
                    "name" => {
                        a.name = self.string(val, &kp)?.to_string();
                        name_off = Some(val.off);
                    }
                    "type" => a.kind = self.string(val, &kp)?.to_string(),
                    "streamtype" => {
                        let s = self.string(val, &kp)?.to_string();
                        self.deferred.push(Deferred {
                            path: kp,
                            off: val.off,
                            streamtype: s.clone(),
                            what: "auth",
                        });
                        a.streamtype = Some(s);
                    }
                    "blob" => a.blob = self.u8(val, &kp, 3)?,
                    _ => return Err(self.unknown_key(&ipath, k, *koff)),
                }
            }
            let Some(noff) = name_off else {
                return Err(self.err(&ipath, item.off, "auth entry has no \"name\""));
            };
            if p.auth.iter().any(|x| x.name == a.name) {
                return Err(self.err(
                    &join(&ipath, "name"),
                    noff,
                    format!("duplicate auth \"{}\"", a.name),
                ));
            }
            p.auth.push(a);
        }
        Ok(())
    }

    fn metrics_section(&self, p: &mut Policy, v: &Node) -> R<()> {
        for (i, item) in self.array(v, "metrics")?.iter().enumerate() {
            let ipath = format!("metrics[{i}]");
            let mut m = MetricsPolicy::default();
            for (k, koff, val) in self.object(item, &ipath)? {
                let kp = join(&ipath, k);
                match k.as_str() {
                    "name" => m.name = self.string(val, &kp)?.to_string(),
                    "us_schedule" => m.us_schedule = self.uint(val, &kp, u64::MAX)?,
                    "us_halflife" => m.us_halflife = self.uint(val, &kp, u64::MAX)?,
                    "min_outlier" => m.min_outlier = self.u32(val, &kp)?,
                    "report" => m.report = Some(self.string(val, &kp)?.to_string()),
                    _ => return Err(self.unknown_key(&ipath, k, *koff)),
                }
            }
            p.metrics.push(m);
        }
        Ok(())
    }

    /// The `s` section; with `overlay`, existing streamtypes are modified in place.
    fn streamtypes_section(&mut self, p: &mut Policy, v: &Node, overlay: bool) -> R<()> {
        for (i, item) in self.array(v, "s")?.iter().enumerate() {
            let ipath = format!("s[{i}]");
            for (name, koff, body) in self.object(item, &ipath)? {
                let path = join(&ipath, name);
                let existing = p.streamtypes.iter().position(|s| &s.name == name);
                match existing {
                    Some(idx) if overlay => {
                        let mut st = p.streamtypes.get(idx).cloned().unwrap_or_default();
                        self.streamtype_body(p, &mut st, body, &path)?;
                        if let Some(slot) = p.streamtypes.get_mut(idx) {
                            *slot = st;
                        }
                    }
                    Some(_) => {
                        return Err(self.err(
                            &path,
                            *koff,
                            format!("duplicate streamtype \"{name}\""),
                        ))
                    }
                    None => {
                        let mut st = StreamType {
                            name: name.clone(),
                            ..StreamType::default()
                        };
                        self.streamtype_body(p, &mut st, body, &path)?;
                        p.streamtypes.push(st);
                    }
                }
            }
        }
        Ok(())
    }

    fn streamtype_body(
        &mut self,
        p: &Policy,
        st: &mut StreamType,
        body: &Node,
        path: &str,
    ) -> R<()> {
        // (path, offset) of each template value and metadata-name reference given here.
        let mut templates: Vec<(String, usize)> = Vec::new();
        let mut md_refs: Vec<(String, usize, String)> = Vec::new();
        let mut metadata_at: Option<(String, usize)> = None;
        for (k, koff, val) in self.object(body, path)? {
            let kp = join(path, k);
            self.streamtype_key(p, st, k, *koff, val, &kp, &mut templates, &mut md_refs)?;
            if k == "metadata" {
                metadata_at = Some((kp, val.off));
            }
        }
        // ${name} references, in the values given here and, when the metadata
        // list was (re)defined here, in every template of the streamtype.
        let fields = template_fields(st);
        let mut checks: Vec<(String, usize, &str)> = Vec::new();
        for (kp, off) in &templates {
            let field = kp.rsplit('.').next().unwrap_or("");
            if let Some((_, s)) = fields.iter().find(|(f, _)| *f == field) {
                checks.push((kp.clone(), *off, s));
            }
        }
        if let Some((mp, moff)) = &metadata_at {
            for (f, s) in &fields {
                if !templates
                    .iter()
                    .any(|(kp, _)| kp.rsplit('.').next() == Some(f))
                {
                    checks.push((mp.clone(), *moff, s));
                }
            }
        }
        for (kp, off, s) in checks {
            for r in references(s) {
                if st.metadata_index(r).is_none() {
                    return Err(self.err(
                        &kp,
                        off,
                        format!(
                            "metadata \"{r}\" is not declared by streamtype \"{}\"",
                            st.name
                        ),
                    ));
                }
            }
        }
        for (kp, off, name) in md_refs {
            if st.metadata_index(&name).is_none() {
                return Err(self.err(
                    &kp,
                    off,
                    format!(
                        "metadata \"{name}\" is not declared by streamtype \"{}\"",
                        st.name
                    ),
                ));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn streamtype_key(
        &mut self,
        p: &Policy,
        st: &mut StreamType,
        k: &str,
        koff: usize,
        v: &Node,
        kp: &str,
        templates: &mut Vec<(String, usize)>,
        md_refs: &mut Vec<(String, usize, String)>,
    ) -> R<()> {
        let s = |me: &Self| -> R<Option<String>> { Ok(Some(me.string(v, kp)?.to_string())) };
        let b = |me: &Self| me.boolean(v, kp);
        match k {
            "endpoint" => {
                st.endpoint = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "port" => st.port = self.u16(v, kp)?,
            "protocol" => {
                let name = self.string(v, kp)?;
                st.protocol = match name {
                    "raw" => Protocol::Raw,
                    "h1" => Protocol::H1,
                    "h2" => Protocol::H2,
                    "ws" => Protocol::Ws,
                    "mqtt" => Protocol::Mqtt,
                    "h1get" => {
                        // README example's legacy name: HTTP/1.1 GET.
                        if st.http.method.is_none() {
                            st.http.method = Some("GET".into());
                        }
                        Protocol::H1
                    }
                    other => {
                        return Err(self.err(kp, v.off, format!("unknown protocol \"{other}\"")))
                    }
                };
            }
            "aux" => {
                // README example's legacy key: the URL path.
                st.http.url = s(self)?;
                templates.push((
                    join(kp.rsplit_once('.').map_or("", |x| x.0), "http_url"),
                    v.off,
                ));
            }
            "server" => st.server = b(self)?,
            "tls" => st.tls = b(self)?,
            "client_cert" => st.client_cert = Some(self.u8(v, kp, u8::MAX - 1)?),
            "tls_trust_store" => {
                let name = self.string(v, kp)?;
                if p.trust_store(name).is_none() {
                    return Err(self.err(kp, v.off, format!("unknown trust store \"{name}\"")));
                }
                st.tls_trust_store = Some(name.to_string());
            }
            "server_cert" | "server_key" => {
                let name = self.string(v, kp)?;
                if p.cert(name).is_none() {
                    return Err(self.err(kp, v.off, format!("unknown cert \"{name}\"")));
                }
                if k == "server_cert" {
                    st.server_cert = Some(name.to_string());
                } else {
                    st.server_key = Some(name.to_string());
                }
            }
            "retry" => {
                let name = self.string(v, kp)?;
                if p.retry_policy(name).is_none() {
                    return Err(self.err(kp, v.off, format!("unknown retry policy \"{name}\"")));
                }
                st.retry = Some(name.to_string());
            }
            "use_auth" => {
                let name = self.string(v, kp)?;
                if !p.auth.iter().any(|a| a.name == name) {
                    return Err(self.err(kp, v.off, format!("unknown auth \"{name}\"")));
                }
                st.use_auth = Some(name.to_string());
            }
            "aws_region" | "aws_service" => {
                let name = self.string(v, kp)?.to_string();
                md_refs.push((kp.to_string(), v.off, name.clone()));
                if k == "aws_region" {
                    st.aws_region = Some(name);
                } else {
                    st.aws_service = Some(name);
                }
            }
            "opportunistic" => st.opportunistic = b(self)?,
            "nailed_up" => st.nailed_up = b(self)?,
            "urgent_tx" => st.urgent_tx = b(self)?,
            "urgent_rx" => st.urgent_rx = b(self)?,
            "long_poll" => st.long_poll = b(self)?,
            "local_sink" => st.local_sink = b(self)?,
            "perf" => st.perf = b(self)?,
            "swake_validity" => st.swake_validity = b(self)?,
            "direct_proto_str" => st.direct_proto_str = b(self)?,
            "timeout_ms" => st.timeout_ms = Some(self.u32(v, kp)?),
            "attr_priority" => st.attr.priority = self.u8(v, kp, 7)?,
            "attr_low_latency" => st.attr.low_latency = b(self)?,
            "attr_high_throughput" => st.attr.high_throughput = b(self)?,
            "attr_high_reliability" => st.attr.high_reliability = b(self)?,
            "attr_low_cost" => st.attr.low_cost = b(self)?,
            "metadata" => {
                let mut md: Vec<MetadataDecl> = Vec::new();
                for (i, item) in self.array(v, kp)?.iter().enumerate() {
                    let ip = format!("{kp}[{i}]");
                    for (name, nkoff, hv) in self.object(item, &ip)? {
                        let np = join(&ip, name);
                        if md.iter().any(|m| &m.name == name) {
                            return Err(self.err(
                                &np,
                                *nkoff,
                                format!("duplicate metadata \"{name}\""),
                            ));
                        }
                        let header = self.string(hv, &np)?;
                        md.push(MetadataDecl {
                            name: name.clone(),
                            header: (!header.is_empty()).then(|| header.to_string()),
                        });
                    }
                }
                st.metadata = md;
            }
            "http_resp_map" => {
                let mut map = Vec::new();
                for (i, item) in self.array(v, kp)?.iter().enumerate() {
                    let ip = format!("{kp}[{i}]");
                    for (code, ckoff, val) in self.object(item, &ip)? {
                        let cp = join(&ip, code);
                        let status = match code.parse::<u16>() {
                            Ok(c) if (100..=999).contains(&c) => c,
                            _ => {
                                return Err(self.err(
                                    &cp,
                                    *ckoff,
                                    format!("\"{code}\" is not an HTTP status code 100..=999"),
                                ))
                            }
                        };
                        map.push((status, self.u32(val, &cp)?));
                    }
                }
                st.http.resp_map = map;
            }
            "proxy_buflen" => st.proxy_buflen = Some(self.u32(v, kp)?),
            "proxy_buflen_rxflow_on_above" => {
                st.proxy_buflen_rxflow_on_above = Some(self.u32(v, kp)?)
            }
            "proxy_buflen_rxflow_off_below" => {
                st.proxy_buflen_rxflow_off_below = Some(self.u32(v, kp)?)
            }
            "client_buflen" => st.client_buflen = Some(self.u32(v, kp)?),
            "client_buflen_rxflow_on_above" => {
                st.client_buflen_rxflow_on_above = Some(self.u32(v, kp)?)
            }
            "client_buflen_rxflow_off_below" => {
                st.client_buflen_rxflow_off_below = Some(self.u32(v, kp)?)
            }
            "via-socks5" => st.via_socks5 = s(self)?,
            "plugins" => {
                let mut out = Vec::new();
                for (i, item) in self.array(v, kp)?.iter().enumerate() {
                    out.push(self.string(item, &format!("{kp}[{i}]"))?.to_string());
                }
                st.plugins = out;
            }
            "payload_fmt" => st.payload_fmt = s(self)?,
            "options" => st.options = self.options(v, kp)?,
            // HTTP
            "http_method" => st.http.method = s(self)?,
            "http_url" => {
                st.http.url = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "http_expect" => st.http.expect = Some(self.u16(v, kp)?),
            "http_fail_redirect" => st.http.fail_redirect = b(self)?,
            "allow_redirects" => st.http.allow_redirects = b(self)?,
            "http_auth_header" => st.http.auth_header = s(self)?,
            "http_dsn_header" => st.http.dsn_header = s(self)?,
            "http_fwv_header" => st.http.fwv_header = s(self)?,
            "http_devtype_header" => st.http.devtype_header = s(self)?,
            "http_auth_preamble" => st.http.auth_preamble = s(self)?,
            "auth_hexify" => st.http.auth_hexify = b(self)?,
            "http_no_content_length" => st.http.no_content_length = b(self)?,
            "http_multipart_name" => st.http.multipart_name = s(self)?,
            "http_multipart_filename" => st.http.multipart_filename = s(self)?,
            "http_multipart_content_type" | "http_mime_content_type" => {
                st.http.multipart_content_type = s(self)?
            }
            "http_www_form_urlencoded" => st.http.www_form_urlencoded = b(self)?,
            "http_cookies" => st.http.cookies = b(self)?,
            "http_multipart_ss_in" => st.http.multipart_ss_in = b(self)?,
            "nghttp2_quirk_end_stream" => st.http.quirk_end_stream = b(self)?,
            "h2q_oflow_txcr" => st.http.h2_quirk_overflow_tx_credit = b(self)?,
            "rideshare" => {
                let name = self.string(v, kp)?.to_string();
                self.deferred.push(Deferred {
                    path: kp.to_string(),
                    off: v.off,
                    streamtype: name.clone(),
                    what: "rideshare",
                });
                st.http.rideshare = Some(name);
            }
            // WebSocket
            "ws_subprotocol" => st.ws.subprotocol = s(self)?,
            "ws_binary" => st.ws.binary = b(self)?,
            "ws_prioritize_reads" => st.ws.prioritize_reads = b(self)?,
            // MQTT
            "mqtt_topic" => {
                st.mqtt.topic = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "mqtt_subscribe" => {
                st.mqtt.subscribe = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "mqtt_qos" => st.mqtt.qos = self.u8(v, kp, 2)?,
            "mqtt_retain" => st.mqtt.retain = b(self)?,
            "mqtt_keep_alive" => st.mqtt.keep_alive = self.u16(v, kp)?,
            "mqtt_clean_start" => st.mqtt.clean_start = b(self)?,
            "mqtt_will_topic" => {
                st.mqtt.will_topic = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "mqtt_will_message" => st.mqtt.will_message = s(self)?,
            "mqtt_will_qos" => st.mqtt.will_qos = self.u8(v, kp, 2)?,
            "mqtt_will_retain" => st.mqtt.will_retain = b(self)?,
            "mqtt_birth_topic" => {
                st.mqtt.birth_topic = s(self)?;
                templates.push((kp.to_string(), v.off));
            }
            "mqtt_birth_message" => st.mqtt.birth_message = s(self)?,
            "mqtt_birth_qos" => st.mqtt.birth_qos = self.u8(v, kp, 2)?,
            "mqtt_birth_retain" => st.mqtt.birth_retain = b(self)?,
            "aws_iot" => st.mqtt.aws_iot = b(self)?,
            _ => {
                let parent = kp
                    .strip_suffix(k)
                    .and_then(|p| p.strip_suffix('.'))
                    .unwrap_or("");
                return Err(self.unknown_key(parent, k, koff));
            }
        }
        Ok(())
    }

    /// `options`: `{ "name": value }` or `[{ "name": value }, ...]`; scalar
    /// values are kept as text.
    fn options(&self, v: &Node, kp: &str) -> R<Vec<(String, String)>> {
        let mut out = Vec::new();
        let objs: Vec<(String, &Node)> = match &v.kind {
            Kind::Arr(a) => a
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("{kp}[{i}]"), n))
                .collect(),
            _ => vec![(kp.to_string(), v)],
        };
        for (op, o) in objs {
            for (name, _, val) in self.object(o, &op)? {
                let np = join(&op, name);
                let text = match &val.kind {
                    Kind::Str(s) => s.clone(),
                    Kind::Num(n) => n.to_string(),
                    Kind::Bool(b) => b.to_string(),
                    _ => return Err(self.wrong(val, &np, "a string, number or boolean")),
                };
                out.push((name.clone(), text));
            }
        }
        Ok(out)
    }
}

impl Policy {
    /// Parse and validate a whole policy.
    ///
    /// Input larger than [`MAX_POLICY_LEN`](super::MAX_POLICY_LEN) bytes or
    /// nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH) is rejected. Every
    /// error names the key path, line and column of the offending value.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let root = json::parse_tree(json)?;
        Parser::new(json).document(&root)
    }

    /// Apply a policy fragment over this one; only streamtypes may be overridden.
    ///
    /// The fragment has the main policy's shape but only the `s` key. For a
    /// streamtype already present each key given replaces that setting; a new
    /// name adds a streamtype. Names it refers to are checked against this
    /// policy. On error the policy is unchanged.
    pub fn apply_overlay(&mut self, json: &str) -> Result<(), PolicyError> {
        let root = json::parse_tree(json)?;
        let mut parser = Parser::new(json);
        let mut next = self.clone();
        for (key, koff, v) in parser.object(&root, "")? {
            match key.as_str() {
                "s" => parser.streamtypes_section(&mut next, v, true)?,
                _ => {
                    return Err(parser.err(
                        key,
                        *koff,
                        format!("overlay may only hold \"s\", not \"{key}\""),
                    ))
                }
            }
        }
        parser.finish(&next)?;
        *self = next;
        Ok(())
    }

    /// A human summary, as printed by `ss policy check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "release {}, product {}, schema-version {}",
            self.release.as_deref().unwrap_or("-"),
            self.product.as_deref().unwrap_or("-"),
            self.schema_version
                .map_or_else(|| "-".to_string(), |v| v.to_string())
        );
        let _ = writeln!(
            out,
            "{} retry policies, {} certs, {} trust stores, {} auth, {} metrics, {} streamtypes",
            self.retry.len(),
            self.certs.len(),
            self.trust_stores.len(),
            self.auth.len(),
            self.metrics.len(),
            self.streamtypes.len()
        );
        for st in &self.streamtypes {
            let tls = if st.tls {
                match &st.tls_trust_store {
                    Some(t) => format!("tls({t})"),
                    None => "tls".to_string(),
                }
            } else {
                "no-tls".to_string()
            };
            let _ = writeln!(
                out,
                "  {}{}: {} {}:{} {} retry={}",
                st.name,
                if st.server { " [server]" } else { "" },
                st.protocol.name(),
                st.endpoint.as_deref().unwrap_or("-"),
                st.port,
                tls,
                st.retry.as_deref().unwrap_or("-")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_streamtypes() {
        let p = Policy::parse(
            r#"{"release": "r1", "product": "p", "retry": [{"d": {}}],
                "s": [{"a": {"endpoint": "x.com", "port": 443, "protocol": "h2",
                             "tls": true, "retry": "d"}}]}"#,
        )
        .unwrap();
        let s = p.summary();
        assert!(s.contains("release r1, product p"), "{s}");
        assert!(s.contains("1 streamtypes"), "{s}");
        assert!(s.contains("a: h2 x.com:443 tls retry=d"), "{s}");
    }

    #[test]
    fn misc_keys() {
        let p = Policy::parse(
            r#"{"s": [{"a": {
                "http_resp_map": [{"530": 1530}, {"404": 2}],
                "options": {"k": "v", "n": 3},
                "plugins": ["x"],
                "http_multipart_content_type": "text/plain",
                "metadata": [{"m": "x-m:", "e": ""}],
                "endpoint": "${e}.host", "mqtt_topic": "t/${m}"}}]}"#,
        )
        .unwrap();
        let st = p.streamtype("a").unwrap();
        assert_eq!(st.http.resp_map, [(530, 1530), (404, 2)]);
        assert_eq!(
            st.options,
            [("k".into(), "v".into()), ("n".into(), "3".into())]
        );
        assert_eq!(st.plugins, ["x"]);
        assert_eq!(
            st.http.multipart_content_type.as_deref(),
            Some("text/plain")
        );
        assert_eq!(st.metadata[1].header, None);
        let e = Policy::parse(r#"{"s": [{"a": {"http_resp_map": [{"abc": 1}]}}]}"#).unwrap_err();
        assert_eq!(e.path, "s[0].a.http_resp_map[0].abc");
        let e = Policy::parse(r#"{"s": [{"a": {"protocol": "h3"}}]}"#).unwrap_err();
        assert_eq!(e.message, "unknown protocol \"h3\"");
    }

    #[test]
    fn overlay_metadata_rechecks_templates() {
        let mut p =
            Policy::parse(r#"{"s": [{"a": {"http_url": "${x}", "metadata": [{"x": ""}]}}]}"#)
                .unwrap();
        let e = p
            .apply_overlay(r#"{"s": [{"a": {"metadata": [{"y": ""}]}}]}"#)
            .unwrap_err();
        assert_eq!(e.path, "s[0].a.metadata");
        assert_eq!(p.streamtype("a").unwrap().metadata[0].name, "x");
        let e = p
            .apply_overlay(r#"{"s": [{"a": {"rideshare": "zz"}}]}"#)
            .unwrap_err();
        assert_eq!(e.path, "s[0].a.rideshare");
    }

    #[test]
    fn forward_auth_and_trust_store_refused() {
        let e = Policy::parse(r#"{"s": [{"a": {"use_auth": "x"}}], "auth": [{"name": "x"}]}"#)
            .unwrap_err();
        assert_eq!(e.message, "unknown auth \"x\"");
        let e = Policy::parse(r#"{"s": [{"a": {"tls_trust_store": "t"}}]}"#).unwrap_err();
        assert_eq!(e.message, "unknown trust store \"t\"");
        let e = Policy::parse(r#"{"auth": [{"name": "x", "streamtype": "nope"}]}"#).unwrap_err();
        assert_eq!(e.path, "auth[0].streamtype");
    }
}
