//! The explanation: every change sorted into a [`Category`] by how likely it is to break a build
//! or a running service, most likely first, each naming the layer of the new image it came from.
//!
//! The order encodes experience with broken rebuilds (DESIGN.md, stories 1 and 3): a moved
//! trust store or TLS library breaks connections at runtime with no build error; libc changes
//! break native code; tzdata, `/etc/localtime` and `TZ` shift dates; the `/bin/sh` target changes
//! what every shell-form instruction means; users and permissions break file access. Everything
//! else follows. Within a category: packages, then settings, then files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::compare::layer_ref;
use super::{
    ConfigChange, Explanation, ExplanationItem, FileChange, FileChangeKind, FileDiff, LayerDiff,
    LayerRef, PackageChange, PackageChangeKind,
};
use crate::image::Image;
use crate::layer::fs::FsView;
use crate::packages::Ecosystem;

/// Why a change ranks where it does, most likely to break first (the derived order is the rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// CA certificates: `ca-certificates`, `/etc/ssl/certs`, `/etc/pki/ca-trust`, certifi.
    TrustStore,
    /// TLS and crypto libraries: openssl, libssl, libcrypto, gnutls, libgcrypt, nss, nettle.
    TlsCrypto,
    /// The C library and dynamic loader: libc6, glibc, musl.
    Libc,
    /// Time zone data and setting: tzdata, `/usr/share/zoneinfo`, `/etc/localtime`, `TZ`.
    Timezone,
    /// The shell: what `/bin/sh` is, `SHELL`, dash/bash/busybox.
    Shell,
    /// Users, groups and permissions: `/etc/passwd`, `/etc/group`, `USER`, owner and mode changes.
    UsersPermissions,
    /// Everything else.
    Other,
}

impl Category {
    /// A short title for reports.
    pub fn title(self) -> &'static str {
        match self {
            Category::TrustStore => "trust store",
            Category::TlsCrypto => "TLS/crypto library",
            Category::Libc => "libc",
            Category::Timezone => "time zone",
            Category::Shell => "shell",
            Category::UsersPermissions => "users and permissions",
            Category::Other => "other",
        }
    }
}

/// The category of a package by name.
pub fn package_category(ecosystem: Ecosystem, name: &str) -> Category {
    let n = name.to_ascii_lowercase();
    let os = ecosystem.is_os();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| n.starts_with(p));
    if (os && starts(&["ca-certificates"])) || (ecosystem == Ecosystem::Python && n == "certifi") {
        return Category::TrustStore;
    }
    if os
        && (n == "openssl"
            || n == "nss"
            || n == "nettle"
            || starts(&[
                "openssl-",
                "libssl",
                "libcrypto",
                "libgnutls",
                "gnutls",
                "libgcrypt",
                "libnss3",
                "nss-",
                "libnettle",
                "libressl",
                "mbedtls",
                "libmbed",
                "crypto-policies",
                "libk5crypto",
            ]))
    {
        return Category::TlsCrypto;
    }
    if os
        && (matches!(
            n.as_str(),
            "libc6" | "libc-bin" | "glibc" | "musl" | "musl-utils" | "libc-utils"
        ) || starts(&["libc6-", "glibc-"]))
    {
        return Category::Libc;
    }
    if n == "tzdata" || n.starts_with("tzdata-") || (ecosystem == Ecosystem::Python && n == "pytz")
    {
        return Category::Timezone;
    }
    if os && matches!(n.as_str(), "dash" | "bash" | "busybox" | "busybox-binsh") {
        return Category::Shell;
    }
    if os
        && matches!(
            n.as_str(),
            "passwd" | "base-passwd" | "shadow" | "shadow-utils" | "setup" | "login"
        )
    {
        return Category::UsersPermissions;
    }
    Category::Other
}

