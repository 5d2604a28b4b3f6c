//! `pinfold.toml`, `PINFOLD_*` variables and flags, merged in one place: [`Config::load`].
//!
//! Precedence, lowest first: built-in defaults (zero-config: 127.0.0.1:5000, `./pinfold-data`),
//! the TOML file, environment variables, command-line flags. A variable
//! `PINFOLD_<KEY>` sets a top-level key (`PINFOLD_LISTEN`, `PINFOLD_DATA_DIR`);
//! `PINFOLD_<SECTION>_<KEY>` sets a key of a section (`PINFOLD_SERVER_MAX_BLOB_BYTES`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pinfold_meta::MetaConfig;
use pinfold_mirror::{MirrorConfig, MirrorSettings, UpstreamConfig};
use pinfold_server::registry::gc::{GcConfig, GcRules, ImmutableRule, RetentionRule};
use pinfold_server::ServerConfig;
use serde::{Deserialize, Serialize};

/// Sections of the file, each owned by the crate it configures.
const SECTIONS: [&str; 7] = [
    "server", "meta", "mirror", "backup", "auth", "gc", "storage",
];

/// `PINFOLD_*` variables that are not configuration of `pinfold serve` but of the client
/// commands (`pinfold drift`, `promote`, `history`): skipped here, so exporting them does not
/// make the server refuse to start.
const CLIENT_VARIABLES: [&str; 2] = ["PINFOLD_URL", "PINFOLD_TOKEN"];

/// The whole configuration of one Pinfold instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:5000`.
    pub listen: SocketAddr,
    /// Directory for blobs, uploads and `meta.db`. Default `./pinfold-data`.
    pub data_dir: PathBuf,
    /// Server limits and caches.
    pub server: ServerConfig,
    /// The metadata engine (SQLite in the data directory unless a PostgreSQL URL is set).
    pub meta: MetaConfig,
    /// The drift poller's settings (`[mirror]`).
    pub mirror: MirrorSettings,
    /// The upstream registries mirrored (`[[upstream]]`, any number).
    pub upstream: Vec<UpstreamConfig>,
    /// Scheduled backups inside `pinfold serve` (`[backup]`; off unless `to` is set).
    pub backup: pinfold_backup::BackupConfig,
    /// Authentication settings (`[auth]`: htpasswd file, token lifetimes, realm).
    pub auth: pinfold_auth::AuthConfig,
    /// Users (`[[user]]`); none: no authentication, loopback only.
    pub user: Vec<pinfold_auth::UserConfig>,
    /// Permission rules (`[[permission]]`).
    pub permission: Vec<pinfold_auth::PermissionRule>,
    /// Garbage collection (`[gc]`).
    pub gc: GcConfig,
    /// Retention rules (`[[retention]]`, first matching pattern applies).
    pub retention: Vec<RetentionRule>,
    /// Immutable-tag rules (`[[immutable]]`).
    pub immutable: Vec<ImmutableRule>,
    /// Where blobs live (`[storage]`: the filesystem, or S3-compatible object storage).
    pub storage: pinfold_store::StorageConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("pinfold-data"),
            server: ServerConfig::default(),
            meta: MetaConfig::default(),
            mirror: MirrorSettings::default(),
            upstream: Vec::new(),
            backup: pinfold_backup::BackupConfig::default(),
            auth: Default::default(),
            user: Vec::new(),
            permission: Vec::new(),
            gc: GcConfig::default(),
            retention: Vec::new(),
            immutable: Vec::new(),
            storage: pinfold_store::StorageConfig::default(),
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--tls-cert` (`[server] tls_cert`)
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` (`[server] tls_key`)
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Loads `file` (or `./pinfold.toml` when it exists and no file is named), applies
    /// `PINFOLD_*` variables from `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: Overrides,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => read_table(path)?,
            None if Path::new("pinfold.toml").exists() => read_table(Path::new("pinfold.toml"))?,
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if CLIENT_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let Some(key) = name.strip_prefix("PINFOLD_") else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            apply_env(&mut table, &name, &key.to_ascii_lowercase(), &value)?;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some(cert) = overrides.tls_cert {
            config.server.tls_cert = Some(cert);
        }
        if let Some(key) = overrides.tls_key {
            config.server.tls_key = Some(key);
        }
        Ok(config)
    }
}

