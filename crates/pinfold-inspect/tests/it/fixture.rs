//! Images made by the tests: tar layers with real dpkg status databases, compressed with
//! gzip or zstd, written as OCI image layouts and as `docker save` archives (the legacy
//! layout and the OCI layout Docker 25+ writes). Every byte is made here, so every digest is
//! known before the code under test reads it.

use std::io::Write;
use std::path::Path;

use pinfold_oci::Digest;
use serde_json::{json, Value};

/// One tar entry.
#[derive(Clone)]
pub enum Entry {
    File(&'static str, Vec<u8>),
    FileMode(&'static str, u32, u64, Vec<u8>),
    Dir(&'static str),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// Any name, written into the header unchecked (for unsafe paths).
    RawFile(&'static str, Vec<u8>),
}

/// A GNU tar of `entries`, deterministic (fixed times and owners).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::File(path, data) | Entry::FileMode(path, _, _, data) => {
                let (mode, uid) = match e {
                    Entry::FileMode(_, m, u, _) => (*m, *u),
                    _ => (0o644, 0),
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(mode);
                h.set_uid(uid);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            Entry::Symlink(path, target) | Entry::Hardlink(path, target) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_size(0);
                h.set_mode(0o777);
                // Hard link targets like `../x` are refused by `set_link_name`; write raw.
                let name = &mut h.as_old_mut().linkname;
                name[..target.len()].copy_from_slice(target.as_bytes());
                h.set_path(path).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::RawFile(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// How a layer blob is stored.
#[derive(Clone, Copy)]
pub enum Comp {
    Gzip,
    Zstd,
    None,
}

/// A layer: its blob, uncompressed digest and the history step that made it.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub diff_id: Digest,
    pub media_type: &'static str,
    pub created_by: String,
}

impl Layer {
    pub fn new(entries: &[Entry], comp: Comp, created_by: &str) -> Layer {
        Layer::from_tar(tar(entries), comp, created_by)
    }

    pub fn from_tar(tar: Vec<u8>, comp: Comp, created_by: &str) -> Layer {
        let (blob, media_type) = match comp {
            Comp::Gzip => (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Comp::Zstd => (zstd(&tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
            Comp::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        Layer {
            blob,
            diff_id: Digest::sha256(&tar),
            media_type,
            created_by: created_by.to_owned(),
        }
    }

    pub fn digest(&self) -> Digest {
        Digest::sha256(&self.blob)
    }
}

/// A built image: config and manifest bytes over its layers.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub architecture: String,
}

impl Image {
    /// `config` is merged into the default `config` section (`Env`, `User`, ...);
    /// `extra_history` adds empty-layer steps at the end.
    pub fn new(
        layers: Vec<Layer>,
        architecture: &str,
        config: Value,
        extra_history: &[&str],
    ) -> Image {
        let mut history: Vec<Value> = layers
            .iter()
            .map(|l| json!({"created": "2024-01-01T00:00:00Z", "created_by": l.created_by}))
            .collect();
        for step in extra_history {
            history.push(json!({"created_by": step, "empty_layer": true}));
        }
        let mut section = json!({"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]});
        if let Value::Object(extra) = config {
            for (k, v) in extra {
                section[k] = v;
            }
        }
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": section,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
            "history": history,
        });
        let config = serde_json::to_vec_pretty(&config).unwrap();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(&config).to_string(), "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest().to_string(), "size": l.blob.len()})).collect::<Vec<_>>(),
        });
        Image {
            layers,
            config,
            manifest: serde_json::to_vec_pretty(&manifest).unwrap(),
            architecture: architecture.to_owned(),
        }
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::sha256(&self.manifest)
    }

    pub fn config_digest(&self) -> Digest {
        Digest::sha256(&self.config)
    }
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::sha256(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(d.encoded()), bytes).unwrap();
    d
}

fn write_image_blobs(dir: &Path, image: &Image) {
    for l in &image.layers {
        write_blob(dir, &l.blob);
    }
    write_blob(dir, &image.config);
    write_blob(dir, &image.manifest);
}

/// An OCI image layout at `dir` holding `image` as `tag`.
pub fn write_oci(dir: &Path, image: &Image, tag: &str) {
    write_image_blobs(dir, image);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": image.manifest_digest().to_string(),
        "size": image.manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An OCI image layout at `dir` whose `index.json` points at a nested multi-platform index.
pub fn write_oci_multiarch(dir: &Path, images: &[(&Image, Option<&str>)], tag: &str) {
    for (image, _) in images {
        write_image_blobs(dir, image);
    }
    let nested = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": images.iter().map(|(image, variant)| {
            let mut platform = json!({"os": "linux", "architecture": image.architecture});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.manifest_digest().to_string(),
                "size": image.manifest.len(),
                "platform": platform,
            })
        }).collect::<Vec<_>>(),
    });
    let nested = serde_json::to_vec(&nested).unwrap();
    let d = write_blob(dir, &nested);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": d.to_string(),
        "size": nested.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn append_file(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
}

fn append_symlink(b: &mut tar::Builder<std::fs::File>, name: &str, target: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, name, target).unwrap();
}

/// A `docker save` archive as Docker before 25 writes it: `<id>/layer.tar` (uncompressed),
/// `<config hex>.json`, `manifest.json`. A layer repeated within the image is saved once and
/// linked, as Docker does.
pub fn write_docker_legacy(path: &Path, image: &Image, tag: &str) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut names: Vec<String> = Vec::new();
    let mut first: std::collections::HashMap<Digest, String> = Default::default();
    for (i, l) in image.layers.iter().enumerate() {
        // Legacy archives hold uncompressed layers: decompress what the fixture compressed.
        let raw = decompress(&l.blob);
        let id = format!("{:064x}", i + 1);
        let name = format!("{id}/layer.tar");
        match first.get(&l.diff_id) {
            Some(existing) => append_symlink(&mut b, &name, &format!("../{existing}")),
            None => {
                append_file(&mut b, &name, &raw);
                first.insert(l.diff_id.clone(), name.clone());
            }
        }
        append_file(&mut b, &format!("{id}/VERSION"), b"1.0");
        names.push(name);
    }
    let config_name = format!("{}.json", image.config_digest().encoded());
    append_file(&mut b, &config_name, &image.config);
    let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}]);
    append_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap().flush().unwrap();
}

