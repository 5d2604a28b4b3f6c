//! Blobs and upload sessions in S3-compatible object storage (`[storage] backend = "s3"`),
//! through the `object_store` crate: AWS S3, Garage, MinIO, Ceph.
//!
//! Keys under the configured prefix:
//!
//! ```text
//! blobs/<alg>/<2 hex>/<hex>       a blob, written only after its digest matched
//! uploads/<id>/started            an open upload session (empty; its time is the session's start)
//! uploads/<id>/<offset, 20 digits>  the bytes one append received, starting at that offset
//! ```
//!
//! Every replica sharing the bucket sees the same sessions: the session's state is its objects
//! (S3 listings are strongly consistent), so an upload begun on one replica continues and
//! completes on another. What stays in memory is a per-process shortcut only: one lock per
//! session (appends to one session arrive one at a time from an OCI client) and the running
//! SHA-256 of the bytes this process appended in order, so completing does not read them back.
//!
//! "Visible means verified": an append writes its own part key (a single `PUT`, or a
//! multipart upload completed only when the body ended whole), and a blob key is written by
//! copying the one part, or by completing a multipart upload of all parts, only after the
//! digest matched; a failed or refused write leaves no blob key.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, PutPayload, RetryConfig,
    WriteMultipart,
};
use pinfold_oci::{Digest, DigestAlgorithm, Digester};
use serde::{Deserialize, Serialize};

use crate::session::{Session, SessionHandle, Sessions};
use crate::{StoreError, UploadId};
use tokio::sync::OwnedMutexGuard;

/// Bytes buffered before an append or a blob write turns into a multipart upload; also the
/// part size. S3 wants parts of at least 5 MiB (but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one multipart upload sent at once.
const PART_CONCURRENCY: usize = 4;

/// Where blobs are kept (`[storage]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under the data directory (the default).
    #[default]
    Filesystem,
    /// An S3-compatible object store.
    S3,
}

/// `[storage]`: the blob store's backend and, for S3, how to reach it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `filesystem` (default) or `s3`.
    pub backend: StorageBackend,
    /// The S3 endpoint, e.g. `http://127.0.0.1:3900`; AWS when omitted.
    pub endpoint: Option<String>,
    /// The bucket (must exist).
    pub bucket: String,
    /// The region (`garage` for Garage's default; AWS regions for AWS).
    pub region: String,
    /// A key prefix inside the bucket, so that several deployments may share one.
    pub prefix: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (or `PINFOLD_STORAGE_SECRET_ACCESS_KEY`). Never logged.
    pub secret_access_key: String,
    /// Longest one request to the store may take, body included (a large blob GET streams
    /// within it). Default 600.
    pub request_timeout_seconds: u64,
    /// Answer blob GETs with a `307` to a presigned URL of the store, so large pulls go to the
    /// store directly instead of through Pinfold (distribution's redirect middleware). The
    /// store's endpoint must then be reachable by the clients. Default off.
    pub redirect: bool,
    /// How long a presigned URL stays valid. Default 300.
    pub redirect_seconds: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Filesystem,
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            request_timeout_seconds: 600,
            redirect: false,
            redirect_seconds: 300,
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of every log line and error message.
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// Where the store is, for messages: `s3://bucket/prefix at endpoint`.
    pub fn describe(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        let place = if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        };
        match &self.endpoint {
            Some(endpoint) => format!("{place} at {endpoint}"),
            None => place,
        }
    }
}

/// The object-storage side of a [`crate::BlobStore`].
pub(crate) struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// Signs blob URLs for redirects, when `[storage] redirect` is on.
    signer: Option<(Arc<object_store::aws::AmazonS3>, Duration)>,
    prefix: String,
    /// Where the store is, for error messages.
    place: String,
    sessions: Sessions,
}

impl std::fmt::Debug for ObjectBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobs")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// An object's size and time, as the store lists it.
struct Part {
    key: Key,
    offset: u64,
    size: u64,
}

/// What a session's objects say.
struct SessionObjects {
    /// Every key of the session (marker and parts), for deletion.
    keys: Vec<Key>,
    /// The parts, by offset.
    parts: Vec<Part>,
    /// The newest time among them: when the session last received something.
    last_modified: SystemTime,
}

