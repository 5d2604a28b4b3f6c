//! The behaviour every metadata engine must show. Each function takes a freshly opened, empty
//! [`Meta`]; the engine modules (`sqlite.rs`, `postgres.rs`) turn each into a test with
//! `engine_suite!`.

use std::collections::BTreeMap;

use pinfold_meta::{
    AptAddOutcome, AptIndexFile, AptPackage, AptPublishSource, AptRepoKind, DriftResolution,
    GcKind, GcPolicy, GcSweep, JournalEntry, Meta, MetaError, NewAptRepo, NewManifest, TagMove,
    TagMoveSource,
};
use pinfold_oci::{Digest, RepoName, Tag};
use time::OffsetDateTime;

/// Every suite function, for `engine_suite!`.
#[macro_export]
macro_rules! for_each_suite_test {
    ($m:ident) => {
        $m!(
            journal_rows_exactly_on_moves,
            history_is_oldest_first_and_per_tag,
            tags_paginate_in_case_insensitive_order,
            repositories_paginate_and_list_only_content,
            referrers_filter_by_artifact_type,
            missing_blobs_and_manifests,
            blob_and_manifest_sizes,
            blob_links,
            uploads_lifecycle,
            upload_sessions_are_capped_per_owner,
            one_holder_per_lease_until_it_lapses,
            tags_only_point_at_manifests_of_their_repository,
            manifests_are_idempotent_and_deletable,
            drift_events_follow_the_upstream,
            mirror_tags_due_oldest_first,
            apt_uploads_conflicts_and_publications,
            apt_snapshots_are_frozen_and_publications_switch,
            apt_index_generations_are_kept_and_pruned,
            apt_mirror_replace_and_repo_errors,
            blob_references_name_every_needed_blob,
            tokens_are_found_by_hash_listed_and_revoked,
            audit_log_filters_and_is_append_only,
            gc_candidates_tolerate_repeated_references,
            gc_collects_only_what_nothing_protects,
            gc_keeps_digests_named_by_drift_events_and_pins,
            a_fresh_database_is_empty_until_something_is_recorded,
        );
    };
}

pub fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

pub fn tag(name: &str) -> Tag {
    name.parse().unwrap()
}

/// A distinct, valid digest per `seed`.
pub fn digest(seed: &str) -> Digest {
    Digest::sha256(seed.as_bytes())
}

pub fn push() -> TagMove {
    TagMove {
        actor: "alice".into(),
        source: TagMoveSource::Push,
    }
}

pub fn delete() -> TagMove {
    TagMove {
        actor: "bob".into(),
        source: TagMoveSource::Delete,
    }
}

/// An image manifest in `repo` whose digest is `digest(seed)`, with two layers.
pub fn image(repo_name: &str, seed: &str) -> NewManifest {
    NewManifest {
        repo: repo(repo_name),
        digest: digest(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 500 + seed.len() as u64,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: vec![
            digest(&format!("{seed}/config")),
            digest(&format!("{seed}/layer")),
        ],
        children: vec![],
    }
}

/// (previous, new) of each row, for compact assertions.
fn moves(rows: &[JournalEntry]) -> Vec<(Option<Digest>, Option<Digest>)> {
    rows.iter()
        .map(|e| (e.previous_digest.clone(), e.new_digest.clone()))
        .collect()
}

async fn journal_len(meta: &Meta) -> usize {
    meta.journal(None, 10_000).await.unwrap().len()
}

pub async fn journal_rows_exactly_on_moves(meta: &Meta) {
    let (r, latest) = (repo("app"), tag("latest"));
    let (m1, m2) = (image("app", "m1"), image("app", "m2"));

    // A new tag: previous is None.
    meta.put_manifest(&m1, Some(&latest), &push())
        .await
        .unwrap();
    let rows = meta.tag_history(&r, &latest).await.unwrap();
    assert_eq!(moves(&rows), [(None, Some(m1.digest.clone()))]);
    assert_eq!(rows[0].repository, r);
    assert_eq!(rows[0].tag, latest);
    assert_eq!(rows[0].actor, "alice");
    assert_eq!(rows[0].source, TagMoveSource::Push);

    // A move.
    meta.put_manifest(&m2, Some(&latest), &push())
        .await
        .unwrap();
    assert_eq!(journal_len(meta).await, 2);

    // Same manifest, same tag; and a push without a tag: nothing is journaled.
    meta.put_manifest(&m2, Some(&latest), &push())
        .await
        .unwrap();
    meta.put_manifest(&m2, None, &push()).await.unwrap();
    meta.put_manifest(&m1, None, &push()).await.unwrap();
    assert_eq!(journal_len(meta).await, 2);
    assert_eq!(
        meta.resolve_tag(&r, &latest).await.unwrap().unwrap().digest,
        m2.digest
    );

    // Deleting the tag journals new = None; deleting it again does nothing.
    assert!(meta.delete_tag(&r, &latest, &delete()).await.unwrap());
    assert!(!meta.delete_tag(&r, &latest, &delete()).await.unwrap());
    assert!(!meta
        .delete_tag(&repo("nowhere"), &latest, &delete())
        .await
        .unwrap());
    let rows = meta.tag_history(&r, &latest).await.unwrap();
    assert_eq!(
        moves(&rows),
        [
            (None, Some(m1.digest.clone())),
            (Some(m1.digest.clone()), Some(m2.digest.clone())),
            (Some(m2.digest.clone()), None),
        ]
    );
    assert_eq!(rows[2].source, TagMoveSource::Delete);
    assert_eq!(rows[2].actor, "bob");
    assert!(meta.resolve_tag(&r, &latest).await.unwrap().is_none());
    assert!(meta.manifest(&r, &m2.digest).await.unwrap().is_some());

    // Deleting a manifest with two tags: two rows, in the same transaction as the delete.
    let (a, b) = (tag("a"), tag("b"));
    meta.put_manifest(&m1, Some(&a), &push()).await.unwrap();
    meta.put_manifest(&m1, Some(&b), &push()).await.unwrap();
    meta.put_manifest(&m2, Some(&latest), &push())
        .await
        .unwrap();
    let before = journal_len(meta).await;
    assert!(meta
        .delete_manifest(&r, &m1.digest, &delete())
        .await
        .unwrap());
    let all = meta.journal(None, 10_000).await.unwrap();
    assert_eq!(all.len(), before + 2);
    let gone: Vec<_> = all[before..]
        .iter()
        .map(|e| {
            (
                e.tag.clone(),
                e.previous_digest.clone(),
                e.new_digest.clone(),
            )
        })
        .collect();
    assert!(gone.contains(&(a.clone(), Some(m1.digest.clone()), None)));
    assert!(gone.contains(&(b.clone(), Some(m1.digest.clone()), None)));
    assert!(meta.resolve_tag(&r, &a).await.unwrap().is_none());
    assert!(meta.manifest(&r, &m1.digest).await.unwrap().is_none());
    // The other manifest and its tag are untouched.
    assert_eq!(
        meta.resolve_tag(&r, &latest).await.unwrap().unwrap().digest,
        m2.digest
    );
    assert_eq!(
        meta.list_tags(&r, None, None).await.unwrap().unwrap(),
        vec![latest.clone()]
    );
    // Deleting an unknown manifest writes nothing.
    assert!(!meta
        .delete_manifest(&r, &m1.digest, &delete())
        .await
        .unwrap());
    assert!(!meta
        .delete_manifest(&repo("nowhere"), &m1.digest, &delete())
        .await
        .unwrap());
    assert_eq!(journal_len(meta).await, before + 2);
}

pub async fn history_is_oldest_first_and_per_tag(meta: &Meta) {
    let (x, y) = (tag("x"), tag("y"));
    let seeds = ["h1", "h2", "h3", "h4"];
    for (i, seed) in seeds.iter().enumerate() {
        let t = if i % 2 == 0 { &x } else { &y };
        meta.put_manifest(&image("hist", seed), Some(t), &push())
            .await
            .unwrap();
        // Same tag name in another repository: a separate history.
        meta.put_manifest(&image("other", seed), Some(&x), &push())
            .await
            .unwrap();
    }
    let hx = meta.tag_history(&repo("hist"), &x).await.unwrap();
    assert_eq!(
        moves(&hx),
        [
            (None, Some(digest("h1"))),
            (Some(digest("h1")), Some(digest("h3"))),
        ]
    );
    let hy = meta.tag_history(&repo("hist"), &y).await.unwrap();
    assert_eq!(
        moves(&hy),
        [
            (None, Some(digest("h2"))),
            (Some(digest("h2")), Some(digest("h4"))),
        ]
    );
    let other = meta.tag_history(&repo("other"), &x).await.unwrap();
    assert_eq!(other.len(), 4);
    assert!(other
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));
    assert!(meta
        .tag_history(&repo("hist"), &tag("z"))
        .await
        .unwrap()
        .is_empty());

    // The whole journal, paged by id.
    let all = meta.journal(None, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let first = meta.journal(None, 3).await.unwrap();
    let rest = meta.journal(Some(first[2].id), 100).await.unwrap();
    assert_eq!(first.len() + rest.len(), all.len());
    assert_eq!([first, rest].concat(), all);

    // Times are recent and UTC.
    let now = OffsetDateTime::now_utc();
    for e in &all {
        assert!(
            e.at <= now && now - e.at < time::Duration::minutes(5),
            "{e:?}"
        );
    }
}

pub async fn tags_paginate_in_case_insensitive_order(meta: &Meta) {
    let r = repo("pages");
    let names = ["b", "B", "a", "A", "_x", "1.0", "latest", "Z", "a-1", "a.1"];
    for n in names {
        meta.put_manifest(&image("pages", "p"), Some(&tag(n)), &push())
            .await
            .unwrap();
    }
    // Case-insensitive, then by bytes: digits < '_' < letters; 'A' < 'a'; '-' (0x2d) < '.' (0x2e).
    let expected = ["1.0", "_x", "A", "a", "a-1", "a.1", "B", "b", "latest", "Z"].map(tag);
    let all = meta.list_tags(&r, None, None).await.unwrap().unwrap();
    assert_eq!(all, expected);
    assert_eq!(
        meta.list_tags(&r, Some(3), None).await.unwrap().unwrap(),
        expected[..3]
    );
    assert_eq!(
        meta.list_tags(&r, Some(2), Some("_x"))
            .await
            .unwrap()
            .unwrap(),
        expected[2..4]
    );
    assert_eq!(
        meta.list_tags(&r, None, Some("a")).await.unwrap().unwrap(),
        expected[4..]
    );
    // `last` need not be a tag that exists.
    assert_eq!(
        meta.list_tags(&r, Some(1), Some("a0"))
            .await
            .unwrap()
            .unwrap(),
        expected[6..7]
    );
    assert!(meta
        .list_tags(&r, None, Some("Z"))
        .await
        .unwrap()
        .unwrap()
        .is_empty());
    assert!(meta
        .list_tags(&r, Some(0), None)
        .await
        .unwrap()
        .unwrap()
        .is_empty());
    // Walking pages of 3 visits every tag once.
    let mut walked = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = meta
            .list_tags(&r, Some(3), last.as_deref())
            .await
            .unwrap()
            .unwrap();
        if page.is_empty() {
            break;
        }
        last = page.last().map(|t| t.to_string());
        walked.extend(page);
    }
    assert_eq!(walked, expected);

    // Unknown repository: None. A repository with no tags (only an upload): empty.
    assert_eq!(
        meta.list_tags(&repo("nope"), None, None).await.unwrap(),
        None
    );
    meta.create_upload("u-pages", &repo("empty"), "user:t", 100)
        .await
        .unwrap();
    assert_eq!(
        meta.list_tags(&repo("empty"), None, None).await.unwrap(),
        Some(vec![])
    );
}

