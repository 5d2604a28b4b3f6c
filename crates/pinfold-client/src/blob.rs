//! A blob body that verifies itself while it streams: every chunk goes through a
//! [`Digester`], the byte count is checked against `Content-Length` as it grows, and the
//! stream's last item is an error when the digest or size is wrong. A consumer that writes
//! chunks as they come must therefore treat the data as provisional until the stream ends
//! without error (the store does: it verifies again before a blob becomes visible).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use pinfold_oci::{Digest, Digester};

use crate::error::ClientError;

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// The body of one blob, verified as it is read. See the module documentation.
pub struct BlobStream {
    size: Option<u64>,
    inner: Inner,
}

impl BlobStream {
    /// The size announced by the registry (`Content-Length`), which the stream enforces.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Reads the whole blob into memory. Meant for small blobs (image configs) and tests.
    ///
    /// # Errors
    ///
    /// The first error the stream yields, including the final digest or size check.
    pub async fn collect_bytes(mut self) -> Result<Bytes, ClientError> {
        let mut out = Vec::with_capacity(usize::try_from(self.size.unwrap_or(0)).unwrap_or(0));
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// A stream that checks only the size (see `RegistryClient::get_blob_unverified`).
    pub(crate) fn sized<S>(body: S, size: Option<u64>) -> BlobStream
    where
        S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    {
        let inner =
            futures_util::stream::unfold(Some((Box::pin(body), 0u64)), move |state| async move {
                let (mut body, mut seen) = state?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        seen += chunk.len() as u64;
                        match size.filter(|s| seen > *s) {
                            Some(expected) => Some((
                                Err(ClientError::SizeMismatch {
                                    expected,
                                    actual: seen,
                                }),
                                None,
                            )),
                            None => Some((Ok(chunk), Some((body, seen)))),
                        }
                    }
                    Some(Err(e)) => Some((Err(ClientError::Transport(e)), None)),
                    None => size.filter(|s| seen != *s).map(|expected| {
                        (
                            Err(ClientError::SizeMismatch {
                                expected,
                                actual: seen,
                            }),
                            None,
                        )
                    }),
                }
            });
        BlobStream {
            size,
            inner: Box::pin(inner),
        }
    }

    pub(crate) fn verify<S>(body: S, expected: Digest, size: Option<u64>) -> BlobStream
    where
        S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    {
        struct State<S> {
            body: Pin<Box<S>>,
            digester: Digester,
            expected: Digest,
            size: Option<u64>,
            seen: u64,
        }
        let state = State {
            body: Box::pin(body),
            digester: Digester::new(expected.algorithm()),
            expected,
            size,
            seen: 0,
        };
        // `None` as state means an error was yielded: the stream ends after it.
        let inner = futures_util::stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    st.seen += chunk.len() as u64;
                    if let Some(size) = st.size.filter(|s| st.seen > *s) {
                        let err = ClientError::SizeMismatch {
                            expected: size,
                            actual: st.seen,
                        };
                        return Some((Err(err), None));
                    }
                    st.digester.update(&chunk);
                    Some((Ok(chunk), Some(st)))
                }
                Some(Err(e)) => Some((Err(ClientError::Transport(e)), None)),
                None => {
                    if let Some(size) = st.size.filter(|s| st.seen != *s) {
                        let err = ClientError::SizeMismatch {
                            expected: size,
                            actual: st.seen,
                        };
                        return Some((Err(err), None));
                    }
                    let actual = st.digester.finalize();
                    if actual != st.expected {
                        let err = ClientError::DigestMismatch {
                            expected: st.expected,
                            actual,
                        };
                        return Some((Err(err), None));
                    }
                    None
                }
            }
        });
        BlobStream {
            size,
            inner: Box::pin(inner),
        }
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, reqwest::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn good_bytes_pass() {
        let d = Digest::sha256(b"hello world");
        let s = BlobStream::verify(chunks(&[b"hello", b" ", b"world"]), d, Some(11));
        assert_eq!(
            s.collect_bytes().await.unwrap(),
            Bytes::from_static(b"hello world")
        );
    }

    #[tokio::test]
    async fn wrong_digest_ends_in_an_error() {
        let d = Digest::sha256(b"something else");
        let mut s = BlobStream::verify(chunks(&[b"hello"]), d.clone(), None);
        assert!(s.next().await.unwrap().is_ok());
        match s.next().await {
            Some(Err(ClientError::DigestMismatch { expected, actual })) => {
                assert_eq!(expected, d);
                assert_eq!(actual, Digest::sha256(b"hello"));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_size_mismatches() {
        let d = Digest::sha256(b"abc");
        let short = BlobStream::verify(chunks(&[b"ab"]), d.clone(), Some(3));
        assert!(matches!(
            short.collect_bytes().await,
            Err(ClientError::SizeMismatch {
                expected: 3,
                actual: 2
            })
        ));
        let long = BlobStream::verify(chunks(&[b"ab", b"cd"]), d, Some(3));
        assert!(matches!(
            long.collect_bytes().await,
            Err(ClientError::SizeMismatch {
                expected: 3,
                actual: 4
            })
        ));
    }
}