/// A `docker save` archive as Docker 25+ writes it: an OCI layout (`blobs/sha256/`,
/// `index.json`, `oci-layout`) plus `manifest.json` pointing into `blobs/`.
pub fn write_docker_oci(path: &Path, image: &Image, tag: &str) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for bytes in image
        .layers
        .iter()
        .map(|l| &l.blob)
        .chain([&image.config, &image.manifest])
    {
        append_file(
            &mut b,
            &format!("blobs/sha256/{}", Digest::sha256(bytes).encoded()),
            bytes,
        );
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": image.manifest_digest().to_string(),
        "size": image.manifest.len(),
        "annotations": {"io.containerd.image.name": format!("docker.io/library/{tag}"), "org.opencontainers.image.ref.name": tag.rsplit(':').next().unwrap()},
    }]});
    append_file(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", image.config_digest().encoded()),
        "RepoTags": [tag],
        "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest().encoded())).collect::<Vec<_>>(),
    }]);
    append_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap().flush().unwrap();
}

fn decompress(blob: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        out = zstd::decode_all(blob).unwrap();
    } else {
        out = blob.to_vec();
    }
    out
}

/// A dpkg status stanza as dpkg writes it.
pub fn stanza(name: &str, version: &str, arch: &str, source: Option<&str>) -> String {
    let source = source.map(|s| format!("Source: {s}\n")).unwrap_or_default();
    format!(
        "Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 100\nMaintainer: Debian <debian@example.invalid>\nArchitecture: {arch}\n{source}Version: {version}\nDescription: {name}\n the {name} package\n\n"
    )
}

