//! The users: `[[user]]` entries and an htpasswd file, checked with bcrypt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::UserConfig;

/// Why the users could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// The htpasswd file cannot be read.
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `name:$2y$...` (only bcrypt is accepted: MD5, SHA1 and crypt hashes are
    /// too weak to store).
    #[error("{path}:{line}: not a `name:bcrypt-hash` line (create it with `htpasswd -B`)")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// A `[[user]]` entry's hash is not bcrypt.
    #[error("user {0:?}: password_bcrypt is not a bcrypt hash ($2y$, $2b$ or $2a$)")]
    NotBcrypt(String),
    /// A name appears twice.
    #[error("user {0:?} is defined twice")]
    Duplicate(String),
}

/// A user as loaded.
#[derive(Debug, Clone)]
struct User {
    bcrypt: String,
    groups: Vec<String>,
}

/// Every configured user, by name.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: HashMap<String, User>,
}

/// A valid bcrypt hash of a random password, checked when the user does not exist so that the
/// answer takes as long as for a real user (no user enumeration by timing).
const DUMMY_BCRYPT: &str = "$2b$10$CwTycUXWue0Thq9StjUM0uJ8r7c4X1l1rQ7wD0E2i3vQ0p5y5G4lS";

fn is_bcrypt(hash: &str) -> bool {
    ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
}

impl UserDb {
    /// The `[[user]]` entries, then the lines of `htpasswd` (if given).
    ///
    /// # Errors
    /// An unreadable file, a line that is not bcrypt, a name defined twice.
    pub fn load(config: &[UserConfig], htpasswd: Option<&Path>) -> Result<UserDb, UsersError> {
        let mut db = UserDb::default();
        for user in config {
            if !is_bcrypt(&user.password_bcrypt) {
                return Err(UsersError::NotBcrypt(user.name.clone()));
            }
            db.insert(&user.name, &user.password_bcrypt, user.groups.clone())?;
        }
        if let Some(path) = htpasswd {
            let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
                path: path.to_owned(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.split_once(':') {
                    Some((name, hash)) if !name.is_empty() && is_bcrypt(hash) => {
                        db.insert(name, hash, Vec::new())?;
                    }
                    _ => {
                        return Err(UsersError::BadLine {
                            path: path.to_owned(),
                            line: i + 1,
                        })
                    }
                }
            }
        }
        Ok(db)
    }

    fn insert(&mut self, name: &str, hash: &str, groups: Vec<String>) -> Result<(), UsersError> {
        let user = User {
            bcrypt: hash.to_owned(),
            groups,
        };
        if self.users.insert(name.to_owned(), user).is_some() {
            return Err(UsersError::Duplicate(name.to_owned()));
        }
        Ok(())
    }

    /// Whether no user is configured (the server then runs open, on loopback only).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `name` is a configured user.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The groups of `name` (from `[[user]]`; htpasswd users have none).
    pub fn groups(&self, name: &str) -> Vec<String> {
        self.users
            .get(name)
            .map(|u| u.groups.clone())
            .unwrap_or_default()
    }

    /// Checks `password` with bcrypt (slow on purpose: callers cache a success). An unknown
    /// user costs the same time as a wrong password.
    pub fn verify_password(&self, name: &str, password: &str) -> bool {
        match self.users.get(name) {
            Some(user) => bcrypt::verify(password, &user.bcrypt).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, DUMMY_BCRYPT);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_and_config_users_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        // `htpasswd -B` writes $2y$; bcrypt's $2b$ is the same algorithm.
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&path, format!("# users\nbob:{hash}\n")).unwrap();
        let config = vec![UserConfig {
            name: "alice".into(),
            password_bcrypt: bcrypt::hash("pw", 4).unwrap(),
            groups: vec!["dev".into()],
        }];
        let db = UserDb::load(&config, Some(&path)).unwrap();
        assert!(db.verify_password("bob", "s3cret"));
        assert!(!db.verify_password("bob", "S3cret"));
        assert!(db.verify_password("alice", "pw"));
        assert!(!db.verify_password("mallory", "pw"));
        assert_eq!(db.groups("alice"), ["dev"]);
        std::fs::write(&path, "carol:{SHA}abc\n").unwrap();
        assert!(matches!(
            UserDb::load(&[], Some(&path)),
            Err(UsersError::BadLine { line: 1, .. })
        ));
        assert!(bcrypt::verify("x", DUMMY_BCRYPT).is_ok());
    }
}
