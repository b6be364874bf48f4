//! How the PostgreSQL state connects: over TLS, verified against `[state] ca_file`, or in clear
//! to this host only (the configuration refuses anything else).

use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS connector for a server whose certificate is signed by a CA in `ca_file` and issued
/// for the URL's host: rustls' WebPKI verifier checks the chain against those roots alone (not
/// the system's) and the host name against the certificate.
pub(super) fn connector(ca_file: &Path) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let name = ca_file.display();
    let pem = std::fs::read(ca_file).map_err(|e| format!("ca_file {name}: cannot read: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("ca_file {name}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {name}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {name}: holds no PEM certificate"));
    }
    // Named here, not taken from the process default: the state may be opened before
    // anything installed one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // PostgreSQL 17 requires it for sslnegotiation=direct; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

/// Connects with `tls` and runs the connection on its own task.
pub(super) async fn connect<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, String>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(describe)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "The connection to the PostgreSQL state ended.");
        }
    });
    Ok(client)
}

/// A failed connection with its causes (tokio-postgres' own message is only the kind: "db
/// error", "error performing TLS handshake"), and a hint where the server's certificate was
/// refused.
fn describe(e: tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut certificate = false;
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        let tls = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        certificate |= matches!(tls, Some(rustls::Error::InvalidCertificate(_)));
        cause = c.source();
    }
    if certificate {
        text.push_str(
            " (is the server's certificate signed by a CA in ca_file, and issued for the host in url?)",
        );
    }
    text
}
