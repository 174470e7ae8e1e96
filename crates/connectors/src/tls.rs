//! TLS for the mail connectors that open their own connections (IMAP, POP3): rustls with the
//! aws-lc-rs provider, trusting the system's certificate authorities.

use std::sync::Arc;

/// The client configuration and the name the server's certificate must carry, for `host`
/// (`server` is `host:port`, as errors name it). The error says what is wrong, for a `tls`
/// failure.
pub(crate) fn client(
    host: &str,
    server: &str,
) -> Result<
    (
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
    String,
> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for {server}: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("`{host}` is not a host name TLS can check: {e}"))?;
    Ok((Arc::new(config), name))
}
