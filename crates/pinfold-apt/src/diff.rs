//! What changed between two sets of packages (two snapshots, a snapshot and a repository):
//! the answer to "what would promoting this snapshot do to my hosts" (story 2).
//!
//! Packages are keyed by (name, architecture). When a set holds several versions of one key,
//! the highest in dpkg order is the one compared, because that is the one apt installs.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::DebVersion;

/// One package of a set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageRef {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// Version.
    pub version: DebVersion,
}

/// A package present in both sets with different versions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionChange {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// Version in the first set.
    pub from: DebVersion,
    /// Version in the second set.
    pub to: DebVersion,
}

/// The difference from set A to set B, each list sorted by name then architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageDiff {
    /// In B, not in A.
    pub added: Vec<PackageRef>,
    /// In A, not in B.
    pub removed: Vec<PackageRef>,
    /// Higher version in B.
    pub upgraded: Vec<VersionChange>,
    /// Lower version in B.
    pub downgraded: Vec<VersionChange>,
}

impl PackageDiff {
    /// Whether the two sets are the same as far as apt is concerned.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
    }
}

/// The highest version per (name, architecture).
fn newest(set: &[PackageRef]) -> BTreeMap<(&str, &str), &DebVersion> {
    let mut map: BTreeMap<(&str, &str), &DebVersion> = BTreeMap::new();
    for p in set {
        let slot = map
            .entry((p.name.as_str(), p.architecture.as_str()))
            .or_insert(&p.version);
        if p.version > **slot {
            *slot = &p.version;
        }
    }
    map
}

/// Compares two package sets.
pub fn diff(a: &[PackageRef], b: &[PackageRef]) -> PackageDiff {
    let (a, b) = (newest(a), newest(b));
    let mut out = PackageDiff::default();
    let package = |(name, arch): (&str, &str), version: &DebVersion| PackageRef {
        name: name.to_owned(),
        architecture: arch.to_owned(),
        version: version.clone(),
    };
    for (key, from) in &a {
        match b.get(key) {
            None => out.removed.push(package(*key, from)),
            Some(to) => {
                let change = || VersionChange {
                    name: key.0.to_owned(),
                    architecture: key.1.to_owned(),
                    from: (*from).clone(),
                    to: (*to).clone(),
                };
                match (*from).cmp(*to) {
                    Ordering::Less => out.upgraded.push(change()),
                    Ordering::Greater => out.downgraded.push(change()),
                    Ordering::Equal => {}
                }
            }
        }
    }
    for (key, to) in &b {
        if !a.contains_key(key) {
            out.added.push(package(*key, to));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, arch: &str, version: &str) -> PackageRef {
        PackageRef {
            name: name.into(),
            architecture: arch.into(),
            version: version.parse().unwrap(),
        }
    }

    #[test]
    fn classifies_each_change() {
        let a = [
            p("containerd.io", "amd64", "1.2.13-1"),
            p("gone", "amd64", "1"),
            p("old", "all", "2:1.0"),
            p("same", "amd64", "1.0"),
            p("multi", "amd64", "1.0"),
            p("multi", "amd64", "1.1"),
        ];
        let b = [
            p("containerd.io", "amd64", "1.2.13-2"),
            p("new", "arm64", "0.1"),
            p("old", "all", "1:9.9"),
            p("same", "amd64", "1.0-0"),
            p("multi", "amd64", "1.1"),
            p("containerd.io", "arm64", "1.2.13-2"),
        ];
        let d = diff(&a, &b);
        assert_eq!(d.removed, [p("gone", "amd64", "1")]);
        assert_eq!(
            d.added,
            [
                p("containerd.io", "arm64", "1.2.13-2"),
                p("new", "arm64", "0.1")
            ]
        );
        assert_eq!(d.upgraded.len(), 1);
        assert_eq!(d.upgraded[0].from.as_str(), "1.2.13-1");
        assert_eq!(d.upgraded[0].to.as_str(), "1.2.13-2");
        assert_eq!(d.downgraded.len(), 1);
        assert_eq!(d.downgraded[0].name, "old");
        assert!(!d.is_empty());
        assert!(diff(&a, &a).is_empty());
    }
}
