//! Image and layer formats beyond story 1: multi-platform indexes, whiteouts, the other
//! package managers, settings and the `/bin/sh` and `/etc/localtime` targets, and the cache.

use pinfold_inspect::diff::{Category, FileChangeKind, PackageChangeKind};
use pinfold_inspect::image::ImageError;
use pinfold_inspect::layer::LayerError;
use pinfold_inspect::packages::Ecosystem;
use serde_json::json;

use crate::fixture::{self, Comp, Entry, Image, Layer};
use crate::{diff, open, try_diff, try_open};

fn tiny(arch: &str, marker: &str) -> Image {
    Image::new(
        vec![Layer::new(
            &[Entry::File("etc/arch", marker.as_bytes().to_vec())],
            Comp::Gzip,
            "ADD arch /",
        )],
        arch,
        json!({}),
        &[],
    )
}

#[tokio::test]
async fn multi_platform_index_selects_the_platform() {
    use pinfold_inspect::image::{open as open_image, ImageSource, OpenOptions};
    let dir = tempfile::tempdir().unwrap();
    let amd = tiny("amd64", "amd64");
    let arm = tiny("arm64", "arm64");
    let layout = dir.path().join("multi");
    fixture::write_oci_multiarch(&layout, &[(&amd, None), (&arm, Some("v8"))], "1");
    let source: ImageSource = format!("oci:{}", layout.display()).parse().unwrap();
    for (platform, want) in [
        ("linux/amd64", &amd),
        ("linux/arm64", &arm),
        ("linux/arm64/v8", &arm),
    ] {
        let options = OpenOptions {
            platform: platform.parse().unwrap(),
            ..OpenOptions::default()
        };
        let image = open_image(&source, &options).await.unwrap();
        assert_eq!(
            image.manifest_digest,
            Some(want.manifest_digest()),
            "{platform}"
        );
        assert_eq!(image.config.architecture, want.architecture);
    }
    let options = OpenOptions {
        platform: "linux/s390x".parse().unwrap(),
        ..OpenOptions::default()
    };
    match open_image(&source, &options).await {
        Err(ImageError::NoMatchingPlatform { available, .. }) => {
            assert_eq!(available, ["linux/amd64", "linux/arm64/v8"])
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn several_images_in_one_layout_need_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("l");
    fixture::write_oci(&layout, &tiny("amd64", "x"), "1");
    // A second tag in the same layout.
    let other = tiny("amd64", "y");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    fixture::write_oci(&dir.path().join("tmp"), &other, "2");
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tmp/index.json")).unwrap()).unwrap();
    for entry in std::fs::read_dir(dir.path().join("tmp/blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            layout.join("blobs/sha256").join(entry.file_name()),
        )
        .unwrap();
    }
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(second["manifests"][0].clone());
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    match try_open(&format!("oci:{}", layout.display())).await {
        Err(ImageError::Ambiguous { available, .. }) => assert_eq!(available, ["1", "2"]),
        other => panic!("{other:?}"),
    }
    let two = open(&format!("oci:{}:2", layout.display())).await;
    assert_eq!(two.manifest_digest, Some(other.manifest_digest()));
    match try_open(&format!("oci:{}:3", layout.display())).await {
        Err(ImageError::ReferenceNotFound { reference, .. }) => assert_eq!(reference, "3"),
        other => panic!("{other:?}"),
    }
}

/// Settings, shell and time zone targets, whiteouts, and every package manager.
#[tokio::test]
async fn settings_links_whiteouts_and_all_package_managers() {
    let dir = tempfile::tempdir().unwrap();
    let rpm_a = include_rpmdb(&[("openssl-libs", "3.0.7", "24.el9")]);
    let rpm_b = include_rpmdb(&[("openssl-libs", "3.0.7", "25.el9")]);
    let common = |apk: &str, rpm: Vec<u8>, py: &str, npm: &str, gem: &str| {
        vec![
            Entry::Symlink("bin", "usr/bin"),
            Entry::File("usr/bin/dash", b"dash".to_vec()),
            Entry::File("usr/bin/bash", b"bash".to_vec()),
            Entry::Symlink("usr/bin/sh", "dash"),
            Entry::Symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            Entry::File("usr/share/zoneinfo/Etc/UTC", b"UTC".to_vec()),
            Entry::File("usr/share/zoneinfo/Europe/Berlin", b"CET".to_vec()),
            Entry::File("etc/motd", b"hi".to_vec()),
            Entry::File("var/cache/app/a", b"a".to_vec()),
            Entry::File(
                "lib/apk/db/installed",
                format!("P:musl\nV:{apk}\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n").into_bytes(),
            ),
            Entry::File("var/lib/rpm/rpmdb.sqlite", rpm),
            Entry::File(
                "usr/lib/python3/site-packages/requests-x.dist-info/METADATA",
                format!("Metadata-Version: 2.1\nName: requests\nVersion: {py}\n").into_bytes(),
            ),
            Entry::File(
                "app/node_modules/express/package.json",
                format!("{{\"name\":\"express\",\"version\":\"{npm}\"}}").into_bytes(),
            ),
            Entry::File(
                "usr/local/bundle/specifications/rack.gemspec",
                format!("Gem::Specification.new do |s|\n  s.name = \"rack\"\n  s.version = \"{gem}\"\nend\n").into_bytes(),
            ),
            Entry::File("app/node_modules/broken/package.json", b"{ not json".to_vec()),
        ]
    };
    let a = Image::new(
        vec![Layer::new(
            &common("1.2.4-r2", rpm_a, "2.31.0", "4.18.2", "3.0.8"),
            Comp::Gzip,
            "ADD base /",
        )],
        "amd64",
        json!({"User": "app", "Env": ["PATH=/usr/bin:/bin", "TZ=UTC"]}),
        &[],
    );
    let mut base_b = common("1.2.4-r3", rpm_b, "2.32.0", "4.17.0", "3.0.8");
    base_b.push(Entry::File(
        "usr/local/bundle/specifications/rake-13.1.0.gemspec",
        Vec::new(),
    ));
    let b = Image::new(
        vec![
            Layer::new(&base_b, Comp::Gzip, "ADD base /"),
            Layer::new(
                &[
                    Entry::File("etc/.wh.motd", Vec::new()),
                    Entry::File("var/cache/app/.wh..wh..opq", Vec::new()),
                    Entry::Symlink("usr/bin/sh", "bash"),
                    Entry::Symlink("etc/localtime", "/usr/share/zoneinfo/Europe/Berlin"),
                    Entry::FileMode("usr/bin/dash", 0o4755, 0, b"dash".to_vec()),
                ],
                Comp::None,
                "RUN ln -sf bash /usr/bin/sh && ...",
            ),
        ],
        "amd64",
        json!({"User": "root", "Env": ["PATH=/usr/bin:/bin", "TZ=Europe/Berlin"]}),
        &["ENV TZ=Europe/Berlin", "USER root"],
    );
    fixture::write_oci(&dir.path().join("a"), &a, "1");
    fixture::write_oci(&dir.path().join("b"), &b, "1");
    let ia = open(&format!("oci:{}", dir.path().join("a").display())).await;
    let ib = open(&format!("oci:{}", dir.path().join("b").display())).await;
    let report = diff(&ia, &ib, &dir.path().join("cache")).await;

    let packages: Vec<(Ecosystem, &str, PackageChangeKind)> = report
        .packages
        .iter()
        .map(|p| (p.ecosystem, p.name.as_str(), p.change))
        .collect();
    assert_eq!(
        packages,
        [
            (Ecosystem::Apk, "musl", PackageChangeKind::Upgraded),
            (Ecosystem::Rpm, "openssl-libs", PackageChangeKind::Upgraded),
            (Ecosystem::Python, "requests", PackageChangeKind::Upgraded),
            (Ecosystem::Ruby, "rake", PackageChangeKind::Added),
            (Ecosystem::Npm, "express", PackageChangeKind::Downgraded),
        ]
    );
    let item = |subject: &str| {
        report
            .explanation
            .items
            .iter()
            .find(|i| i.subject == subject)
            .unwrap_or_else(|| panic!("no item {subject}: {:#?}", report.explanation.items))
    };
    assert_eq!(item("openssl-libs").category, Category::TlsCrypto);
    assert_eq!(item("musl").category, Category::Libc);
    let sh = item("/bin/sh resolves to");
    assert_eq!(sh.category, Category::Shell);
    assert_eq!(sh.change, "/usr/bin/dash → /usr/bin/bash");
    assert_eq!(sh.layer.as_ref().map(|l| l.index), Some(1));
    let localtime = item("/etc/localtime resolves to");
    assert_eq!(localtime.category, Category::Timezone);
    assert_eq!(
        localtime.change,
        "/usr/share/zoneinfo/Etc/UTC → /usr/share/zoneinfo/Europe/Berlin"
    );
    let tz = item("Env TZ");
    assert_eq!(tz.category, Category::Timezone);
    assert_eq!(tz.change, "UTC → Europe/Berlin");
    assert_eq!(tz.step.as_deref(), Some("ENV TZ=Europe/Berlin"));
    let user = item("User");
    assert_eq!(user.category, Category::UsersPermissions);
    let setuid = item("owner or mode of files");
    assert_eq!(setuid.category, Category::UsersPermissions);
    assert_eq!(setuid.change, "/usr/bin/dash modified");
    // Ranked: TLS, libc, time zone, shell, users, then the rest.
    let ranks: Vec<Category> = report
        .explanation
        .items
        .iter()
        .map(|i| i.category)
        .collect();
    let mut sorted = ranks.clone();
    sorted.sort();
    assert_eq!(ranks, sorted);

    // Whiteouts: the removed file and the opaque directory's content, attributed to layer 1.
    let removed: Vec<(&str, Option<usize>)> = report
        .files
        .changes
        .iter()
        .filter(|f| f.change == FileChangeKind::Removed)
        .map(|f| (f.path.as_str(), f.layer.as_ref().map(|l| l.index)))
        .collect();
    assert_eq!(
        removed,
        [("/etc/motd", Some(1)), ("/var/cache/app/a", Some(1))]
    );
    let config: Vec<String> = report
        .config
        .iter()
        .map(|c| format!("{} {:?}", c.field, c.key))
        .collect();
    assert_eq!(config, ["Env Some(\"TZ\")", "User None"]);
    assert_eq!(report.layers.history_b_only.len(), 3);
}

fn include_rpmdb(packages: &[(&str, &str, &str)]) -> Vec<u8> {
    // A real rpmdb.sqlite (SQLite in WAL mode, rpm's Packages table of header blobs).
    fn header(tags: &[(u32, &str)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, value) in tags {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&6u32.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value.as_bytes());
            data.push(0);
        }
        let mut out = (tags.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpmdb.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
        for (name, version, release) in packages {
            let blob = header(&[
                (1000, name),
                (1001, version),
                (1002, release),
                (1022, "x86_64"),
            ]);
            conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
    }
    std::fs::read(path).unwrap()
}

/// A second diff against the same base reads layers from the cache: the blobs are not even
/// opened (replaced by garbage here, the diff still succeeds), and the cache holds one JSON file
/// per layer digest. Without the cache the garbage is caught by the digest check.
#[tokio::test]
async fn second_diff_uses_the_layer_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = fixture::story(Comp::Gzip);
    let (la, lb) = (dir.path().join("a"), dir.path().join("b"));
    fixture::write_oci(&la, &a, "1");
    fixture::write_oci(&lb, &b, "1");
    let cache = dir.path().join("cache");
    let ia = open(&format!("oci:{}", la.display())).await;
    let ib = open(&format!("oci:{}", lb.display())).await;
    let first = diff(&ia, &ib, &cache).await;
    for layer in a.layers.iter().chain(&b.layers) {
        let entry = cache
            .join("layers/sha256")
            .join(format!("{}.json", layer.digest().encoded()));
        assert!(entry.is_file(), "{} not cached", entry.display());
    }
    let base = lb.join("blobs/sha256").join(b.layers[0].digest().encoded());
    std::fs::write(&base, b"garbage").unwrap();
    let second = diff(&ia, &ib, &cache).await;
    assert_eq!(first, second);
    match try_diff(&ia, &ib, &dir.path().join("fresh-cache")).await {
        Err(pinfold_inspect::diff::DiffError::Layer(LayerError::DigestMismatch {
            expected,
            ..
        })) => {
            assert_eq!(expected, b.layers[0].digest())
        }
        other => panic!("{other:?}"),
    }
}
