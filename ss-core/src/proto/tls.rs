//! TLS, sans-IO, on rustls: wraps the bytes of any protocol machine.
//!
//! [`TlsSession`] drives a rustls `ClientConnection` / `ServerConnection` over
//! in-memory buffers only: ciphertext from the peer goes in through
//! [`TlsSession::handle_input`], plaintext comes out into a `Vec`, and bytes
//! for the wire are appended to another `Vec`. No socket, clock or thread is
//! touched here.
//!
//! [`TlsContext`] holds what TLS needs beyond the policy:
//!
//! - the rustls crypto provider (ring by default; the simulation passes a
//!   seeded one so a run replays),
//! - a [`WallClock`] the caller sets (adapters from the system clock, the
//!   simulation from virtual time); rustls needs it to check certificate
//!   validity periods, and an unset clock makes verification fail,
//! - the "system" roots used when a streamtype names no `tls_trust_store`.
//!   They default to the Mozilla bundle compiled in by `webpki-roots`, which is
//!   pure data, so ss-core needs no file IO; adapters may pass other roots (for
//!   example from `rustls-native-certs`) with [`TlsContext::set_system_roots`],
//! - client certificate blobs: the policy's `client_cert` is an index 0..=3
//!   into certificates the application provides
//!   ([`TlsContext::set_client_cert`]).
//!
//! On a server streamtype a `tls_trust_store` means: clients must present a
//! certificate, verified against that store (mutual TLS).

use crate::policy::{Policy, StreamType};
use crate::proto::ProtoError;
use rustls::client::ClientConnection;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{CertificateError, Connection, RootCertStore};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The rustls this module is built on, so callers name the same types.
pub use rustls;

/// Plaintext [`TlsSession::write`] buffers while the handshake is running.
pub const DEFAULT_PENDING_LIMIT: usize = 64 * 1024;

/// Number of client certificate blob slots (`client_cert` 0..=3).
pub const CLIENT_CERT_SLOTS: usize = 4;

/// A TLS failure, sorted by what the caller can do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsError {
    /// Bad policy certificate or key, missing client cert blob, unknown trust store.
    Config(String),
    /// The peer's certificate was rejected (unknown issuer, expired, name mismatch, ...).
    Verify(String),
    /// Any other TLS failure, including alerts from the peer.
    Protocol(String),
    /// Too much plaintext written before the handshake completed.
    BufferFull,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Config(m) => write!(f, "tls: configuration: {m}"),
            TlsError::Verify(m) => write!(f, "tls: peer certificate rejected: {m}"),
            TlsError::Protocol(m) => write!(f, "tls: {m}"),
            TlsError::BufferFull => {
                f.write_str("tls: too much plaintext buffered before the handshake completed")
            }
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for ProtoError {
    fn from(e: TlsError) -> Self {
        ProtoError(e.to_string())
    }
}

/// Describe a certificate error in words (rustls prints some as identifiers).
fn describe_cert_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => "unknown issuer".into(),
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::NotValidYet => "certificate not valid yet".into(),
        CertificateError::NotValidForName => "certificate not valid for name".into(),
        CertificateError::BadSignature => "bad signature".into(),
        CertificateError::BadEncoding => "bad certificate encoding".into(),
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::InvalidPurpose => "certificate not valid for this purpose".into(),
        CertificateError::UnhandledCriticalExtension => "unhandled critical extension".into(),
        other => other.to_string(),
    }
}

/// Sort a rustls error into [`TlsError`].
fn map_error(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InvalidCertificate(ce) => TlsError::Verify(describe_cert_error(&ce)),
        rustls::Error::NoCertificatesPresented => {
            TlsError::Verify("peer presented no certificate".into())
        }
        rustls::Error::FailedToGetCurrentTime => TlsError::Verify(
            "wall clock not set: cannot check certificate validity (Engine::set_unix_time)".into(),
        ),
        rustls::Error::AlertReceived(a) => TlsError::Protocol(format!("peer sent alert {a:?}")),
        other => TlsError::Protocol(other.to_string()),
    }
}

/// Wall-clock seconds since the Unix epoch, set by the caller; rustls reads it
/// to check certificate validity. Clones share one cell.
///
/// While it reads 0 (never set) rustls gets no time and every certificate
/// verification fails with [`TlsError::Verify`]; it never silently succeeds.
#[derive(Clone, Debug, Default)]
pub struct WallClock(Arc<AtomicU64>);

