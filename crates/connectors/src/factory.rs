//! Connectors chosen from the configuration: one [`ConnectorConfig`] per kind of server, and
//! [`ConnectorConfig::build`], the one place a connector is made. The runtime and the command
//! line hold a `ConnectorConfig` and never name a backend.

use crate::connector::Connector;
use crate::vdir::{VdirConfig, VdirConnector};
use std::path::Path;

/// What a mailbox's connector needs, by kind.
#[derive(Clone, Debug)]
pub enum ConnectorConfig {
    /// Local vdir collections and attendee Maildirs.
    Vdir(VdirConfig),
}

impl ConnectorConfig {
    /// The kind, as the configuration names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorConfig::Vdir(_) => "vdir",
        }
    }

    /// The owner's address (empty: the mailbox's registered address, filled in by
    /// [`ConnectorConfig::with_owner`]).
    pub fn owner(&self) -> &str {
        match self {
            ConnectorConfig::Vdir(c) => &c.owner,
        }
    }

    /// The same configuration with `owner` as the owner's address when none was configured.
    pub fn with_owner(mut self, owner: &str) -> Self {
        match &mut self {
            ConnectorConfig::Vdir(c) if c.owner.is_empty() => c.owner = owner.to_owned(),
            ConnectorConfig::Vdir(_) => {}
        }
        self
    }

    /// Local directories other programs write into, watched for a push (vdir only).
    pub fn watched_dirs(&self) -> Vec<&Path> {
        match self {
            ConnectorConfig::Vdir(c) => [&c.calendar, &c.address_book]
                .into_iter()
                .flatten()
                .map(|p| p.as_path())
                .collect(),
        }
    }

    /// The connector.
    pub fn build(self) -> Box<dyn Connector> {
        match self {
            ConnectorConfig::Vdir(c) => Box::new(VdirConnector::new(c)),
        }
    }
}
