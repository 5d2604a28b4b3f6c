//! Bad input: corrupt compression, truncated and unsafe tars, oversized and malformed package
//! databases, missing files. Each is a typed error naming the layer digest and the entry, and
//! nothing is written anywhere but the cache (and nothing for the failing layer).

use std::path::{Path, PathBuf};

use pinfold_inspect::diff::DiffError;
use pinfold_inspect::image::ImageError;
use pinfold_inspect::layer::path::UnsafePath;
use pinfold_inspect::layer::LayerError;
use pinfold_inspect::packages::PackageError;
use pinfold_oci::Digest;
use serde_json::json;

use crate::fixture::{self, Comp, Entry, Image, Layer};
use crate::{open, try_diff, try_open};

/// Every file under `dir`, relative.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// Diffs a good image against one whose second layer is `bad` (a blob whose digest is right,
/// so the content check is what fails), and checks that only the cache changed.
async fn diff_with_bad_layer(bad: Layer) -> (LayerError, Digest) {
    let root = tempfile::tempdir().unwrap();
    let good = fixture::base_layer(&fixture::BASE_A, Comp::Gzip, "ADD base /");
    let a = Image::new(vec![good.clone()], "amd64", json!({}), &[]);
    let b = Image::new(vec![good.clone(), bad.clone()], "amd64", json!({}), &[]);
    fixture::write_oci(&root.path().join("a"), &a, "1");
    fixture::write_oci(&root.path().join("b"), &b, "1");
    let ia = open(&format!("oci:{}", root.path().join("a").display())).await;
    let ib = open(&format!("oci:{}", root.path().join("b").display())).await;
    let before = tree(root.path());
    let err = match try_diff(&ia, &ib, &root.path().join("cache")).await {
        Err(DiffError::Layer(e)) => e,
        other => panic!("expected a layer error, got {other:?}"),
    };
    let after = tree(root.path());
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        new.iter().all(|p| p.starts_with("cache")),
        "written outside the cache: {new:?}"
    );
    let bad_entry = PathBuf::from(format!(
        "cache/layers/sha256/{}.json",
        bad.digest().encoded()
    ));
    assert!(!new.contains(&&bad_entry), "the failing layer was cached");
    assert_eq!(err.layer(), &bad.digest());
    assert!(
        err.to_string().contains(bad.digest().as_str()),
        "message names the layer: {err}"
    );
    (err, bad.digest())
}