impl WallClock {
    /// A clock that is not set yet (reads 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the current time, in seconds since the Unix epoch.
    pub fn set_unix_secs(&self, secs: u64) {
        self.0.store(secs, Ordering::Relaxed);
    }

    /// The time last set, 0 when never set.
    pub fn unix_secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TimeProvider for WallClock {
    fn current_time(&self) -> Option<UnixTime> {
        match self.unix_secs() {
            0 => None,
            s => Some(UnixTime::since_unix_epoch(Duration::from_secs(s))),
        }
    }
}

/// A client certificate blob: chain and private key.
#[derive(Debug)]
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

type ClientKey = (Option<String>, Option<u8>, Vec<Vec<u8>>);
type ServerKey = (String, String, Option<String>, Vec<Vec<u8>>);

/// Everything TLS needs that is not in the policy: crypto provider, clock,
/// system roots and client certificate blobs; caches built rustls configs.
#[derive(Debug)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    clock: WallClock,
    system_roots: Arc<RootCertStore>,
    client_certs: [Option<ClientCert>; CLIENT_CERT_SLOTS],
    // BTreeMap, not HashMap: std's hasher seeds itself from OS randomness.
    client_cache: BTreeMap<ClientKey, Arc<rustls::ClientConfig>>,
    server_cache: BTreeMap<ServerKey, Arc<rustls::ServerConfig>>,
}

impl TlsContext {
    /// A context on `provider` reading time from `clock`; system roots are the
    /// `webpki-roots` Mozilla bundle.
    pub fn new(provider: Arc<CryptoProvider>, clock: WallClock) -> Self {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        TlsContext {
            provider,
            clock,
            system_roots: Arc::new(roots),
            client_certs: Default::default(),
            client_cache: BTreeMap::new(),
            server_cache: BTreeMap::new(),
        }
    }

    /// A context on ring's default provider.
    pub fn with_default_provider(clock: WallClock) -> Self {
        Self::new(Arc::new(rustls::crypto::ring::default_provider()), clock)
    }

    /// The clock this context's configs read.
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Replace the roots used when a streamtype names no trust store.
    /// Certificates that do not parse as trust anchors are skipped; returns how many were added.
    pub fn set_system_roots(&mut self, roots: Vec<CertificateDer<'static>>) -> usize {
        let mut store = RootCertStore::empty();
        let (added, _skipped) = store.add_parsable_certificates(roots);
        self.system_roots = Arc::new(store);
        self.clear_cache();
        added
    }

