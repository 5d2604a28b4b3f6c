//! Measures issue 7's APT performance targets; run by `bench/apt.sh` (release build).
//!
//! * `apt_bench reindex N`: a local repository with N packages in one distribution (SQLite
//!   metadata and the blob store in a temporary directory, as `pinfold serve` has them); then,
//!   3 times, one more package is listed and the time until its publication's indices
//!   (Packages, .gz, .xz, Release, InRelease, Release.gpg, all written durably and recorded)
//!   are rebuilt is measured: `AptService::reindex_pending`, what the `apt-reindex` worker runs.
//! * `apt_bench packages N`: the time to generate the Packages file of N packages
//!   (`pinfold_apt::index::packages_file`), and with it its .gz and .xz, 3 times.
//!
//! Prints one `metric <name> <seconds...> median <s>` line per measurement.

use std::time::{Duration, Instant};

use pinfold_apt::index::{gzip, packages_file, xz, PackageEntry};
use pinfold_apt::{FileDigests, Paragraph};
use pinfold_meta::{AptPackage, Meta};
use pinfold_server::apt::{AptService, AptSettings};
use pinfold_store::BlobStore;

/// A control paragraph shaped like a typical Debian one (about 600 bytes).
fn control(name: &str, version: &str, arch: &str) -> String {
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: Pinfold Bench <bench@example.com>\nInstalled-Size: 1234\n\
         Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0), zlib1g (>= 1:1.2.0)\n\
         Section: utils\nPriority: optional\nHomepage: https://example.com/{name}\n\
         Description: benchmark package {name}\n This package exists to measure index generation.\n \
         It has a long description, as real packages do, so that the Packages file\n \
         has realistic stanzas of roughly six hundred bytes each.\n"
    )
}

fn listing(i: usize) -> AptPackage {
    let name = format!("pkg{i:06}");
    let version = format!("1.{}-1", i % 97);
    let digests = FileDigests::of(name.as_bytes());
    AptPackage {
        distribution: "stable".into(),
        component: "main".into(),
        architecture: "amd64".into(),
        path: format!("pool/main/p/{name}/{name}_{version}_amd64.deb"),
        control: control(&name, &version, "amd64"),
        name,
        version,
        size: digests.size,
        md5: digests.md5,
        sha1: digests.sha1,
        sha256: digests.sha256,
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn report(name: &str, times: Vec<Duration>) {
    let each: Vec<String> = times
        .iter()
        .map(|t| format!("{:.3}", t.as_secs_f64()))
        .collect();
    println!(
        "metric {name} {} median {:.3}",
        each.join(" "),
        median(times).as_secs_f64()
    );
}

async fn reindex(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = BlobStore::open(dir.path()).expect("store");
    let meta = Meta::open_sqlite(&dir.path().join("meta.db"))
        .await
        .expect("meta");
    let apt = AptService::open(
        store,
        meta.clone(),
        AptSettings {
            deploy_keys: vec![],
            max_deb_bytes: 1 << 30,
            signing_key_path: dir.path().join("apt/signing-key.asc"),
            reindex_delay: Duration::from_millis(0),
            index_gc_grace: Duration::from_secs(3600),
        },
    )
    .expect("service");
    meta.apt_create_repo(&pinfold_meta::NewAptRepo {
        name: "bench".into(),
        kind: pinfold_meta::AptRepoKind::Local,
        upstream_url: None,
        upstream_suite: None,
        upstream_key: None,
        components: vec![],
        architectures: vec![],
    })
    .await
    .expect("repo");
    let all: Vec<AptPackage> = (0..n).map(listing).collect();
    let fill = Instant::now();
    meta.apt_add_packages("bench", &all).await.expect("fill");
    eprintln!("listed {n} packages in {:.2?}", fill.elapsed());
    apt.reindex_pending().await.expect("first index");
    let mut times = Vec::new();
    for run in 0..3 {
        meta.apt_add_packages("bench", &[listing(n + run)])
            .await
            .expect("one more");
        let start = Instant::now();
        let rebuilt = apt.reindex_pending().await.expect("reindex");
        times.push(start.elapsed());
        assert_eq!(rebuilt, 1);
    }
    let packages = meta.apt_packages("bench", "stable").await.expect("list");
    assert_eq!(packages.len(), n + 3);
    report(
        &format!("apt_reindex_after_one_upload_{n}_packages_seconds"),
        times,
    );
    meta.close().await;
}

fn packages(n: usize) {
    let entries: Vec<PackageEntry> = (0..n)
        .map(|i| {
            let l = listing(i);
            PackageEntry {
                control: Paragraph::parse_one(&l.control).expect("control"),
                version: l.version.parse().expect("version"),
                name: l.name,
                architecture: l.architecture,
                filename: l.path,
                digests: FileDigests {
                    size: l.size,
                    md5: l.md5,
                    sha1: l.sha1,
                    sha256: l.sha256,
                },
            }
        })
        .collect();
    let mut plain = Vec::new();
    let mut compressed = Vec::new();
    for _ in 0..3 {
        let mut batch = entries.clone();
        let start = Instant::now();
        let text = packages_file(&mut batch);
        plain.push(start.elapsed());
        let (gz, xz_bytes) = std::thread::scope(|s| {
            let x = s.spawn(|| xz(text.as_bytes()));
            (gzip(text.as_bytes()), x.join().expect("xz thread"))
        });
        compressed.push(start.elapsed());
        eprintln!(
            "Packages {} bytes, .gz {} bytes, .xz {} bytes",
            text.len(),
            gz.len(),
            xz_bytes.len()
        );
    }
    report(&format!("apt_packages_file_{n}_packages_seconds"), plain);
    report(
        &format!("apt_packages_gz_xz_{n}_packages_seconds"),
        compressed,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match args.get(1).map(String::as_str) {
        Some("reindex") => reindex(n).await,
        Some("packages") => packages(n),
        _ => {
            eprintln!("usage: apt_bench reindex N | packages N");
            std::process::exit(2);
        }
    }
}
