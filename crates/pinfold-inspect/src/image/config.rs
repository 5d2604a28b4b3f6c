//! The image configuration (OCI image-spec `config.md`; Docker's image JSON has the same
//! fields): what a container runs with, the layers' uncompressed digests, and the history.
//!
//! Only the fields `pinfold diff` compares are kept. Docker writes `null` for empty lists and
//! maps, so every field is optional.

use std::collections::BTreeMap;

use pinfold_oci::Digest;
use serde::{Deserialize, Serialize};

/// Largest config blob read (real ones are a few KiB; long histories reach a few hundred).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// An image configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How containers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    /// One entry per build step; those with `empty_layer` made no layer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub history: Vec<History>,
}

/// The execution parameters (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ENV`, as `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `EXPOSE`, as `port/proto` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `VOLUME`, as path keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `SHELL` (Docker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Uncompressed digest of each layer, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made it (`/bin/sh -c #(nop)  ENV TZ=UTC`, `RUN ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// Parses a config blob.
    ///
    /// # Errors
    /// The JSON error when the bytes are not an image config.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The `created_by` of each layer: the history entries that are not `empty_layer`, in
    /// order (image-spec: "history ... the non-empty entries correspond to layers"). `None`
    /// where the history is shorter than the layer list.
    pub fn layer_created_by(&self, layers: usize) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = self
            .history
            .iter()
            .filter(|h| !h.empty_layer)
            .map(|h| h.created_by.clone())
            .take(layers)
            .collect();
        out.resize(layers, None);
        out
    }

    /// The environment as `KEY → value` (a later duplicate wins, as in Docker).
    pub fn env(&self) -> BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .map(|env| {
                env.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_nulls() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","TZ=UTC"],"Cmd":null,"Labels":null,"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},"history":[{"created_by":"ADD rootfs.tar /"},{"created_by":"ENV TZ=UTC","empty_layer":true}]}"#;
        let c = ImageConfig::parse(json).unwrap();
        assert_eq!(c.env().get("TZ").map(String::as_str), Some("UTC"));
        assert_eq!(c.config.as_ref().and_then(|c| c.cmd.clone()), None);
        assert_eq!(
            c.layer_created_by(2),
            [Some("ADD rootfs.tar /".to_owned()), None]
        );
        let empty = ImageConfig::parse(br#"{"history":null,"rootfs":{"diff_ids":null}}"#).unwrap();
        assert!(empty.history.is_empty());
    }
}