pub async fn repositories_paginate_and_list_only_content(meta: &Meta) {
    for name in ["b", "a/x", "a", "c", "a-b", "a0"] {
        meta.put_manifest(&image(name, "r"), None, &push())
            .await
            .unwrap();
    }
    // Only an upload: exists, but is not listed.
    meta.create_upload("u-repos", &repo("d"), "user:t", 100)
        .await
        .unwrap();
    assert!(meta.repository_exists(&repo("d")).await.unwrap());
    assert!(!meta.repository_exists(&repo("zz")).await.unwrap());
    // Only a blob: listed.
    meta.link_blob(&repo("e"), &digest("blob"), 3)
        .await
        .unwrap();

    // By bytes: '-' (0x2d) < '/' (0x2f) < '0' (0x30).
    let expected = ["a", "a-b", "a/x", "a0", "b", "c", "e"].map(repo);
    assert_eq!(meta.list_repositories(None, None).await.unwrap(), expected);
    assert_eq!(
        meta.list_repositories(Some(2), None).await.unwrap(),
        expected[..2]
    );
    assert_eq!(
        meta.list_repositories(Some(2), Some("a-b")).await.unwrap(),
        expected[2..4]
    );
    assert_eq!(
        meta.list_repositories(None, Some("c")).await.unwrap(),
        expected[6..]
    );
    assert!(meta
        .list_repositories(None, Some("e"))
        .await
        .unwrap()
        .is_empty());
    assert!(meta
        .list_repositories(Some(0), None)
        .await
        .unwrap()
        .is_empty());
}

