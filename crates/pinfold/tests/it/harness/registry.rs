//! A plain-HTTP OCI distribution client (reqwest) for pushing and reading back test content.
//!
//! Failures come back as a message naming the request, what was expected and what came
//! back, so a failed test reads as a bug report.

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::content::{Blob, Image, MANIFEST_ACCEPT};

/// A failed registry call, described as request, expected and got.
pub type CallResult<T> = Result<T, String>;

/// The registry's `/v2/` API at one base URL.
#[derive(Clone)]
pub struct RegistryClient {
    client: reqwest::Client,
    base: Url,
}

/// A response read to the end.
pub struct Fetched {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl RegistryClient {
    /// A client for the registry at `base_url` (`http://127.0.0.1:<port>`).
    pub fn new(client: reqwest::Client, base_url: &str) -> RegistryClient {
        RegistryClient {
            client,
            base: Url::parse(base_url).expect("base URL"),
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("join URL")
    }

    /// Starts an upload session and returns its absolute `Location`.
    async fn start_upload(&self, repo: &str) -> CallResult<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let response = self
            .client
            .post(url.clone())
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| format!("POST {url}: expected 202, got error {e}"))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(describe("POST", &url, "202", response).await);
        }
        self.location(&url, &response)
    }

    fn location(&self, request_url: &Url, response: &reqwest::Response) -> CallResult<Url> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("{request_url}: response has no Location header"))?;
        self.base
            .join(location)
            .map_err(|e| format!("{request_url}: bad Location {location:?}: {e}"))
    }

    async fn finish_upload(&self, mut location: Url, blob: &Blob, body: Vec<u8>) -> CallResult<()> {
        location
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let response = self
            .client
            .put(location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len().to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("PUT {location}: expected 201, got error {e}"))?;
        if response.status() != StatusCode::CREATED {
            return Err(describe("PUT", &location, "201", response).await);
        }
        check_digest_header(&location, response.headers(), &blob.digest)
    }

    /// Pushes `blob` into `repo` monolithically (POST, then PUT with the whole body).
    /// `Ok` means the registry answered 201 Created.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> CallResult<()> {
        let location = self.start_upload(repo).await?;
        self.finish_upload(location, blob, blob.bytes.clone()).await
    }

    /// Pushes `blob` into `repo` in PATCH chunks of `chunk_size` bytes, then an empty PUT.
    /// `Ok` means the registry answered 201 Created.
    pub async fn push_blob_chunked(
        &self,
        repo: &str,
        blob: &Blob,
        chunk_size: usize,
    ) -> CallResult<()> {
        let mut location = self.start_upload(repo).await?;
        let mut offset = 0;
        for chunk in blob.bytes.chunks(chunk_size.max(1)) {
            let end = offset + chunk.len() - 1;
            let response = self
                .client
                .patch(location.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{offset}-{end}"))
                .header(CONTENT_LENGTH, chunk.len().to_string())
                .body(chunk.to_vec())
                .send()
                .await
                .map_err(|e| format!("PATCH {location}: expected 202, got error {e}"))?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(describe("PATCH", &location, "202", response).await);
            }
            location = self.location(&location, &response)?;
            offset = end + 1;
        }
        self.finish_upload(location, blob, Vec::new()).await
    }

    /// Puts `manifest` at `repo:reference` and returns the `Docker-Content-Digest` the
    /// registry answered (checked to equal the manifest's digest). `Ok` means 201 Created.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Blob,
    ) -> CallResult<String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let response = self
            .client
            .put(url.clone())
            .header(CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await
            .map_err(|e| format!("PUT {url}: expected 201, got error {e}"))?;
        if response.status() != StatusCode::CREATED {
            return Err(describe("PUT", &url, "201", response).await);
        }
        check_digest_header(&url, response.headers(), &manifest.digest)?;
        Ok(manifest.digest.clone())
    }

    /// Pushes an image's blobs (monolithically) and its manifest under `repo:tag`,
    /// panicking on any failure.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.push_blob(repo, blob)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        self.put_manifest(repo, tag, &image.manifest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `GET /v2/<repo>/blobs/<digest>`, read to the end.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> CallResult<Fetched> {
        self.get(&format!("/v2/{repo}/blobs/{digest}"), None).await
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting every manifest media type.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> CallResult<Fetched> {
        self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(MANIFEST_ACCEPT),
        )
        .await
    }

    /// `GET <path>` on the registry, read to the end.
    pub async fn get(&self, path: &str, accept: Option<&str>) -> CallResult<Fetched> {
        let url = self.url(path);
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: error {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {status}, body error {e}"))?
            .to_vec();
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

fn check_digest_header(url: &Url, headers: &HeaderMap, expected: &str) -> CallResult<()> {
    match headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        Some(got) if got == expected => Ok(()),
        got => Err(format!(
            "{url}: expected Docker-Content-Digest {expected}, got {got:?}"
        )),
    }
}

async fn describe(method: &str, url: &Url, expected: &str, response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(2000).collect();
    format!("{method} {url}: expected {expected}, got {status}: {body}")
}
