//! The accept loop: one task per connection, HTTP/1.1 or HTTP/2 (hyper-util's auto builder:
//! ALPN `h2` over TLS, prior-knowledge h2c on plain TCP), optional TLS, and the
//! connection-level limits axum's own `serve` does not expose (the time a client gets to send
//! its headers, the head buffer), with graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::tls::TlsCertificate;

/// The connection-level settings.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimits {
    /// Time to send a complete request head (HTTP/1); also bounds the TLS handshake and the
    /// bytes that tell HTTP/1 from HTTP/2 ([`UntilProtocolKnown`]).
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
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => {
                    let io = UntilProtocolKnown::new(tcp, header_read_timeout);
                    serve_connection(&builder, io, remote, app, watcher).await;
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let io = UntilProtocolKnown::new(stream, header_read_timeout);
                            serve_connection(&builder, io, remote, app, watcher).await;
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

/// The HTTP/2 connection preface, which hyper-util's auto builder reads to choose the protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose reads fail with `TimedOut` if the bytes that choose the protocol have not
/// arrived within `limit`; after that, reads pass straight through.
///
/// Why: hyper's header read timeout starts only once the auto builder has chosen HTTP/1, and
/// the builder has no timer of its own while it waits, so a client that connected and sent
/// nothing (or stopped inside the HTTP/2 preface) held its connection and file descriptor
/// forever. The protocol is known at the first byte that differs from the preface (HTTP/1),
/// at the whole preface (HTTP/2), or at end of stream. Each HTTP/1 head then has hyper's own
/// timeout; an HTTP/2 connection may idle, as HTTP/2 clients do.
struct UntilProtocolKnown<IO> {
    inner: IO,
    /// `None` once the protocol is known.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How many bytes of [`H2_PREFACE`] have arrived so far.
    preface_seen: usize,
}

impl<IO> UntilProtocolKnown<IO> {
    fn new(inner: IO, limit: Duration) -> Self {
        UntilProtocolKnown {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            preface_seen: 0,
        }
    }

    /// Follows the preface over newly read bytes; true once the protocol is known.
    fn protocol_known_after(&mut self, read: &[u8]) -> bool {
        if read.is_empty() {
            return true; // end of stream
        }
        for &byte in read {
            if H2_PREFACE[self.preface_seen] != byte {
                return true;
            }
            self.preface_seen += 1;
            if self.preface_seen == H2_PREFACE.len() {
                return true;
            }
        }
        false
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for UntilProtocolKnown<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if this.protocol_known_after(&buf.filled()[before..]) {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request began within the header read timeout",
                )))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for UntilProtocolKnown<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test] // the deadline is a tokio timer
    async fn the_protocol_is_known_at_the_first_byte_off_the_preface_or_at_its_end() {
        let mut io = UntilProtocolKnown::new((), Duration::from_secs(1));
        assert!(io.protocol_known_after(b"G"), "HTTP/1 at its first byte");
        let mut io = UntilProtocolKnown::new((), Duration::from_secs(1));
        assert!(!io.protocol_known_after(b"PRI * HTTP/2.0\r\n"));
        assert!(!io.protocol_known_after(b"\r\nSM\r\n"));
        assert!(
            io.protocol_known_after(b"\r\n"),
            "HTTP/2 at the preface's end"
        );
        let mut io = UntilProtocolKnown::new((), Duration::from_secs(1));
        assert!(!io.protocol_known_after(b"PRI"));
        assert!(
            io.protocol_known_after(b" x"),
            "a request that starts like the preface"
        );
        let mut io = UntilProtocolKnown::new((), Duration::from_secs(1));
        assert!(io.protocol_known_after(b""), "end of stream");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_is_passed_through() {
        let limit = Duration::from_millis(200);
        let (client, server) = tokio::io::duplex(64);
        let mut io = UntilProtocolKnown::new(server, limit);
        let mut buf = [0u8; 16];
        let err = io.read(&mut buf).await.expect_err("silence times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut io = UntilProtocolKnown::new(server, limit);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        // The protocol is known: a later pause, past the limit, is not cut here (hyper's
        // header read timeout governs the rest).
        tokio::time::sleep(limit * 2).await;
        client.write_all(b"Host: x\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"Host: x\r\n");
    }
}