pub async fn referrers_filter_by_artifact_type(meta: &Meta) {
    let r = repo("refs");
    // The subject need not exist (the spec allows pushing referrers first).
    let subject = digest("subject");
    let referrer =
        |seed: &str, artifact_type: &str, annotations: Option<BTreeMap<String, String>>| {
            NewManifest {
                artifact_type: Some(artifact_type.to_owned()),
                subject: Some(subject.clone()),
                annotations,
                ..image("refs", seed)
            }
        };
    let notes = BTreeMap::from([
        (
            "org.opencontainers.image.created".to_owned(),
            "2024-01-01T00:00:00Z".to_owned(),
        ),
        ("x".to_owned(), "\"quoted\" ünïcode".to_owned()),
    ]);
    let sig1 = referrer("sig1", "application/vnd.example.signature", None);
    let sig2 = referrer("sig2", "application/vnd.example.signature", None);
    let sbom = referrer("sbom", "application/spdx+json", Some(notes.clone()));
    for m in [&sig1, &sbom, &sig2] {
        meta.put_manifest(m, None, &push()).await.unwrap();
    }
    // Not referrers of `subject` in `refs`: no subject, another subject, another repository.
    meta.put_manifest(&image("refs", "plain"), None, &push())
        .await
        .unwrap();
    meta.put_manifest(
        &NewManifest {
            subject: Some(digest("other")),
            ..referrer("elsewhere", "application/vnd.example.signature", None)
        },
        None,
        &push(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &NewManifest {
            repo: repo("refs2"),
            ..referrer("sig3", "application/vnd.example.signature", None)
        },
        None,
        &push(),
    )
    .await
    .unwrap();

    let all = meta.referrers(&r, &subject, None).await.unwrap();
    let mut expected = vec![
        sig1.digest.clone(),
        sig2.digest.clone(),
        sbom.digest.clone(),
    ];
    expected.sort();
    assert_eq!(
        all.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
        expected
    );
    let got_sbom = all.iter().find(|x| x.digest == sbom.digest).unwrap();
    assert_eq!(got_sbom.annotations.as_ref(), Some(&notes));
    assert_eq!(
        got_sbom.artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert_eq!(got_sbom.media_type, sbom.media_type);
    assert_eq!(got_sbom.size, sbom.size);

    let sigs = meta
        .referrers(&r, &subject, Some("application/vnd.example.signature"))
        .await
        .unwrap();
    let mut expected = vec![sig1.digest.clone(), sig2.digest.clone()];
    expected.sort();
    assert_eq!(
        sigs.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(sigs.iter().all(|x| x.annotations.is_none()));
    assert!(meta
        .referrers(&r, &subject, Some("application/none"))
        .await
        .unwrap()
        .is_empty());
    assert!(meta
        .referrers(&repo("nowhere"), &subject, None)
        .await
        .unwrap()
        .is_empty());

    // Deleting a referrer removes it from the answer.
    assert!(meta
        .delete_manifest(&r, &sig1.digest, &delete())
        .await
        .unwrap());
    assert_eq!(meta.referrers(&r, &subject, None).await.unwrap().len(), 2);
}

pub async fn missing_blobs_and_manifests(meta: &Meta) {
    let r = repo("miss");
    let present: Vec<Digest> = (0..70).map(|i| digest(&format!("present{i}"))).collect();
    let absent: Vec<Digest> = (0..80).map(|i| digest(&format!("absent{i}"))).collect();
    for d in &present {
        meta.link_blob(&r, d, 1).await.unwrap();
    }
    // Small: order of first mention kept, duplicates once.
    let ask = [
        present[0].clone(),
        absent[1].clone(),
        present[1].clone(),
        absent[0].clone(),
        absent[1].clone(),
    ];
    assert_eq!(
        meta.missing_blobs(&r, &ask).await.unwrap(),
        [absent[1].clone(), absent[0].clone()]
    );
    assert!(meta.missing_blobs(&r, &[]).await.unwrap().is_empty());
    assert!(meta.missing_blobs(&r, &present).await.unwrap().is_empty());

    // More than one chunk, interleaved.
    let mixed: Vec<Digest> = present
        .iter()
        .zip(absent.iter())
        .flat_map(|(p, a)| [p.clone(), a.clone()])
        .chain(absent[70..].iter().cloned())
        .collect();
    assert_eq!(meta.missing_blobs(&r, &mixed).await.unwrap(), absent);

    // Unknown repository: everything is missing. Other repository: its blobs do not count.
    assert_eq!(
        meta.missing_blobs(&repo("nowhere"), &present[..3])
            .await
            .unwrap(),
        present[..3]
    );
    meta.link_blob(&repo("other"), &absent[0], 1).await.unwrap();
    assert_eq!(
        meta.missing_blobs(&r, &absent[..1]).await.unwrap(),
        absent[..1]
    );

    // Manifests.
    let m1 = image("miss", "mm1");
    let m2 = image("miss", "mm2");
    meta.put_manifest(&m1, None, &push()).await.unwrap();
    meta.put_manifest(&m2, Some(&tag("t")), &push())
        .await
        .unwrap();
    // A blob is not a manifest, and a manifest is not a blob.
    assert_eq!(
        meta.missing_manifests(
            &r,
            &[m1.digest.clone(), present[0].clone(), m2.digest.clone()]
        )
        .await
        .unwrap(),
        [present[0].clone()]
    );
    assert_eq!(
        meta.missing_blobs(&r, std::slice::from_ref(&m1.digest))
            .await
            .unwrap(),
        vec![m1.digest.clone()]
    );
    let many: Vec<Digest> = absent.iter().cloned().chain([m1.digest.clone()]).collect();
    assert_eq!(meta.missing_manifests(&r, &many).await.unwrap(), absent);
}

/// The stored sizes the registry checks a manifest's descriptors against (issue 16): one
/// entry per stored digest, blobs and manifests apart, per repository.
pub async fn blob_and_manifest_sizes(meta: &Meta) {
    let r = repo("sizes");
    let blobs: Vec<Digest> = (0..70).map(|i| digest(&format!("sized{i}"))).collect();
    for (i, d) in blobs.iter().enumerate() {
        meta.link_blob(&r, d, 100 + i as u64).await.unwrap();
    }
    let absent = digest("unsized");
    // More than one chunk, with a duplicate and an absent digest.
    let ask: Vec<Digest> = blobs
        .iter()
        .cloned()
        .chain([absent.clone(), blobs[3].clone()])
        .collect();
    let sizes = meta.blob_sizes(&r, &ask).await.unwrap();
    assert_eq!(sizes.len(), 70, "one entry per stored digest");
    for (i, d) in blobs.iter().enumerate() {
        assert_eq!(sizes.get(d), Some(&(100 + i as u64)), "size of blob {i}");
    }
    assert!(!sizes.contains_key(&absent));
    assert!(meta.blob_sizes(&r, &[]).await.unwrap().is_empty());
    assert!(meta
        .blob_sizes(&repo("nowhere"), &blobs[..2])
        .await
        .unwrap()
        .is_empty());
    // Another repository's link, with its own size, does not count.
    meta.link_blob(&repo("sizes2"), &absent, 7).await.unwrap();
    assert!(meta
        .blob_sizes(&r, std::slice::from_ref(&absent))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        meta.blob_sizes(&repo("sizes2"), &[absent.clone(), blobs[0].clone()])
            .await
            .unwrap(),
        [(absent.clone(), 7)].into_iter().collect()
    );

    // Manifests: the manifest row's size; a blob is not a manifest and a manifest not a blob.
    let m = image("sizes", "sized-manifest");
    meta.put_manifest(&m, None, &push()).await.unwrap();
    assert_eq!(
        meta.manifest_sizes(&r, &[m.digest.clone(), blobs[0].clone()])
            .await
            .unwrap(),
        [(m.digest.clone(), m.size)].into_iter().collect()
    );
    assert!(meta
        .blob_sizes(&r, std::slice::from_ref(&m.digest))
        .await
        .unwrap()
        .is_empty());
    assert!(meta
        .manifest_sizes(&repo("sizes2"), std::slice::from_ref(&m.digest))
        .await
        .unwrap()
        .is_empty());
}

pub async fn blob_links(meta: &Meta) {
    let (r, other) = (repo("blobs"), repo("blobs2"));
    let d = digest("b1");
    assert_eq!(meta.repo_blob_size(&r, &d).await.unwrap(), None);
    assert_eq!(meta.repositories_with_blob(&d, 10).await.unwrap(), vec![]);

    meta.link_blob(&r, &d, 1234).await.unwrap();
    meta.link_blob(&r, &d, 1234).await.unwrap(); // idempotent
    assert!(meta.repository_exists(&r).await.unwrap());
    assert_eq!(meta.repo_blob_size(&r, &d).await.unwrap(), Some(1234));
    assert_eq!(meta.repo_blob_size(&other, &d).await.unwrap(), None);
    assert_eq!(
        meta.repositories_with_blob(&d, 10).await.unwrap(),
        vec![(r.clone(), 1234)]
    );
    meta.link_blob(&repo("a-first"), &d, 1234).await.unwrap();
    assert_eq!(
        meta.repositories_with_blob(&d, 10).await.unwrap(),
        vec![(repo("a-first"), 1234), (r.clone(), 1234)],
        "in name order"
    );
    assert_eq!(
        meta.repositories_with_blob(&d, 1).await.unwrap(),
        vec![(repo("a-first"), 1234)],
        "at most the limit"
    );
    assert!(meta.unlink_blob(&repo("a-first"), &d).await.unwrap());

    // Large sizes survive; beyond i64 is refused with a typed error.
    let big = digest("big");
    meta.link_blob(&other, &big, 1 << 40).await.unwrap();
    assert_eq!(
        meta.repositories_with_blob(&big, 10).await.unwrap(),
        vec![(other.clone(), 1 << 40)]
    );
    assert!(matches!(
        meta.link_blob(&other, &digest("huge"), u64::MAX).await,
        Err(MetaError::SizeTooLarge(u64::MAX))
    ));

    assert!(meta.unlink_blob(&r, &d).await.unwrap());
    assert!(!meta.unlink_blob(&r, &d).await.unwrap());
    assert!(!meta.unlink_blob(&repo("nowhere"), &d).await.unwrap());
    assert_eq!(meta.repo_blob_size(&r, &d).await.unwrap(), None);
    assert_eq!(meta.repositories_with_blob(&d, 10).await.unwrap(), vec![]);
}

pub async fn uploads_lifecycle(meta: &Meta) {
    let r = repo("up/loads");
    let started = OffsetDateTime::now_utc();
    meta.create_upload("id-1", &r, "user:t", 100).await.unwrap();
    meta.create_upload("id-2", &r, "user:t", 100).await.unwrap();
    assert!(meta.repository_exists(&r).await.unwrap());
    assert!(matches!(
        meta.create_upload("id-1", &repo("elsewhere"), "user:t", 100).await,
        Err(MetaError::UploadExists(id)) if id == "id-1"
    ));

    let u = meta.upload("id-1").await.unwrap().unwrap();
    assert_eq!(u.id, "id-1");
    assert_eq!(u.repo, r);
    // Stored to the microsecond.
    assert!(u.created_at >= started - time::Duration::microseconds(1));
    assert!(u.created_at <= OffsetDateTime::now_utc());
    assert_eq!(meta.upload("nope").await.unwrap(), None);

    let later = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let old = meta.uploads_started_before(later).await.unwrap();
    assert_eq!(
        old.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["id-1", "id-2"]
    );
    assert!(meta
        .uploads_started_before(started - time::Duration::seconds(1))
        .await
        .unwrap()
        .is_empty());

    assert!(meta.delete_upload("id-1").await.unwrap());
    assert!(!meta.delete_upload("id-1").await.unwrap());
    assert_eq!(meta.upload("id-1").await.unwrap(), None);
    assert_eq!(meta.uploads_started_before(later).await.unwrap().len(), 1);
}

pub async fn upload_sessions_are_capped_per_owner(meta: &Meta) {
    let r = repo("up/capped");
    for i in 0..3 {
        meta.create_upload(&format!("cap-a-{i}"), &r, "user:a", 3)
            .await
            .unwrap();
    }
    assert!(matches!(
        meta.create_upload("cap-a-3", &r, "user:a", 3).await,
        Err(MetaError::TooManyUploads { owner, limit: 3 }) if owner == "user:a"
    ));
    assert_eq!(
        meta.upload("cap-a-3").await.unwrap(),
        None,
        "nothing recorded"
    );
    // Another owner has a cap of its own.
    meta.create_upload("cap-b-0", &r, "addr:127.0.0.9", 3)
        .await
        .unwrap();
    // An ended session frees its place.
    assert!(meta.delete_upload("cap-a-0").await.unwrap());
    meta.create_upload("cap-a-3", &r, "user:a", 3)
        .await
        .unwrap();
}

pub async fn tags_only_point_at_manifests_of_their_repository(meta: &Meta) {
    let r = repo("fk");
    let t = tag("v1");
    let m1 = image("fk", "fk1");
    meta.put_manifest(&m1, None, &push()).await.unwrap();
    meta.put_manifest(&image("fk-other", "fk2"), None, &push())
        .await
        .unwrap();
    let promote = TagMove {
        actor: "carol".into(),
        source: TagMoveSource::Promote,
    };

    // A digest the repository does not hold: refused by the foreign key, nothing journaled.
    let unknown = digest("never-pushed");
    match meta.move_tag(&r, &t, &unknown, &promote, false).await {
        Err(MetaError::ManifestUnknown { repo, digest }) => {
            assert_eq!((repo, digest), (r.clone(), unknown.clone()));
        }
        other => panic!("expected ManifestUnknown, got {other:?}"),
    }
    // A manifest of another repository does not count either.
    assert!(matches!(
        meta.move_tag(&r, &t, &digest("fk2"), &promote, false).await,
        Err(MetaError::ManifestUnknown { .. })
    ));
    assert!(matches!(
        meta.move_tag(&repo("fk-none"), &t, &m1.digest, &promote, false)
            .await,
        Err(MetaError::ManifestUnknown { .. })
    ));
    assert!(meta.resolve_tag(&r, &t).await.unwrap().is_none());
    assert_eq!(journal_len(meta).await, 0);

    // A manifest it holds: moved and journaled once.
    assert!(meta
        .move_tag(&r, &t, &m1.digest, &promote, false)
        .await
        .unwrap());
    assert!(!meta
        .move_tag(&r, &t, &m1.digest, &promote, false)
        .await
        .unwrap());
    let rows = meta.tag_history(&r, &t).await.unwrap();
    assert_eq!(moves(&rows), [(None, Some(m1.digest.clone()))]);
    assert_eq!(rows[0].source, TagMoveSource::Promote);
    assert_eq!(rows[0].actor, "carol");

    // A failed move leaves the tag where it was.
    assert!(meta
        .move_tag(&r, &t, &unknown, &promote, false)
        .await
        .is_err());
    assert_eq!(
        meta.resolve_tag(&r, &t).await.unwrap().unwrap().digest,
        m1.digest
    );
    assert_eq!(journal_len(meta).await, 1);
}

pub async fn manifests_are_idempotent_and_deletable(meta: &Meta) {
    let r = repo("man");
    let index = NewManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        blobs: vec![],
        children: vec![digest("c1"), digest("c2"), digest("c1")],
        ..image("man", "index")
    };
    let mut dup_layers = image("man", "img");
    dup_layers.blobs.push(dup_layers.blobs[0].clone());

    assert_eq!(meta.manifest(&r, &index.digest).await.unwrap(), None);
    meta.put_manifest(&index, Some(&tag("multi")), &push())
        .await
        .unwrap();
    meta.put_manifest(&index, Some(&tag("multi")), &push())
        .await
        .unwrap();
    meta.put_manifest(&dup_layers, None, &push()).await.unwrap();

    let got = meta.manifest(&r, &index.digest).await.unwrap().unwrap();
    assert_eq!(got.digest, index.digest);
    assert_eq!(got.media_type, index.media_type);
    assert_eq!(got.size, index.size);
    assert_eq!(
        meta.resolve_tag(&r, &tag("multi")).await.unwrap(),
        Some(got.clone())
    );
    assert_eq!(
        meta.manifest(&repo("other"), &index.digest).await.unwrap(),
        None
    );
    assert_eq!(meta.resolve_tag(&r, &tag("nope")).await.unwrap(), None);

    // Delete, then push again: the references are written afresh without conflict.
    assert!(meta
        .delete_manifest(&r, &index.digest, &delete())
        .await
        .unwrap());
    assert_eq!(meta.manifest(&r, &index.digest).await.unwrap(), None);
    meta.put_manifest(&index, Some(&tag("multi")), &push())
        .await
        .unwrap();
    assert_eq!(meta.manifest(&r, &index.digest).await.unwrap(), Some(got));
    assert_eq!(
        moves(&meta.tag_history(&r, &tag("multi")).await.unwrap()),
        [
            (None, Some(index.digest.clone())),
            (Some(index.digest.clone()), None),
            (None, Some(index.digest.clone())),
        ]
    );
}

fn mirror_move() -> TagMove {
    TagMove {
        actor: "docker.io".into(),
        source: TagMoveSource::Mirror,
    }
}

/// The story: A is pinned, the upstream moves to B (drift opens, refreshes), then C
/// (B superseded), back to A (reverted), to B again, and B is promoted (accepted).
pub async fn drift_events_follow_the_upstream(meta: &Meta) {
    let (r, t) = (repo("docker.io/library/ruby"), tag("2.7"));
    let (a, b, c) = (
        image("docker.io/library/ruby", "a"),
        image("docker.io/library/ruby", "b"),
        image("docker.io/library/ruby", "c"),
    );
    // Before the tag exists locally there is nothing to drift from.
    let first = meta
        .observe_upstream(&r, &t, "docker.io", Some(&a.digest))
        .await
        .unwrap();
    assert_eq!(first.pinned, None);
    assert!(first.drift.is_none());
    assert_eq!(first.state.upstream_digest.as_ref(), Some(&a.digest));
    let since_a = first.state.upstream_since.unwrap();

    meta.put_manifest(&a, Some(&t), &mirror_move())
        .await
        .unwrap();
    for m in [&b, &c] {
        meta.put_manifest(m, None, &mirror_move()).await.unwrap();
    }
    let same = meta
        .observe_upstream(&r, &t, "docker.io", Some(&a.digest))
        .await
        .unwrap();
    assert_eq!(same.pinned.as_ref(), Some(&a.digest));
    assert!(same.drift.is_none());
    assert_eq!(
        same.state.upstream_since,
        Some(since_a),
        "unchanged upstream keeps its since"
    );

    let moved = meta
        .observe_upstream(&r, &t, "docker.io", Some(&b.digest))
        .await
        .unwrap();
    assert!(moved.new_drift);
    let event = moved.drift.unwrap();
    assert_eq!(
        (&event.pinned_digest, &event.upstream_digest),
        (&a.digest, &b.digest)
    );
    assert!(moved.state.upstream_since.unwrap() >= since_a);
    // The tag itself did not move.
    assert_eq!(
        meta.resolve_tag(&r, &t).await.unwrap().unwrap().digest,
        a.digest
    );

    let again = meta
        .observe_upstream(&r, &t, "docker.io", Some(&b.digest))
        .await
        .unwrap();
    assert!(!again.new_drift);
    let refreshed = again.drift.unwrap();
    assert_eq!(refreshed.id, event.id);
    assert!(refreshed.last_seen >= event.last_seen);
    assert_eq!(refreshed.first_seen, event.first_seen);

    // A lost tag upstream keeps the event open.
    let lost = meta
        .observe_upstream(&r, &t, "docker.io", None)
        .await
        .unwrap();
    assert_eq!(lost.state.upstream_digest, None);
    assert_eq!(meta.drift_events(true, None, 10).await.unwrap().len(), 1);

    // Upstream moves on to C: B's event is superseded, C's opens.
    let to_c = meta
        .observe_upstream(&r, &t, "docker.io", Some(&c.digest))
        .await
        .unwrap();
    assert!(to_c.new_drift);
    let all = meta.drift_events(false, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].upstream_digest, c.digest, "newest first");
    assert_eq!(all[1].resolution, Some(DriftResolution::Superseded));
    assert!(all[1].resolved_at.is_some());

    // Back to A: reverted.
    meta.observe_upstream(&r, &t, "docker.io", Some(&a.digest))
        .await
        .unwrap();
    assert!(meta.drift_events(true, None, 10).await.unwrap().is_empty());
    let last = meta.drift_events(false, None, 1).await.unwrap();
    assert_eq!(last[0].resolution, Some(DriftResolution::Reverted));

    // To B again: a new event; promoting B and observing closes it as accepted.
    let to_b = meta
        .observe_upstream(&r, &t, "docker.io", Some(&b.digest))
        .await
        .unwrap();
    let id = to_b.drift.unwrap().id;
    let explanation = serde_json::json!({"ranked": [{"package": "ca-certificates"}]});
    assert!(meta.set_drift_explanation(id, &explanation).await.unwrap());
    assert!(!meta
        .set_drift_explanation(id + 1000, &explanation)
        .await
        .unwrap());
    meta.move_tag(
        &r,
        &t,
        &b.digest,
        &TagMove {
            actor: "carol".into(),
            source: TagMoveSource::Promote,
        },
        false,
    )
    .await
    .unwrap();
    let settled = meta
        .observe_upstream(&r, &t, "docker.io", Some(&b.digest))
        .await
        .unwrap();
    assert!(settled.drift.is_none());
    let event = meta.drift_event(id).await.unwrap().unwrap();
    assert_eq!(event.resolution, Some(DriftResolution::Accepted));
    assert_eq!(event.explanation, Some(explanation));
    let history = meta.tag_history(&r, &t).await.unwrap();
    assert_eq!(
        moves(&history),
        [
            (None, Some(a.digest.clone())),
            (Some(a.digest.clone()), Some(b.digest.clone()))
        ]
    );
    assert_eq!(history[1].actor, "carol");
    assert_eq!(history[1].source, TagMoveSource::Promote);
}

pub async fn mirror_tags_due_oldest_first(meta: &Meta) {
    let r = repo("ghcr.io/org/app");
    let d = digest("x");
    meta.observe_upstream(&r, &tag("one"), "ghcr.io", Some(&d))
        .await
        .unwrap();
    meta.record_upstream_failure(&r, &tag("two"), "ghcr.io", "upstream answered 429")
        .await
        .unwrap();
    let later = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let due = meta.mirror_tags_due(later, 10).await.unwrap();
    let names: Vec<&str> = due.iter().map(|s| s.tag.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(due[1].check_error.as_deref(), Some("upstream answered 429"));
    assert_eq!(due[1].upstream_digest, None);
    assert_eq!(meta.mirror_tags_due(later, 1).await.unwrap().len(), 1);
    let earlier = OffsetDateTime::now_utc() - time::Duration::seconds(60);
    assert!(meta.mirror_tags_due(earlier, 10).await.unwrap().is_empty());
    // A failure keeps the last known digest.
    meta.record_upstream_failure(&r, &tag("one"), "ghcr.io", "connection refused")
        .await
        .unwrap();
    let one = meta.mirror_tag(&r, &tag("one")).await.unwrap().unwrap();
    assert_eq!(one.upstream_digest, Some(d));
    assert_eq!(one.check_error.as_deref(), Some("connection refused"));
}

fn local_apt_repo(name: &str) -> NewAptRepo {
    NewAptRepo {
        name: name.into(),
        kind: AptRepoKind::Local,
        upstream_url: None,
        upstream_suite: None,
        upstream_key: None,
        components: vec![],
        architectures: vec![],
    }
}

/// A listing of `name_version_arch.deb` whose content is identified by `content`.
fn listing(
    dist: &str,
    comp: &str,
    arch: &str,
    name: &str,
    version: &str,
    content: &str,
) -> AptPackage {
    AptPackage {
        distribution: dist.into(),
        component: comp.into(),
        architecture: arch.into(),
        name: name.into(),
        version: version.into(),
        path: format!("pool/{name}_{version}_{arch}.deb"),
        size: content.len() as u64,
        md5: "m".into(),
        sha1: "s".into(),
        sha256: digest(content).encoded().to_owned(),
        control: format!("Package: {name}\nVersion: {version}\n"),
    }
}

pub async fn apt_uploads_conflicts_and_publications(meta: &Meta) {
    let repo = meta.apt_create_repo(&local_apt_repo("ci")).await.unwrap();
    assert_eq!(repo.kind, AptRepoKind::Local);
    assert!(matches!(
        meta.apt_create_repo(&local_apt_repo("ci")).await,
        Err(MetaError::AptRepoExists(n)) if n == "ci"
    ));
    // One file listed in two distributions: both publications appear, live.
    let a = listing("jammy", "non-free", "amd64", "hello", "1.0-1", "hello-1");
    let b = AptPackage {
        distribution: "focal".into(),
        ..a.clone()
    };
    assert_eq!(
        meta.apt_add_packages("ci", &[a.clone(), b.clone()])
            .await
            .unwrap(),
        AptAddOutcome::Added
    );
    let publications = meta.apt_publications().await.unwrap();
    assert_eq!(publications.len(), 2);
    let jammy = meta.apt_publication("ci", "jammy").await.unwrap().unwrap();
    assert!(jammy.needs_index());
    assert_eq!(
        jammy.source,
        AptPublishSource::Repo {
            name: "ci".into(),
            distribution: "jammy".into()
        }
    );
    // The same upload again changes nothing.
    assert_eq!(
        meta.apt_add_packages("ci", std::slice::from_ref(&a))
            .await
            .unwrap(),
        AptAddOutcome::Unchanged
    );
    assert_eq!(
        meta.apt_publication("ci", "jammy")
            .await
            .unwrap()
            .unwrap()
            .change_seq,
        jammy.change_seq
    );
    // A different file at the same path: conflict, and nothing of the batch is kept.
    let other = listing(
        "jammy",
        "non-free",
        "amd64",
        "hello",
        "1.0-1",
        "hello-1-rebuilt",
    );
    let new_dist = AptPackage {
        distribution: "noble".into(),
        ..listing("x", "main", "amd64", "new", "1", "new")
    };
    let err = meta
        .apt_add_packages("ci", &[new_dist.clone(), other.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MetaError::AptPathConflict { path, .. } if path == &a.path),
        "{err}"
    );
    assert!(meta.apt_packages("ci", "noble").await.unwrap().is_empty());
    assert!(meta.apt_publication("ci", "noble").await.unwrap().is_none());
    // Same name/version/arch in the same index under another path with other content.
    let moved = AptPackage {
        path: "pool/elsewhere.deb".into(),
        ..other
    };
    assert!(matches!(
        meta.apt_add_packages("ci", &[moved]).await,
        Err(MetaError::AptPackageConflict { .. })
    ));
    assert!(matches!(
        meta.apt_add_packages("nope", std::slice::from_ref(&a))
            .await,
        Err(MetaError::AptRepoUnknown(_))
    ));
    let arm = listing("jammy", "non-free", "arm64", "hello", "1.0-1", "hello-arm");
    meta.apt_add_packages("ci", std::slice::from_ref(&arm))
        .await
        .unwrap();
    let jammy_pkgs = meta.apt_packages("ci", "jammy").await.unwrap();
    assert_eq!(jammy_pkgs, vec![a.clone(), arm.clone()]);
    assert_eq!(
        meta.apt_pool_file("ci", &a.path).await.unwrap(),
        Some((a.sha256.clone(), a.size))
    );
    assert_eq!(
        meta.apt_repo_file("ci", &arm.path)
            .await
            .unwrap()
            .unwrap()
            .0,
        arm.sha256
    );
    assert_eq!(
        meta.apt_pool_file("ci", "pool/none.deb").await.unwrap(),
        None
    );
    assert_eq!(meta.apt_pool_file("other", &a.path).await.unwrap(), None);
}

pub async fn apt_snapshots_are_frozen_and_publications_switch(meta: &Meta) {
    meta.apt_create_repo(&local_apt_repo("up")).await.unwrap();
    let v1 = listing("stable", "main", "amd64", "containerd.io", "1.2.13-1", "c1");
    meta.apt_add_packages("up", std::slice::from_ref(&v1))
        .await
        .unwrap();
    let snap1 = meta
        .apt_create_snapshot("s1", "up", "stable")
        .await
        .unwrap();
    assert_eq!(snap1.packages, 1);
    assert!(matches!(
        meta.apt_create_snapshot("s1", "up", "stable").await,
        Err(MetaError::AptSnapshotExists(_))
    ));
    let v2 = listing("stable", "main", "amd64", "containerd.io", "1.2.13-2", "c2");
    meta.apt_add_packages("up", std::slice::from_ref(&v2))
        .await
        .unwrap();
    meta.apt_create_snapshot("s2", "up", "stable")
        .await
        .unwrap();
    // s1 still holds only -1.
    let s1 = meta.apt_snapshot_packages("s1").await.unwrap();
    assert_eq!(s1, vec![v1.clone()]);
    assert_eq!(meta.apt_snapshot_packages("s2").await.unwrap().len(), 2);
    assert!(matches!(
        meta.apt_snapshot_packages("s3").await,
        Err(MetaError::AptSnapshotUnknown(_))
    ));
    // Publish s1 under another prefix, then switch to s2.
    let p = meta
        .apt_publish(
            "hosts",
            "stable",
            &AptPublishSource::Snapshot { name: "s1".into() },
        )
        .await
        .unwrap();
    assert_eq!(
        meta.apt_publication_packages(&p).await.unwrap(),
        vec![v1.clone()]
    );
    assert_eq!(
        meta.apt_pool_file("hosts", &v1.path)
            .await
            .unwrap()
            .unwrap()
            .0,
        v1.sha256
    );
    // Not published under hosts yet: -2 is not served there.
    assert_eq!(meta.apt_pool_file("hosts", &v2.path).await.unwrap(), None);
    let switched = meta
        .apt_publish(
            "hosts",
            "stable",
            &AptPublishSource::Snapshot { name: "s2".into() },
        )
        .await
        .unwrap();
    assert_eq!(switched.id, p.id);
    assert!(switched.change_seq > p.change_seq);
    assert_eq!(
        meta.apt_publication_packages(&switched)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(meta
        .apt_pool_file("hosts", &v2.path)
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        meta.apt_publish(
            "hosts",
            "stable",
            &AptPublishSource::Snapshot { name: "zz".into() }
        )
        .await,
        Err(MetaError::AptSnapshotUnknown(_))
    ));
    // An upload to the repository does not change a snapshot publication.
    let before = meta
        .apt_publication("hosts", "stable")
        .await
        .unwrap()
        .unwrap();
    meta.apt_add_packages("up", &[listing("stable", "main", "amd64", "x", "1", "x")])
        .await
        .unwrap();
    assert_eq!(
        meta.apt_publication("hosts", "stable")
            .await
            .unwrap()
            .unwrap()
            .change_seq,
        before.change_seq
    );
}

pub async fn apt_index_generations_are_kept_and_pruned(meta: &Meta) {
    meta.apt_create_repo(&local_apt_repo("r")).await.unwrap();
    meta.apt_add_packages("r", &[listing("d", "main", "amd64", "p", "1", "p")])
        .await
        .unwrap();
    let p = meta.apt_publication("r", "d").await.unwrap().unwrap();
    let file = |g: u64| AptIndexFile {
        path: "Release".into(),
        sha256: digest(&format!("release-{g}")).encoded().to_owned(),
        size: g,
    };
    for g in 1..=5u64 {
        let generation = meta
            .apt_record_indices(p.id, p.change_seq, &[file(g)])
            .await
            .unwrap();
        assert_eq!(generation, g as i64);
    }
    let now = meta.apt_publication("r", "d").await.unwrap().unwrap();
    assert!(!now.needs_index());
    assert_eq!(meta.apt_index_files(p.id).await.unwrap(), vec![file(5)]);
    // Generations 3, 4, 5 are kept for by-hash; 1 and 2 are gone.
    for g in 1..=5u64 {
        let found = meta.apt_index_by_hash(p.id, &file(g).sha256).await.unwrap();
        assert_eq!(found.is_some(), g >= 3, "generation {g}");
    }
    // The files of generations 1 and 2 are garbage once nothing references them.
    let later = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let garbage = meta.apt_index_garbage(later, 100).await.unwrap();
    let mut want = vec![file(1).sha256, file(2).sha256];
    want.sort();
    let mut got = garbage.clone();
    got.sort();
    assert_eq!(got, want);
    // Not before their grace period has passed.
    let long_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(meta
        .apt_index_garbage(long_ago, 100)
        .await
        .unwrap()
        .is_empty());
    meta.apt_forget_garbage(&garbage, later).await.unwrap();
    assert!(meta.apt_index_garbage(later, 100).await.unwrap().is_empty());
    // Built from an older state: recorded, but still marked for reindexing.
    meta.apt_add_packages("r", &[listing("d", "main", "amd64", "q", "1", "q")])
        .await
        .unwrap();
    meta.apt_record_indices(p.id, now.change_seq, &[file(6)])
        .await
        .unwrap();
    assert!(meta
        .apt_publication("r", "d")
        .await
        .unwrap()
        .unwrap()
        .needs_index());
}

pub async fn apt_mirror_replace_and_repo_errors(meta: &Meta) {
    let mirror = NewAptRepo {
        name: "debian".into(),
        kind: AptRepoKind::Mirror,
        upstream_url: Some("http://127.0.0.1:1/debian".into()),
        upstream_suite: Some("stable".into()),
        upstream_key: None,
        components: vec!["main".into()],
        architectures: vec!["amd64".into(), "arm64".into()],
    };
    let created = meta.apt_create_repo(&mirror).await.unwrap();
    assert_eq!(created.architectures, ["amd64", "arm64"]);
    assert_eq!(meta.apt_repos().await.unwrap(), vec![created]);
    // A mirror without an upstream is refused by the schema.
    let broken = NewAptRepo {
        name: "broken".into(),
        upstream_url: None,
        ..mirror
    };
    assert!(meta.apt_create_repo(&broken).await.is_err());
    assert!(meta.apt_repo("broken").await.unwrap().is_none());
    let v1 = listing("stable", "main", "amd64", "a", "1", "a1");
    let v2 = listing("stable", "main", "amd64", "a", "2", "a2");
    assert!(meta
        .apt_replace_packages("debian", "stable", std::slice::from_ref(&v1))
        .await
        .unwrap());
    assert!(!meta
        .apt_replace_packages("debian", "stable", std::slice::from_ref(&v1))
        .await
        .unwrap());
    meta.apt_create_snapshot("m1", "debian", "stable")
        .await
        .unwrap();
    assert!(meta
        .apt_replace_packages("debian", "stable", std::slice::from_ref(&v2))
        .await
        .unwrap());
    assert_eq!(
        meta.apt_packages("debian", "stable").await.unwrap(),
        vec![v2]
    );
    assert_eq!(meta.apt_snapshot_packages("m1").await.unwrap(), vec![v1]);
    assert!(matches!(
        meta.apt_replace_packages("nope", "stable", &[]).await,
        Err(MetaError::AptRepoUnknown(_))
    ));
}

/// What a backup copies and `pinfold verify` checks: every blob the metadata needs, each once,
/// with who needs it; history-only digests are not required.
pub async fn blob_references_name_every_needed_blob(meta: &Meta) {
    let m1 = image("refs-a", "one");
    let m2 = image("refs-a", "two");
    meta.put_manifest(&m1, Some(&tag("v")), &push())
        .await
        .unwrap();
    // m1 leaves the tag (the journal keeps its digest) and is deleted.
    meta.put_manifest(&m2, Some(&tag("v")), &push())
        .await
        .unwrap();
    meta.delete_manifest(&repo("refs-a"), &m1.digest, &delete())
        .await
        .unwrap();
    meta.link_blob(&repo("refs-b"), &digest("loose"), 7)
        .await
        .unwrap();
    let refs = meta.blob_references().await.unwrap();
    let find = |d: &Digest| refs.iter().find(|r| &r.digest == d);
    let manifest = find(&m2.digest).expect("manifest listed");
    assert!(manifest.required);
    assert!(
        manifest.referrer.contains("refs-a@"),
        "{}",
        manifest.referrer
    );
    for blob in &m2.blobs {
        assert!(find(blob).expect("layer listed").required);
    }
    assert!(find(&digest("loose")).expect("linked blob listed").required);
    let history = find(&m1.digest).expect("journal digest listed");
    assert!(!history.required, "only the journal names it now");
    let mut digests: Vec<_> = refs.iter().map(|r| r.digest.clone()).collect();
    let count = digests.len();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), count, "each digest once");
}

