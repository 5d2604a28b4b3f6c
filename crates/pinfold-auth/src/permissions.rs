//! Actions, scopes and the permission rules that grant them.
//!
//! A request is allowed when the rules grant the action to the principal (a user, their
//! groups, or anyone for `anonymous_pull`) **and**, if the principal came with a limit (an API
//! token's scope, a registry JWT's `access` claim), the limit allows it too. Repository globs
//! use `*` for any run of characters, `/` included.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{PermissionRule, UserConfig};

/// Something a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags, history, drift.
    Pull,
    /// Upload blobs and manifests, move tags by push, upload packages.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Accept an upstream move (promote a mirrored tag or an APT snapshot).
    Promote,
    /// Everything, including the management API (upstreams, APT, tokens of others, audit).
    Admin,
}

impl Action {
    /// Every action, in the order scopes print them.
    pub const ALL: [Action; 5] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::Promote,
        Action::Admin,
    ];

    /// The lowercase name (`pull`, ...), as in scopes and the Docker token spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Promote => "promote",
            Action::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl FromStr for Action {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ScopeError::UnknownAction(s.to_owned()))
    }
}

/// A set of actions. `admin` in the set implies every action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);

    /// Whether `action` is in the set (directly or through `admin`).
    pub fn allows(self, action: Action) -> bool {
        self.0 & (action.bit() | Action::Admin.bit()) != 0
    }

    /// The set with `action` added.
    pub fn with(self, action: Action) -> Actions {
        Actions(self.0 | action.bit())
    }

    /// Actions in both sets (`admin` on one side keeps the other side whole).
    pub fn intersect(self, other: Actions) -> Actions {
        Action::ALL
            .into_iter()
            .filter(|a| self.allows(*a) && other.allows(*a))
            .fold(Actions::NONE, Actions::with)
    }

    /// The actions, in [`Action::ALL`] order (an admin set lists all five).
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.allows(*a))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter().fold(Actions::NONE, Actions::with)
    }
}

/// Why a scope text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not `repository:<glob>:<actions>` (or `registry:catalog:*`).
    #[error("scope entry {0:?} is not repository:<name or glob>:<actions>")]
    Malformed(String),
    /// An action other than pull, push, delete, promote, admin, `*`.
    #[error("unknown action {0:?} (expected pull, push, delete, promote, admin or *)")]
    UnknownAction(String),
}

/// What one scope entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeTarget {
    /// Repositories matching a glob.
    Repository(String),
    /// The catalog (`registry:catalog:*`).
    Catalog,
}

/// A limit on what a credential may do: space-separated `repository:<glob>:<actions>`
/// entries, as `pinfold token create --scope` takes and Docker clients send to `/v2/token`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// The entries; an action is allowed when any entry allows it.
    pub entries: Vec<(ScopeTarget, Actions)>,
}

