//! The root filesystem an image's layers add up to, as overlayfs would present it, with the
//! layer each path and each package came from.
//!
//! Layers apply in order (OCI image-spec `layer.md`, "Whiteouts"): a `.wh.<name>` entry removes
//! `<name>` and everything under it from the layers below; a `.wh..wh..opq` entry hides every
//! lower entry of its directory; entries of the layer itself are then added, and a non-directory
//! that replaces a directory hides the directory's lower contents too.
//!
//! Packages are attributed the same way: after each layer that touches a package database, the
//! set of installed packages is recomputed from the databases visible at that point, and a
//! package's origin is the last layer that changed it. A later `apt-get install` that rewrites
//! `var/lib/dpkg/status` therefore does not take the credit for packages the base installed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{FileEntry, FileKind, LayerIndex, PackageDb};
use crate::packages::{Package, PackageKey};

/// Most symlinks followed when resolving one path (Linux's own limit is 40).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A path of the final filesystem and the layer it came from.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// Index of the layer that wrote it last.
    pub layer: usize,
    /// The entry.
    pub entry: &'a FileEntry,
}

/// A package of the final filesystem and the layer that last changed it.
#[derive(Debug, Clone, Copy)]
pub struct PlacedPackage<'a> {
    /// Index of the layer.
    pub layer: usize,
    /// The package.
    pub package: &'a Package,
}

/// The final filesystem of an image; see the module documentation.
#[derive(Debug, Default)]
pub struct FsView<'a> {
    files: BTreeMap<&'a str, Placed<'a>>,
    removed_by: HashMap<&'a str, usize>,
    packages: BTreeMap<PackageKey, PlacedPackage<'a>>,
    removed_packages: HashMap<PackageKey, usize>,
}

