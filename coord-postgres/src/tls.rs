//! rustls client configurations for `require` without a CA file (encrypted, certificate not
//! checked, as libpq) and for `verify-full`, or `require` with `tls_ca_file` (chain to the
//! configured CA, name checked: a CA file that is given is never ignored).

use std::path::Path;
use std::sync::Arc;

use coord_core::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use coord_core::TlsMode;

fn tls_error(cause: impl Into<String>) -> StoreError {
    StoreError::Connect {
        target: "postgres".to_owned(),
        cause: format!("tls: {}", cause.into()),
        transient: false,
    }
}

/// The client configuration for `mode`, or `None` for [`TlsMode::Disable`].
pub(crate) fn client_config(
    mode: TlsMode,
    tls_ca_file: Option<&Path>,
) -> Result<Option<ClientConfig>, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    match (mode, tls_ca_file) {
        (TlsMode::Disable, _) => Ok(None),
        (TlsMode::Require, None) => Ok(Some(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
        )),
        (_, ca_file) => {
            let path = ca_file.ok_or_else(|| tls_error("verify-full needs tls_ca_file"))?;
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format!("tls_ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| tls_error(format!("tls_ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("tls_ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(tls_error(format!(
                    "tls_ca_file {}: no certificate found",
                    path.display()
                )));
            }
            Ok(Some(
                builder.with_root_certificates(roots).with_no_client_auth(),
            ))
        }
    }
}

/// `sslmode=require`: any certificate is accepted, but the handshake signatures are still
/// verified (the server proves it holds the key of the certificate it sent).
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