/// The category of a path and the group it is reported in (a directory for trees of many
/// files, the path itself for single important files). `None`: an ordinary file.
fn path_category(path: &str) -> Option<(Category, String)> {
    let p = path.trim_start_matches('/');
    let name = p.rsplit('/').next().unwrap_or(p);
    for dir in [
        "etc/ssl/certs",
        "etc/pki/ca-trust",
        "etc/pki/tls/certs",
        "usr/share/ca-certificates",
        "usr/local/share/ca-certificates",
        "etc/ca-certificates",
    ] {
        if p == dir || p.starts_with(&format!("{dir}/")) {
            return Some((Category::TrustStore, format!("/{dir}")));
        }
    }
    if matches!(p, "etc/ca-certificates.conf" | "etc/ssl/cert.pem") {
        return Some((Category::TrustStore, format!("/{p}")));
    }
    let lib =
        |prefixes: &[&str]| prefixes.iter().any(|x| name.starts_with(x)) && name.contains(".so");
    if lib(&[
        "libssl.",
        "libcrypto.",
        "libgnutls.",
        "libgcrypt.",
        "libnss3.",
        "libnettle.",
    ]) || name == "openssl.cnf"
        || p.starts_with("etc/crypto-policies/")
    {
        return Some((Category::TlsCrypto, "TLS/crypto library files".to_owned()));
    }
    if lib(&[
        "libc.",
        "ld-linux",
        "ld-musl",
        "libc.musl",
        "libpthread.",
        "libm.",
        "libdl.",
    ]) {
        return Some((Category::Libc, "libc files".to_owned()));
    }
    if matches!(p, "etc/localtime" | "etc/timezone") {
        return Some((Category::Timezone, format!("/{p}")));
    }
    if p == "usr/share/zoneinfo" || p.starts_with("usr/share/zoneinfo/") {
        return Some((Category::Timezone, "/usr/share/zoneinfo".to_owned()));
    }
    if matches!(p, "bin/sh" | "usr/bin/sh") {
        return Some((Category::Shell, format!("/{p}")));
    }
    if matches!(
        p,
        "etc/passwd"
            | "etc/group"
            | "etc/shadow"
            | "etc/gshadow"
            | "etc/sudoers"
            | "etc/login.defs"
    ) || p.starts_with("etc/sudoers.d/")
    {
        return Some((Category::UsersPermissions, format!("/{p}")));
    }
    None
}

/// What an explanation item is about; also the order of items within a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A package was added, removed, upgraded or downgraded.
    Package,
    /// A config setting changed.
    Setting,
    /// Files changed (one path, or a group of paths from one layer).
    File,
}

struct Draft {
    category: Category,
    kind: ItemKind,
    subject: String,
    change: String,
    layer: Option<LayerRef>,
    step: Option<String>,
}

fn package_change_text(p: &PackageChange) -> String {
    let eco = p.ecosystem.as_str();
    match p.change {
        PackageChangeKind::Added => format!("added {} ({eco})", p.b.as_deref().unwrap_or("")),
        PackageChangeKind::Removed => format!("removed {} ({eco})", p.a.as_deref().unwrap_or("")),
        kind => {
            let word = match kind {
                PackageChangeKind::Upgraded => "upgraded",
                PackageChangeKind::Downgraded => "downgraded",
                _ => "changed",
            };
            format!(
                "{} → {} ({word}, {eco})",
                p.a.as_deref().unwrap_or(""),
                p.b.as_deref().unwrap_or("")
            )
        }
    }
}

fn setting_text(c: &ConfigChange) -> (String, String) {
    let subject = match &c.key {
        Some(k) => format!("{} {k}", c.field),
        None => c.field.clone(),
    };
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
    (subject, format!("{} → {}", show(&c.a), show(&c.b)))
}

fn setting_category(c: &ConfigChange) -> Category {
    match (c.field.as_str(), c.key.as_deref()) {
        ("Env", Some("TZ")) => Category::Timezone,
        ("Env", Some(k))
            if k.starts_with("SSL_CERT")
                || k == "REQUESTS_CA_BUNDLE"
                || k == "NODE_EXTRA_CA_CERTS" =>
        {
            Category::TrustStore
        }
        ("Env", Some("OPENSSL_CONF")) => Category::TlsCrypto,
        ("Env", Some("LD_LIBRARY_PATH" | "LD_PRELOAD")) => Category::Libc,
        ("Shell", _) => Category::Shell,
        ("User", _) => Category::UsersPermissions,
        _ => Category::Other,
    }
}