impl SessionObjects {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

impl ObjectBlobs {
    /// Connects to the store `config` names and checks, once, that the bucket exists and the
    /// credentials may list, write and delete under the prefix.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] with one line saying what is wrong (missing bucket, refused
    /// credentials, unreachable endpoint); the secret is never part of it.
    pub(crate) async fn connect(config: &StorageConfig) -> Result<ObjectBlobs, StoreError> {
        let place = config.describe();
        let refuse = |reason: String| StoreError::Unavailable {
            place: place.clone(),
            reason,
        };
        if config.bucket.is_empty() {
            return Err(refuse("[storage] bucket is not set".to_owned()));
        }
        let timeout = Duration::from_secs(config.request_timeout_seconds.max(1));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            // S3's 500/503 (SlowDown) and timeouts are retried with exponential backoff; past
            // that the caller answers 503 with Retry-After.
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = Arc::new(builder.build().map_err(|e| refuse(e.to_string()))?);
        let signer = config.redirect.then(|| {
            (
                Arc::clone(&store),
                Duration::from_secs(config.redirect_seconds.max(1)),
            )
        });
        let blobs = ObjectBlobs {
            store,
            signer,
            prefix: config.prefix.trim_matches('/').to_owned(),
            place: place.clone(),
            sessions: Sessions::default(),
        };
        blobs.probe().await.map_err(|e| refuse(short_reason(&e)))?;
        Ok(blobs)
    }

    /// Lists, writes and deletes one probe key: what serving needs, checked before serving.
    async fn probe(&self) -> Result<(), object_store::Error> {
        let key = self.key(&format!(".probe-{}", UploadId::new_random()));
        self.store
            .list_with_delimiter(Some(&self.key("blobs")))
            .await?;
        self.store.put(&key, PutPayload::from_static(b"")).await?;
        self.store.delete(&key).await
    }

    fn key(&self, relative: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(relative)
        } else {
            Key::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Digest) -> Key {
        let hex = digest.encoded();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn session_prefix(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}"))
    }

    fn marker_key(&self, id: &UploadId) -> Key {
        self.key(&format!("uploads/{id}/started"))
    }

    fn part_key(&self, id: &UploadId, offset: u64) -> Key {
        self.key(&format!("uploads/{id}/{offset:020}"))
    }

