//! Test content made in Rust: random bytes, tar archives, gzip streams, OCI and Docker
//! images, image indexes, and OCI image-layout directories for skopeo's `oci:` transport.
//!
//! Everything is crafted byte by byte so a test knows every digest before it pushes, and
//! can later assert the registry gave back exactly those bytes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::digest::{sha256_digest, sha256_hex};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip-compressed layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type a test accepts back from the registry.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A small, fast, seedable generator (xorshift64*); not for anything but test data.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock, the process id and a counter, so every call in
    /// every test run yields different content (and different digests).
    pub fn new() -> Rng {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Rng::with_seed(seed)
    }

    /// A generator with a fixed seed (any value; zero is remapped).
    pub fn with_seed(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x2545_f491_4f6c_dd1d
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        assert!(low < high);
        low + (self.next_u64() % (high - low) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len.div_ceil(8) * 8];
        for chunk in out.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A short random lowercase token, for unique names.
    pub fn token(&mut self) -> String {
        format!("{:012x}", self.next_u64() >> 16)
    }
}

/// Bytes with their digest and media type: a blob or a manifest as the registry stores it.
#[derive(Clone)]
pub struct Blob {
    /// The media type a descriptor gives this content.
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// The exact content.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Wraps `bytes`, computing their digest.
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// The content descriptor pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// One entry of a tar archive.
pub enum TarEntry {
    /// A directory (path without trailing slash).
    Dir { path: String },
    /// A regular file.
    File {
        path: String,
        mode: u32,
        bytes: Vec<u8>,
    },
    /// A symbolic link.
    Symlink { path: String, target: String },
}

/// A POSIX ustar archive of `entries`, with fixed owners and times so equal entries give
/// equal bytes.
pub fn tar_archive(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let (path, mode, size, kind, link, body): (&str, u32, usize, u8, &str, &[u8]) = match entry
        {
            TarEntry::Dir { path } => (path, 0o755, 0, b'5', "", &[]),
            TarEntry::File { path, mode, bytes } => (path, *mode, bytes.len(), b'0', "", bytes),
            TarEntry::Symlink { path, target } => (path, 0o777, 0, b'2', target, &[]),
        };
        let mut header = [0u8; 512];
        let (prefix, name) = split_ustar_path(path);
        header[..name.len()].copy_from_slice(name.as_bytes());
        write_octal(&mut header[100..108], u64::from(mode));
        write_octal(&mut header[108..116], 0);
        write_octal(&mut header[116..124], 0);
        write_octal(&mut header[124..136], size as u64);
        write_octal(&mut header[136..148], 1_700_000_000);
        header[148..156].copy_from_slice(b"        ");
        header[156] = kind;
        assert!(link.len() <= 100, "link target too long: {link}");
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let digits = format!("{checksum:06o}\0 ");
        header[148..156].copy_from_slice(digits.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    out
}

fn split_ustar_path(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    let split = path[..path.len().min(156)]
        .rfind('/')
        .expect("a long tar path needs a '/' to split at");
    let (prefix, name) = (&path[..split], &path[split + 1..]);
    assert!(
        prefix.len() <= 155 && name.len() <= 100,
        "tar path too long: {path}"
    );
    (prefix, name)
}

fn write_octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}\0", width = field.len() - 1);
    assert_eq!(
        digits.len(),
        field.len(),
        "{value} does not fit a tar field"
    );
    field.copy_from_slice(digits.as_bytes());
}

/// A gzip stream (RFC 1952) holding `data` in stored (uncompressed) deflate blocks: valid
/// gzip for every client, made without a compression library.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let len = block.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Which manifest format an [`Image`] is written in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageFormat {
    /// OCI image-spec media types.
    Oci,
    /// Docker image manifest v2, schema 2 media types.
    DockerSchema2,
}

/// A single-platform image: config, gzip'd tar layers and the manifest over them.
#[derive(Clone)]
pub struct Image {
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, base first.
    pub layers: Vec<Blob>,
    /// The manifest, with its media type and digest.
    pub manifest: Blob,
    /// The platform architecture recorded in the config.
    pub architecture: String,
}

impl Image {
    /// An image of `layer_count` layers, each a tar of a few random files of
    /// `file_size` bytes in total, for `linux/<architecture>`.
    pub fn random(
        rng: &mut Rng,
        format: ImageFormat,
        architecture: &str,
        layer_count: usize,
        file_size: usize,
    ) -> Image {
        let layer_trees: Vec<Vec<TarEntry>> = (0..layer_count)
            .map(|i| {
                let token = rng.token();
                vec![
                    TarEntry::Dir {
                        path: format!("layer{i}"),
                    },
                    TarEntry::File {
                        path: format!("layer{i}/{token}.bin"),
                        mode: 0o644,
                        bytes: rng.bytes(file_size),
                    },
                    TarEntry::File {
                        path: format!("layer{i}/note.txt"),
                        mode: 0o644,
                        bytes: format!("layer {i} of a Pinfold test image, {token}\n").into(),
                    },
                ]
            })
            .collect();
        Image::from_layer_trees(format, architecture, &layer_trees, &[])
    }