/// How a path resolves in one view: the first link target, the final path and its content.
fn resolution(
    view: &FsView<'_>,
    path: &str,
) -> Option<(Option<String>, String, Option<String>, usize)> {
    let first = view.get(path).and_then(|p| p.entry.link_target.clone());
    let (resolved, placed, newest) = view.resolve_tracking(path)?;
    Some((first, resolved, placed.entry.sha256.clone(), newest))
}

fn describe_resolution(r: &Option<(Option<String>, String, Option<String>, usize)>) -> String {
    match r {
        None => "(missing)".to_owned(),
        Some((_, resolved, _, _)) => format!("/{resolved}"),
    }
}

/// Items for what `/bin/sh` and `/etc/localtime` resolve to; these are followed through
/// symlinks (merged `/usr`, `bin -> usr/bin`), which a plain file comparison misses.
fn resolved_items(va: &FsView<'_>, vb: &FsView<'_>, b: &Image, out: &mut Vec<Draft>) {
    for (path, category) in [
        ("bin/sh", Category::Shell),
        ("etc/localtime", Category::Timezone),
    ] {
        let (ra, rb) = (resolution(va, path), resolution(vb, path));
        let same = match (&ra, &rb) {
            (Some(x), Some(y)) => x.1 == y.1 && x.2 == y.2,
            (None, None) => true,
            _ => false,
        };
        if same {
            continue;
        }
        let mut change = format!(
            "{} → {}",
            describe_resolution(&ra),
            describe_resolution(&rb)
        );
        if let (Some(x), Some(y)) = (&ra, &rb) {
            if x.1 == y.1 {
                change.push_str(" (content changed)");
            }
        }
        // The layer that last touched the link or its final file.
        let layer = match (&rb, vb.get(path)) {
            (Some(r), Some(link)) => Some(r.3.max(link.layer)),
            (Some(r), None) => Some(r.3),
            (None, Some(link)) => Some(link.layer),
            (None, None) => vb.removed_by(path),
        };
        out.push(Draft {
            category,
            kind: ItemKind::File,
            subject: format!("/{path} resolves to"),
            change,
            layer: layer.and_then(|i| layer_ref(b, i)),
            step: None,
        });
    }
}

#[derive(Default)]
struct Counts {
    added: usize,
    removed: usize,
    modified: usize,
    example: Option<String>,
}

impl Counts {
    fn text(&self) -> String {
        let mut parts = Vec::new();
        if self.added > 0 {
            parts.push(format!("{} added", self.added));
        }
        if self.modified > 0 {
            parts.push(format!("{} modified", self.modified));
        }
        if self.removed > 0 {
            parts.push(format!("{} removed", self.removed));
        }
        let mut text = parts.join(", ");
        if let Some(e) = &self.example {
            let _ = write!(text, " (e.g. {e})");
        }
        text
    }

    fn add(&mut self, change: &FileChange) {
        match change.change {
            FileChangeKind::Added => self.added += 1,
            FileChangeKind::Removed => self.removed += 1,
            FileChangeKind::Modified => self.modified += 1,
        }
        if self.example.is_none() {
            self.example = Some(change.path.clone());
        }
    }
}

/// File changes grouped by (category, group, layer index), with the group's first layer.
type FileGroups = BTreeMap<(Category, String, Option<usize>), (Counts, Option<LayerRef>)>;

fn file_items(files: &FileDiff, out: &mut Vec<Draft>) {
    // (category, group, layer index) → counts and the layer; groups keep the first file's
    // layer reference.
    let mut groups: FileGroups = BTreeMap::new();
    for change in &files.changes {
        let path = change.path.trim_start_matches('/');
        if matches!(path, "bin/sh" | "etc/localtime") {
            // Covered by the resolved items.
            continue;
        }
        let (category, group) = match path_category(path) {
            Some(c) => c,
            None => {
                let permissions_only = change.change == FileChangeKind::Modified
                    && change.fields.iter().all(|f| f == "mode" || f == "owner");
                if permissions_only {
                    (
                        Category::UsersPermissions,
                        "owner or mode of files".to_owned(),
                    )
                } else {
                    (Category::Other, "other files".to_owned())
                }
            }
        };
        let key = (category, group, change.layer.as_ref().map(|l| l.index));
        let entry = groups
            .entry(key)
            .or_insert_with(|| (Counts::default(), change.layer.clone()));
        entry.0.add(change);
    }
    for ((category, group, _), (counts, layer)) in groups {
        let single = counts.added + counts.removed + counts.modified == 1;
        let text = if single {
            let only = counts.example.clone().unwrap_or_default();
            let what = if counts.added == 1 {
                "added"
            } else if counts.removed == 1 {
                "removed"
            } else {
                "modified"
            };
            if only == group {
                what.to_owned()
            } else {
                format!("{only} {what}")
            }
        } else {
            counts.text()
        };
        out.push(Draft {
            category,
            kind: ItemKind::File,
            subject: group,
            change: text,
            layer,
            step: None,
        });
    }
}