impl Config {
    /// The server's settings with the GC, retention and immutability rules in them.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            rules: GcRules {
                gc: self.gc.clone(),
                retention: self.retention.clone(),
                immutable: self.immutable.clone(),
            },
            storage: self.storage.clone(),
            ..self.server.clone()
        }
    }

    /// The mirror's configuration: the upstreams and the poller settings.
    pub fn mirror_config(&self) -> MirrorConfig {
        MirrorConfig {
            upstreams: self.upstream.clone(),
            settings: self.mirror.clone(),
        }
    }
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Sets one variable's value into the table, typed as TOML when it parses as a TOML value
/// (numbers, booleans), as a string otherwise.
fn apply_env(table: &mut toml::Table, name: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let typed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    for section in SECTIONS {
        if let Some(field) = key.strip_prefix(section).and_then(|k| k.strip_prefix('_')) {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(inner) = entry.as_table_mut() else {
                bail!("{name}: [{section}] in the file is not a table");
            };
            inner.insert(field.to_owned(), typed);
            return Ok(());
        }
    }
    table.insert(key.to_owned(), typed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = Config::load(Some(Path::new("/dev/null")), env(&[]), Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pinfold.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/a\"\n[server]\nmax_blob_bytes = 10\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), Overrides::default()).unwrap();
        assert_eq!(
            (
                c.listen.port(),
                c.data_dir.as_path(),
                c.server.max_blob_bytes
            ),
            (6000, Path::new("/srv/a"), Some(10))
        );

        let vars = env(&[
            ("PINFOLD_DATA_DIR", "/srv/b"),
            ("PINFOLD_SERVER_MAX_BLOB_BYTES", "20"),
            ("OTHER", "x"),
        ]);
        let c = Config::load(Some(&file), vars.clone(), Overrides::default()).unwrap();
        assert_eq!(
            (
                c.listen.port(),
                c.data_dir.as_path(),
                c.server.max_blob_bytes
            ),
            (6000, Path::new("/srv/b"), Some(20))
        );

        let flags = Overrides {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            data_dir: Some("/srv/c".into()),
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), vars, flags).unwrap();
        assert_eq!(
            (c.listen.port(), c.data_dir.as_path()),
            (7000, Path::new("/srv/c"))
        );
    }

    #[test]
    fn meta_section_selects_postgresql() {
        let vars = env(&[("PINFOLD_META_POSTGRES_URL", "postgres://u:p@127.0.0.1/db")]);
        let c = Config::load(Some(Path::new("/dev/null")), vars, Overrides::default()).unwrap();
        assert_eq!(
            c.meta.postgres_url.as_deref(),
            Some("postgres://u:p@127.0.0.1/db")
        );
        assert_eq!(Config::default().meta.postgres_url, None);
    }

    #[test]
    fn upstreams_are_an_array_of_tables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pinfold.toml");
        std::fs::write(
            &file,
            "[mirror]\ndrift_interval_seconds = 5\n\n\
             [[upstream]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\n\
             default = true\nredirect_hosts = [\"*.docker.com\"]\n\n\
             [[upstream]]\nname = \"ghcr.io\"\nurl = \"https://ghcr.io\"\npolicy = \"cooldown\"\n\
             cooldown_seconds = 86400\n",
        )
        .unwrap();
        let vars = env(&[
            ("PINFOLD_MIRROR_DRIFT_CONCURRENCY", "2"),
            ("PINFOLD_URL", "http://x"),
        ]);
        let c = Config::load(Some(&file), vars, Overrides::default()).unwrap();
        let m = c.mirror_config();
        assert_eq!(m.settings.drift_interval_seconds, 5);
        assert_eq!(m.settings.drift_concurrency, 2);
        assert_eq!(m.upstreams.len(), 2);
        assert!(m.upstreams[0].default);
        assert_eq!(m.upstreams[0].policy, pinfold_mirror::TagPolicy::Pin);
        assert_eq!(m.upstreams[1].policy, pinfold_mirror::TagPolicy::Cooldown);
        assert_eq!(m.upstreams[1].cooldown_seconds, 86400);
        std::fs::write(
            &file,
            "[[upstream]]\nname = \"a\"\nurl = \"https://a\"\npolicy = \"sometimes\"\n",
        )
        .unwrap();
        assert!(Config::load(Some(&file), env(&[]), Overrides::default()).is_err());
    }

    #[test]
    fn object_storage_from_the_file_and_its_secret_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pinfold.toml");
        std::fs::write(
            &file,
            "[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:3900\"\nbucket = \"b\"\nregion = \"garage\"\naccess_key_id = \"GK1\"\n",
        )
        .unwrap();
        let vars = env(&[("PINFOLD_STORAGE_SECRET_ACCESS_KEY", "s3cr3t")]);
        let c = Config::load(Some(&file), vars, Overrides::default()).unwrap();
        assert_eq!(c.storage.backend, pinfold_store::StorageBackend::S3);
        assert_eq!(c.storage.bucket, "b");
        assert_eq!(c.storage.secret_access_key, "s3cr3t");
        assert_eq!(c.server_config().storage, c.storage);
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "the secret is not in the debug output"
        );
        std::fs::write(&file, "[storage]\nbackend = \"tape\"\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]), Overrides::default()).is_err());
    }

    #[test]
    fn apt_deploy_keys_from_env_as_a_toml_array() {
        let vars = env(&[
            ("PINFOLD_SERVER_APT_DEPLOY_KEYS", r#"["k1", "k2"]"#),
            ("PINFOLD_SERVER_APT_REINDEX_DELAY_MS", "50"),
        ]);
        let c = Config::load(Some(Path::new("/dev/null")), vars, Overrides::default()).unwrap();
        assert_eq!(c.server.apt_deploy_keys, ["k1", "k2"]);
        assert_eq!(c.server.apt_reindex_delay_ms, 50);
        assert!(Config::default().server.apt_deploy_keys.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::load(
            Some(Path::new("/dev/null")),
            env(&[("PINFOLD_LISTEN_ADDR", "x")]),
            Overrides::default(),
        );
        assert!(err.is_err());
        let err = Config::load(
            Some(Path::new("/dev/null")),
            env(&[("PINFOLD_SERVER_NOPE", "1")]),
            Overrides::default(),
        );
        assert!(err.is_err());
        let err = Config::load(
            Some(Path::new("/nonexistent/pinfold.toml")),
            env(&[]),
            Overrides::default(),
        );
        assert!(err.is_err());
    }
}
