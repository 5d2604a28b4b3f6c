//! What every blob-store backend must do, whatever keeps the bytes. Each test takes a
//! [`Backend`] that opens stores over the same storage: two stores opened from one backend are
//! two processes (two replicas, or one before and after a restart) sharing it.

use bytes::Bytes;
use futures_util::StreamExt;
use pinfold_oci::{Digest, DigestAlgorithm};
use pinfold_store::{BlobStore, StoreError, UploadId};

/// Opens a store over the backend's shared storage.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// A store as a new process would open it.
    async fn open(&self) -> BlobStore;
}

#[macro_export]
macro_rules! for_each_suite_test {
    ($m:ident) => {
        $m!(
            blobs_are_verified_readable_in_ranges_and_deletable,
            uploads_append_in_order_and_complete_verified,
            an_upload_continues_and_completes_in_another_process,
            an_interrupted_or_oversized_append_changes_nothing,
            a_multi_part_upload_assembles_in_order,
            completing_onto_a_stored_blob_still_checks_the_bytes,
            cancelled_and_stale_uploads_are_gone,
            copy_in_stores_only_what_hashes_to_the_digest,
            an_empty_blob_round_trips,
            shared_state_is_seen_by_every_process,
            uploads_read_back_as_they_stand,
        );
    };
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, bytes)
}

/// Deterministic bytes that differ at every offset (xorshift).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn body(
    chunks: &[&[u8]],
) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Send + Unpin {
    let chunks: Vec<Result<Bytes, String>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks)
}