    /// An image whose layers are the given tar trees, with optional config `Cmd`.
    pub fn from_layer_trees(
        format: ImageFormat,
        architecture: &str,
        layer_trees: &[Vec<TarEntry>],
        cmd: &[&str],
    ) -> Image {
        let (manifest_type, config_type, layer_type) = match format {
            ImageFormat::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
            ImageFormat::DockerSchema2 => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
        };
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        for tree in layer_trees {
            let tar = tar_archive(tree);
            diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
            layers.push(Blob::new(layer_type, gzip(&tar)));
        }
        let mut config = json!({
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": layer_trees.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "pinfold integration test"})).collect::<Vec<_>>(),
        });
        if !cmd.is_empty() {
            config["config"]["Cmd"] = json!(cmd);
        }
        let config = Blob::new(config_type, to_json_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        Image {
            manifest: Blob::new(manifest_type, to_json_bytes(&manifest)),
            config,
            layers,
            architecture: architecture.to_owned(),
        }
    }

    /// The config and layer blobs.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// The descriptor of the manifest inside an index, with its platform.
    pub fn platform_descriptor(&self) -> Value {
        let mut descriptor = self.manifest.descriptor();
        descriptor["platform"] = json!({"architecture": self.architecture, "os": "linux"});
        descriptor
    }
}

/// A multi-platform image: an OCI image index over several images.
pub struct ImageIndex {
    /// The index itself.
    pub index: Blob,
    /// The images it lists, in order.
    pub images: Vec<Image>,
}

impl ImageIndex {
    /// An OCI index over one random image per architecture.
    pub fn random(rng: &mut Rng, architectures: &[&str], layer_count: usize) -> ImageIndex {
        let images: Vec<Image> = architectures
            .iter()
            .map(|arch| Image::random(rng, ImageFormat::Oci, arch, layer_count, 16 * 1024))
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(Image::platform_descriptor).collect::<Vec<_>>(),
        });
        ImageIndex {
            index: Blob::new(OCI_INDEX, to_json_bytes(&index)),
            images,
        }
    }

    /// The image for `architecture`.
    pub fn image(&self, architecture: &str) -> &Image {
        self.images
            .iter()
            .find(|image| image.architecture == architecture)
            .unwrap_or_else(|| panic!("no {architecture} image in the index"))
    }
}

/// Pretty-printed JSON, so the bytes differ from any compact re-serialization a server
/// might be tempted to make.
pub fn to_json_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serialize JSON");
    bytes.push(b'\n');
    bytes
}

/// Writes an OCI image layout (image-spec `image-layout.md`) at `dir` holding `blobs`,
/// whose `index.json` names `top` (a manifest or an index) with tag `tag`.
pub fn write_oci_layout<'a>(
    dir: &Path,
    tag: &str,
    top: &'a Blob,
    blobs: impl IntoIterator<Item = &'a Blob>,
) {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).expect("create OCI layout blob dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    for blob in blobs.into_iter().chain(std::iter::once(top)) {
        let hex = blob.digest.trim_start_matches("sha256:");
        std::fs::write(blob_dir.join(hex), &blob.bytes).expect("write OCI layout blob");
    }
    let mut descriptor = top.descriptor();
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "manifests": [descriptor] });
    std::fs::write(dir.join("index.json"), to_json_bytes(&index)).expect("write index.json");
}

/// What an OCI image layout at `dir` holds under `tag`: the top descriptor's media type and
/// digest.
pub fn read_oci_layout_ref(dir: &Path, tag: &str) -> (String, String) {
    let text = std::fs::read_to_string(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("read {}/index.json: {e}", dir.display()));
    let index: Value = serde_json::from_str(&text).expect("parse index.json");
    let manifests = index["manifests"].as_array().expect("index.json manifests");
    let entry = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no ref {tag} in {text}"));
    (
        entry["mediaType"].as_str().unwrap_or_default().to_owned(),
        entry["digest"]
            .as_str()
            .expect("descriptor digest")
            .to_owned(),
    )
}

/// The bytes of blob `digest` in the OCI image layout at `dir`.
pub fn read_oci_layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let path = dir
        .join("blobs")
        .join("sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn gzip_and_tar_round_trip_through_system_tools() {
    let tar = tar_archive(&[
        TarEntry::Dir { path: "d".into() },
        TarEntry::File {
            path: "d/f".into(),
            mode: 0o644,
            bytes: vec![7u8; 70_000],
        },
        TarEntry::Symlink {
            path: "d/l".into(),
            target: "f".into(),
        },
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("a.tar.gz");
    std::fs::write(&archive, gzip(&tar)).expect("write archive");
    let output = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .expect("run tar");
    assert!(
        output.status.success(),
        "tar -xzf: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("d/f")).expect("read d/f"),
        vec![7u8; 70_000]
    );
    assert_eq!(
        std::fs::read_link(dir.path().join("d/l")).expect("read d/l"),
        Path::new("f")
    );
}
