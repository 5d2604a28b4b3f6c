//! DESIGN.md story 1: the rebuilt application fails TLS verification because the base image
//! tag moved to newer OS layers. The explanation must rank ca-certificates and libssl first
//! and name the base layer, whichever way the images are stored.

use pinfold_inspect::diff::render::{to_markdown, write_text};
use pinfold_inspect::diff::{Category, DiffReport, FileChangeKind, ItemKind, PackageChangeKind};
use pinfold_inspect::packages::Ecosystem;

use crate::fixture::{self, Comp};
use crate::{diff, open};

/// What must hold for story 1, whatever the storage format.
fn assert_story_1(report: &DiffReport, base_digest: &pinfold_oci::Digest) {
    assert!(!report.equal);
    let items = &report.explanation.items;
    assert!(items.len() >= 4, "{items:#?}");
    // ca-certificates first, then libssl: trust store and TLS before anything else.
    assert_eq!(items[0].category, Category::TrustStore, "{items:#?}");
    assert_eq!(items[0].subject, "ca-certificates");
    assert_eq!(items[0].kind, ItemKind::Package);
    assert_eq!(items[0].change, "20230311 → 20240203 (upgraded, dpkg)");
    let first_tls = items
        .iter()
        .position(|i| i.category == Category::TlsCrypto)
        .expect("a TLS item");
    assert_eq!(items[first_tls].subject, "libssl3:amd64");
    assert_eq!(
        items[first_tls].change,
        "3.0.11-1~deb12u2 → 3.0.13-1~deb12u1 (upgraded, dpkg)"
    );
    assert!(
        items[..first_tls]
            .iter()
            .all(|i| i.category == Category::TrustStore),
        "only trust store items rank above libssl: {items:#?}"
    );
    // Both name the base layer, although the app layer rewrote the dpkg status afterwards.
    for item in [&items[0], &items[first_tls]] {
        let layer = item.layer.as_ref().expect("a layer");
        assert_eq!(layer.index, 0, "{item:?}");
        assert_eq!(&layer.digest, base_digest);
        assert_eq!(layer.created_by.as_deref(), Some("ADD file:2024 in /"));
    }
    let summary = report.explanation.summary.as_deref().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "ca-certificates and libssl3:amd64 changed in the base layer (sha256:{}, ADD file:2024 in /)",
            &base_digest.encoded()[..12]
        )),
        "{summary}"
    );
    // tzdata is explained too, below trust store and TLS; libc did not change.
    let tz = items
        .iter()
        .find(|i| i.subject == "tzdata")
        .expect("tzdata item");
    assert_eq!(tz.category, Category::Timezone);
    assert!(tz.rank > items[first_tls].rank);
    assert!(items.iter().all(|i| i.category != Category::Libc));

    // The package section: exactly the three base packages, upgraded, curl unchanged.
    let changes: Vec<(&str, PackageChangeKind)> = report
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.change))
        .collect();
    assert_eq!(
        changes,
        [
            ("ca-certificates", PackageChangeKind::Upgraded),
            ("libssl3", PackageChangeKind::Upgraded),
            ("tzdata", PackageChangeKind::Upgraded),
        ]
    );
    assert!(report
        .packages
        .iter()
        .all(|p| p.ecosystem == Ecosystem::Dpkg));
    // Files: the bundle and the library changed in content and size, as did the status file.
    let bundle = report
        .files
        .changes
        .iter()
        .find(|f| f.path == "/etc/ssl/certs/ca-certificates.crt")
        .expect("bundle change");
    assert_eq!(bundle.change, FileChangeKind::Modified);
    assert_eq!(bundle.fields, ["size", "content"]);
    assert_eq!(bundle.layer.as_ref().map(|l| l.index), Some(0));
    let paths: Vec<&str> = report
        .files
        .changes
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/var/lib/dpkg/status"
        ]
    );
    // Layers: nothing shared (the base differs), both layers of B listed with their steps.
    assert_eq!(report.layers.shared_prefix, 0);
    assert_eq!(report.layers.b_only.len(), 2);
    assert_eq!(
        report.layers.b_only[0].layer.created_by.as_deref(),
        Some("ADD file:2024 in /")
    );
    assert!(report.config.is_empty(), "{:?}", report.config);
}

#[tokio::test]
async fn story_1_oci_layout_ranks_trust_store_and_tls_first_and_names_the_base_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = fixture::story(Comp::Gzip);
    fixture::write_oci(&dir.path().join("a"), &a, "1");
    fixture::write_oci(&dir.path().join("b"), &b, "1");
    let ia = open(&format!("oci:{}", dir.path().join("a").display())).await;
    let ib = open(&format!("oci:{}:1", dir.path().join("b").display())).await;
    assert_eq!(ib.manifest_digest, Some(b.manifest_digest()));
    assert_eq!(ib.config_digest, b.config_digest());
    let report = diff(&ia, &ib, &dir.path().join("cache")).await;
    assert_story_1(&report, &b.layers[0].digest());
}

