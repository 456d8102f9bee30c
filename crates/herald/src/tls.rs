//! TLS on the OTLP/gRPC, OTLP/HTTP and API listeners (`--tls-cert`/`--tls-key`; rustls with
//! the ring provider). The certificate is read again on SIGHUP: new handshakes get the new one,
//! open connections keep theirs, and a file that does not load leaves the old certificate in
//! place (the error is logged). Handshakes run in each connection's own task, after it has
//! taken its place under `--max-connections`, and must finish within a timeout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Longest a TLS handshake may take (shorter when the listener's idle timeout is shorter): a
/// client that opens a socket and never finishes its hello must not hold a place for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The certificate and key files, from `--tls-cert` / `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The serving certificate, shared by every TLS listener and replaced on reload.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Load the certificate chain and key; the error says which file is wrong and how.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, String> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let first = certified_key(&files, &provider)?;
        Ok(Arc::new(Certificates { files, provider, current: RwLock::new(Arc::new(first)) }))
    }

    /// Read the files again. On success new handshakes use the new certificate; on failure the
    /// one in use stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// Reload on every SIGHUP until `stop`.
    pub async fn watch(self: Arc<Self>, mut hangup: crate::instruments::Hangup, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = hangup.recv() => {}
                () = stop.cancelled() => return,
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(Ok(())) => tracing::info!(cert = %self.files.cert.display(), "SIGHUP: TLS certificate reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the previous one stays in use")
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS certificate reload failed; the previous one stays in use")
                }
            }
        }
    }

    /// The handshake side of one listener; `alpn` the application protocols it speaks.
    pub fn listener(self: &Arc<Self>, name: &'static str, alpn: Alpn) -> Arc<TlsListener> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = match alpn {
            Alpn::Grpc => vec![b"h2".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        };
        Arc::new(TlsListener {
            name,
            plain_text_answer: matches!(alpn, Alpn::Http1),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            failures: AtomicU64::new(0),
        })
    }
}

/// What a listener speaks inside TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 (gRPC clients require `h2` to be negotiated).
    Grpc,
    Http1,
}

/// Hands every handshake the certificate in use at that moment.
#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read the TLS {flag} file {}: {e}", path.display()))
    };
    let cert_flag = "certificate (--tls-cert / HELIX_TLS_CERT)";
    let key_flag = "key (--tls-key / HELIX_TLS_KEY)";
    let cert_pem = read(&files.cert, cert_flag)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the TLS {cert_flag} file {} is not valid PEM: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS {cert_flag} file {} holds no certificate; give a PEM file with the server certificate first, \
             then its intermediates",
            files.cert.display()
        ));
    }
    // Never show the key's content, only where it is and what is wrong with it.
    let key_pem = read(&files.key, key_flag)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "the TLS {key_flag} file {} holds no usable private key ({e}); give a PEM file with one PKCS#8, \
             PKCS#1 (RSA) or SEC1 (EC) private key",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "the TLS key {} does not fit the certificate {} ({e}); give the key the certificate was issued for",
            files.key.display(),
            files.cert.display()
        )
    })
}

/// One listener's TLS handshakes, and a count of the ones that failed (reported now and then,
/// never one line per connection).
pub struct TlsListener {
    name: &'static str,
    acceptor: tokio_rustls::TlsAcceptor,
    /// HTTP/1.1 listeners answer a plain-text request with a 400 that says to use https.
    plain_text_answer: bool,
    failures: AtomicU64,
}

impl TlsListener {
    /// The TLS stream of an accepted connection, or `None` (connection closed) when the client
    /// does not complete a handshake within `timeout`, or speaks plain text.
    pub async fn handshake(&self, stream: TcpStream, timeout: Duration) -> Option<TlsStream<TcpStream>> {
        let timeout = timeout.min(HANDSHAKE_TIMEOUT);
        let outcome = tokio::time::timeout(timeout, async {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                Ok(1) if first[0] != TLS_HANDSHAKE_RECORD => {
                    if self.plain_text_answer {
                        plain_text_refusal(stream).await;
                    }
                    return Err("plain text on a TLS listener".to_owned());
                }
                Ok(1) => {}
                Ok(_) => return Err("closed before the TLS handshake".to_owned()),
                Err(e) => return Err(e.to_string()),
            }
            self.acceptor.accept(stream).await.map_err(|e| e.to_string())
        })
        .await;
        let error = match outcome {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => e,
            Err(_) => format!("no TLS handshake within {timeout:?}"),
        };
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures.is_power_of_two() {
            tracing::warn!(listener = self.name, failures, last_error = %error,
                "TLS handshakes failed (count since start): clients must connect with TLS and trust this certificate");
        }
        None
    }
}

/// What a plain-text HTTP client gets from a TLS port, before the connection is closed.
async fn plain_text_refusal(mut stream: TcpStream) {
    const BODY: &str = "{\"error\":\"this listener speaks TLS: use an https:// URL (and trust the herald's \
                        certificate authority)\"}";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // Read the request first: closing with unread bytes would reset the connection and the
    // client could lose the answer. Best effort throughout: the client may already be gone.
    let mut request = [0u8; 4096];
    let _ = stream.read(&mut request).await;
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut request)).await;
}
