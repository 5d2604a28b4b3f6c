//! The accept loop: one task per connection, HTTP/1.1 or HTTP/2 (hyper-util's auto builder:
//! ALPN `h2` over TLS, prior-knowledge h2c on plain TCP), optional TLS, and the
//! connection-level limits axum's own `serve` does not expose (the time a client gets to send
//! its headers, the head buffer), with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::tls::TlsCertificate;

/// The connection-level settings.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimits {
    /// Time to send a complete request head (HTTP/1); also bounds the TLS handshake.
    pub header_read_timeout: Duration,
    /// The largest head the application layer checks ([`crate::limits::header_size`]); the
    /// protocol buffers are sized above it so that such heads reach that check (and get a
    /// proper error body) rather than being cut by hyper.
    pub max_header_bytes: usize,
}

/// hyper's default HTTP/1 read buffer (8 KiB + 100 × 4 KiB); heads larger than the buffer are
/// answered 431 by hyper itself, without a body.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for the
/// open connections to finish their requests (the caller bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsCertificate>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HYPER_DEFAULT_MAX_BUF.max(limits.max_header_bytes.saturating_mul(2)));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(limits.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; per-connection errors
                    // (reset before accept) are retried at once.
                    if !is_connection_error(&e) {
                        tracing::error!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        // Small answers (manifests, upload receipts) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(TlsCertificate::current);
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&builder, tcp, remote, app, watcher).await,
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, stream, remote, app, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve_connection<IO>(
    builder: &Builder<TokioExecutor>,
    io: IO,
    remote: SocketAddr,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // What `into_make_service_with_connect_info` would insert: the auth middleware and the
        // rate limiter read the peer address from here.
        request.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(request)
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        // Slow or vanished clients end here (header read timeout, reset): not server errors.
        tracing::debug!(%remote, "connection ended: {e}");
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
