//! TLS material. On first start a self-signed certificate and key are made with rcgen
//! and kept in the data dir (key mode 0600); a real certificate is two flags away. The
//! SHA-256 fingerprint of the certificate is what clients pin (`jitgate login
//! --fingerprint`); `pinned_client_config` is the client half of that pin.

use crate::datadir;
use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";

/// Where the certificate comes from.
pub enum Source {
    /// Made on first start, kept in the data dir.
    SelfSigned { data_dir: PathBuf, names: Vec<String> },
    /// Given by the operator (`--tls-cert`, `--tls-key`).
    Files { cert: PathBuf, key: PathBuf },
}

pub struct Loaded {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
}

/// ring rather than aws-lc-rs: a pure-Rust-and-asm build with no cmake or C
/// toolchain step, and one provider in the whole tree (ureq uses ring too). The cost,
/// which rustls flags by deprecating this call: no post-quantum hybrid key exchange.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

pub fn load(source: &Source) -> Result<Loaded> {
    let (cert_path, key_path) = match source {
        Source::SelfSigned { data_dir, names } => {
            let paths = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
            if !paths.0.exists() || !paths.1.exists() {
                generate(&paths.0, &paths.1, names)?;
            }
            paths
        }
        Source::Files { cert, key } => (cert.clone(), key.clone()),
    };
    datadir::check_key_file(&key_path)?;
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let fingerprint = certs.first().map(|c| fingerprint(c.as_ref())).unwrap_or_default();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Startup(format!("TLS certificate or key refused: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded { config: Arc::new(config), fingerprint })
}

fn generate(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<()> {
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| Error::Startup(format!("certificate names: {e}")))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "jitgate");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Internal(format!("key generation: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| Error::Internal(format!("self-signing: {e}")))?;
    datadir::write_private(key_path, key.serialize_pem().as_bytes())?;
    datadir::write_private(cert_path, cert.pem().as_bytes())?;
    crate::info!("made a self-signed TLS certificate for {} in {}", names.join(", "), cert_path.display());
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::Startup(format!("cannot read TLS certificate {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Startup(format!("bad TLS certificate {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Startup(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem =
        std::fs::read(path).map_err(|e| Error::Startup(format!("cannot read TLS key {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::Startup(format!("bad TLS key {}: {e}", path.display())))?
        .ok_or_else(|| Error::Startup(format!("no private key in {}", path.display())))
}

/// Lowercase hex SHA-256 of a DER certificate, colon-separated (`ab:cd:…`).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Normalises a user-given fingerprint: hex, colons optional, any case.
pub fn normalize_fingerprint(text: &str) -> Result<[u8; 32]> {
    let hex_only: String = text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    let bytes = hex::decode(&hex_only)
        .map_err(|_| Error::bad("bad_fingerprint", "a fingerprint is 64 hex digits, colons optional"))?;
    bytes
        .try_into()
        .map_err(|_| Error::bad("bad_fingerprint", "a fingerprint is the SHA-256 of the certificate: 32 bytes"))
}

/// A client configuration that trusts exactly one certificate: the one whose
/// SHA-256 is `pin`. Signatures are still checked, so the server must hold its key.
pub fn pinned_client_config(pin: [u8; 32]) -> Result<Arc<rustls::ClientConfig>> {
    client_config(Arc::new(PinnedCert { trust: Trust::Pin(pin), provider: provider() }))
}

/// A client configuration that accepts any certificate and records the one it saw:
/// only for showing or comparing a fingerprint before trusting it (`jitgate login`),
/// never to carry a credential.
pub fn recording_client_config() -> Result<(Arc<rustls::ClientConfig>, SeenCert)> {
    let seen = Arc::new(Mutex::new(None));
    let config = client_config(Arc::new(PinnedCert { trust: Trust::Record(Arc::clone(&seen)), provider: provider() }))?;
    Ok((config, seen))
}

fn client_config(verifier: Arc<PinnedCert>) -> Result<Arc<rustls::ClientConfig>> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS client setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where a recording verifier leaves the DER of the certificate it saw.
pub type SeenCert = Arc<Mutex<Option<Vec<u8>>>>;

#[derive(Debug)]
enum Trust {
    /// Exactly the certificate with this SHA-256.
    Pin([u8; 32]),
    /// Any certificate, remembered (signatures are still checked).
    Record(SeenCert),
}

#[derive(Debug)]
struct PinnedCert {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let pin = match &self.trust {
            Trust::Record(slot) => {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(end_entity.as_ref().to_vec());
                }
                return Ok(ServerCertVerified::assertion());
            }
            Trust::Pin(pin) => pin,
        };
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if crate::secret::constant_time_eq(&seen, pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {} does not match the pinned one",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