/// Versions of the packages that story 1 is about.
pub struct Base {
    pub ca_certificates: &'static str,
    pub libssl: &'static str,
    pub tzdata: &'static str,
    pub cert_bundle: &'static [u8],
    pub libssl_so: &'static [u8],
}

/// Debian 12 of November 2023 (A) and of March 2024 (B).
pub const BASE_A: Base = Base {
    ca_certificates: "20230311",
    libssl: "3.0.11-1~deb12u2",
    tzdata: "2024a-0+deb12u1",
    cert_bundle: b"-----BEGIN CERTIFICATE-----\nMIIA...2023\n-----END CERTIFICATE-----\n",
    libssl_so: b"\x7fELF libssl 3.0.11",
};
pub const BASE_B: Base = Base {
    ca_certificates: "20240203",
    libssl: "3.0.13-1~deb12u1",
    tzdata: "2025b-0+deb12u1",
    cert_bundle: b"-----BEGIN CERTIFICATE-----\nMIIA...2024\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIB...new\n-----END CERTIFICATE-----\n",
    libssl_so: b"\x7fELF libssl 3.0.13",
};

fn status(base: &Base, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::new();
    s.push_str(&stanza("base-files", "12.4+deb12u5", "amd64", None));
    s.push_str(&stanza(
        "ca-certificates",
        base.ca_certificates,
        "all",
        None,
    ));
    s.push_str(&stanza("libc6", "2.36-9+deb12u4", "amd64", Some("glibc")));
    s.push_str(&stanza("libssl3", base.libssl, "amd64", Some("openssl")));
    s.push_str(&stanza("tzdata", base.tzdata, "all", None));
    for (name, version) in extra {
        s.push_str(&stanza(name, version, "amd64", None));
    }
    s.into_bytes()
}

/// A Debian-like base layer: dpkg status, the CA bundle, libssl, zoneinfo, `/bin/sh -> dash`.
pub fn base_layer(base: &Base, comp: Comp, created_by: &str) -> Layer {
    Layer::new(
        &[
            Entry::Dir("bin"),
            Entry::Symlink("bin/sh", "dash"),
            Entry::File("bin/dash", b"\x7fELF dash".to_vec()),
            Entry::Dir("etc"),
            Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n".to_vec()),
            Entry::Symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            Entry::Dir("etc/ssl/certs"),
            Entry::File(
                "etc/ssl/certs/ca-certificates.crt",
                base.cert_bundle.to_vec(),
            ),
            Entry::File(
                "usr/lib/x86_64-linux-gnu/libssl.so.3",
                base.libssl_so.to_vec(),
            ),
            Entry::File("usr/share/zoneinfo/Etc/UTC", b"TZif2 UTC".to_vec()),
            Entry::File("var/lib/dpkg/status", status(base, &[])),
        ],
        comp,
        created_by,
    )
}

/// The application layer: `apt-get install curl` rewrites the dpkg status (listing the base's
/// packages again) and the app is copied in.
pub fn app_layer(base: &Base, comp: Comp) -> Layer {
    Layer::new(
        &[
            Entry::File("usr/bin/curl", b"\x7fELF curl".to_vec()),
            Entry::File(
                "var/lib/dpkg/status",
                status(base, &[("curl", "7.88.1-10+deb12u5")]),
            ),
            Entry::FileMode("app/server", 0o755, 1000, b"#!/bin/sh\necho app\n".to_vec()),
        ],
        comp,
        "RUN apt-get update && apt-get install -y curl && COPY app /app",
    )
}

/// Story 1: the same Dockerfile built on the old and on the new base.
pub fn story(comp: Comp) -> (Image, Image) {
    let a = Image::new(
        vec![
            base_layer(&BASE_A, comp, "ADD file:2023 in /"),
            app_layer(&BASE_A, comp),
        ],
        "amd64",
        json!({}),
        &["CMD [\"/app/server\"]"],
    );
    let b = Image::new(
        vec![
            base_layer(&BASE_B, comp, "ADD file:2024 in /"),
            app_layer(&BASE_B, comp),
        ],
        "amd64",
        json!({}),
        &["CMD [\"/app/server\"]"],
    );
    (a, b)
}