async fn read_range(store: &BlobStore, digest: &Digest, start: u64, len: u64) -> Vec<u8> {
    let blob = store.open_blob(digest).await.unwrap().expect("stored");
    let mut stream = Box::pin(blob.into_stream(start, len));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

pub async fn blobs_are_verified_readable_in_ranges_and_deletable(backend: &impl Backend) {
    let store = backend.open().await;
    let bytes = pattern(300_000, 1);
    let digest = sha256(&bytes);
    let wrong = sha256(b"something else");
    assert!(matches!(
        store.put_blob(&wrong, Bytes::from(bytes.clone())).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    assert_eq!(
        store.blob_size(&wrong).await.unwrap(),
        None,
        "nothing stored"
    );
    assert_eq!(store.blob_size(&digest).await.unwrap(), None);
    store
        .put_blob(&digest, Bytes::from(bytes.clone()))
        .await
        .unwrap();
    // Idempotent.
    store
        .put_blob(&digest, Bytes::from(bytes.clone()))
        .await
        .unwrap();
    assert_eq!(store.blob_size(&digest).await.unwrap(), Some(300_000));
    assert_eq!(
        store.read_blob(&digest, 1 << 20).await.unwrap().unwrap(),
        bytes
    );
    assert!(matches!(
        store.read_blob(&digest, 1000).await,
        Err(StoreError::BlobTooLarge { size: 300_000, .. })
    ));
    assert_eq!(read_range(&store, &digest, 0, 300_000).await, bytes);
    assert_eq!(
        read_range(&store, &digest, 12_345, 100_000).await,
        &bytes[12_345..112_345]
    );
    assert_eq!(
        read_range(&store, &digest, 299_999, 1).await,
        &bytes[299_999..]
    );
    assert!(read_range(&store, &digest, 5, 0).await.is_empty());
    // Another process sees it.
    let other = backend.open().await;
    assert_eq!(other.blob_size(&digest).await.unwrap(), Some(300_000));
    assert!(other.list_blobs().await.unwrap().contains(&digest));
    // An old blob is deleted by an age cut-off after its write; not before.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    assert!(!other.delete_blob_older_than(&digest, past).await.unwrap());
    assert!(store.delete_blob(&digest).await.unwrap());
    assert!(!store.delete_blob(&digest).await.unwrap());
    assert_eq!(other.blob_size(&digest).await.unwrap(), None);
    assert!(other.open_blob(&digest).await.unwrap().is_none());
    assert!(other.read_blob(&digest, 1 << 20).await.unwrap().is_none());
    assert!(!other.list_blobs().await.unwrap().contains(&digest));
}

pub async fn uploads_append_in_order_and_complete_verified(backend: &impl Backend) {
    let store = backend.open().await;
    let (a, b) = (pattern(70_000, 2), pattern(50_000, 3));
    let whole: Vec<u8> = [a.as_slice(), b.as_slice()].concat();
    let digest = sha256(&whole);
    let id = store.create_upload().await.unwrap();
    assert_eq!(store.upload_offset(&id).await.unwrap(), Some(0));
    assert!(store.list_uploads().await.unwrap().contains(&id));
    assert_eq!(
        store
            .append_upload(&id, Some(0), body(&[&a[..30_000], &a[30_000..]]), None)
            .await
            .unwrap(),
        70_000
    );
    assert!(matches!(
        store.append_upload(&id, Some(5), body(&[&b]), None).await,
        Err(StoreError::UploadOffsetMismatch {
            current: 70_000,
            requested: 5
        })
    ));
    assert_eq!(
        store
            .append_upload(&id, None, body(&[&b]), None)
            .await
            .unwrap(),
        120_000
    );
    assert_eq!(store.upload_offset(&id).await.unwrap(), Some(120_000));
    assert_eq!(
        store.upload_digest(&id).await.unwrap(),
        Some(digest.clone())
    );
    // A wrong digest keeps the upload as it was, for the client to fix or cancel.
    let wrong = sha256(b"not it");
    assert!(matches!(
        store.complete_upload(&id, &wrong).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
    assert_eq!(store.upload_offset(&id).await.unwrap(), Some(120_000));
    assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 120_000);
    assert_eq!(read_range(&store, &digest, 0, 120_000).await, whole);
    // The session is over.
    assert_eq!(store.upload_offset(&id).await.unwrap(), None);
    assert!(matches!(
        store.append_upload(&id, None, body(&[b"x"]), None).await,
        Err(StoreError::UploadUnknown(_))
    ));
    assert!(matches!(
        store.complete_upload(&id, &digest).await,
        Err(StoreError::UploadUnknown(_))
    ));
    assert!(!store.list_uploads().await.unwrap().contains(&id));
}

pub async fn an_upload_continues_and_completes_in_another_process(backend: &impl Backend) {
    let first = backend.open().await;
    let (a, b) = (pattern(40_000, 4), pattern(1234, 5));
    let whole: Vec<u8> = [a.as_slice(), b.as_slice()].concat();
    let digest = sha256(&whole);
    let id = first.create_upload().await.unwrap();
    first
        .append_upload(&id, Some(0), body(&[&a]), None)
        .await
        .unwrap();
    let second = backend.open().await;
    let id: UploadId = id.as_str().parse().unwrap();
    assert_eq!(second.upload_offset(&id).await.unwrap(), Some(40_000));
    assert_eq!(
        second
            .append_upload(&id, Some(40_000), body(&[&b]), None)
            .await
            .unwrap(),
        41_234
    );
    // The first process's running hash covers only what it appended: it must not be used.
    assert_eq!(first.complete_upload(&id, &digest).await.unwrap(), 41_234);
    assert_eq!(read_range(&second, &digest, 0, 41_234).await, whole);
    assert_eq!(second.upload_offset(&id).await.unwrap(), None);
}

pub async fn an_interrupted_or_oversized_append_changes_nothing(backend: &impl Backend) {
    let store = backend.open().await;
    let a = pattern(10_000, 6);
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, Some(0), body(&[&a]), None)
        .await
        .unwrap();
    let cut = futures_util::stream::iter(vec![
        Ok(Bytes::from(pattern(5000, 7))),
        Err("client went away".to_owned()),
    ]);
    assert!(matches!(
        store.append_upload(&id, Some(10_000), cut, None).await,
        Err(StoreError::BodyInterrupted(_))
    ));
    assert_eq!(store.upload_offset(&id).await.unwrap(), Some(10_000));
    assert!(matches!(
        store
            .append_upload(&id, Some(10_000), body(&[&pattern(5000, 8)]), Some(12_000))
            .await,
        Err(StoreError::TooLarge { max: 12_000 })
    ));
    assert_eq!(store.upload_offset(&id).await.unwrap(), Some(10_000));
    let b = pattern(2000, 9);
    store
        .append_upload(&id, Some(10_000), body(&[&b]), Some(12_000))
        .await
        .unwrap();
    let whole: Vec<u8> = [a.as_slice(), b.as_slice()].concat();
    assert_eq!(
        store.complete_upload(&id, &sha256(&whole)).await.unwrap(),
        12_000
    );
}

/// Appends larger than a multipart part (8 MiB), several of them, completed by a process that
/// appended none of them.
pub async fn a_multi_part_upload_assembles_in_order(backend: &impl Backend) {
    let store = backend.open().await;
    let whole = pattern(21 * 1024 * 1024 + 17, 10);
    let digest = sha256(&whole);
    let id = store.create_upload().await.unwrap();
    let cuts = [0, 9 * 1024 * 1024 + 3, 9 * 1024 * 1024 + 100, whole.len()];
    for pair in cuts.windows(2) {
        let piece = &whole[pair[0]..pair[1]];
        let chunks: Vec<&[u8]> = piece.chunks(1 << 20).collect();
        store
            .append_upload(&id, Some(pair[0] as u64), body(&chunks), None)
            .await
            .unwrap();
    }
    let other = backend.open().await;
    assert_eq!(
        other.complete_upload(&id, &digest).await.unwrap(),
        whole.len() as u64
    );
    let at = 8 * 1024 * 1024 - 10;
    assert_eq!(
        read_range(&store, &digest, at as u64, 100).await,
        &whole[at..at + 100]
    );
    assert_eq!(
        read_range(&store, &digest, 0, whole.len() as u64).await,
        whole
    );
}

/// Completing an upload as a digest that is already stored must still check the upload's own
/// bytes: otherwise anyone could claim a stored blob without having it.
pub async fn completing_onto_a_stored_blob_still_checks_the_bytes(backend: &impl Backend) {
    let store = backend.open().await;
    let stored = pattern(4096, 11);
    let digest = sha256(&stored);
    store
        .put_blob(&digest, Bytes::from(stored.clone()))
        .await
        .unwrap();
    // Once by the appending process (its running hash), once by another (reads the parts).
    for by_another_process in [false, true] {
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(&[b"not the stored bytes"]), None)
            .await
            .unwrap();
        let other = backend.open().await;
        let completing = if by_another_process { &other } else { &store };
        assert!(matches!(
            completing.complete_upload(&id, &digest).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(store.cancel_upload(&id).await.unwrap());
    }
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, Some(0), body(&[&stored]), None)
        .await
        .unwrap();
    assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 4096);
    assert_eq!(read_range(&store, &digest, 0, 4096).await, stored);
}

pub async fn cancelled_and_stale_uploads_are_gone(backend: &impl Backend) {
    let store = backend.open().await;
    let cancelled = store.create_upload().await.unwrap();
    store
        .append_upload(&cancelled, Some(0), body(&[b"abc"]), None)
        .await
        .unwrap();
    assert!(store.cancel_upload(&cancelled).await.unwrap());
    assert!(!store.cancel_upload(&cancelled).await.unwrap());
    assert_eq!(store.upload_offset(&cancelled).await.unwrap(), None);

    let stale = store.create_upload().await.unwrap();
    store
        .append_upload(&stale, Some(0), body(&[b"old"]), None)
        .await
        .unwrap();
    let other = backend.open().await;
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    assert!(other.remove_stale_uploads(past).await.unwrap().is_empty());
    assert_eq!(other.upload_offset(&stale).await.unwrap(), Some(3));
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let removed = other.remove_stale_uploads(future).await.unwrap();
    assert!(removed.contains(&stale), "{removed:?}");
    assert_eq!(store.upload_offset(&stale).await.unwrap(), None);
    assert!(!store.list_uploads().await.unwrap().contains(&stale));
}

pub async fn copy_in_stores_only_what_hashes_to_the_digest(backend: &impl Backend) {
    let store = backend.open().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let bytes = pattern(9 * 1024 * 1024, 12);
    std::fs::write(&file, &bytes).unwrap();
    let wrong = sha256(b"wrong");
    assert!(matches!(
        store.copy_in(&wrong, &file).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
    let digest = sha256(&bytes);
    assert_eq!(
        store.copy_in(&digest, &file).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(
        store.read_blob(&digest, 16 << 20).await.unwrap().unwrap(),
        bytes
    );
}

pub async fn an_empty_blob_round_trips(backend: &impl Backend) {
    let store = backend.open().await;
    let digest = sha256(b"");
    let id = store.create_upload().await.unwrap();
    assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 0);
    assert_eq!(store.blob_size(&digest).await.unwrap(), Some(0));
    assert!(read_range(&store, &digest, 0, 0).await.is_empty());
    assert_eq!(
        store.read_blob(&digest, 10).await.unwrap().unwrap(),
        Bytes::new()
    );
}

pub async fn shared_state_is_seen_by_every_process(backend: &impl Backend) {
    let store = backend.open().await;
    let other = backend.open().await;
    assert_eq!(other.read_state("apt/signing-key.asc").await.unwrap(), None);
    store
        .write_state("apt/signing-key.asc", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(
        other.read_state("apt/signing-key.asc").await.unwrap(),
        Some(Bytes::from_static(b"one"))
    );
    store
        .write_state("apt/signing-key.asc", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(
        other.read_state("apt/signing-key.asc").await.unwrap(),
        Some(Bytes::from_static(b"two"))
    );
    for bad in ["", "../x", "a/../../b", "/abs", "a//b", "UPPER", "a/./b"] {
        assert!(store.read_state(bad).await.is_err(), "{bad:?}");
        assert!(
            store.write_state(bad, Bytes::new()).await.is_err(),
            "{bad:?}"
        );
    }
}

/// What an upload holds can be read back before it completes (to check a package first),
/// also by another process.
pub async fn uploads_read_back_as_they_stand(backend: &impl Backend) {
    let store = backend.open().await;
    let (a, b) = (pattern(100_000, 13), pattern(3, 14));
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, Some(0), body(&[&a]), None)
        .await
        .unwrap();
    store
        .append_upload(&id, None, body(&[&b]), None)
        .await
        .unwrap();
    let other = backend.open().await;
    let reader = other.open_upload(&id).await.unwrap().expect("the upload");
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(read, [a.as_slice(), b.as_slice()].concat());
    let unknown: UploadId = "00000000-0000-4000-8000-000000000000".parse().unwrap();
    assert!(other.open_upload(&unknown).await.unwrap().is_none());
    // A stored blob reads back the same way.
    let digest = sha256(&a);
    store
        .put_blob(&digest, Bytes::from(a.clone()))
        .await
        .unwrap();
    let reader = other
        .open_blob(&digest)
        .await
        .unwrap()
        .unwrap()
        .into_reader();
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(read, a);
}