    fn error(&self, op: &'static str, key: &Key, source: object_store::Error) -> StoreError {
        StoreError::Object {
            op,
            key: format!("{}/{key}", self.place),
            source: Box::new(source),
        }
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, StoreError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("stat", key, e)),
        }
    }

    pub(crate) async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|m| m.size))
    }

    /// A handle to read the blob with, or `None`.
    pub(crate) async fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<(u64, ObjectReader)>, StoreError> {
        let key = self.blob_key(digest);
        Ok(self.head(&key).await?.map(|meta| {
            (
                meta.size,
                ObjectReader {
                    store: Arc::clone(&self.store),
                    key,
                    place: self.place.clone(),
                },
            )
        }))
    }

    /// The small shared file `state/<name>`, or `None`.
    pub(crate) async fn read_state(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let key = self.key(&format!("state/{name}"));
        match self.store.get(&key).await {
            Ok(got) => Ok(Some(
                got.bytes().await.map_err(|e| self.error("read", &key, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", &key, e)),
        }
    }

    /// Writes the small shared file `state/<name>` (one `PUT`: readers see the old or the new
    /// content, never a part).
    pub(crate) async fn write_state(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let key = self.key(&format!("state/{name}"));
        self.store
            .put(&key, PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(|e| self.error("write", &key, e))
    }

    /// A presigned GET URL of the blob, when redirects are on (the blob is not checked: the
    /// caller serves only blobs it found).
    pub(crate) async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        use object_store::signer::Signer;
        let Some((signer, ttl)) = &self.signer else {
            return Ok(None);
        };
        let key = self.blob_key(digest);
        signer
            .signed_url(http::Method::GET, &key, *ttl)
            .await
            .map(|url| Some(url.to_string()))
            .map_err(|e| self.error("sign", &key, e))
    }

    pub(crate) async fn read_blob(
        &self,
        digest: &Digest,
        max_len: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        let key = self.blob_key(digest);
        let Some(meta) = self.head(&key).await? else {
            return Ok(None);
        };
        let max = max_len as u64;
        if meta.size > max {
            return Err(StoreError::BlobTooLarge {
                digest: digest.clone(),
                size: meta.size,
                max,
            });
        }
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("read", &key, e)),
        };
        let bytes = got.bytes().await.map_err(|e| self.error("read", &key, e))?;
        if bytes.len() > max_len {
            return Err(StoreError::BlobTooLarge {
                digest: digest.clone(),
                size: bytes.len() as u64,
                max,
            });
        }
        Ok(Some(bytes))
    }

    pub(crate) async fn put_blob(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        let actual = Digest::compute(digest.algorithm(), &bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_some() {
            return Ok(());
        }
        self.store
            .put(&key, PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(|e| self.error("write", &key, e))
    }

    /// Streams the file at `source` into the blob `digest`, completing the write only if the
    /// bytes hash to it.
    pub(crate) async fn copy_in(
        &self,
        digest: &Digest,
        source: &std::path::Path,
    ) -> Result<u64, StoreError> {
        let key = self.blob_key(digest);
        if let Some(meta) = self.head(&key).await? {
            return Ok(meta.size);
        }
        let file = std::fs::File::open(source).map_err(|e| StoreError::io("open", source, e))?;
        let path = source.to_owned();
        // Read on the blocking pool, a part at a time, into the verified writer.
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut file = file;
            loop {
                let mut buf = vec![0u8; PART_BYTES];
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                buf.truncate(n);
                if n > 0 && tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return;
                }
                if n < PART_BYTES {
                    return;
                }
            }
        });
        let chunks = tokio_stream_from(rx);
        let written = self
            .write_object(
                &key,
                Some(digest),
                chunks.map_err(|e| StoreError::io("read", &path, e)),
            )
            .await;
        let _ = reader.await;
        written
    }

    /// Writes `chunks` to `key` as one object, made visible only when the whole stream ended
    /// without error (a single `PUT` for what fits one part, else a multipart upload completed
    /// then, and aborted otherwise) and, with `expected`, only when the chunks hash to it.
    /// Without `expected` an empty stream writes nothing (an append of no bytes has no part);
    /// with it, an empty object (the empty blob).
    async fn write_object<S>(
        &self,
        key: &Key,
        expected: Option<&Digest>,
        chunks: S,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, StoreError>> + Send,
    {
        let mut chunks = std::pin::pin!(chunks);
        let mut digester = expected.map(|d| Digester::new(d.algorithm()));
        let mut buffered: Vec<Bytes> = Vec::new();
        let mut buffered_len = 0usize;
        let mut multipart: Option<WriteMultipart> = None;
        let mut total = 0u64;
        let streamed: Result<(), StoreError> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                if let Some(digester) = &mut digester {
                    digester.update(&chunk);
                }
                total += chunk.len() as u64;
                match &mut multipart {
                    Some(upload) => {
                        upload
                            .wait_for_capacity(PART_CONCURRENCY)
                            .await
                            .map_err(|e| self.error("write", key, e))?;
                        upload.put(chunk);
                    }
                    None => {
                        buffered_len += chunk.len();
                        buffered.push(chunk);
                        if buffered_len >= PART_BYTES {
                            let upload = self
                                .store
                                .put_multipart(key)
                                .await
                                .map_err(|e| self.error("write", key, e))?;
                            let mut upload =
                                WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                            for piece in buffered.drain(..) {
                                upload.put(piece);
                            }
                            multipart = Some(upload);
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        let verified = streamed.and_then(|()| match (expected, digester) {
            (Some(expected), Some(digester)) => {
                let actual = digester.finalize();
                if actual == *expected {
                    Ok(())
                } else {
                    Err(StoreError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    })
                }
            }
            _ => Ok(()),
        });
        match (verified, multipart) {
            (Ok(()), Some(upload)) => {
                upload
                    .finish()
                    .await
                    .map_err(|e| self.error("write", key, e))?;
            }
            (Ok(()), None) if total == 0 && expected.is_none() => {}
            (Ok(()), None) => {
                let payload: PutPayload = buffered.into_iter().collect();
                self.store
                    .put(key, payload)
                    .await
                    .map_err(|e| self.error("write", key, e))?;
            }
            (Err(e), Some(upload)) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(error = %abort, "aborting a multipart upload that failed");
                }
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        }
        Ok(total)
    }

    pub(crate) async fn create_upload(&self) -> Result<UploadId, StoreError> {
        let id = UploadId::new_random();
        let key = self.marker_key(&id);
        self.store
            .put(&key, PutPayload::from_static(b""))
            .await
            .map_err(|e| self.error("create upload", &key, e))?;
        self.sessions.insert_new(&id);
        Ok(id)
    }

    /// The session's objects, or `None` when it has no marker (unknown, completed, cancelled).
    async fn session_objects(&self, id: &UploadId) -> Result<Option<SessionObjects>, StoreError> {
        let prefix = self.session_prefix(id);
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("list upload", &prefix, e))?;
        let marker = self.marker_key(id);
        if !listed.iter().any(|m| m.location == marker) {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut last_modified = SystemTime::UNIX_EPOCH;
        for meta in &listed {
            last_modified = last_modified.max(SystemTime::from(meta.last_modified));
            let offset = meta
                .location
                .filename()
                .and_then(|name| name.parse::<u64>().ok());
            if let Some(offset) = offset {
                parts.push(Part {
                    key: meta.location.clone(),
                    offset,
                    size: meta.size,
                });
            }
        }
        parts.sort_by_key(|p| p.offset);
        // Parts are contiguous by construction (each append starts at the previous length);
        // anything else is not this store's writing, and is refused rather than guessed at.
        let mut expected = 0;
        for part in &parts {
            if part.offset != expected {
                return Err(StoreError::Object {
                    op: "read upload",
                    key: format!("{}/{}", self.place, part.key),
                    source: Box::new(object_store::Error::Generic {
                        store: "S3",
                        source: format!(
                            "part at offset {} where {expected} was expected",
                            part.offset
                        )
                        .into(),
                    }),
                });
            }
            expected += part.size;
        }
        Ok(Some(SessionObjects {
            keys: listed.into_iter().map(|m| m.location).collect(),
            parts,
            last_modified,
        }))
    }

    /// Takes `id`'s lock and lists its objects, with the running hash kept only if it covers
    /// exactly what they hold (appends and completion start here).
    ///
    /// # Errors
    /// [`StoreError::UploadUnknown`] for a session that ended or has no marker (forgotten).
    async fn lock_session(
        &self,
        id: &UploadId,
    ) -> Result<(Arc<SessionHandle>, OwnedMutexGuard<Session>, SessionObjects), StoreError> {
        let (handle, _) = self.sessions.get_or_insert(id);
        let mut guard = Arc::clone(&handle.state).lock_owned().await;
        let unknown = || StoreError::UploadUnknown(id.to_string());
        if guard.ended {
            return Err(unknown());
        }
        let Some(objects) = self.session_objects(id).await? else {
            guard.ended = true;
            self.sessions.forget(id, &handle);
            return Err(unknown());
        };
        guard.reconcile(objects.len());
        Ok((handle, guard, objects))
    }

    pub(crate) async fn upload_offset(&self, id: &UploadId) -> Result<Option<u64>, StoreError> {
        if let Some(handle) = self.sessions.get(id) {
            if handle.state.try_lock().is_err() {
                if let Some(len) = handle.settled_len() {
                    return Ok(Some(len));
                }
            }
        }
        Ok(self.session_objects(id).await?.map(|s| s.len()))
    }

    pub(crate) async fn append_upload<S, E>(
        &self,
        id: &UploadId,
        expected_offset: Option<u64>,
        body: S,
        max_size: Option<u64>,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let (handle, mut guard, objects) = self.lock_session(id).await?;
        let offset = objects.len();
        handle.set_settled_len(Some(offset));
        if let Some(requested) = expected_offset {
            if requested != offset {
                return Err(StoreError::UploadOffsetMismatch {
                    current: offset,
                    requested,
                });
            }
        }
        // The running hash goes on over this body; kept only if the whole append succeeds.
        let mut hash = guard.hash.clone();
        let limit = max_size;
        let mut received = 0u64;
        let chunks = body.map(|chunk| match chunk {
            Ok(chunk) => Ok(chunk),
            Err(e) => Err(StoreError::BodyInterrupted(e.to_string())),
        });
        let chunks = chunks.map(|chunk| {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if let Some(max) = limit {
                if offset + received > max {
                    return Err(StoreError::TooLarge { max });
                }
            }
            if let Some(hash) = &mut hash {
                hash.digester.update(&chunk);
                hash.len += chunk.len() as u64;
            }
            Ok(chunk)
        });
        let key = self.part_key(id, offset);
        let written = self.write_object(&key, None, chunks).await?;
        guard.hash = hash;
        let len = offset + written;
        handle.set_settled_len(Some(len));
        Ok(len)
    }

    pub(crate) async fn upload_digest(&self, id: &UploadId) -> Result<Option<Digest>, StoreError> {
        let hash = match self.sessions.get(id) {
            Some(handle) => {
                let guard = handle.state.lock().await;
                if guard.ended {
                    return Err(StoreError::UploadUnknown(id.to_string()));
                }
                guard.hash.clone()
            }
            None => None,
        };
        if hash.is_none() && self.session_objects(id).await?.is_none() {
            return Err(StoreError::UploadUnknown(id.to_string()));
        }
        Ok(hash.map(|h| h.digester.finalize()))
    }

    /// Reads the parts in order, as one stream.
    fn read_parts(
        &self,
        parts: &[Part],
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
        let store = Arc::clone(&self.store);
        let place = self.place.clone();
        let keys: Vec<Key> = parts.iter().map(|p| p.key.clone()).collect();
        futures_util::stream::iter(keys)
            .then(move |key| {
                let store = Arc::clone(&store);
                let place = place.clone();
                async move {
                    let error = |e| StoreError::Object {
                        op: "read upload",
                        key: format!("{place}/{key}"),
                        source: Box::new(e),
                    };
                    let got = store.get(&key).await.map_err(error)?;
                    Ok::<_, StoreError>(got.into_stream().map_err(move |e| StoreError::Object {
                        op: "read upload",
                        key: format!("{place}/{key}"),
                        source: Box::new(e),
                    }))
                }
            })
            .try_flatten()
    }

    /// The bytes an upload holds so far, as one stream, or `None` for an unknown upload.
    pub(crate) async fn upload_stream(
        &self,
        id: &UploadId,
    ) -> Result<Option<impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static>, StoreError>
    {
        let Some(objects) = self.session_objects(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.read_parts(&objects.parts)))
    }

    pub(crate) async fn complete_upload(
        &self,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, StoreError> {
        let (handle, mut guard, objects) = self.lock_session(id).await?;
        let len = objects.len();
        let known = guard
            .hash
            .clone()
            .filter(|h| h.digester.algorithm() == expected.algorithm() && h.len == len)
            .map(|h| h.digester.finalize());
        let key = self.blob_key(expected);
        match known {
            Some(actual) if actual != *expected => {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                })
            }
            Some(_) => {
                if self.head(&key).await?.is_none() {
                    match objects.parts.as_slice() {
                        [] => self
                            .store
                            .put(&key, PutPayload::from_static(b""))
                            .await
                            .map(drop)
                            .map_err(|e| self.error("write", &key, e))?,
                        // One part: a copy inside the store, no bytes through this process.
                        [one] => self
                            .store
                            .copy(&one.key, &key)
                            .await
                            .map_err(|e| self.error("copy", &key, e))?,
                        parts => {
                            self.write_object(&key, Some(expected), self.read_parts(parts))
                                .await?;
                        }
                    }
                }
            }
            // No running hash (appended elsewhere, or SHA-512): hash while assembling.
            None => {
                if self.head(&key).await?.is_some() {
                    // Stored already; the session must still hold exactly those bytes.
                    let mut digester = Digester::new(expected.algorithm());
                    let mut parts = std::pin::pin!(self.read_parts(&objects.parts));
                    while let Some(chunk) = parts.next().await {
                        digester.update(&chunk?);
                    }
                    let actual = digester.finalize();
                    if actual != *expected {
                        return Err(StoreError::DigestMismatch {
                            expected: expected.clone(),
                            actual,
                        });
                    }
                } else {
                    self.write_object(&key, Some(expected), self.read_parts(&objects.parts))
                        .await?;
                }
            }
        }
        self.delete_keys(&objects.keys).await?;
        guard.ended = true;
        handle.set_settled_len(None);
        self.sessions.forget(id, &handle);
        Ok(len)
    }

    async fn delete_keys(&self, keys: &[Key]) -> Result<(), StoreError> {
        for key in keys {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("remove upload", key, e)),
            }
        }
        Ok(())
    }

    pub(crate) async fn cancel_upload(&self, id: &UploadId) -> Result<bool, StoreError> {
        let (handle, _) = self.sessions.get_or_insert(id);
        let mut guard = Arc::clone(&handle.state).lock_owned().await;
        if guard.ended {
            return Ok(false);
        }
        let objects = self.session_objects(id).await?;
        if let Some(objects) = &objects {
            // Parts first, the marker last: a session is never left half-known.
            let mut keys = objects.keys.clone();
            let marker = self.marker_key(id);
            keys.retain(|k| *k != marker);
            keys.push(marker);
            self.delete_keys(&keys).await?;
        }
        guard.ended = true;
        handle.set_settled_len(None);
        self.sessions.forget(id, &handle);
        Ok(objects.is_some())
    }

    /// Every session's id and when it last received something.
    async fn sessions_listed(&self) -> Result<Vec<(UploadId, SystemTime)>, StoreError> {
        let prefix = self.key("uploads");
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("list", &prefix, e))?;
        let mut latest: BTreeMap<String, SystemTime> = BTreeMap::new();
        for meta in listed {
            let parts: Vec<_> = meta.location.parts().collect();
            // `<prefix...>/uploads/<id>/<name>`: the id is the second to last part.
            let Some(id) = parts.len().checked_sub(2).and_then(|i| parts.get(i)) else {
                continue;
            };
            let time = SystemTime::from(meta.last_modified);
            let entry = latest
                .entry(id.as_ref().to_owned())
                .or_insert(SystemTime::UNIX_EPOCH);
            *entry = (*entry).max(time);
        }
        Ok(latest
            .into_iter()
            .filter_map(|(id, time)| id.parse::<UploadId>().ok().map(|id| (id, time)))
            .collect())
    }

    pub(crate) async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError> {
        Ok(self
            .sessions_listed()
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    pub(crate) async fn remove_stale_uploads(
        &self,
        older_than: SystemTime,
    ) -> Result<Vec<UploadId>, StoreError> {
        let mut removed = Vec::new();
        for (id, modified) in self.sessions_listed().await? {
            if modified >= older_than {
                continue;
            }
            let (handle, made_here) = self.sessions.get_or_insert(&id);
            let Ok(mut guard) = Arc::clone(&handle.state).try_lock_owned() else {
                continue;
            };
            if guard.ended {
                continue;
            }
            // Checked again under the lock: a client may have resumed it meanwhile.
            let stale = match self.session_objects(&id).await? {
                Some(objects) if objects.last_modified < older_than => {
                    self.delete_keys(&objects.keys).await?;
                    true
                }
                Some(_) => false,
                None => true,
            };
            if stale {
                guard.ended = true;
                handle.set_settled_len(None);
                self.sessions.forget(&id, &handle);
                removed.push(id);
            } else if made_here {
                self.sessions.forget(&id, &handle);
            }
        }
        Ok(removed)
    }

    pub(crate) async fn delete_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("remove blob", &key, e)),
        }
    }

    pub(crate) async fn delete_blob_older_than(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<bool, StoreError> {
        let key = self.blob_key(digest);
        let Some(meta) = self.head(&key).await? else {
            return Ok(false);
        };
        if SystemTime::from(meta.last_modified) >= cutoff {
            return Ok(false);
        }
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("remove blob", &key, e)),
        }
    }

    pub(crate) async fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let prefix = self.key("blobs");
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("list", &prefix, e))?;
        let mut digests = Vec::new();
        for meta in listed {
            let parts: Vec<_> = meta.location.parts().collect();
            // `.../blobs/<alg>/<2 hex>/<hex>`
            let n = parts.len();
            if n < 3 {
                continue;
            }
            let (algorithm, hex) = (parts[n - 3].as_ref(), parts[n - 1].as_ref());
            let known = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]
                .iter()
                .any(|a| a.as_str() == algorithm);
            if let (true, Ok(digest)) = (known, format!("{algorithm}:{hex}").parse::<Digest>()) {
                digests.push(digest);
            }
        }
        Ok(digests)
    }
}

/// Reads one blob object, whole or in ranges.
#[derive(Clone)]
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    key: Key,
    place: String,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectReader({}/{})", self.place, self.key)
    }
}

impl ObjectReader {
    /// Bytes `range` of the object, streamed as the store sends them.
    pub(crate) fn stream(self, range: Range<u64>) -> impl Stream<Item = io::Result<Bytes>> + Send {
        futures_util::stream::once(async move {
            if range.is_empty() {
                return futures_util::stream::empty().boxed();
            }
            let options = GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..GetOptions::default()
            };
            match self.store.get_opts(&self.key, options).await {
                Ok(got) => got.into_stream().map_err(io::Error::other).boxed(),
                Err(e) => {
                    futures_util::stream::once(async move { Err(io::Error::other(e)) }).boxed()
                }
            }
        })
        .flatten()
    }
}

/// Fills `buf` as far as the reader goes; fewer bytes only at its end.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The items of `rx`, as a stream.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The first line of an object-store error, without request ids or the URL's query.
fn short_reason(e: &object_store::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.len() > 400 {
        format!("{}...", &line[..400])
    } else {
        line
    }
}
