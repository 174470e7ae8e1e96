//! The configuration file (`config/ledgersync.toml`): data directory, journal backend and
//! organization. Unknown keys and bad values are errors that name the file, the key and the
//! allowed values.

use anyhow::{Context as _, Result, anyhow};
use ledgersync_journal::Backend;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    data: DataSection,
    #[serde(default)]
    journal: JournalSection,
    #[serde(default)]
    organization: OrgSection,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DataSection {
    dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JournalSection {
    backend: Option<String>,
    max_batch_events: Option<usize>,
    snapshot_every: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OrgSection {
    id: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory, if configured.
    pub data: Option<PathBuf>,
    /// Journal backend for new journals.
    pub backend: Backend,
    /// Group commit batch limit.
    pub max_batch_events: usize,
    /// Snapshot interval.
    pub snapshot_every: u64,
    /// Organization id.
    pub org: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: None,
            backend: Backend::Redb,
            max_batch_events: 4096,
            snapshot_every: ledgersync_engine::engine::DEFAULT_SNAPSHOT_EVERY,
            org: "serenity".into(),
        }
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let file: File = toml::from_str(text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let mut c = Config {
            data: file.data.dir,
            ..Config::default()
        };
        if let Some(b) = file.journal.backend {
            c.backend = b.parse().map_err(|_| {
                anyhow!(
                    "{}: key `journal.backend` cannot be `{b}`; allowed values: redb, sled",
                    path.display()
                )
            })?;
        }
        if let Some(n) = file.journal.max_batch_events {
            if !(1..=1_000_000).contains(&n) {
                return Err(anyhow!(
                    "{}: key `journal.max_batch_events` must be between 1 and 1000000, got {n}",
                    path.display()
                ));
            }
            c.max_batch_events = n;
        }
        if let Some(n) = file.journal.snapshot_every {
            if n == 0 {
                return Err(anyhow!(
                    "{}: key `journal.snapshot_every` must be at least 1",
                    path.display()
                ));
            }
            c.snapshot_every = n;
        }
        if let Some(id) = file.organization.id {
            if id.is_empty() || id.contains('/') {
                return Err(anyhow!(
                    "{}: key `organization.id` must be a non-empty name without `/`, got `{id}`",
                    path.display()
                ));
            }
            c.org = id;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ledgersync.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.backend, Backend::Redb);
        assert_eq!(c.org, "serenity");
    }

    #[test]
    fn unknown_key_names_file_key_and_allowed_keys() {
        let e = Config::parse("[journal]\nbacknd = \"sled\"\n", Path::new("my.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml"), "{e}");
        assert!(e.contains("backnd"), "{e}");
        assert!(e.contains("backend"), "{e}");
    }

    #[test]
    fn bad_backend_names_allowed_values() {
        let e = Config::parse("[journal]\nbackend = \"rocks\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("journal.backend") && e.contains("redb, sled"),
            "{e}"
        );
    }
}
