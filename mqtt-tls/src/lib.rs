//! TLS to an MQTT broker for a rumqttc client: the `[tls]` section of a config file
//! ([`TlsConfig`]: the CA file, and a client certificate and key for mutual TLS) and the rustls
//! transport built from it ([`transport`]: ring provider, PEM files). The edge agent uses it for
//! its broker (`[mqtt.tls]`), the gateway for an external broker (`[broker.external.tls]`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rumqttc::Transport;
use serde::Deserialize;

/// TLS settings of the MQTT connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities that sign the broker's certificate, relative to
    /// the config file.
    pub ca_file: PathBuf,
    /// PEM client certificate (chain) for mutual TLS; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`; never logged. The broker's certificate is verified
    /// against the host the client connects to (`mqtt.host`, `broker.external.host`).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// A rustls client configuration (ring provider) from PEM files.
pub fn transport(tls: &TlsConfig) -> anyhow::Result<Transport> {
    use rumqttc::tokio_rustls::rustls;
    let read_pem = |path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = read_pem(&tls.ca_file)?;
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        let cert =
            cert.with_context(|| format!("{}: bad PEM certificate", tls.ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: unusable CA certificate", tls.ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{}: no certificate found", tls.ca_file.display());
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls cannot use its default protocol versions")?
        .with_root_certificates(roots);
    let client = match (&tls.client_cert, &tls.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let pem = read_pem(cert_path)?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: bad PEM certificate", cert_path.display()))?;
            let key_pem = read_pem(key_path)?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .with_context(|| format!("{}: bad PEM key", key_path.display()))?
                .with_context(|| format!("{}: no private key found", key_path.display()))?;
            builder.with_client_auth_cert(certs, key).with_context(|| {
                format!("{}: key does not fit the certificate", key_path.display())
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(client)),
    ))
}