/// Builds the explanation from the compared parts.
pub(super) fn explain(
    config: &[ConfigChange],
    packages: &[PackageChange],
    files: &FileDiff,
    layers: &LayerDiff,
    va: &FsView<'_>,
    vb: &FsView<'_>,
    b: &Image,
) -> Explanation {
    let mut drafts = Vec::new();
    for p in packages {
        let mut subject = p.name.clone();
        if let Some(arch) = p
            .architecture
            .as_deref()
            .filter(|a| p.ecosystem == Ecosystem::Dpkg && *a != "all")
        {
            let _ = write!(subject, ":{arch}");
        }
        if let Some(loc) = p.location.as_deref().filter(|l| !l.is_empty()) {
            let _ = write!(subject, " in /{loc}");
        }
        drafts.push(Draft {
            category: package_category(p.ecosystem, &p.name),
            kind: ItemKind::Package,
            subject,
            change: package_change_text(p),
            layer: p.layer.clone(),
            step: None,
        });
    }
    for c in config {
        let (subject, change) = setting_text(c);
        drafts.push(Draft {
            category: setting_category(c),
            kind: ItemKind::Setting,
            subject,
            change,
            layer: None,
            step: c.step.clone(),
        });
    }
    resolved_items(va, vb, b, &mut drafts);
    file_items(files, &mut drafts);
    if drafts.is_empty() && (!layers.a_only.is_empty() || !layers.b_only.is_empty()) {
        drafts.push(Draft {
            category: Category::Other,
            kind: ItemKind::File,
            subject: "layers".to_owned(),
            change: "layer blobs differ, but no file, package or setting does (timestamps or \
                     recompression only)"
                .to_owned(),
            layer: layers.b_only.first().map(|l| l.layer.clone()),
            step: None,
        });
    }
    // Stable sort: packages keep their name order within a category and kind.
    drafts.sort_by_key(|d| (d.category, d.kind));
    let items: Vec<ExplanationItem> = drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| ExplanationItem {
            rank: i + 1,
            category: d.category,
            kind: d.kind,
            subject: d.subject,
            change: d.change,
            layer: d.layer,
            step: d.step,
        })
        .collect();
    Explanation {
        summary: summary(&items, b),
        items,
    }
}

