//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` read from the database URL (and
//! `[database] ca_file`), turned into a rustls connector for the `postgres` driver.
//!
//! The driver itself knows only `disable`, `prefer` and `require` and never checks a
//! certificate, so this module takes both parameters out of the URL before the driver
//! parses it and decides what the handshake checks:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (libpq's default, and ours) | when the server offers TLS | no |
//! | `require` | yes | no (as libpq: with a CA file given, as `verify-ca`) |
//! | `verify-ca` | yes | signed by a trusted CA |
//! | `verify-full` | yes | signed by a trusted CA and issued for the host connected to |
//!
//! Trusted CAs are the file `sslrootcert` names (or `ca_file`), else the system's roots
//! (`sslrootcert=system`, or nothing given). rustls, not OpenSSL: the binary already carries
//! it for HTTP, and it needs no system library.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{StoreError, StoreResult};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> StoreResult<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plain text first; we do not offer a mode that never
            // asks for TLS when the server would give it.
            other => {
                return Err(StoreError::Invalid(format!(
                    "database_url: sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }

    /// The name as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver does before the handshake (it only knows these three).
    pub fn driver_mode(self) -> postgres::config::SslMode {
        match self {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's store (`sslrootcert=system`, or none given).
    System,
    /// A PEM file (`sslrootcert=/path`, or `[database] ca_file`).
    File(PathBuf),
}

/// The TLS settings of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Roots,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (the driver refuses `verify-*`), with
/// `ca_file` as the CA when the URL names none. Returns the URL for the driver.
pub fn split_url(url: &str, ca_file: Option<&Path>) -> StoreResult<(String, TlsSettings)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| StoreError::Invalid(format!("database_url: {k} is not UTF-8")))
        };
        match k {
            "sslmode" => mode = Some(SslMode::parse(&decoded()?)?),
            "sslrootcert" => root = Some(decoded()?),
            _ => kept.push(pair),
        }
    }
    let roots = match root.as_deref() {
        Some("system") => Roots::System,
        Some(path) => Roots::File(PathBuf::from(path)),
        None => match ca_file {
            Some(p) => Roots::File(p.to_path_buf()),
            None => Roots::System,
        },
    };
    let mut mode = mode.unwrap_or(SslMode::Prefer);
    // libpq: "require" with a root certificate file verifies the chain, as verify-ca.
    if mode == SslMode::Require && matches!(roots, Roots::File(_)) {
        mode = SslMode::VerifyCa;
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, TlsSettings { mode, roots }))
}

/// The rustls connector for `settings`, or `None` for plain text (`disable`).
pub fn connector(
    settings: &TlsSettings,
) -> StoreResult<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
    // One provider named here: the binary links both of rustls's, and rustls picks none
    // by itself when two are compiled in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Invalid(format!("TLS setup: {e}")))?;
    let config = match settings.mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(&settings.roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| StoreError::Invalid(format!("TLS setup: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if settings.mode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

fn root_store(roots: &Roots) -> StoreResult<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Invalid(format!(
                        "cannot read the PostgreSQL CA file {}: {e}",
                        path.display()
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Invalid(format!(
                    "the PostgreSQL CA file {} holds no usable PEM certificate",
                    path.display()
                )));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::Invalid(
                    "no system CA certificates found to verify PostgreSQL's certificate; set sslrootcert in database_url or [database] ca_file".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// `prefer` and `require`: the connection is encrypted, the certificate is not checked
/// (libpq's meaning), but the handshake's signatures still are.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in it is not compared.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection error in an operator's words: what about TLS failed, and what to change.
/// Other errors pass through as the driver words them.
pub fn describe(e: &postgres::Error, mode: SslMode) -> String {
    let m = mode.as_str();
    if let Some(tls) = rustls_error(e) {
        return match tls {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "PostgreSQL's certificate does not match the host name in database_url (sslmode={m}): {tls}; connect by a name the certificate holds"
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "PostgreSQL's certificate is not signed by a trusted CA (sslmode={m}): set sslrootcert in database_url or [database] ca_file to the CA that signed it"
            ),
            rustls::Error::InvalidCertificate(_) => {
                format!("PostgreSQL's certificate was refused (sslmode={m}): {tls}")
            }
            _ => format!("TLS handshake with PostgreSQL failed (sslmode={m}): {tls}"),
        };
    }
    if let Some(db) = e.as_db_error() {
        // The driver's own wording is only "db error"; the server's says why.
        return format!("{}: {}", db.severity(), db.message());
    }
    let text = e.to_string();
    if text.contains("server does not support TLS") {
        return format!(
            "PostgreSQL does not accept TLS connections, and sslmode={m} requires TLS: turn on ssl in the server, or use sslmode=disable on a trusted network"
        );
    }
    text
}

/// The rustls error behind a failed handshake, if that is what failed. `io::Error` hides
/// its payload from `source()`, so each link is also looked into.
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r);
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        split_url(url, None).unwrap()
    }

    #[test]
    fn sslmode_and_sslrootcert_leave_the_url_the_driver_reads() {
        let (url, s) = split("postgres://u@db:5432/x?sslmode=verify-full&options=-csearch_path%3Dt&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(url, "postgres://u@db:5432/x?options=-csearch_path%3Dt");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.roots, Roots::File("/etc/ca.pem".into()));
        let (url, s) = split("postgres://u@db/x?sslmode=disable");
        assert_eq!(url, "postgres://u@db/x");
        assert_eq!(s.mode, SslMode::Disable);
    }

    #[test]
    fn without_sslmode_it_is_prefer_with_the_system_roots() {
        let (url, s) = split("postgres://u@db/x");
        assert_eq!(url, "postgres://u@db/x");
        assert_eq!(
            s,
            TlsSettings {
                mode: SslMode::Prefer,
                roots: Roots::System
            }
        );
        assert_eq!(
            split("postgres://u@db/x?sslrootcert=system").1.roots,
            Roots::System
        );
    }

    #[test]
    fn the_configured_ca_file_applies_when_the_url_names_none() {
        let ca = Path::new("/etc/tidings/pg-ca.pem");
        let (_, s) = split_url("postgres://db/x?sslmode=verify-full", Some(ca)).unwrap();
        assert_eq!(s.roots, Roots::File(ca.into()));
        let (_, s) = split_url(
            "postgres://db/x?sslmode=verify-full&sslrootcert=/a.pem",
            Some(ca),
        )
        .unwrap();
        assert_eq!(s.roots, Roots::File("/a.pem".into()), "the URL wins");
        // libpq: require with a CA file checks the chain.
        let (_, s) = split_url("postgres://db/x?sslmode=require", Some(ca)).unwrap();
        assert_eq!(s.mode, SslMode::VerifyCa);
    }

    #[test]
    fn an_unknown_sslmode_is_named() {
        let e = split_url("postgres://db/x?sslmode=allow", None).unwrap_err();
        assert!(e.to_string().contains("sslmode=\"allow\""), "{e}");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let settings = TlsSettings {
            mode: SslMode::VerifyFull,
            roots: Roots::File(missing.clone()),
        };
        let e = connector(&settings).err().unwrap().to_string();
        assert!(e.contains("none.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = connector(&TlsSettings {
            mode: SslMode::VerifyFull,
            roots: Roots::File(junk),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("no usable PEM certificate"), "{e}");
        assert!(connector(&TlsSettings {
            mode: SslMode::Disable,
            roots: Roots::System
        })
        .unwrap()
        .is_none());
    }
}
