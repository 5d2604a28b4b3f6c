//! Syncing a mirror repository from its upstream archive: `Release`, then each component's
//! and architecture's `Packages` index (verified against the Release's SHA-256), then every
//! `.deb` it lists that the store does not hold yet (verified against the index's SHA-256 and
//! size), then one metadata transaction replaces the mirror's listings. Snapshots taken
//! before keep their own copies, so a sync never changes what a published snapshot serves.
//!
//! Bounded: every HTTP request has a timeout, index files and packages have size limits, and
//! the number of packages per sync is capped. A mirror created with an upstream key reads only
//! `InRelease` and believes it only when its signature verifies with that key; without a key
//! the plain `Release` is read. Either way the SHA-256 chain from the Release down to each
//! `.deb` is verified.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use pinfold_apt::index::parse_release;
use pinfold_apt::{BinaryControl, FileDigests};
use pinfold_meta::{AptPackage, AptRepo, AptRepoKind};
use pinfold_oci::Digest;

use super::error::AptError;
use super::service::AptService;

/// Largest upstream index file (Release or Packages, compressed or not) fetched.
const MAX_INDEX_BYTES: u64 = 512 * 1024 * 1024;
/// Most packages one sync takes from one upstream distribution.
const MAX_PACKAGES: usize = 200_000;
/// Time limit for one upstream request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What a sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    /// Listings after the sync.
    pub packages: usize,
    /// `.deb` files downloaded (the others were already stored).
    pub downloaded: usize,
    /// Whether the listings changed.
    pub changed: bool,
}

fn upstream_error(what: impl std::fmt::Display) -> AptError {
    // The upstream is not the client's fault, nor Pinfold's: 502.
    AptError::bad_gateway(format!("upstream: {what}"))
}

