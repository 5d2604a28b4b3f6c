//! The comparison itself, over layer indexes already read: config field by field, layers and
//! history as sequences, packages by [`PackageKey`], and the final filesystems path by path
//! (one merge walk over two sorted maps).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::explain::explain;
use super::{
    ConfigChange, DiffReport, FileChange, FileChangeKind, FileDiff, ImageSummary, LayerDiff,
    LayerRef, LayerSummary, PackageChange, PackageChangeKind, REPORT_FORMAT,
};
use crate::image::{Image, ImageConfig};
use crate::layer::fs::FsView;
use crate::layer::{FileEntry, LayerIndex};
use crate::packages::{compare_versions, PackageKey};

/// Compares image `a` (with its layers' indexes, in order) to image `b`.
pub fn compare(
    a: &Image,
    a_layers: &[&LayerIndex],
    b: &Image,
    b_layers: &[&LayerIndex],
) -> DiffReport {
    let view_a = FsView::build(a_layers);
    let view_b = FsView::build(b_layers);
    let config = compare_config(&a.config, &b.config);
    let layers = compare_layers(a, a_layers, b, b_layers);
    let packages = compare_packages(&view_a, &view_b, b);
    let files = compare_files(&view_a, &view_b, b);
    let explanation = explain(&config, &packages, &files, &layers, &view_a, &view_b, b);
    let equal = config.is_empty()
        && packages.is_empty()
        && files.changes.is_empty()
        && layers.a_only.is_empty()
        && layers.b_only.is_empty()
        && layers.history_a_only.is_empty()
        && layers.history_b_only.is_empty();
    DiffReport {
        format: REPORT_FORMAT,
        a: summary(a, &view_a),
        b: summary(b, &view_b),
        equal,
        config,
        layers,
        packages,
        files,
        explanation,
    }
}

fn summary(image: &Image, view: &FsView<'_>) -> ImageSummary {
    let c = &image.config;
    let mut platform = format!("{}/{}", c.os, c.architecture);
    if let Some(v) = &c.variant {
        platform.push('/');
        platform.push_str(v);
    }
    ImageSummary {
        name: image.name.clone(),
        manifest_digest: image.manifest_digest.clone(),
        config_digest: image.config_digest.clone(),
        platform,
        layers: image.layers.len(),
        files: view.len(),
        packages: view.packages().len(),
    }
}

/// The [`LayerRef`] of layer `index` of `image`.
pub(super) fn layer_ref(image: &Image, index: usize) -> Option<LayerRef> {
    image.layers.get(index).map(|l| LayerRef {
        index,
        digest: l.digest.clone(),
        created_by: l.created_by.clone(),
    })
}

fn joined(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_else(|_| v.join(" ")))
}

/// The last history step of `config` that mentions all of `words` (case-sensitive), as the
/// place a setting was made.
fn step_naming(config: &ImageConfig, words: &[&str]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    config
        .history
        .iter()
        .rev()
        .filter_map(|h| h.created_by.as_deref())
        .find(|c| words.iter().all(|w| c.contains(w)))
        .map(str::to_owned)
}