    /// Provide client certificate blob `index` (0..=3) for streamtypes whose
    /// `client_cert` names it. The key must load with the provider.
    pub fn set_client_cert(
        &mut self,
        index: u8,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), TlsError> {
        let slot = self
            .client_certs
            .get_mut(usize::from(index))
            .ok_or_else(|| TlsError::Config(format!("client cert index {index} out of 0..=3")))?;
        if chain.is_empty() {
            return Err(TlsError::Config(format!(
                "client cert {index}: empty certificate chain"
            )));
        }
        self.provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::Config(format!("client cert {index}: key: {e}")))?;
        *slot = Some(ClientCert { chain, key });
        self.client_cache.clear();
        Ok(())
    }

    /// Forget cached configs; call when the policy (or its certs) changes.
    pub fn clear_cache(&mut self) {
        self.client_cache.clear();
        self.server_cache.clear();
    }

    /// The root store for trust store `name` from the policy.
    fn policy_roots(policy: &Policy, name: &str) -> Result<RootCertStore, TlsError> {
        let ts = policy
            .trust_store(name)
            .ok_or_else(|| TlsError::Config(format!("unknown trust store {name:?}")))?;
        let mut store = RootCertStore::empty();
        for cert_name in &ts.stack {
            let cert = policy.cert(cert_name).ok_or_else(|| {
                TlsError::Config(format!(
                    "trust store {name:?}: unknown certificate {cert_name:?}"
                ))
            })?;
            store
                .add(CertificateDer::from(cert.der.clone()))
                .map_err(|e| {
                    TlsError::Config(format!(
                        "trust store {name:?}: certificate {cert_name:?}: {e}"
                    ))
                })?;
        }
        Ok(store)
    }

    /// The client config for `st`: peers verified against its trust store (or
    /// the system roots), its client certificate if any, offering `alpn`. Cached.
    pub fn client_config(
        &mut self,
        policy: &Policy,
        st: &StreamType,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let key = (st.tls_trust_store.clone(), st.client_cert, alpn.clone());
        if let Some(c) = self.client_cache.get(&key) {
            return Ok(c.clone());
        }
        let roots = match &st.tls_trust_store {
            Some(name) => Arc::new(Self::policy_roots(policy, name)?),
            None => self.system_roots.clone(),
        };
        let builder = rustls::ClientConfig::builder_with_details(
            self.provider.clone(),
            Arc::new(self.clock.clone()),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
        let mut config = match st.client_cert {
            None => builder.with_no_client_auth(),
            Some(i) => {
                let cc = self
                    .client_certs
                    .get(usize::from(i))
                    .and_then(Option::as_ref)
                    .ok_or_else(|| {
                        TlsError::Config(format!(
                            "streamtype {:?}: client cert blob {i} not provided",
                            st.name
                        ))
                    })?;
                builder
                    .with_client_auth_cert(cc.chain.clone(), cc.key.clone_key())
                    .map_err(|e| TlsError::Config(format!("client cert {i}: {e}")))?
            }
        };
        config.alpn_protocols = alpn;
        let config = Arc::new(config);
        self.client_cache.insert(key, config.clone());
        Ok(config)
    }

    /// The server config for `st`: certificate `server_cert` and key
    /// `server_key` from the policy (PKCS#8, PKCS#1 or SEC1 DER), offering
    /// `alpn`; with a `tls_trust_store`, clients must present a certificate
    /// that verifies against it. Cached.
    pub fn server_config(
        &mut self,
        policy: &Policy,
        st: &StreamType,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let cert_name = st
            .server_cert
            .as_deref()
            .ok_or_else(|| TlsError::Config(format!("streamtype {:?}: no server_cert", st.name)))?;
        let key_name = st
            .server_key
            .as_deref()
            .ok_or_else(|| TlsError::Config(format!("streamtype {:?}: no server_key", st.name)))?;
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let cache_key = (
            cert_name.to_owned(),
            key_name.to_owned(),
            st.tls_trust_store.clone(),
            alpn.clone(),
        );
        if let Some(c) = self.server_cache.get(&cache_key) {
            return Ok(c.clone());
        }
        let cert = policy
            .cert(cert_name)
            .ok_or_else(|| TlsError::Config(format!("unknown server_cert {cert_name:?}")))?;
        let key_der = &policy
            .cert(key_name)
            .ok_or_else(|| TlsError::Config(format!("unknown server_key {key_name:?}")))?
            .der;
        let key = self.load_key(key_der).ok_or_else(|| {
            TlsError::Config(format!(
                "server_key {key_name:?}: not a usable PKCS#8, PKCS#1 or SEC1 DER private key"
            ))
        })?;
        let builder = rustls::ServerConfig::builder_with_details(
            self.provider.clone(),
            Arc::new(self.clock.clone()),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &st.tls_trust_store {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let roots = Arc::new(Self::policy_roots(policy, name)?);
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots, self.provider.clone())
                        .build()
                        .map_err(|e| TlsError::Config(format!("trust store {name:?}: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
            .map_err(|e| {
                TlsError::Config(format!(
                    "server_cert {cert_name:?} / server_key {key_name:?}: {e}"
                ))
            })?;
        config.alpn_protocols = alpn;
        let config = Arc::new(config);
        self.server_cache.insert(cache_key, config.clone());
        Ok(config)
    }

    /// Read a DER private key trying PKCS#8, then PKCS#1 RSA, then SEC1 EC.
    fn load_key(&self, der: &[u8]) -> Option<PrivateKeyDer<'static>> {
        let candidates: [PrivateKeyDer<'static>; 3] = [
            PrivatePkcs8KeyDer::from(der.to_vec()).into(),
            PrivatePkcs1KeyDer::from(der.to_vec()).into(),
            PrivateSec1KeyDer::from(der.to_vec()).into(),
        ];
        candidates.into_iter().find(|k| {
            self.provider
                .key_provider
                .load_private_key(k.clone_key())
                .is_ok()
        })
    }
}

/// One TLS session over one connection, sans-IO: bytes in, bytes out.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// Plaintext written before the handshake completed.
    pending: Vec<u8>,
    pending_limit: usize,
    peer_closed: bool,
    failed: Option<TlsError>,
}

impl TlsSession {
    fn wrap(mut conn: Connection) -> Self {
        // We bound plaintext ourselves (`pending`), and drain ciphertext after
        // every call, so rustls's own buffers never need a limit.
        conn.set_buffer_limit(None);
        TlsSession {
            conn,
            pending: Vec::new(),
            pending_limit: DEFAULT_PENDING_LIMIT,
            peer_closed: false,
            failed: None,
        }
    }

    /// A client session to `server_name` (sent as SNI, and the name the
    /// certificate must match); IP literals, bracketed or not, are allowed.
    pub fn client(config: Arc<rustls::ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let host = server_name
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(server_name);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        let conn = ClientConnection::new(config, name).map_err(map_error)?;
        Ok(Self::wrap(Connection::Client(conn)))
    }

    /// A server session.
    pub fn server(config: Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(map_error)?;
        Ok(Self::wrap(Connection::Server(conn)))
    }

    /// Change how much plaintext [`write`](Self::write) buffers before the
    /// handshake completes (default [`DEFAULT_PENDING_LIMIT`]).
    pub fn set_pending_limit(&mut self, bytes: usize) {
        self.pending_limit = bytes;
    }

    /// Bytes to send at once (the client hello); call after creation.
    pub fn start(&mut self, wire: &mut Vec<u8>) -> Result<(), TlsError> {
        self.drain_wire(wire)
    }

    /// Ciphertext from the peer: plaintext is appended to `plain`, bytes to
    /// send (handshake, alerts, key updates) to `wire`. On error, any alert
    /// for the peer is still appended to `wire`.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rd = data;
        while !rd.is_empty() {
            match self.conn.read_tls(&mut rd) {
                // The peer closed (close_notify seen): rustls takes no more.
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return self.fail(TlsError::Protocol(e.to_string()), wire),
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    if state.peer_has_closed() {
                        self.peer_closed = true;
                    }
                }
                Err(e) => return self.fail(map_error(e), wire),
            }
            if let Err(e) = self.read_plain(plain) {
                return self.fail(e, wire);
            }
            if !self.conn.is_handshaking() && !self.pending.is_empty() {
                let pending = std::mem::take(&mut self.pending);
                if let Err(e) = self.conn.writer().write_all(&pending) {
                    return self.fail(TlsError::Protocol(e.to_string()), wire);
                }
            }
            if let Err(e) = self.drain_wire(wire) {
                return self.fail(e, wire);
            }
        }
        Ok(())
    }

    /// Encrypt application plaintext into `wire`. Before the handshake
    /// completes it is buffered (up to the pending limit, else
    /// [`TlsError::BufferFull`] and nothing is taken) and sent once it does.
    pub fn write(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.conn.is_handshaking() {
            if self.pending.len().saturating_add(plain.len()) > self.pending_limit {
                return Err(TlsError::BufferFull);
            }
            self.pending.extend_from_slice(plain);
            return Ok(());
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            if let Err(e) = self.conn.writer().write_all(&pending) {
                return self.fail(TlsError::Protocol(e.to_string()), wire);
            }
        }
        if let Err(e) = self.conn.writer().write_all(plain) {
            return self.fail(TlsError::Protocol(e.to_string()), wire);
        }
        match self.drain_wire(wire) {
            Err(e) => self.fail(e, wire),
            Ok(()) => Ok(()),
        }
    }

    /// Send close_notify.
    pub fn close(&mut self, wire: &mut Vec<u8>) {
        self.conn.send_close_notify();
        let _ = self.drain_wire(wire);
    }

    /// The handshake has not completed yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The SNI the client asked for (server side only).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// Bytes of plaintext buffered until the handshake completes.
    pub fn pending_plaintext(&self) -> usize {
        self.pending.len()
    }

    /// Record a fatal error, flush any alert rustls queued, return the error.
    fn fail(&mut self, e: TlsError, wire: &mut Vec<u8>) -> Result<(), TlsError> {
        let _ = self.drain_wire(wire);
        self.failed = Some(e.clone());
        Err(e)
    }

    /// Move everything rustls wants to send into `wire`.
    fn drain_wire(&mut self, wire: &mut Vec<u8>) -> Result<(), TlsError> {
        while self.conn.wants_write() {
            match self.conn.write_tls(wire) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(TlsError::Protocol(e.to_string())),
            }
        }
        Ok(())
    }

    /// Move all decrypted plaintext into `plain`.
    fn read_plain(&mut self, plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => plain.extend_from_slice(&buf[..n]), // ok: Read returns n <= buf.len()
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(TlsError::Protocol(e.to_string())),
            }
        }
    }
}