pub async fn tokens_are_found_by_hash_listed_and_revoked(meta: &Meta) {
    use pinfold_meta::ApiToken;
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let make = |id: &str, user: &str, hash: &str| ApiToken {
        id: id.into(),
        user: user.into(),
        secret_sha256: hash.into(),
        scope: "repository:team/*:pull,push".into(),
        created_at: now,
        expires_at: Some(now + time::Duration::days(30)),
        revoked_at: None,
    };
    meta.create_token(&make("t1", "alice", "aa")).await.unwrap();
    meta.create_token(&make("t2", "bob", "bb")).await.unwrap();
    // The same secret hash twice is refused: a hash names exactly one token.
    assert!(meta.create_token(&make("t3", "bob", "aa")).await.is_err());
    let found = meta.token_by_secret_hash("aa").await.unwrap().unwrap();
    assert_eq!(found, make("t1", "alice", "aa"));
    assert!(meta.token_by_secret_hash("cc").await.unwrap().is_none());
    assert_eq!(meta.list_tokens(None).await.unwrap().len(), 2);
    let bobs = meta.list_tokens(Some("bob")).await.unwrap();
    assert_eq!(
        bobs.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t2"]
    );
    let later = now + time::Duration::hours(1);
    let before = meta.revoke_token("t1", later).await.unwrap().unwrap();
    assert_eq!(before.revoked_at, None);
    // Revoking again keeps the first time.
    meta.revoke_token("t1", later + time::Duration::hours(1))
        .await
        .unwrap();
    let after = meta.token_by_secret_hash("aa").await.unwrap().unwrap();
    assert_eq!(after.revoked_at, Some(later));
    assert!(meta.revoke_token("nope", later).await.unwrap().is_none());
}