#[tokio::test]
async fn corrupt_gzip_names_the_layer() {
    let tar = fixture::tar(&[Entry::File("a/big", vec![42u8; 200_000])]);
    let mut blob = fixture::gzip(&tar);
    let at = blob.len() / 2;
    for b in &mut blob[at..at + 16] {
        *b ^= 0x5a;
    }
    let layer = Layer {
        diff_id: Digest::sha256(&tar),
        blob,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        created_by: "RUN corrupt".into(),
    };
    match diff_with_bad_layer(layer).await {
        (LayerError::Decompress { compression, .. }, _) => assert_eq!(compression, "gzip"),
        (other, _) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn truncated_tar_names_the_entry() {
    let tar = fixture::tar(&[
        Entry::File("etc/ok", b"fine".to_vec()),
        Entry::File("usr/lib/big.so", vec![7u8; 10_000]),
    ]);
    // Cut inside the second file's content; the gzip stream around it is intact.
    let cut = tar[..512 * 3 + 4000].to_vec();
    let (err, _) = diff_with_bad_layer(Layer::from_tar(cut, Comp::Gzip, "RUN cut")).await;
    match &err {
        LayerError::Tar { entry, message, .. } => {
            assert_eq!(entry.as_deref(), Some("usr/lib/big.so"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("at entry \"usr/lib/big.so\""),
        "{err}"
    );
}

#[tokio::test]
async fn parent_dir_entries_are_refused() {
    let layer = Layer::new(
        &[Entry::RawFile("../../etc/evil", b"x".to_vec())],
        Comp::Gzip,
        "ADD evil /",
    );
    match diff_with_bad_layer(layer).await {
        (LayerError::UnsafePath { path, reason, .. }, _) => {
            assert_eq!(path, "../../etc/evil");
            assert_eq!(reason, UnsafePath::ParentDir);
        }
        (other, _) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn absolute_paths_are_refused() {
    let layer = Layer::new(
        &[Entry::RawFile("/etc/passwd", b"x".to_vec())],
        Comp::None,
        "ADD abs /",
    );
    match diff_with_bad_layer(layer).await {
        (LayerError::UnsafePath { path, reason, .. }, _) => {
            assert_eq!(path, "/etc/passwd");
            assert_eq!(reason, UnsafePath::Absolute);
        }
        (other, _) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn hardlinks_outside_the_layer_are_refused() {
    for target in ["../../etc/shadow", "/etc/shadow"] {
        let layer = Layer::new(
            &[Entry::Hardlink("usr/share/leak", target)],
            Comp::Gzip,
            "ADD link /",
        );
        match diff_with_bad_layer(layer).await {
            (
                LayerError::HardlinkOutside {
                    path, target: t, ..
                },
                _,
            ) => {
                assert_eq!(path, "usr/share/leak");
                assert_eq!(t, target);
            }
            (other, _) => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn huge_package_database_is_refused_before_it_is_read() {
    let limit = pinfold_inspect::packages::MAX_OS_DB_BYTES;
    let huge = vec![b'\n'; usize::try_from(limit).unwrap() + 1];
    let layer = Layer::new(
        &[Entry::File("var/lib/dpkg/status", huge)],
        Comp::Gzip,
        "RUN huge",
    );
    match diff_with_bad_layer(layer).await {
        (
            LayerError::PackageDbTooLarge {
                path,
                size,
                limit: l,
                ..
            },
            _,
        ) => {
            assert_eq!(path, "var/lib/dpkg/status");
            assert_eq!(size, limit + 1);
            assert_eq!(l, limit);
        }
        (other, _) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn malformed_package_database_names_the_line() {
    let layer = Layer::new(
        &[Entry::File(
            "var/lib/dpkg/status",
            b"Package: ok\nVersion: 1\nArchitecture: all\n\nthis is not deb822\n".to_vec(),
        )],
        Comp::Gzip,
        "RUN broken",
    );
    let (err, _) = diff_with_bad_layer(layer).await;
    match &err {
        LayerError::PackageDb {
            path,
            source: PackageError::Dpkg(e),
            ..
        } => {
            assert_eq!(path, "var/lib/dpkg/status");
            assert_eq!(
                e.to_string(),
                "line 5: malformed line (expected `Field: value`)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_images_and_blobs_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nope");
    match try_open(&format!("oci:{}", missing.display())).await {
        Err(ImageError::NotFound(p)) => assert_eq!(p, missing),
        other => panic!("{other:?}"),
    }
    match try_open(&format!("docker-archive:{}", missing.display())).await {
        Err(e @ ImageError::NotFound(_)) => {
            assert!(e.to_string().contains("no such file or directory"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A layout whose config blob is missing.
    let (a, _) = fixture::story(Comp::Gzip);
    let layout = root.path().join("a");
    fixture::write_oci(&layout, &a, "1");
    std::fs::remove_file(
        layout
            .join("blobs/sha256")
            .join(a.config_digest().encoded()),
    )
    .unwrap();
    match try_open(&format!("oci:{}", layout.display())).await {
        Err(ImageError::MissingFile { name, .. }) => {
            assert_eq!(
                name,
                format!("blobs/sha256/{}", a.config_digest().encoded())
            )
        }
        other => panic!("{other:?}"),
    }
    // A gzip'd docker save cannot be read in place.
    let (a, _) = fixture::story(Comp::Gzip);
    let tar = root.path().join("a.tar");
    fixture::write_docker_legacy(&tar, &a, "a:1");
    let gz = root.path().join("a.tar.gz");
    std::fs::write(&gz, fixture::gzip(&std::fs::read(&tar).unwrap())).unwrap();
    assert!(matches!(
        try_open(&format!("docker-archive:{}", gz.display())).await,
        Err(ImageError::CompressedArchive(_))
    ));
    // A manifest that does not match its digest.
    let layout = root.path().join("tampered");
    fixture::write_oci(&layout, &a, "1");
    let manifest = layout
        .join("blobs/sha256")
        .join(a.manifest_digest().encoded());
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(&manifest, bytes).unwrap();
    assert!(matches!(
        try_open(&format!("oci:{}", layout.display())).await,
        Err(ImageError::DigestMismatch { .. })
    ));
}