fn compare_config(a: &ImageConfig, b: &ImageConfig) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    let mut push = |field: &str,
                    key: Option<String>,
                    va: Option<String>,
                    vb: Option<String>,
                    words: &[&str]| {
        if va != vb {
            out.push(ConfigChange {
                field: field.to_owned(),
                key,
                a: va,
                b: vb,
                step: step_naming(b, words),
            });
        }
    };
    push("os", None, Some(a.os.clone()), Some(b.os.clone()), &[]);
    push(
        "architecture",
        None,
        Some(a.architecture.clone()),
        Some(b.architecture.clone()),
        &[],
    );
    push("variant", None, a.variant.clone(), b.variant.clone(), &[]);
    let default = Default::default();
    let ca = a.config.as_ref().unwrap_or(&default);
    let cb = b.config.as_ref().unwrap_or(&default);
    let (env_a, env_b) = (a.env(), b.env());
    let keys: BTreeSet<&String> = env_a.keys().chain(env_b.keys()).collect();
    for key in keys {
        push(
            "Env",
            Some(key.clone()),
            env_a.get(key).cloned(),
            env_b.get(key).cloned(),
            &["ENV", key],
        );
    }
    push(
        "User",
        None,
        ca.user.clone().filter(|u| !u.is_empty()),
        cb.user.clone().filter(|u| !u.is_empty()),
        &["USER"],
    );
    push(
        "Entrypoint",
        None,
        joined(&ca.entrypoint),
        joined(&cb.entrypoint),
        &["ENTRYPOINT"],
    );
    push("Cmd", None, joined(&ca.cmd), joined(&cb.cmd), &["CMD"]);
    push(
        "Shell",
        None,
        joined(&ca.shell),
        joined(&cb.shell),
        &["SHELL"],
    );
    push(
        "WorkingDir",
        None,
        ca.working_dir.clone().filter(|w| !w.is_empty()),
        cb.working_dir.clone().filter(|w| !w.is_empty()),
        &["WORKDIR"],
    );
    push(
        "StopSignal",
        None,
        ca.stop_signal.clone(),
        cb.stop_signal.clone(),
        &["STOPSIGNAL"],
    );
    for (field, word, ma, mb) in [
        (
            "ExposedPorts",
            "EXPOSE",
            &ca.exposed_ports,
            &cb.exposed_ports,
        ),
        ("Volumes", "VOLUME", &ca.volumes, &cb.volumes),
    ] {
        let empty = BTreeMap::new();
        let (ma, mb) = (ma.as_ref().unwrap_or(&empty), mb.as_ref().unwrap_or(&empty));
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for key in keys {
            let present = |m: &BTreeMap<String, serde_json::Value>| {
                m.contains_key(key).then(|| "present".to_owned())
            };
            push(field, Some(key.clone()), present(ma), present(mb), &[word]);
        }
    }
    let empty = BTreeMap::new();
    let la = ca.labels.as_ref().unwrap_or(&empty);
    let lb = cb.labels.as_ref().unwrap_or(&empty);
    let keys: BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    for key in keys {
        push(
            "Labels",
            Some(key.clone()),
            la.get(key).cloned(),
            lb.get(key).cloned(),
            &["LABEL", key],
        );
    }
    out
}

fn compare_layers(
    a: &Image,
    a_layers: &[&LayerIndex],
    b: &Image,
    b_layers: &[&LayerIndex],
) -> LayerDiff {
    // The uncompressed digest identifies content across compressions (a registry's gzip layer
    // and `docker save`'s plain tar of it); fall back to the blob digest without one.
    let same = |i: usize| {
        let (la, lb) = (&a.layers[i], &b.layers[i]);
        match (&la.diff_id, &lb.diff_id) {
            (Some(x), Some(y)) => x == y,
            _ => la.digest == lb.digest,
        }
    };
    let shared = (0..a.layers.len().min(b.layers.len()))
        .take_while(|&i| same(i))
        .count();
    let summarize = |image: &Image, indexes: &[&LayerIndex], from: usize| -> Vec<LayerSummary> {
        image
            .layers
            .iter()
            .skip(from)
            .map(|l| {
                let ix = indexes.get(l.index);
                LayerSummary {
                    layer: LayerRef {
                        index: l.index,
                        digest: l.digest.clone(),
                        created_by: l.created_by.clone(),
                    },
                    diff_id: l.diff_id.clone(),
                    size: l.size.or(ix.map(|i| i.compressed_size)).unwrap_or(0),
                    entries: ix
                        .map(|i| i.entries.len() + i.whiteouts.len() + i.opaque_dirs.len())
                        .unwrap_or(0),
                }
            })
            .collect()
    };
    let steps = |c: &ImageConfig| -> Vec<String> {
        c.history
            .iter()
            .map(|h| h.created_by.clone().unwrap_or_default())
            .collect()
    };
    let (ha, hb) = (steps(&a.config), steps(&b.config));
    let shared_history = ha.iter().zip(&hb).take_while(|(x, y)| x == y).count();
    LayerDiff {
        shared_prefix: shared,
        a_only: summarize(a, a_layers, shared),
        b_only: summarize(b, b_layers, shared),
        history_a_only: ha[shared_history..].to_vec(),
        history_b_only: hb[shared_history..].to_vec(),
    }
}

