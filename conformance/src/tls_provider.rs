//! A seeded rustls crypto provider so a simulated TLS run replays bit for bit.
//!
//! # FOR TESTS AND SIMULATION ONLY — NEVER USE IT FOR REAL TRAFFIC.
//!
//! Every "random" value it produces follows from a `u64` seed, so anyone who
//! knows or guesses the seed can recover session keys.
//!
//! [`deterministic_provider`] starts from ring's default provider and replaces
//! the two places that draw randomness:
//!
//! - `secure_random` (client/server random, legacy session id, session ids and
//!   ticket nonces, ticket age add, ...) becomes a SplitMix64 stream;
//! - the X25519 key exchange, which in ring's provider generates its ephemeral
//!   key from ring's own `SystemRandom` (OS randomness the provider's
//!   `secure_random` does not control), is replaced by an x25519-dalek
//!   implementation whose secret comes from the same seeded stream. It is the
//!   first (preferred) group, so two peers both on this provider use it.
//!
//! What stays nondeterministic, because ring's provider draws from the OS
//! inside these operations and offers no hook:
//!
//! - the fallback groups secp256r1 / secp384r1 (ring ECDH), used only if the
//!   peer does not offer X25519;
//! - signatures by ECDSA keys (ring draws the nonce from `SystemRandom`) and
//!   RSA-PSS keys (random salt), i.e. the server's CertificateVerify, and with
//!   it every byte encrypted after it. Ed25519 signatures are deterministic,
//!   so with an Ed25519 server certificate (and client certificate, if any) and
//!   X25519 the whole handshake and all records are reproducible, given the
//!   same seed, the same wall clock, and the same order of calls.
//!
//! A note on memory: rustls wants `&'static` random and key-exchange objects,
//! so each call leaks two small allocations. Fine for tests, another reason
//! not to use this in a long-running program.

use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::NamedGroup;
use ss_core::proto::tls::rustls;
use std::sync::{Arc, Mutex};

/// A SplitMix64 stream shared by the provider's random source and key exchange.
#[derive(Debug)]
struct SeededRandom(Mutex<u64>);

impl SeededRandom {
    fn next_u64(&self) -> u64 {
        // A poisoned lock only means another test thread panicked; the state is
        // a plain integer and still usable.
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// X25519 whose ephemeral secrets come from the seeded stream.
#[derive(Debug)]
struct SeededX25519(&'static SeededRandom);

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        self.0
            .fill(&mut secret)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(ActiveX25519 { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct ActiveX25519 {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl ActiveKeyExchange for ActiveX25519 {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare))?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// TESTS ONLY: ring's default provider with its randomness and X25519 drawn
/// from a PRNG seeded with `seed`, so a simulation seed replays (see module docs).
pub fn deterministic_provider(seed: u64) -> Arc<CryptoProvider> {
    seeded_provider(seed).0
}

fn seeded_provider(seed: u64) -> (Arc<CryptoProvider>, &'static SeededRandom) {
    let rng: &'static SeededRandom = Box::leak(Box::new(SeededRandom(Mutex::new(seed))));
    let x25519: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(rng)));
    let base = rustls::crypto::ring::default_provider();
    let mut kx_groups: Vec<&'static dyn SupportedKxGroup> = vec![x25519];
    kx_groups.extend(
        base.kx_groups
            .iter()
            .copied()
            .filter(|g| g.name() != NamedGroup::X25519),
    );
    let provider = Arc::new(CryptoProvider {
        kx_groups,
        secure_random: rng,
        ..base
    });
    (provider, rng)
}

/// The seed of a provider made by [`resettable_provider`]: resetting it makes
/// the provider draw the same stream again, so a harness that builds many
/// engines can give each the same randomness without leaking a provider per run.
#[derive(Clone, Copy, Debug)]
pub struct SeedHandle(&'static SeededRandom);

impl SeedHandle {
    /// Restart the provider's random stream from `seed`.
    pub fn reset(&self, seed: u64) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = seed;
    }
}

/// TESTS ONLY: as [`deterministic_provider`], plus a handle to restart its
/// random stream. The leaked allocations happen once per call, so callers
/// should make one per thread (or process) and reset it.
pub fn resettable_provider(seed: u64) -> (Arc<CryptoProvider>, SeedHandle) {
    let (provider, rng) = seeded_provider(seed);
    (provider, SeedHandle(rng))
}
