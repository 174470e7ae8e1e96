//! Connectors chosen from the configuration: one [`ConnectorConfig`] per kind of server, and
//! [`ConnectorConfig::build`], the one place a connector is made. The runtime and the command
//! line hold a `ConnectorConfig` and never name a backend.

use crate::connector::Connector;
use crate::dav::{DavConfig, DavConnector};
use crate::imap::{ImapConfig, ImapConnector};
use crate::outgoing::{OutgoingConfig, OutgoingConnector};
use crate::pop3::{Pop3Config, Pop3Connector};
use crate::vdir::{VdirConfig, VdirConnector};
use ledgersync_domain::event::Workload;
use std::path::Path;

/// What a mailbox's connector needs, by kind.
#[derive(Clone, Debug)]
pub enum ConnectorConfig {
    /// Local vdir collections and attendee Maildirs.
    Vdir(VdirConfig),
    /// A CalDAV and CardDAV server.
    Dav(DavConfig),
    /// An IMAP server: the incoming email (an IMAP/SMTP profile runs email only, R4).
    Imap(ImapConfig),
    /// A POP3 maildrop: the incoming email of a POP3/SMTP profile (R4).
    Pop3(Pop3Config),
    /// An SMTP server (and the IMAP server's Sent folder): the outgoing email (R75–R78).
    Outgoing(OutgoingConfig),
}

impl ConnectorConfig {
    /// The kind, as the configuration names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorConfig::Vdir(_) => "vdir",
            ConnectorConfig::Dav(_) => "caldav",
            ConnectorConfig::Imap(_) => "imap",
            ConnectorConfig::Pop3(_) => "pop3",
            ConnectorConfig::Outgoing(_) => "smtp",
        }
    }

    /// The workload the connector's listings are for (see [`Connector::workload`]).
    pub fn workload(&self) -> Workload {
        match self {
            ConnectorConfig::Vdir(_) | ConnectorConfig::Dav(_) => Workload::Act,
            ConnectorConfig::Imap(_) | ConnectorConfig::Pop3(_) => Workload::Incoming,
            ConnectorConfig::Outgoing(_) => Workload::Outgoing,
        }
    }

    /// The owner's address (empty: the mailbox's registered address, filled in by
    /// [`ConnectorConfig::with_owner`]; an IMAP connector has none; the outgoing one's is the
    /// mailbox's address, the `Sender` of an email sent on behalf of another, R78).
    pub fn owner(&self) -> &str {
        match self {
            ConnectorConfig::Vdir(c) => &c.owner,
            ConnectorConfig::Dav(c) => &c.owner,
            ConnectorConfig::Imap(_) | ConnectorConfig::Pop3(_) => "",
            ConnectorConfig::Outgoing(c) => &c.address,
        }
    }

    /// The same configuration with `owner` as the owner's address when none was configured.
    pub fn with_owner(mut self, owner: &str) -> Self {
        match &mut self {
            ConnectorConfig::Vdir(c) if c.owner.is_empty() => c.owner = owner.to_owned(),
            ConnectorConfig::Dav(c) if c.owner.is_empty() => c.owner = owner.to_owned(),
            ConnectorConfig::Outgoing(c) if c.address.is_empty() => c.address = owner.to_owned(),
            ConnectorConfig::Vdir(_)
            | ConnectorConfig::Dav(_)
            | ConnectorConfig::Imap(_)
            | ConnectorConfig::Pop3(_)
            | ConnectorConfig::Outgoing(_) => {}
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
            ConnectorConfig::Dav(_)
            | ConnectorConfig::Imap(_)
            | ConnectorConfig::Pop3(_)
            | ConnectorConfig::Outgoing(_) => Vec::new(),
        }
    }

    /// The connector.
    pub fn build(self) -> Box<dyn Connector> {
        match self {
            ConnectorConfig::Vdir(c) => Box::new(VdirConnector::new(c)),
            ConnectorConfig::Dav(c) => Box::new(DavConnector::new(c)),
            ConnectorConfig::Imap(c) => Box::new(ImapConnector::new(c)),
            ConnectorConfig::Pop3(c) => Box::new(Pop3Connector::new(c)),
            ConnectorConfig::Outgoing(c) => Box::new(OutgoingConnector::new(c)),
        }
    }
}