impl<'a> FsView<'a> {
    /// Applies `layers` in order.
    pub fn build(layers: &[&'a LayerIndex]) -> FsView<'a> {
        let mut view = FsView::default();
        let mut live_dbs: BTreeMap<&'a str, &'a PackageDb> = BTreeMap::new();
        let mut current: HashMap<PackageKey, &'a Package> = HashMap::new();
        for (i, &layer) in layers.iter().enumerate() {
            let dbs: HashMap<&str, &'a PackageDb> = layer
                .package_dbs
                .iter()
                .map(|d| (d.path.as_str(), d))
                .collect();
            let mut touched_dbs = !dbs.is_empty();
            for dir in &layer.opaque_dirs {
                let removed = view.remove_under(dir, i);
                touched_dbs |= removed.iter().any(|p| live_dbs.remove(p).is_some());
            }
            for path in &layer.whiteouts {
                let mut removed = view.remove_under(path, i);
                if view.files.remove(path.as_str()).is_some() {
                    removed.push(path.as_str());
                }
                view.removed_by.insert(path.as_str(), i);
                touched_dbs |= removed.iter().any(|p| live_dbs.remove(p).is_some());
            }
            for entry in &layer.entries {
                let path = entry.path.as_str();
                if entry.kind != FileKind::Dir {
                    // A non-directory hides whatever lower layers had under that name, whether
                    // the directory had an entry of its own or only implied by its children.
                    let removed = view.remove_under(path, i);
                    touched_dbs |= removed.iter().any(|p| live_dbs.remove(p).is_some());
                }
                view.files.insert(path, Placed { layer: i, entry });
                view.removed_by.remove(path);
                match dbs.get(path) {
                    Some(db) => {
                        live_dbs.insert(path, db);
                    }
                    None => {
                        // A database path rewritten by something unreadable (a skipped file)
                        // or by a non-file no longer lists packages.
                        touched_dbs |= live_dbs.remove(path).is_some();
                    }
                }
            }
            if touched_dbs {
                let next: HashMap<PackageKey, &'a Package> = live_dbs
                    .values()
                    .flat_map(|db| db.packages.iter())
                    .map(|p| (p.key(), p))
                    .collect();
                for (key, package) in &next {
                    let changed = current.get(key).is_none_or(|old| *old != *package);
                    if changed {
                        view.packages
                            .insert(key.clone(), PlacedPackage { layer: i, package });
                        view.removed_packages.remove(key);
                    } else if let Some(placed) = view.packages.get_mut(key) {
                        // Same content, but point at the newest copy so borrows stay valid.
                        placed.package = package;
                    }
                }
                for key in current.keys() {
                    if !next.contains_key(key) {
                        view.packages.remove(key);
                        view.removed_packages.insert(key.clone(), i);
                    }
                }
                current = next;
            }
        }
        view
    }

    /// Removes everything strictly under `dir`, recording layer `layer` as the remover.
    fn remove_under(&mut self, dir: &str, layer: usize) -> Vec<&'a str> {
        let removed: Vec<&'a str> = if dir.is_empty() {
            self.files.keys().copied().collect()
        } else {
            let prefix = format!("{dir}/");
            self.files
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| *k)
                .collect()
        };
        for path in &removed {
            self.files.remove(path);
            self.removed_by.insert(path, layer);
        }
        removed
    }

    /// The entry at `path` (not following symlinks).
    pub fn get(&self, path: &str) -> Option<&Placed<'a>> {
        self.files.get(path)
    }

    /// Every path, sorted.
    pub fn files(&self) -> impl Iterator<Item = (&'a str, &Placed<'a>)> + '_ {
        self.files.iter().map(|(k, v)| (*k, v))
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no path exists.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The layer that removed `path` (by whiteout, opaque directory or replacement), if it
    /// existed in a lower layer and is gone now.
    pub fn removed_by(&self, path: &str) -> Option<usize> {
        self.removed_by.get(path).copied()
    }

    /// The installed packages with the layer that last changed each.
    pub fn packages(&self) -> &BTreeMap<PackageKey, PlacedPackage<'a>> {
        &self.packages
    }

    /// The layer in which a package that was installed in a lower layer disappeared.
    pub fn package_removed_by(&self, key: &PackageKey) -> Option<usize> {
        self.removed_packages.get(key).copied()
    }

    /// Resolves `path` through symlinks (in every component, the last included; absolute
    /// targets restart at the root, `..` stops at the root) to an entry that is not a symlink.
    /// `None` when a component is missing or more than [`MAX_SYMLINK_HOPS`] links are followed.
    pub fn resolve(&self, path: &str) -> Option<(String, Placed<'a>)> {
        self.resolve_tracking(path)
            .map(|(p, placed, _)| (p, placed))
    }

    /// As [`resolve`](Self::resolve), also returning the newest layer among the final entry
    /// and every symlink followed: the layer that last changed what `path` means.
    pub fn resolve_tracking(&self, path: &str) -> Option<(String, Placed<'a>, usize)> {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        let mut newest = 0;
        // Bounded: each turn pops a component; symlinks push components at most
        // MAX_SYMLINK_HOPS times.
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(component);
            let joined = resolved.join("/");
            // A directory may exist only through its children (no entry of its own); only the
            // last component must have an entry, checked after the loop.
            let Some(placed) = self.files.get(joined.as_str()) else {
                continue;
            };
            if placed.entry.kind == FileKind::Symlink {
                newest = newest.max(placed.layer);
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return None;
                }
                let target = placed.entry.link_target.as_deref().unwrap_or("");
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        let joined = resolved.join("/");
        let placed = *self.files.get(joined.as_str())?;
        Some((joined, placed, newest.max(placed.layer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, INDEX_FORMAT};
    use crate::packages::{DbKind, Ecosystem};
    use pinfold_oci::Digest;

    fn entry(path: &str, kind: FileKind, target: Option<&str>) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            sha256: None,
            link_target: target.map(str::to_owned),
        }
    }

    fn layer(entries: Vec<FileEntry>, whiteouts: &[&str], opaque: &[&str]) -> LayerIndex {
        LayerIndex {
            format: INDEX_FORMAT,
            digest: Digest::sha256(format!("{entries:?}{whiteouts:?}").as_bytes()),
            compression: Compression::None,
            compressed_size: 0,
            uncompressed_size: 0,
            entries,
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque_dirs: opaque.iter().map(|s| s.to_string()).collect(),
            package_dbs: Vec::new(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacement() {
        use FileKind::*;
        let l0 = layer(
            vec![
                entry("etc", Dir, None),
                entry("etc/motd", File, None),
                entry("var/cache/a", File, None),
                entry("var/cache-keep", File, None),
                entry("opt/d/x", File, None),
            ],
            &[],
            &[],
        );
        let l1 = layer(
            vec![entry("var/cache/b", File, None), entry("opt/d", File, None)],
            &["etc/motd"],
            &["var/cache"],
        );
        let view = FsView::build(&[&l0, &l1]);
        let paths: Vec<&str> = view.files().map(|(p, _)| p).collect();
        assert_eq!(paths, ["etc", "opt/d", "var/cache-keep", "var/cache/b"]);
        assert_eq!(view.removed_by("etc/motd"), Some(1));
        assert_eq!(view.removed_by("var/cache/a"), Some(1));
        assert_eq!(view.removed_by("opt/d/x"), Some(1));
        assert_eq!(view.get("var/cache/b").map(|p| p.layer), Some(1));
        assert_eq!(view.get("etc").map(|p| p.layer), Some(0));
    }

    #[test]
    fn resolve_follows_links_in_every_component() {
        use FileKind::*;
        let l0 = layer(
            vec![
                entry("usr/bin/dash", File, None),
                entry("usr/bin/sh", Symlink, Some("dash")),
                entry("bin", Symlink, Some("usr/bin")),
                entry(
                    "etc/localtime",
                    Symlink,
                    Some("/usr/share/zoneinfo/Etc/UTC"),
                ),
                entry("usr/share/zoneinfo/Etc/UTC", File, None),
                entry("loop", Symlink, Some("loop")),
            ],
            &[],
            &[],
        );
        let view = FsView::build(&[&l0]);
        assert_eq!(
            view.resolve("bin/sh").map(|r| r.0),
            Some("usr/bin/dash".into())
        );
        assert_eq!(
            view.resolve("etc/localtime").map(|r| r.0),
            Some("usr/share/zoneinfo/Etc/UTC".into())
        );
        assert!(view.resolve("loop").is_none());
        assert!(view.resolve("bin/bash").is_none());
    }

    #[test]
    fn packages_are_attributed_to_the_layer_that_changed_them() {
        let pkg = |name: &str, version: &str| Package {
            ecosystem: Ecosystem::Dpkg,
            name: name.into(),
            version: version.into(),
            architecture: Some("amd64".into()),
            source: None,
            location: None,
        };
        let with_db = |packages: Vec<Package>| {
            let mut l = layer(
                vec![entry("var/lib/dpkg/status", FileKind::File, None)],
                &[],
                &[],
            );
            l.package_dbs.push(PackageDb {
                path: "var/lib/dpkg/status".into(),
                kind: DbKind::DpkgStatus,
                packages,
            });
            l
        };
        let l0 = with_db(vec![pkg("libssl3", "3.0.13"), pkg("gone", "1")]);
        let l1 = layer(vec![entry("app", FileKind::File, None)], &[], &[]);
        let l2 = with_db(vec![pkg("libssl3", "3.0.13"), pkg("curl", "8")]);
        let view = FsView::build(&[&l0, &l1, &l2]);
        let origin: Vec<(&str, usize)> = view
            .packages()
            .values()
            .map(|p| (p.package.name.as_str(), p.layer))
            .collect();
        assert_eq!(origin, [("curl", 2), ("libssl3", 0)]);
        assert_eq!(view.package_removed_by(&pkg("gone", "1").key()), Some(2));
    }
}
