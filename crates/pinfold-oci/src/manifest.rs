//! A read-only view of a manifest's bytes: what kind it is, what it references, its subject.
//!
//! The view never replaces the bytes. Pinfold stores and serves the bytes exactly as received;
//! [`Manifest::parse`] only checks that they are a manifest Pinfold can store (image-spec
//! `manifest.md` and `image-index.md`, Docker "Image Manifest V 2, Schema 2") and extracts the
//! descriptors the registry must check and index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, essence};

/// The largest manifest Pinfold accepts: 4 MiB, the limit the distribution-spec says registries
/// SHOULD accept at least and clients SHOULD NOT exceed.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Why bytes are not a manifest Pinfold stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes, over the 4 MiB limit")]
    TooLarge(usize),
    /// Not JSON, or JSON whose fields have the wrong types.
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    /// `schemaVersion` is not 2.
    #[error("manifest schemaVersion must be 2, found {0:?}")]
    SchemaVersion(Option<i64>),
    /// A Docker schema 1 manifest.
    #[error(
        "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)"
    )]
    Schema1,
    /// The body's `mediaType` differs from the request's `Content-Type`.
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch {
        /// Content-Type of the request.
        header: String,
        /// `mediaType` in the body.
        body: String,
    },
    /// Neither the header nor the body names a manifest type Pinfold stores.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// A field the kind requires is missing (`config`, `layers`, `manifests`).
    #[error("manifest of type {kind} lacks the required field {field:?}")]
    MissingField {
        /// The manifest kind's media type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

/// The four kinds of manifest Pinfold stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
}