fn compare_packages(va: &FsView<'_>, vb: &FsView<'_>, b: &Image) -> Vec<PackageChange> {
    let (pa, pb) = (va.packages(), vb.packages());
    let keys: BTreeSet<&PackageKey> = pa.keys().chain(pb.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (old, new) = (pa.get(key), pb.get(key));
        let (change, layer) = match (old, new) {
            (Some(o), Some(n)) => {
                if o.package.version == n.package.version {
                    continue;
                }
                let kind =
                    match compare_versions(key.ecosystem, &o.package.version, &n.package.version) {
                        Some(Ordering::Less) => PackageChangeKind::Upgraded,
                        Some(Ordering::Greater) => PackageChangeKind::Downgraded,
                        _ => PackageChangeKind::Changed,
                    };
                (kind, Some(n.layer))
            }
            (None, Some(n)) => (PackageChangeKind::Added, Some(n.layer)),
            (Some(_), None) => (PackageChangeKind::Removed, vb.package_removed_by(key)),
            (None, None) => continue,
        };
        out.push(PackageChange {
            ecosystem: key.ecosystem,
            name: key.name.clone(),
            architecture: key.architecture.clone(),
            location: key.location.clone(),
            change,
            a: old.map(|p| p.package.version.clone()),
            b: new.map(|p| p.package.version.clone()),
            layer: layer.and_then(|i| layer_ref(b, i)),
        });
    }
    out
}

/// Which properties of a path differ.
pub(super) fn differing_fields(a: &FileEntry, b: &FileEntry) -> Vec<String> {
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push("type".to_owned());
    }
    if a.kind == b.kind && a.size != b.size {
        out.push("size".to_owned());
    }
    if a.mode != b.mode {
        out.push("mode".to_owned());
    }
    if a.uid != b.uid || a.gid != b.gid {
        out.push("owner".to_owned());
    }
    if a.sha256 != b.sha256 {
        out.push("content".to_owned());
    }
    if a.link_target != b.link_target {
        out.push("target".to_owned());
    }
    out
}

fn compare_files(va: &FsView<'_>, vb: &FsView<'_>, b: &Image) -> FileDiff {
    let mut changes = Vec::new();
    let (mut added, mut removed, mut modified) = (0, 0, 0);
    let mut ia = va.files().peekable();
    let mut ib = vb.files().peekable();
    // A merge walk: each turn advances at least one of two finite sorted iterators.
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
        };
        match order {
            Ordering::Less => {
                let Some((path, placed)) = ia.next() else {
                    break;
                };
                removed += 1;
                changes.push(FileChange {
                    path: format!("/{path}"),
                    change: FileChangeKind::Removed,
                    fields: Vec::new(),
                    a: Some(placed.entry.clone()),
                    b: None,
                    layer: vb.removed_by(path).and_then(|i| layer_ref(b, i)),
                });
            }
            Ordering::Greater => {
                let Some((path, placed)) = ib.next() else {
                    break;
                };
                added += 1;
                changes.push(FileChange {
                    path: format!("/{path}"),
                    change: FileChangeKind::Added,
                    fields: Vec::new(),
                    a: None,
                    b: Some(placed.entry.clone()),
                    layer: layer_ref(b, placed.layer),
                });
            }
            Ordering::Equal => {
                let (Some((path, pa)), Some((_, pb))) = (ia.next(), ib.next()) else {
                    break;
                };
                let fields = differing_fields(pa.entry, pb.entry);
                if fields.is_empty() {
                    continue;
                }
                modified += 1;
                changes.push(FileChange {
                    path: format!("/{path}"),
                    change: FileChangeKind::Modified,
                    fields,
                    a: Some(pa.entry.clone()),
                    b: Some(pb.entry.clone()),
                    layer: layer_ref(b, pb.layer),
                });
            }
        }
    }
    FileDiff {
        added,
        removed,
        modified,
        changes,
    }
}
