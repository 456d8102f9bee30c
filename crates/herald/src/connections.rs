//! Connection hygiene for the herald's HTTP listeners (OTLP/HTTP, API, metrics; HTTP/1.1):
//! hyper's header-read timeout (which also closes connections idle between requests), a
//! request body timeout, and a cap on open connections. At the cap a small reserve
//! of connections still answers `/healthz` and `/readyz` (and 503 to anything else), so an
//! orchestrator does not restart a herald that is merely busy; past the reserve a connection is
//! closed at once. Refusals are logged as a rate, never one line per socket. Every response
//! gets `X-Content-Type-Options: nosniff` and, unless its route set one, `Cache-Control: no-store`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;

/// Connections kept for health checks once the cap is reached, and how long one may take to
/// send its request (probes send at once; an idle socket must not hold a place for long).
pub const HEALTH_RESERVE: usize = 64;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// How often refused connections are reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Limits of one HTTP listener, from flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections served in full (`--max-connections`).
    pub max_connections: usize,
    /// A connection that sends no complete request head within this time — new, idle after a
    /// response, or sending its headers slowly — is closed (`--http-idle-timeout`).
    pub idle_timeout: Duration,
    /// Longest time to receive one request body (`--http-body-timeout`): 408 after it.
    pub body_timeout: Duration,
}

impl ConnectionLimits {
    /// The flags' defaults.
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        max_connections: 4096,
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
    };
}

/// Serve `app` on an already-bound listener within `limits` until `shutdown` fires; then
/// stop accepting and let the open connections finish (idle ones close at once). With `tls`,
/// each connection first completes a TLS handshake (in its own task, holding its place).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    name: &'static str,
    limits: ConnectionLimits,
    tls: Option<Arc<crate::tls::TlsListener>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout))
        // Every answer (JSON included) is read as its declared type only, and — unless the
        // route says otherwise (the Inspector's pages and assets revalidate) — never cached:
        // API answers hold instrument data, private once auth is on.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    let full = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(Semaphore::new(HEALTH_RESERVE));
    let refused = Arc::new(AtomicU64::new(0));
    let graceful = GracefulShutdown::new();
    let reporter = tokio::spawn(report_refusals(name, refused.clone(), limits.max_connections, shutdown.clone()));
    let mut accept_errors = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before it was accepted):
                    // wait a little rather than spin, and say so once in a while.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(listener = name, error = %e, errors = accept_errors,
                            "cannot accept connections (raise the file limit or lower --max-connections)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (permit, health_only) = match full.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(permit) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    (permit, true)
                }
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
            },
        };
        let idle = if health_only { HEALTH_TIMEOUT } else { limits.idle_timeout };
        let router = if health_only { health_only_router(&app) } else { app.clone() };
        let service = TowerToHyperService::new(router.map_request(move |mut request: http::Request<_>| {
            // What sign-ins are throttled by, as `into_make_service_with_connect_info` would.
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        }));
        // Taken now, so that shutdown also waits for connections still in their TLS handshake.
        let watcher = graceful.watcher();
        // Not on OTLP/HTTP: an export's steps after its commit (OpenLineage events, the
        // resolver) must run even if its client has gone; exports are short anyway.
        let socket = (name != "otlp-http").then(|| PeerWatch::of(&stream));
        let tls = tls.clone();
        tokio::spawn(async move {
            let io = match tls {
                None => Either::Left(stream),
                Some(tls) => match tls.handshake(stream, idle).await {
                    Some(stream) => Either::Right(stream),
                    None => return,
                },
            };
            // HTTP/1.1 only: hyper's automatic version detection waits for the first bytes without
            // a timeout, so a socket that never sends would escape the header-read timeout.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .keep_alive(!health_only)
                .serve_connection(TokioIo::new(io), service);
            // A connection's errors (reset, timed out, malformed) are the client's business.
            // hyper does not read while a request is being answered, so a client that hangs up
            // then is noticed here: dropping the connection drops its request, which stops its
            // query (SQLite interrupt) and frees its class slot.
            tokio::select! {
                _ = watcher.watch(connection) => {}
                () = PeerWatch::hung_up(socket.as_ref()) => {}
            }
            drop(permit);
        });
    }
    reporter.abort();
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How often an open connection is checked for a peer that has gone.
const HANGUP_POLL: Duration = Duration::from_millis(250);

/// The kernel's view of a connection's TCP state, to notice a peer that closed or reset it
/// while hyper is busy answering (it reads again only after the response).
struct PeerWatch {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl PeerWatch {
    fn of(stream: &tokio::net::TcpStream) -> PeerWatch {
        #[cfg(target_os = "linux")]
        {
            PeerWatch { fd: std::os::fd::AsRawFd::as_raw_fd(stream) }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            PeerWatch {}
        }
    }

    /// Resolves once the peer has sent its FIN or a reset (never without a watch). Only polled
    /// while the connection's own future is alive (both are in one `select!`), so the
    /// descriptor is still the socket's.
    async fn hung_up(watch: Option<&PeerWatch>) {
        #[cfg(target_os = "linux")]
        if let Some(watch) = watch {
            loop {
                tokio::time::sleep(HANGUP_POLL).await;
                if watch.peer_gone() {
                    return;
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = watch;
        std::future::pending::<()>().await
    }

    #[cfg(target_os = "linux")]
    fn peer_gone(&self) -> bool {
        // TCP states of <netinet/tcp.h> (libc does not export them).
        const TCP_CLOSE: u8 = 7;
        const TCP_CLOSE_WAIT: u8 = 8;
        const TCP_LAST_ACK: u8 = 9;
        // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct it is given.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
            let got = libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            got == 0 && matches!(info.tcpi_state, TCP_CLOSE | TCP_CLOSE_WAIT | TCP_LAST_ACK)
        }
    }
}

/// What a connection in the health reserve is served: the health checks, 503 for the rest.
fn health_only_router(app: &Router) -> Router {
    let app = app.clone();
    Router::new().fallback(move |request: axum::extract::Request| {
        let app = app.clone();
        async move {
            match request.uri().path() {
                "/healthz" | "/readyz" => app.oneshot(request).await.into_response(),
                _ => {
                    let mut response = (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({
                            "error": "the herald has as many connections open as it serves (--max-connections); retry shortly"
                        })),
                    )
                        .into_response();
                    let headers = response.headers_mut();
                    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                    response
                }
            }
        }
    })
}

/// Every `REPORT_EVERY`, one line with the connections refused (or served health-only) since
/// the last one.
async fn report_refusals(name: &'static str, refused: Arc<AtomicU64>, cap: usize, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
        let count = refused.swap(0, Ordering::Relaxed);
        if count > 0 {
            tracing::warn!(
                listener = name,
                refused = count,
                per_seconds = REPORT_EVERY.as_secs(),
                max_connections = cap,
                "connections over --max-connections: served health checks only, or closed"
            );
        }
    }
}

/// Raise this process's soft limit of open files to its hard limit (as Go programs do), so the
/// connection caps rather than the file limit decide when connections are refused; the limit
/// in force.
pub fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}