impl ManifestKind {
    /// The kind's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => media_type::OCI_MANIFEST,
            ManifestKind::OciIndex => media_type::OCI_INDEX,
            ManifestKind::DockerManifest => media_type::DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    /// The kind for a media type, if it is one of the four.
    pub fn from_media_type(value: &str) -> Option<ManifestKind> {
        match essence(value).as_str() {
            media_type::OCI_MANIFEST => Some(ManifestKind::OciManifest),
            media_type::OCI_INDEX => Some(ManifestKind::OciIndex),
            media_type::DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            media_type::DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    /// True for an index or a manifest list, whose children are manifests.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

/// An OCI content descriptor (image-spec `descriptor.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Where the content may also be fetched from (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The artifact type of the referenced manifest (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The platform of an index child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// True for a foreign (non-distributable) layer: one with `urls`, whose content by design
    /// may live elsewhere instead of in the repository.
    pub fn is_foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// OS version (Windows).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(
        default,
        rename = "os.features",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What Pinfold needs to know about a manifest it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Which of the four kinds.
    pub kind: ManifestKind,
    /// The config descriptor (image manifests).
    pub config: Option<Descriptor>,
    /// Layer descriptors (image manifests).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes and manifest lists).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    /// The `artifactType` field.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Checks `bytes` as a manifest sent with `content_type`, and extracts its view.
    ///
    /// The kind comes from the body's `mediaType` when present (it must then agree with a
    /// manifest `Content-Type`), otherwise from the `Content-Type`, otherwise from the shape
    /// (`manifests` means an OCI index, `config` an OCI manifest), as OCI permits `mediaType`
    /// to be absent.
    ///
    /// # Errors
    /// A [`ManifestError`] saying which rule the bytes break.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let header = content_type.map(essence).filter(|h| !h.is_empty());
        if let Some(h) = &header {
            if h == media_type::DOCKER_SCHEMA1 || h == media_type::DOCKER_SCHEMA1_SIGNED {
                return Err(ManifestError::Schema1);
            }
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if raw.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion(raw.schema_version));
        }
        let header_kind = header.as_deref().and_then(ManifestKind::from_media_type);
        let kind = match (&raw.media_type, header_kind) {
            (Some(body), header_kind) => {
                let body_kind = ManifestKind::from_media_type(body)
                    .ok_or_else(|| ManifestError::UnsupportedMediaType(body.clone()))?;
                if let Some(hk) = header_kind {
                    if hk != body_kind {
                        return Err(ManifestError::MediaTypeMismatch {
                            header: header.clone().unwrap_or_default(),
                            body: body.clone(),
                        });
                    }
                }
                body_kind
            }
            (None, Some(hk)) => hk,
            (None, None) => match &header {
                Some(h) if h != "application/json" && h != "application/octet-stream" => {
                    return Err(ManifestError::UnsupportedMediaType(h.clone()))
                }
                _ if raw.manifests.is_some() => ManifestKind::OciIndex,
                _ if raw.config.is_some() => ManifestKind::OciManifest,
                _ => return Err(ManifestError::UnsupportedMediaType(String::new())),
            },
        };
        let missing = |field| ManifestError::MissingField {
            kind: kind.media_type(),
            field,
        };
        let (config, layers, manifests) = if kind.is_index() {
            (
                None,
                Vec::new(),
                raw.manifests.ok_or_else(|| missing("manifests"))?,
            )
        } else {
            (
                Some(raw.config.ok_or_else(|| missing("config"))?),
                raw.layers.ok_or_else(|| missing("layers"))?,
                Vec::new(),
            )
        };
        Ok(Manifest {
            kind,
            config,
            layers,
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Blobs that must exist in the repository before this manifest may be stored: the config
    /// and every layer, except foreign layers (descriptors with `urls`), which by design live
    /// elsewhere.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| !d.is_foreign())
    }

    /// The artifact type the referrers API reports for this manifest: `artifactType`, or for
    /// an image manifest whose `artifactType` is missing or empty, its config's media type (distribution-spec, "Listing
    /// Referrers").
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .filter(|t| !t.is_empty())
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}},{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":3,"urls":["https://example.invalid/x"]}}]}}"#
        )
    }

    #[test]
    fn parses_an_oci_manifest_with_and_without_media_type() {
        let m = Manifest::parse(
            Some(media_type::OCI_MANIFEST),
            image(Some(media_type::OCI_MANIFEST)).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        assert_eq!(
            m.required_blobs().count(),
            2,
            "foreign layer is not required"
        );
        assert!(!m.layers[0].is_foreign() && m.layers[1].is_foreign());
        let mut empty_urls = m.layers[1].clone();
        empty_urls.urls = Some(Vec::new());
        assert!(!empty_urls.is_foreign(), "empty urls are not foreign");
        assert_eq!(m.referrer_artifact_type(), Some(media_type::OCI_CONFIG));
        let m = Manifest::parse(Some(media_type::OCI_MANIFEST), image(None).as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        let m = Manifest::parse(None, image(None).as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
    }

    #[test]
    fn parses_indexes() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST
        );
        let m = Manifest::parse(Some(media_type::DOCKER_MANIFEST_LIST), idx.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerManifestList);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(
            m.manifests[0].platform.as_ref().unwrap().architecture,
            "arm64"
        );
        assert_eq!(m.required_blobs().count(), 0);
    }

    #[test]
    fn refuses_what_it_cannot_store() {
        let cases: Vec<(Option<&str>, String)> = vec![
            (Some(media_type::OCI_MANIFEST), "not json".into()),
            (
                Some(media_type::OCI_MANIFEST),
                r#"{"schemaVersion":3,"config":{},"layers":[]}"#.into(),
            ),
            (Some(media_type::DOCKER_SCHEMA1_SIGNED), "{}".into()),
            (
                Some("application/json"),
                r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.into(),
            ),
            (
                Some(media_type::OCI_INDEX),
                image(Some(media_type::OCI_MANIFEST)),
            ),
            (
                Some(media_type::OCI_MANIFEST),
                r#"{"schemaVersion":2,"layers":[]}"#.into(),
            ),
            (Some(media_type::OCI_INDEX), r#"{"schemaVersion":2}"#.into()),
            (
                Some(media_type::OCI_ARTIFACT_MANIFEST_RC),
                r#"{"schemaVersion":2}"#.into(),
            ),
            (
                Some(media_type::OCI_MANIFEST),
                image(None).replace(D1, "sha256:abc"),
            ),
            (
                Some(media_type::OCI_MANIFEST),
                image(None).replace("\"size\":2", "\"size\":-2"),
            ),
        ];
        for (ct, body) in cases {
            assert!(
                Manifest::parse(ct, body.as_bytes()).is_err(),
                "{ct:?} {body} should be refused"
            );
        }
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(None, &big),
            Err(ManifestError::TooLarge(_))
        ));
    }

    #[test]
    fn extracts_subject_and_artifact_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"{}","digest":"{D1}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{D2}","size":7}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_EMPTY,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(Some(media_type::OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.subject.unwrap().digest.as_str(), D2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
    }
}
