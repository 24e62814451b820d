//! Serving HTTPS: the rustls acceptor built from `[server.tls]` certificate and key files.
//!
//! Read once at start-up (a new certificate needs a restart). ALPN offers HTTP/2 and
//! HTTP/1.1; the server speaks whichever the client picks.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::TlsAcceptor;

use crate::config::file::TlsConfig;

/// Builds the acceptor for `tls`, with relative paths resolved against `base`.
pub fn acceptor(tls: &TlsConfig, base: &Path) -> anyhow::Result<TlsAcceptor> {
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let (cert_path, key_path) = (resolve(&tls.cert), resolve(&tls.key));
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path)
            .with_context(|| format!("server.tls.cert: cannot open {}", cert_path.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("server.tls.cert: {} is not PEM", cert_path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls.cert: {} holds no certificate",
        cert_path.display()
    );
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path)
            .with_context(|| format!("server.tls.key: cannot open {}", key_path.display()))?,
    ))
    .with_context(|| format!("server.tls.key: {} is not PEM", key_path.display()))?
    .with_context(|| {
        format!(
            "server.tls.key: {} holds no private key",
            key_path.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("server.tls: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