async fn fetch(client: &reqwest::Client, url: &str, max: u64) -> Result<Bytes, AptError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| upstream_error(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(upstream_error(format!("GET {url}: {}", resp.status())));
    }
    if resp.content_length().is_some_and(|len| len > max) {
        return Err(upstream_error(format!(
            "GET {url}: larger than {max} bytes"
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| upstream_error(format!("GET {url}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(upstream_error(format!(
            "GET {url}: larger than {max} bytes"
        )));
    }
    Ok(bytes)
}

/// Decompresses an index by its file name, bounded.
fn decompress(name: &str, bytes: &[u8]) -> Result<String, AptError> {
    let reader: Box<dyn Read + '_> = if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut text = String::new();
    reader
        .take(MAX_INDEX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| upstream_error(format!("{name}: {e}")))?;
    Ok(text)
}

impl AptService {
    /// Streams `url` into a store upload session (never whole in memory, at most `max`
    /// bytes, MD5/SHA-1/SHA-256 computed as it arrives) and completes it as the blob `digest`;
    /// the store refuses content that hashes to anything else. Returns the file's digests.
    async fn download_blob(
        &self,
        client: &reqwest::Client,
        url: &str,
        digest: &Digest,
        max: u64,
    ) -> Result<FileDigests, AptError> {
        use futures_util::StreamExt;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| upstream_error(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(upstream_error(format!("GET {url}: {}", resp.status())));
        }
        let store = self.store();
        let id = store.create_upload().await?;
        let mut hasher = pinfold_apt::MultiHasher::new();
        let stream = resp.bytes_stream().map(|chunk| {
            if let Ok(bytes) = &chunk {
                hasher.update(bytes);
            }
            chunk
        });
        let result = match store.append_upload(&id, Some(0), stream, Some(max)).await {
            Ok(_) => store.complete_upload(&id, digest).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = store.cancel_upload(&id).await;
            return Err(upstream_error(format!("GET {url}: {e}")));
        }
        Ok(hasher.finish())
    }

    /// Syncs mirror `name` from its upstream.
    ///
    /// # Errors
    /// 404 for an unknown repository, 400 for a local one, 502 when the upstream fails or
    /// serves something that does not verify.
    #[tracing::instrument(skip(self))]
    pub async fn sync_mirror(&self, name: &str) -> Result<SyncReport, AptError> {
        let repo: AptRepo =
            self.meta().apt_repo(name).await?.ok_or_else(|| {
                AptError::not_found(format!("APT repository {name:?} is unknown"))
            })?;
        let (Some(base), Some(suite), AptRepoKind::Mirror) =
            (&repo.upstream_url, &repo.upstream_suite, repo.kind)
        else {
            return Err(AptError::bad_request(format!(
                "{name} is a local repository; only mirrors sync"
            )));
        };
        let base = base.trim_end_matches('/');
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(AptError::internal)?;
        let dist_url = format!("{base}/dists/{suite}");
        // With an upstream key, only a verified InRelease is believed; without one, the
        // plain Release (whose SHA-256 chain is still checked below).
        let file = if repo.upstream_key.is_some() {
            "InRelease"
        } else {
            "Release"
        };
        let release_bytes = fetch(&client, &format!("{dist_url}/{file}"), MAX_INDEX_BYTES).await?;
        let mut release_text = String::from_utf8(release_bytes.to_vec())
            .map_err(|_| upstream_error(format!("{file} is not UTF-8")))?;
        if let Some(key) = &repo.upstream_key {
            release_text = pinfold_apt::verify_clearsigned(&release_text, key)
                .map_err(|e| upstream_error(format!("InRelease signature: {e}")))?;
        }
        let release = parse_release(&release_text).map_err(upstream_error)?;
        let components = if repo.components.is_empty() {
            release.components.clone()
        } else {
            repo.components.clone()
        };
        let architectures = if repo.architectures.is_empty() {
            release.architectures.clone()
        } else {
            repo.architectures.clone()
        };
        let mut listings = Vec::new();
        for component in &components {
            for arch in &architectures {
                // Prefer the smallest verified form the Release lists.
                let base_path = format!("{component}/binary-{arch}/Packages");
                let candidates = [".xz", ".gz", ""].map(|ext| format!("{base_path}{ext}"));
                let Some((path, (size, sha256))) = candidates
                    .iter()
                    .find_map(|p| release.sha256.get(p).map(|v| (p.clone(), v.clone())))
                else {
                    continue;
                };
                let bytes = fetch(&client, &format!("{dist_url}/{path}"), MAX_INDEX_BYTES).await?;
                let digests = FileDigests::of(&bytes);
                if digests.sha256 != sha256 || digests.size != size {
                    return Err(upstream_error(format!(
                        "{path} does not match the Release (sha256 {}, size {})",
                        digests.sha256, digests.size
                    )));
                }
                let text = decompress(&path, &bytes)?;
                let stanzas = pinfold_apt::control::parse_paragraphs(&text)
                    .map_err(|e| upstream_error(format!("{path}: {e}")))?;
                for stanza in stanzas {
                    if listings.len() >= MAX_PACKAGES {
                        return Err(upstream_error(format!(
                            "more than {MAX_PACKAGES} packages in {suite}"
                        )));
                    }
                    let field = |n: &str| stanza.get(n).map(str::to_owned);
                    let (Some(filename), Some(size), Some(sha256)) =
                        (field("Filename"), field("Size"), field("SHA256"))
                    else {
                        return Err(upstream_error(format!(
                            "{path}: a stanza lacks Filename, Size or SHA256"
                        )));
                    };
                    let control = BinaryControl::from_paragraph(stanza.clone())
                        .map_err(|e| upstream_error(format!("{path}: {e}")))?;
                    super::matrix::check_deb_path(&filename)
                        .map_err(|e| upstream_error(format!("{path}: {}", e.message())))?;
                    listings.push(AptPackage {
                        distribution: suite.clone(),
                        component: component.clone(),
                        architecture: arch.clone(),
                        name: control.package.to_string(),
                        version: control.version.to_string(),
                        path: filename,
                        size: size
                            .parse()
                            .map_err(|_| upstream_error(format!("{path}: bad Size {size:?}")))?,
                        md5: field("MD5sum").unwrap_or_default(),
                        sha1: field("SHA1").unwrap_or_default(),
                        sha256: sha256.to_ascii_lowercase(),
                        control: stanza.to_string(),
                    });
                }
            }
        }
        // Fetch what the store lacks, each file once. Debian's indices no longer list SHA1
        // (and some list no MD5): those are computed from the bytes, since the Packages files
        // Pinfold writes list all three.
        let mut downloaded = 0;
        let mut computed: std::collections::BTreeMap<String, FileDigests> = Default::default();
        for listing in &listings {
            if computed.contains_key(&listing.sha256) {
                continue;
            }
            let digest: Digest = format!("sha256:{}", listing.sha256)
                .parse()
                .map_err(|_| upstream_error(format!("bad SHA256 for {}", listing.path)))?;
            let digests = match self.stored_digests(&listing.sha256).await? {
                Some((_, stored)) => stored,
                None => {
                    let max = self.settings().max_deb_bytes.min(listing.size);
                    let url = format!("{base}/{}", listing.path);
                    let fetched = self.download_blob(&client, &url, &digest, max).await?;
                    downloaded += 1;
                    fetched
                }
            };
            if digests.sha256 != listing.sha256 || digests.size != listing.size {
                return Err(upstream_error(format!(
                    "{} does not match its index entry",
                    listing.path
                )));
            }
            computed.insert(listing.sha256.clone(), digests);
        }
        for listing in &mut listings {
            if let Some(d) = computed.get(&listing.sha256) {
                listing.md5.clone_from(&d.md5);
                listing.sha1.clone_from(&d.sha1);
            }
        }
        let changed = self
            .meta()
            .apt_replace_packages(name, suite, &listings)
            .await?;
        if changed {
            self.notify_changed();
        }
        Ok(SyncReport {
            packages: listings.len(),
            downloaded,
            changed,
        })
    }
}
