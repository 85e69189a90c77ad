//! TLS for `wss://` client connections: a rustls `ClientConfig` trusting the bundled Mozilla roots
//! (webpki-roots), those plus extra CA certificates given as PEM, or only the given CAs.
//!
//! rustls with the `ring` provider, named explicitly rather than taken from the process default:
//! nothing else decides which provider this config uses, and no OpenSSL or aws-lc is linked.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// Which certificates a connection trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Trust {
    /// PEM text of CA certificates to trust (one or more `BEGIN CERTIFICATE` blocks).
    pub ca_pem: Option<String>,
    /// Trust only `ca_pem`, not the bundled roots.
    pub ca_only: bool,
}

/// Builds the config for `trust`. Errors name what is wrong with the PEM.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    if !trust.ca_only {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = &trust.ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("invalid CA PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("invalid CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("the CA PEM holds no certificate".into());
        }
    } else if trust.ca_only {
        return Err("caOnly needs a CA certificate (ca)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_roots_build_a_config() {
        assert!(client_config(&Trust::default()).is_ok());
    }

    #[test]
    fn a_pem_without_certificates_or_ca_only_without_a_pem_is_refused() {
        let none = Trust { ca_pem: Some("not a pem".into()), ca_only: false };
        assert!(client_config(&none).unwrap_err().contains("no certificate"));
        let only = Trust { ca_pem: None, ca_only: true };
        assert!(client_config(&only).unwrap_err().contains("caOnly"));
    }

    #[test]
    fn the_test_ca_fixture_parses() {
        let pem = include_str!("../../__test__/fixtures/tls/ca.pem");
        assert!(client_config(&Trust { ca_pem: Some(pem.into()), ca_only: true }).is_ok());
    }
}