/// The same images saved by Docker before 25 (uncompressed layers named by diff id) and by
/// Docker 25+ (an OCI layout inside the tar) explain the same way.
#[tokio::test]
async fn story_1_from_docker_save_archives_legacy_and_oci() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = fixture::story(Comp::Gzip);
    let legacy_a = dir.path().join("a-legacy.tar");
    let legacy_b = dir.path().join("b-legacy.tar");
    let oci_b = dir.path().join("b-oci.tar");
    fixture::write_docker_legacy(&legacy_a, &a, "app:old");
    fixture::write_docker_legacy(&legacy_b, &b, "app:new");
    fixture::write_docker_oci(&oci_b, &b, "app:new");
    let cache = dir.path().join("cache");

    let ia = open(&format!("docker-archive:{}", legacy_a.display())).await;
    let ib = open(&format!("docker-archive:{}:app:new", legacy_b.display())).await;
    // Legacy layers are the uncompressed tars, known by their diff ids.
    assert_eq!(ib.layers[0].digest, b.layers[0].diff_id);
    assert_eq!(ib.manifest_digest, None);
    let legacy = diff(&ia, &ib, &cache).await;
    assert_story_1(&legacy, &b.layers[0].diff_id);

    let ib_oci = open(&format!("docker-archive:{}", oci_b.display())).await;
    assert_eq!(ib_oci.layers[0].digest, b.layers[0].digest());
    assert_eq!(ib_oci.manifest_digest, Some(b.manifest_digest()));
    let mixed = diff(&ia, &ib_oci, &cache).await;
    assert_story_1(&mixed, &b.layers[0].digest());

    // Same subjects, changes and layer positions either way.
    let shape = |r: &DiffReport| -> Vec<(Category, String, String, Option<usize>)> {
        r.explanation
            .items
            .iter()
            .map(|i| {
                (
                    i.category,
                    i.subject.clone(),
                    i.change.clone(),
                    i.layer.as_ref().map(|l| l.index),
                )
            })
            .collect()
    };
    assert_eq!(shape(&legacy), shape(&mixed));
}

#[tokio::test]
async fn reversed_diff_reports_downgrades_and_zstd_layers_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = fixture::story(Comp::Zstd);
    fixture::write_oci(&dir.path().join("a"), &a, "1");
    fixture::write_oci(&dir.path().join("b"), &b, "1");
    let ia = open(&format!("oci:{}", dir.path().join("a").display())).await;
    let ib = open(&format!("oci:{}", dir.path().join("b").display())).await;
    let report = diff(&ib, &ia, &dir.path().join("cache")).await;
    let ca = &report.explanation.items[0];
    assert_eq!(ca.subject, "ca-certificates");
    assert_eq!(ca.change, "20240203 → 20230311 (downgraded, dpkg)");
    assert!(report
        .packages
        .iter()
        .all(|p| p.change == PackageChangeKind::Downgraded));
}

#[tokio::test]
async fn an_image_equals_itself_and_renders_as_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = fixture::story(Comp::Gzip);
    fixture::write_oci(&dir.path().join("a"), &a, "1");
    let ia = open(&format!("oci:{}", dir.path().join("a").display())).await;
    let report = diff(&ia, &ia, &dir.path().join("cache")).await;
    assert!(report.equal);
    assert!(report.explanation.items.is_empty());
    assert_eq!(report.explanation.summary, None);
    assert_eq!(report.layers.shared_prefix, 2);
    let mut text = Vec::new();
    write_text(&mut text, &report, false).unwrap();
    assert!(String::from_utf8(text)
        .unwrap()
        .ends_with("\nThe images are equal.\n"));
}

#[tokio::test]
async fn text_and_markdown_lead_with_the_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = fixture::story(Comp::Gzip);
    fixture::write_oci(&dir.path().join("a"), &a, "1");
    fixture::write_oci(&dir.path().join("b"), &b, "1");
    let ia = open(&format!("oci:{}", dir.path().join("a").display())).await;
    let ib = open(&format!("oci:{}", dir.path().join("b").display())).await;
    let report = diff(&ia, &ib, &dir.path().join("cache")).await;

    let mut text = Vec::new();
    write_text(&mut text, &report, false).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains('\x1b'), "no colour when asked for none");
    let explanation = text.find("Explanation").expect("explanation heading");
    let packages = text.find("\nPackages").expect("packages heading");
    assert!(explanation < packages);
    assert!(
        text.contains(
            "   1. trust store            ca-certificates: 20230311 → 20240203 (upgraded, dpkg)\n"
        ),
        "{text}"
    );
    assert!(text.contains("from layer 0 sha256:"), "{text}");
    let mut coloured = Vec::new();
    write_text(&mut coloured, &report, true).unwrap();
    assert!(String::from_utf8(coloured).unwrap().contains("\x1b["));

    let md = to_markdown(&report);
    assert!(md.starts_with("## Image diff\n"), "{md}");
    assert!(
        md.contains("| 1 | trust store | `ca-certificates` | 20230311 → 20240203 (upgraded, dpkg) | layer 0 sha256:"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `dpkg libssl3:amd64` | `3.0.11-1~deb12u2` | `3.0.13-1~deb12u1` | upgraded | 0 |"
        ),
        "{md}"
    );
}