impl Scope {
    /// Whether the scope allows `action` on `repo`.
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.entries.iter().any(|(target, actions)| match target {
            ScopeTarget::Repository(glob) => glob_match(glob, repo) && actions.allows(action),
            ScopeTarget::Catalog => false,
        })
    }

    /// Whether the scope allows a global action (catalog listing for pull, the management API
    /// for the others): an entry on `*` or, for pull, `registry:catalog:*`.
    pub fn allows_global(&self, action: Action) -> bool {
        self.entries.iter().any(|(target, actions)| match target {
            ScopeTarget::Repository(glob) => glob == "*" && actions.allows(action),
            ScopeTarget::Catalog => action == Action::Pull,
        })
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(text: &str) -> Result<Self, ScopeError> {
        let mut entries = Vec::new();
        for entry in text.split_whitespace() {
            if entry == "registry:catalog:*" {
                entries.push((ScopeTarget::Catalog, Actions::NONE.with(Action::Pull)));
                continue;
            }
            let rest = entry
                .strip_prefix("repository:")
                .ok_or_else(|| ScopeError::Malformed(entry.to_owned()))?;
            let (name, actions) = rest
                .rsplit_once(':')
                .ok_or_else(|| ScopeError::Malformed(entry.to_owned()))?;
            if name.is_empty() || actions.is_empty() {
                return Err(ScopeError::Malformed(entry.to_owned()));
            }
            let actions = actions
                .split(',')
                .map(|a| {
                    if a == "*" {
                        Ok(Actions::NONE.with(Action::Admin))
                    } else {
                        a.parse::<Action>().map(|a| Actions::NONE.with(a))
                    }
                })
                .try_fold(Actions::NONE, |acc, a| a.map(|a| Actions(acc.0 | a.0)))?;
            entries.push((ScopeTarget::Repository(name.to_owned()), actions));
        }
        if entries.is_empty() {
            return Err(ScopeError::Malformed(text.to_owned()));
        }
        Ok(Scope { entries })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (target, actions)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match target {
                ScopeTarget::Catalog => f.write_str("registry:catalog:*")?,
                ScopeTarget::Repository(glob) => {
                    let list: Vec<&str> = if actions.allows(Action::Admin) {
                        vec!["admin"]
                    } else {
                        actions.iter().map(Action::as_str).collect()
                    };
                    write!(f, "repository:{glob}:{}", list.join(","))?;
                }
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters (`/` included); everything else matches itself.
pub fn glob_match(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return name.is_empty(),
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Whether every name `inner` matches is matched by `outer` too (both globs as
/// [`glob_match`] reads them). `outer` is matched against the text of `inner` with its `*`s
/// taken as ordinary characters: `outer`'s literal parts can only match `inner`'s literal
/// characters, so each `*` of `inner` falls inside a `*` of `outer`, which matches whatever it
/// stands for. Sound, and exact for the globs people write (`team/*` within `team/*` or `*`);
/// a containment it cannot see is refused, never wrongly allowed.
pub fn glob_contains(outer: &str, inner: &str) -> bool {
    glob_match(outer, inner)
}

/// Who is asking, once their credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// The user (`None`: anonymous).
    pub user: Option<String>,
    /// The user's groups.
    pub groups: Vec<String>,
    /// What the credential itself was limited to (an API token's scope, a JWT's access);
    /// `None`: everything the rules grant the user (password login).
    pub limit: Option<Scope>,
}

impl Principal {
    /// Nobody: allowed only what `anonymous_pull` rules grant.
    pub fn anonymous() -> Principal {
        Principal::default()
    }

    /// The name written to the audit log and the tag journal.
    pub fn actor(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }
}

/// The users and rules, ready to answer "may this principal do that".
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    rules: Vec<PermissionRule>,
    groups: HashMap<String, Vec<String>>,
}

impl Authorizer {
    /// Rules over the given users (for their groups).
    pub fn new(rules: Vec<PermissionRule>, users: &[UserConfig]) -> Authorizer {
        Authorizer {
            rules,
            groups: users
                .iter()
                .map(|u| (u.name.clone(), u.groups.clone()))
                .collect(),
        }
    }

    /// The groups of `user` from the configuration.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        self.groups.get(user).cloned().unwrap_or_default()
    }

    fn rule_grants(&self, rule: &PermissionRule, principal: &Principal, action: Action) -> bool {
        if action == Action::Pull && rule.anonymous_pull {
            return true;
        }
        let Some(user) = &principal.user else {
            return false;
        };
        let named = rule.users.iter().any(|u| u == user)
            || rule
                .groups
                .iter()
                .any(|g| principal.groups.iter().any(|pg| pg == g));
        named
            && rule
                .actions
                .iter()
                .copied()
                .collect::<Actions>()
                .allows(action)
    }

    /// Whether `principal` may do `action` on repository `repo`.
    pub fn allowed(&self, principal: &Principal, repo: &str, action: Action) -> bool {
        if let Some(limit) = &principal.limit {
            if !limit.allows(repo, action) {
                return false;
            }
        }
        self.rules
            .iter()
            .filter(|rule| glob_match(&rule.repositories, repo))
            .any(|rule| self.rule_grants(rule, principal, action))
    }

    /// Whether `principal` may do a global `action`: list the catalog (pull) or use the
    /// management API (admin, ...). Only rules on `repositories = "*"` grant these.
    pub fn allowed_global(&self, principal: &Principal, action: Action) -> bool {
        if let Some(limit) = &principal.limit {
            if !limit.allows_global(action) {
                return false;
            }
        }
        self.rules
            .iter()
            .filter(|rule| rule.repositories == "*")
            .any(|rule| self.rule_grants(rule, principal, action))
    }

    /// The entries of `wanted` that `principal` may not hand on to a credential it creates,
    /// as scope texts (`repository:other/*:push`); empty when everything may be. An action on a
    /// glob may be handed on when one permission rule granting it to `principal` covers the
    /// whole glob **and**, if `principal` came with a limit, one entry of the limit does too:
    /// a derived credential never exceeds the one that created it.
    pub fn refused_in(&self, principal: &Principal, wanted: &Scope) -> Vec<String> {
        let mut refused = Vec::new();
        for (target, actions) in &wanted.entries {
            match target {
                ScopeTarget::Catalog => {
                    if !self.allowed_global(principal, Action::Pull) {
                        refused.push("registry:catalog:*".to_owned());
                    }
                }
                ScopeTarget::Repository(glob) => {
                    // `admin` stands for every action: ask about it alone.
                    let asked: Vec<Action> = if actions.allows(Action::Admin) {
                        vec![Action::Admin]
                    } else {
                        actions.iter().collect()
                    };
                    for action in asked {
                        if !self.covers(principal, glob, action) {
                            refused.push(format!("repository:{glob}:{}", action.as_str()));
                        }
                    }
                }
            }
        }
        refused
    }

    /// Whether `action` on every repository `glob` matches is allowed to `principal`.
    fn covers(&self, principal: &Principal, glob: &str, action: Action) -> bool {
        let within_limit = principal.limit.as_ref().is_none_or(|limit| {
            limit.entries.iter().any(|(target, actions)| match target {
                ScopeTarget::Repository(outer) => {
                    glob_contains(outer, glob) && actions.allows(action)
                }
                ScopeTarget::Catalog => false,
            })
        });
        within_limit
            && self.rules.iter().any(|rule| {
                glob_contains(&rule.repositories, glob) && self.rule_grants(rule, principal, action)
            })
    }

    /// The subset of `wanted` that `principal` may do on `repo`.
    pub fn granted(&self, principal: &Principal, repo: &str, wanted: Actions) -> Actions {
        wanted
            .iter()
            .filter(|a| self.allowed(principal, repo, *a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (glob, name, expect) in [
            ("team/*", "team/app", true),
            ("team/*", "team/a/b", true),
            ("team/*", "teamx/app", false),
            ("team/*", "team", false),
            ("*", "anything/at/all", true),
            ("library/ubuntu", "library/ubuntu", true),
            ("library/ubuntu", "library/ubuntu2", false),
            ("*/base", "x/base", true),
            ("*/base", "x/base/y", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_match(glob, name), expect, "{glob} vs {name}");
        }
    }

    #[test]
    fn glob_containment() {
        for (outer, inner, expect) in [
            ("team/*", "team/*", true),
            ("team/*", "team/app", true),
            ("team/*", "team/a/*", true),
            ("*", "team/*", true),
            ("*", "*", true),
            ("team/*", "*", false),
            ("team/*", "te*", false),
            ("team/app", "team/*", false),
            ("*/base", "x/*/base", true),
            ("*/base", "x/*", false),
            ("a*c", "ab*c", true),
            ("a*c", "a*", false),
        ] {
            assert_eq!(glob_contains(outer, inner), expect, "{outer} ⊇ {inner}");
        }
    }

    #[test]
    fn derived_scopes_stay_within_rules_and_limit() {
        let a = rules();
        let alice = Principal {
            user: Some("alice".into()),
            ..Principal::default()
        };
        let scope = |s: &str| s.parse::<Scope>().unwrap();
        assert!(a
            .refused_in(&alice, &scope("repository:team/*:pull,push"))
            .is_empty());
        assert!(a
            .refused_in(&alice, &scope("repository:team/app:pull"))
            .is_empty());
        assert_eq!(
            a.refused_in(&alice, &scope("repository:*:pull,push")),
            ["repository:*:pull", "repository:*:push"]
        );
        assert_eq!(
            a.refused_in(&alice, &scope("repository:team/app:delete")),
            ["repository:team/app:delete"]
        );
        assert_eq!(
            a.refused_in(&alice, &scope("repository:team/app:*")),
            ["repository:team/app:admin"]
        );
        assert_eq!(
            a.refused_in(&alice, &scope("registry:catalog:*")),
            ["registry:catalog:*"]
        );
        // Anonymous pull is everyone's, and so may be handed on.
        assert!(a
            .refused_in(&alice, &scope("repository:public/x:pull"))
            .is_empty());
        // A limited credential of an admin hands on only what its limit allows.
        let carol = Principal {
            user: Some("carol".into()),
            groups: a.groups_of("carol"),
            limit: Some(scope("repository:team/app:pull")),
        };
        assert!(a
            .refused_in(&carol, &scope("repository:team/app:pull"))
            .is_empty());
        assert_eq!(
            a.refused_in(&carol, &scope("repository:*:admin")),
            ["repository:*:admin"]
        );
        assert_eq!(
            a.refused_in(&carol, &scope("repository:team/*:pull")),
            ["repository:team/*:pull"]
        );
        let unlimited = Principal {
            limit: None,
            ..carol
        };
        assert!(a
            .refused_in(&unlimited, &scope("repository:*:admin registry:catalog:*"))
            .is_empty());
    }

    #[test]
    fn scopes_parse_and_print() {
        let s: Scope = "repository:team/*:pull,push repository:x:*"
            .parse()
            .unwrap();
        assert!(s.allows("team/app", Action::Push));
        assert!(!s.allows("team/app", Action::Delete));
        assert!(s.allows("x", Action::Delete));
        assert!(!s.allows_global(Action::Admin));
        assert_eq!(
            s.to_string(),
            "repository:team/*:pull,push repository:x:admin"
        );
        for bad in [
            "",
            "team/*:pull",
            "repository:team/*",
            "repository::pull",
            "repository:a:fly",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    fn rules() -> Authorizer {
        let users = vec![UserConfig {
            name: "carol".into(),
            password_bcrypt: String::new(),
            groups: vec!["ops".into()],
        }];
        Authorizer::new(
            vec![
                PermissionRule {
                    repositories: "team/*".into(),
                    users: vec!["alice".into()],
                    groups: vec![],
                    actions: vec![Action::Pull, Action::Push],
                    anonymous_pull: false,
                },
                PermissionRule {
                    repositories: "public/*".into(),
                    users: vec![],
                    groups: vec![],
                    actions: vec![],
                    anonymous_pull: true,
                },
                PermissionRule {
                    repositories: "*".into(),
                    users: vec![],
                    groups: vec!["ops".into()],
                    actions: vec![Action::Admin],
                    anonymous_pull: false,
                },
            ],
            &users,
        )
    }

    #[test]
    fn rules_grant_per_user_group_and_anonymous() {
        let a = rules();
        let alice = Principal {
            user: Some("alice".into()),
            ..Principal::default()
        };
        let carol = Principal {
            user: Some("carol".into()),
            groups: a.groups_of("carol"),
            limit: None,
        };
        assert!(a.allowed(&alice, "team/app", Action::Push));
        assert!(!a.allowed(&alice, "team/app", Action::Delete));
        assert!(!a.allowed(&alice, "other/app", Action::Pull));
        assert!(!a.allowed_global(&alice, Action::Admin));
        assert!(a.allowed(&carol, "other/app", Action::Delete));
        assert!(a.allowed_global(&carol, Action::Admin));
        let anon = Principal::anonymous();
        assert!(a.allowed(&anon, "public/x", Action::Pull));
        assert!(!a.allowed(&anon, "public/x", Action::Push));
        assert!(!a.allowed(&anon, "team/app", Action::Pull));
        // A token's scope narrows what the user may do.
        let limited = Principal {
            limit: Some("repository:team/app:pull".parse().unwrap()),
            ..carol.clone()
        };
        assert!(limited.limit.is_some());
        assert!(a.allowed(&limited, "team/app", Action::Pull));
        assert!(!a.allowed(&limited, "team/app", Action::Push));
        assert!(!a.allowed_global(&limited, Action::Admin));
        let wanted: Actions = [Action::Pull, Action::Push].into_iter().collect();
        assert_eq!(a.granted(&alice, "team/x", wanted), wanted);
        assert_eq!(a.granted(&alice, "nope", wanted), Actions::NONE);
    }
}