/// "ca-certificates and libssl3 changed in the base layer (...)": the subjects of the two most
/// breaking categories present (or of "other" when that is all there is), by layer.
fn summary(items: &[ExplanationItem], b: &Image) -> Option<String> {
    items.first()?;
    let mut categories: Vec<Category> = Vec::new();
    for item in items {
        if !categories.contains(&item.category)
            && (item.category != Category::Other || categories.is_empty())
        {
            categories.push(item.category);
        }
        if categories.len() == 2 {
            break;
        }
    }
    // Name packages where a category has them ("ca-certificates", not also its files).
    let with_packages: Vec<Category> = categories
        .iter()
        .copied()
        .filter(|c| {
            items
                .iter()
                .any(|i| i.category == *c && i.kind == ItemKind::Package)
        })
        .collect();
    let top: Vec<&ExplanationItem> = items
        .iter()
        .filter(|i| categories.contains(&i.category))
        .filter(|i| i.kind == ItemKind::Package || !with_packages.contains(&i.category))
        .take(6)
        .collect();
    // Group subjects by layer, in first-seen order.
    let mut by_layer: Vec<(Option<usize>, Vec<String>)> = Vec::new();
    for item in &top {
        let key = item.layer.as_ref().map(|l| l.index);
        let subject = item.subject.trim_end_matches(" resolves to").to_owned();
        match by_layer.iter_mut().find(|(k, _)| *k == key) {
            Some((_, subjects)) => {
                if !subjects.contains(&subject) {
                    subjects.push(subject)
                }
            }
            None => by_layer.push((key, vec![subject])),
        }
    }
    let parts: Vec<String> = by_layer
        .into_iter()
        .map(|(layer, subjects)| {
            let names = join_and(&subjects);
            match layer.and_then(|i| b.layers.get(i)) {
                Some(l) => {
                    let which = if l.index == 0 {
                        "the base layer".to_owned()
                    } else {
                        format!("layer {}", l.index)
                    };
                    let by = l
                        .created_by
                        .as_deref()
                        .map(|c| format!(", {}", shorten(c, 60)))
                        .unwrap_or_default();
                    format!(
                        "{names} changed in {which} ({}{by})",
                        short_digest(&l.digest)
                    )
                }
                None => format!("{names} changed"),
            }
        })
        .collect();
    Some(parts.join("; "))
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `sha256:0123456789ab`.
pub(crate) fn short_digest(d: &pinfold_oci::Digest) -> String {
    let hex = d.encoded();
    format!("{}:{}", d.algorithm(), &hex[..hex.len().min(12)])
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_categories() {
        use Category::*;
        for (eco, name, want) in [
            (Ecosystem::Dpkg, "ca-certificates", TrustStore),
            (Ecosystem::Apk, "ca-certificates-bundle", TrustStore),
            (Ecosystem::Python, "certifi", TrustStore),
            (Ecosystem::Dpkg, "libssl3", TlsCrypto),
            (Ecosystem::Dpkg, "openssl", TlsCrypto),
            (Ecosystem::Rpm, "openssl-libs", TlsCrypto),
            (Ecosystem::Dpkg, "libgnutls30", TlsCrypto),
            (Ecosystem::Dpkg, "libgcrypt20", TlsCrypto),
            (Ecosystem::Dpkg, "libc6", Libc),
            (Ecosystem::Apk, "musl", Libc),
            (Ecosystem::Rpm, "glibc-minimal-langpack", Libc),
            (Ecosystem::Dpkg, "tzdata", Timezone),
            (Ecosystem::Dpkg, "dash", Shell),
            (Ecosystem::Dpkg, "base-passwd", UsersPermissions),
            (Ecosystem::Dpkg, "curl", Other),
            (Ecosystem::Npm, "openssl", Other),
        ] {
            assert_eq!(package_category(eco, name), want, "{eco:?} {name}");
        }
    }

    #[test]
    fn path_categories() {
        use Category::*;
        for (path, want) in [
            ("etc/ssl/certs/ca-certificates.crt", Some(TrustStore)),
            (
                "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                Some(TrustStore),
            ),
            ("usr/lib/x86_64-linux-gnu/libssl.so.3", Some(TlsCrypto)),
            ("usr/lib/ssl/openssl.cnf", Some(TlsCrypto)),
            ("lib/x86_64-linux-gnu/libc.so.6", Some(Libc)),
            ("lib/ld-musl-x86_64.so.1", Some(Libc)),
            ("usr/share/zoneinfo/Europe/Berlin", Some(Timezone)),
            ("etc/localtime", Some(Timezone)),
            ("etc/passwd", Some(UsersPermissions)),
            ("usr/bin/curl", None),
            ("usr/lib/libssl-helper.txt", None),
        ] {
            assert_eq!(path_category(path).map(|c| c.0), want, "{path}");
        }
    }

    #[test]
    fn categories_rank_in_the_documented_order() {
        use Category::*;
        let mut all = [
            Other,
            UsersPermissions,
            Shell,
            Timezone,
            Libc,
            TlsCrypto,
            TrustStore,
        ];
        all.sort();
        assert_eq!(
            all,
            [
                TrustStore,
                TlsCrypto,
                Libc,
                Timezone,
                Shell,
                UsersPermissions,
                Other
            ]
        );
    }
}
