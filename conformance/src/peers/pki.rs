//! A throwaway PKI for TLS tests: a CA, a server leaf and a client leaf it
//! signed, plus independent CAs for negative trust tests. ECDSA P-256 keys,
//! made fresh per test with rcgen (ring backend).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::path::{Path, PathBuf};

/// A CA certificate only (no key): what a trust store holds.
#[derive(Clone, Debug)]
pub struct CaCert {
    /// DER of the CA certificate.
    pub der: Vec<u8>,
    /// PEM of the CA certificate.
    pub pem: String,
}

impl CaCert {
    /// Base64 of the DER, the policy's `certs` entry format.
    pub fn b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }
}

/// A leaf certificate and its private key, in PEM and DER (key: PKCS#8).
#[derive(Clone, Debug)]
pub struct LeafCert {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM of the PKCS#8 private key.
    pub key_pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// DER of the PKCS#8 private key.
    pub key_der: Vec<u8>,
}

/// A CA with a server leaf (for the peers) and a client leaf (for mutual
/// TLS), both signed by it. The CA key is kept so more leaves can be issued.
pub struct TestPki {
    /// DER of the issuing CA certificate.
    pub ca_der: Vec<u8>,
    /// PEM of the issuing CA certificate.
    pub ca_pem: String,
    /// Server leaf certificate (PEM), valid for the names given to [`TestPki::new`].
    pub leaf_cert_pem: String,
    /// Server leaf private key (PKCS#8 PEM).
    pub leaf_key_pem: String,
    /// Server leaf certificate (DER).
    pub leaf_der: Vec<u8>,
    /// Server leaf private key (PKCS#8 DER).
    pub leaf_key_der: Vec<u8>,
    /// Client leaf (clientAuth), signed by the same CA, for mutual TLS.
    pub client: LeafCert,
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl TestPki {
    /// A fresh CA and a server leaf for `names` (DNS names or IP literals,
    /// e.g. `["localhost", "127.0.0.1"]`), plus a client leaf.
    pub fn new(names: &[&str]) -> TestPki {
        let (ca_cert, ca_key) = make_ca("ss-test CA");
        let mut pki = TestPki {
            ca_der: ca_cert.der().to_vec(),
            ca_pem: ca_cert.pem(),
            leaf_cert_pem: String::new(),
            leaf_key_pem: String::new(),
            leaf_der: Vec::new(),
            leaf_key_der: Vec::new(),
            client: LeafCert {
                cert_pem: String::new(),
                key_pem: String::new(),
                der: Vec::new(),
                key_der: Vec::new(),
            },
            ca_cert,
            ca_key,
        };
        let leaf = pki.issue(names, ExtendedKeyUsagePurpose::ServerAuth, false);
        pki.leaf_cert_pem = leaf.cert_pem;
        pki.leaf_key_pem = leaf.key_pem;
        pki.leaf_der = leaf.der;
        pki.leaf_key_der = leaf.key_der;
        pki.client = pki.issue(
            &["ss-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        );
        pki
    }

    /// A fresh, unrelated CA: a trust store holding only this one must
    /// reject the peers' leaf.
    pub fn other_ca() -> CaCert {
        let (cert, _key) = make_ca("ss-test other CA");
        CaCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }

    /// The issuing CA alone.
    pub fn ca(&self) -> CaCert {
        CaCert {
            der: self.ca_der.clone(),
            pem: self.ca_pem.clone(),
        }
    }

    /// Base64 of the CA DER, the policy's `certs` entry format.
    pub fn ca_b64(&self) -> String {
        self.ca().b64()
    }

    /// The server leaf as a [`LeafCert`].
    pub fn server(&self) -> LeafCert {
        LeafCert {
            cert_pem: self.leaf_cert_pem.clone(),
            key_pem: self.leaf_key_pem.clone(),
            der: self.leaf_der.clone(),
            key_der: self.leaf_key_der.clone(),
        }
    }

    /// Another server leaf from the same CA for other `names` (e.g. one that
    /// does not match the host a client dials).
    pub fn issue_server(&self, names: &[&str]) -> LeafCert {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server leaf from the same CA that expired in 2001.
    pub fn issue_expired_server(&self, names: &[&str]) -> LeafCert {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// Writes `ca.pem`, `server.pem`, `server.key`, `client.pem`,
    /// `client.key` into `dir` and returns `dir`'s paths to them, in that order.
    pub fn write_files(&self, dir: &Path) -> [PathBuf; 5] {
        let files = [
            ("ca.pem", &self.ca_pem),
            ("server.pem", &self.leaf_cert_pem),
            ("server.key", &self.leaf_key_pem),
            ("client.pem", &self.client.cert_pem),
            ("client.key", &self.client.key_pem),
        ];
        files.map(|(name, text)| {
            let p = dir.join(name);
            fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
            p
        })
    }

    fn issue(&self, names: &[&str], eku: ExtendedKeyUsagePurpose, expired: bool) -> LeafCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign leaf");
        LeafCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

fn make_ca(cn: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Secure Streams tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert, key)
}