pub async fn audit_log_filters_and_is_append_only(meta: &Meta) {
    use pinfold_meta::NewAuditEvent;
    for (actor, action) in [
        ("alice", "push"),
        ("bob", "delete"),
        ("alice", "token-create"),
    ] {
        meta.append_audit(&NewAuditEvent {
            actor: actor.into(),
            client: "127.0.0.1".into(),
            action: action.into(),
            target: "team/app:v1".into(),
            outcome: "ok".into(),
        })
        .await
        .unwrap();
    }
    let all = meta.audit_events(None, None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["push", "delete", "token-create"]
    );
    let alice = meta.audit_events(None, Some("alice"), 100).await.unwrap();
    assert_eq!(alice.len(), 2);
    assert_eq!(meta.audit_events(None, None, 1).await.unwrap().len(), 1);
    let future = OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert!(meta
        .audit_events(Some(future), None, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(all[0].at <= all[2].at);
}

/// A GC pass with no grace period; the journal protects what it names only with
/// `journal_forever` (otherwise rows older than now have left their retention).
async fn collect(meta: &Meta, journal_forever: bool, dry_run: bool) -> GcSweep {
    let cutoff = move |_: &str| (!journal_forever).then(OffsetDateTime::now_utc);
    let policy = GcPolicy {
        grace: std::time::Duration::ZERO,
        journal_cutoff: &cutoff,
        batch: 2,
    };
    meta.gc_collect(&policy, dry_run).await.unwrap()
}

fn swept(sweep: &GcSweep, kind: GcKind) -> Vec<Digest> {
    let mut out: Vec<Digest> = sweep
        .deleted
        .iter()
        .filter(|i| i.kind == kind)
        .map(|i| i.digest.clone())
        .collect();
    out.sort();
    out
}

fn sorted(mut digests: Vec<Digest>) -> Vec<Digest> {
    digests.sort();
    digests
}

/// The triggers that enqueue GC candidates fire again and again for the same pair (a blob
/// linked twice, a tag moved away and back, a manifest deleted and pushed again): every write
/// still succeeds (migration 0006 once failed manifest pushes with a UNIQUE violation here).
pub async fn gc_candidates_tolerate_repeated_references(meta: &Meta) {
    let (r, t) = (repo("gc/app"), tag("v1"));
    let (a, b) = (image("gc/app", "a"), image("gc/app", "b"));
    for m in [&a, &b] {
        for blob in &m.blobs {
            meta.link_blob(&r, blob, 10).await.unwrap();
            meta.link_blob(&r, blob, 10).await.unwrap();
        }
    }
    for _ in 0..3 {
        meta.put_manifest_checked(&a, Some(&t), &push(), false)
            .await
            .unwrap();
        meta.put_manifest_checked(&b, Some(&t), &push(), false)
            .await
            .unwrap();
        meta.put_manifest_checked(&b, Some(&t), &push(), false)
            .await
            .unwrap();
    }
    meta.delete_tag(&r, &t, &delete()).await.unwrap();
    meta.delete_manifest(&r, &a.digest, &delete())
        .await
        .unwrap();
    meta.put_manifest_checked(&a, Some(&t), &push(), false)
        .await
        .unwrap();
    meta.delete_manifest(&r, &a.digest, &delete())
        .await
        .unwrap();
    meta.put_manifest(&a, None, &push()).await.unwrap();
    // One row per (repository, digest, kind) at most: 2 manifests and 4 blobs.
    assert_eq!(meta.gc_pending().await.unwrap(), 6);

    // A manifest that names a blob the repository does not hold is refused, recording nothing.
    let orphan = image("gc/app", "orphan");
    match meta
        .put_manifest_checked(&orphan, Some(&tag("o")), &push(), false)
        .await
    {
        Err(MetaError::ReferencesMissing { missing, .. }) => {
            assert_eq!(missing, orphan.blobs[0].to_string())
        }
        other => panic!("expected ReferencesMissing, got {other:?}"),
    }
    assert!(meta.manifest(&r, &orphan.digest).await.unwrap().is_none());

    // An immutable tag: the same digest again is fine, another is refused in the transaction.
    meta.put_manifest_checked(&a, Some(&tag("frozen")), &push(), true)
        .await
        .unwrap();
    meta.put_manifest_checked(&a, Some(&tag("frozen")), &push(), true)
        .await
        .unwrap();
    match meta
        .put_manifest_checked(&b, Some(&tag("frozen")), &push(), true)
        .await
    {
        Err(MetaError::TagImmutable {
            current, refused, ..
        }) => {
            assert_eq!(current, a.digest.to_string());
            assert_eq!(refused, b.digest.to_string());
        }
        other => panic!("expected TagImmutable, got {other:?}"),
    }
    // A promotion too: the same digest is no move, another is refused under the tag's lock.
    let promote = TagMove {
        actor: "carol".into(),
        source: TagMoveSource::Promote,
    };
    assert!(!meta
        .move_tag(&r, &tag("frozen"), &a.digest, &promote, true)
        .await
        .unwrap());
    match meta
        .move_tag(&r, &tag("frozen"), &b.digest, &promote, true)
        .await
    {
        Err(MetaError::TagImmutable { current, .. }) => assert_eq!(current, a.digest.to_string()),
        other => panic!("expected TagImmutable, got {other:?}"),
    }
    assert_eq!(
        meta.resolve_tag(&r, &tag("frozen"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        a.digest
    );
    assert_eq!(meta.tag_history(&r, &tag("frozen")).await.unwrap().len(), 1);
    // An immutable tag not set yet takes its first digest.
    assert!(meta
        .move_tag(&r, &tag("frozen-new"), &b.digest, &promote, true)
        .await
        .unwrap());
}

/// Untagged manifests and unreferenced blob links go (with their cascades, in one run); tagged
/// ones, their blobs and what the journal names while it is kept stay. A dry run reports the
/// same and changes nothing.
pub async fn gc_collects_only_what_nothing_protects(meta: &Meta) {
    let r = repo("gc/app");
    let (tagged, moved_away, untagged) = (
        image("gc/app", "tagged"),
        image("gc/app", "moved"),
        image("gc/app", "untagged"),
    );
    for m in [&tagged, &moved_away, &untagged] {
        for blob in &m.blobs {
            meta.link_blob(&r, blob, 10).await.unwrap();
        }
    }
    let lone = digest("lone");
    meta.link_blob(&r, &lone, 10).await.unwrap();
    meta.put_manifest_checked(&moved_away, Some(&tag("v1")), &push(), false)
        .await
        .unwrap();
    meta.put_manifest_checked(&tagged, Some(&tag("v1")), &push(), false)
        .await
        .unwrap();
    meta.put_manifest_checked(&untagged, None, &push(), false)
        .await
        .unwrap();
    let pending = meta.gc_pending().await.unwrap();

    // The journal kept for ever protects the manifest v1 moved away from.
    let sweep = collect(meta, true, true).await;
    assert_eq!(
        swept(&sweep, GcKind::Manifest),
        vec![untagged.digest.clone()]
    );
    let mut blobs = untagged.blobs.clone();
    blobs.push(lone.clone());
    assert_eq!(swept(&sweep, GcKind::Blob), sorted(blobs.clone()));
    assert_eq!(sorted(sweep.unreferenced.clone()), {
        let mut all = blobs.clone();
        all.push(untagged.digest.clone());
        sorted(all)
    });
    // Dry: nothing changed.
    assert_eq!(meta.gc_pending().await.unwrap(), pending);
    assert!(meta.manifest(&r, &untagged.digest).await.unwrap().is_some());
    assert!(meta.gc_digest_referenced(&lone).await.unwrap());

    let sweep = collect(meta, true, false).await;
    assert_eq!(
        swept(&sweep, GcKind::Manifest),
        vec![untagged.digest.clone()]
    );
    assert_eq!(swept(&sweep, GcKind::Blob), sorted(blobs));
    assert_eq!(
        sweep.kept, 1,
        "the journaled manifest waits for a later run"
    );
    assert!(meta.manifest(&r, &untagged.digest).await.unwrap().is_none());
    assert!(!meta.gc_digest_referenced(&lone).await.unwrap());
    assert!(meta
        .manifest(&r, &moved_away.digest)
        .await
        .unwrap()
        .is_some());

    // Once the journal no longer protects it, it goes with its blobs; the tagged one stays.
    let sweep = collect(meta, false, false).await;
    assert_eq!(
        swept(&sweep, GcKind::Manifest),
        vec![moved_away.digest.clone()]
    );
    assert_eq!(
        swept(&sweep, GcKind::Blob),
        sorted(moved_away.blobs.clone())
    );
    assert!(meta.manifest(&r, &tagged.digest).await.unwrap().is_some());
    for blob in &tagged.blobs {
        assert!(meta.gc_digest_referenced(blob).await.unwrap());
    }
    assert_eq!(meta.gc_pending().await.unwrap(), 0);
    assert_eq!(collect(meta, false, false).await.examined, 0);
}

/// A mirror pin (`mirror_tags.upstream_digest`) and a drift event protect the digests they
/// name even when no tag does.
pub async fn gc_keeps_digests_named_by_drift_events_and_pins(meta: &Meta) {
    let name = "docker.io/library/gcpin";
    let (r, t) = (repo(name), tag("1"));
    let (pinned, upstream, stray) = (image(name, "p"), image(name, "u"), image(name, "s"));
    meta.put_manifest(&pinned, Some(&t), &mirror_move())
        .await
        .unwrap();
    for m in [&upstream, &stray] {
        meta.put_manifest(m, None, &mirror_move()).await.unwrap();
    }
    meta.observe_upstream(&r, &t, "docker.io", Some(&pinned.digest))
        .await
        .unwrap();
    let moved = meta
        .observe_upstream(&r, &t, "docker.io", Some(&upstream.digest))
        .await
        .unwrap();
    assert!(moved.new_drift);

    let sweep = collect(meta, false, false).await;
    assert_eq!(swept(&sweep, GcKind::Manifest), vec![stray.digest.clone()]);
    assert!(meta.manifest(&r, &upstream.digest).await.unwrap().is_some());
    assert!(meta.manifest(&r, &pinned.digest).await.unwrap().is_some());
    assert!(sweep.kept >= 1);
}

/// What a restore checks of its target: a freshly migrated database counts as empty (the
/// migrations' own rows aside); one recorded manifest makes it not.
pub async fn a_fresh_database_is_empty_until_something_is_recorded(meta: &Meta) {
    assert_eq!(meta.first_nonempty_table().await.unwrap(), None);
    meta.put_manifest(&image("team/app", "e1"), None, &push())
        .await
        .unwrap();
    let table = meta.first_nonempty_table().await.unwrap();
    assert!(
        matches!(
            table.as_deref(),
            Some("manifests" | "repositories" | "gc_candidates")
        ),
        "{table:?}"
    );
}

pub async fn one_holder_per_lease_until_it_lapses(meta: &Meta) {
    use std::time::Duration;
    let long = Duration::from_secs(30);
    assert!(meta.acquire_lease("gc", "replica-a", long).await.unwrap());
    assert!(!meta.acquire_lease("gc", "replica-b", long).await.unwrap());
    // Renewing is taking it again.
    assert!(meta.acquire_lease("gc", "replica-a", long).await.unwrap());
    // Another worker's lease is another row.
    assert!(meta
        .acquire_lease("backup", "replica-b", long)
        .await
        .unwrap());
    // Releasing someone else's lease does nothing.
    meta.release_lease("gc", "replica-b").await.unwrap();
    assert!(!meta.acquire_lease("gc", "replica-b", long).await.unwrap());
    let leases = meta.leases().await.unwrap();
    let holders: Vec<(&str, &str)> = leases
        .iter()
        .map(|l| (l.name.as_str(), l.holder.as_str()))
        .collect();
    assert_eq!(holders, [("backup", "replica-b"), ("gc", "replica-a")]);
    assert!(leases[1].expires_at > OffsetDateTime::now_utc());
    // A lapsed lease goes to whoever asks next.
    assert!(meta
        .acquire_lease("gc", "replica-a", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(meta.acquire_lease("gc", "replica-b", long).await.unwrap());
    assert!(!meta.acquire_lease("gc", "replica-a", long).await.unwrap());
    // A released lease too, at once.
    meta.release_lease("gc", "replica-b").await.unwrap();
    assert!(meta.acquire_lease("gc", "replica-a", long).await.unwrap());
}
