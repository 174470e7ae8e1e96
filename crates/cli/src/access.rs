//! Who may read the data directory and administer the service (docs/serve.md, "Security").
//!
//! - Every `ledgersync` process sets its umask to 077 (027 when `data.group` is configured)
//!   before it creates anything: the journal, the projection, cursors, and the collections and
//!   files the connector writes are 0600 / 0700 (0640 / 0750).
//! - The data directory is made 0700 (02750 with the group as its group, so that what is
//!   created inside inherits it) when `serve` starts or a command creates it, tightened if it
//!   was more open.
//! - The control socket is 0600 (0660 with the group), and every connection's peer is checked
//!   with `SO_PEERCRED`: only the service's own uid, root, and members of the configured group
//!   may send commands; others are refused with a message saying so. Every command is logged
//!   with the peer's uid and pid.

use crate::config::Config;
use anyhow::{Context as _, Result, anyhow, bail};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// The group named by `data.group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// As configured.
    pub name: String,
    /// Its id.
    pub gid: u32,
}

impl Group {
    /// A group by name (looked up in `/etc/group`) or by number.
    pub fn resolve(spec: &str) -> Result<Group> {
        let spec = spec.trim();
        if spec.is_empty() {
            bail!("an empty group name");
        }
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(Group {
                name: spec.to_string(),
                gid,
            });
        }
        let groups = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
        groups
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(':');
                let name = parts.next()?;
                let gid = parts.nth(1)?.parse::<u32>().ok()?;
                (name == spec).then_some(gid)
            })
            .next()
            .map(|gid| Group {
                name: spec.to_string(),
                gid,
            })
            .ok_or_else(|| anyhow!("no group `{spec}` in /etc/group (a name or a number)"))
    }
}

/// Who may use the service, and the modes that follow.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The service's (this process's) uid.
    pub owner: u32,
    /// The configured group, if any.
    pub group: Option<Group>,
}

impl Policy {
    /// The policy of `config` for this process.
    pub fn of(config: &Config) -> Result<Policy> {
        Ok(Policy {
            owner: rustix::process::getuid().as_raw(),
            group: config
                .data_group
                .as_deref()
                .map(Group::resolve)
                .transpose()
                .context("key `data.group`")?,
        })
    }

    /// The data directory's mode.
    pub fn dir_mode(&self) -> u32 {
        if self.group.is_some() { 0o2750 } else { 0o700 }
    }

    /// The control socket's mode.
    pub fn socket_mode(&self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }

    /// Whether `peer` may send commands; `Err`: why not, in words for the refused client.
    pub fn admit(&self, peer: &Peer) -> Result<(), String> {
        if peer.uid == self.owner || peer.uid == 0 {
            return Ok(());
        }
        if let Some(group) = &self.group
            && (peer.gid == group.gid || supplementary_groups(peer.pid).contains(&group.gid))
        {
            return Ok(());
        }
        let group = match &self.group {
            Some(g) => format!(", or members of group `{}` (gid {})", g.name, g.gid),
            None => String::new(),
        };
        Err(format!(
            "refused: uid {} may not use this ledgersync service; only its owner (uid {}), \
             root{group} may (docs/serve.md, \"Security\")",
            peer.uid, self.owner
        ))
    }
}

/// Sets the process umask: 077, or 027 when a group is configured. Called before anything is
/// created.
pub fn restrict_umask(config: &Config) {
    let mask = if config.data_group.is_some() {
        0o027
    } else {
        0o077
    };
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
}

/// Creates the data directory if missing and gives it its mode (and group): see the module doc.
pub fn secure_data_dir(data: &Path, policy: &Policy) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(policy.dir_mode() & 0o777)
        .create(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let meta = std::fs::metadata(data).with_context(|| format!("reading {}", data.display()))?;
    if let Some(group) = &policy.group
        && meta.gid() != group.gid
    {
        std::os::unix::fs::chown(data, None, Some(group.gid)).with_context(|| {
            format!(
                "giving {} to group `{}` (key `data.group`)",
                data.display(),
                group.name
            )
        })?;
    }
    let wanted = policy.dir_mode();
    let mode = meta.permissions().mode() & 0o7777;
    if mode != wanted {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(wanted))
            .with_context(|| format!("setting the mode of {} to {wanted:o}", data.display()))?;
        if mode & 0o007 != 0 || (policy.group.is_none() && mode & 0o070 != 0) {
            tracing::warn!(
                data = %data.display(),
                was = %format!("{mode:o}"),
                now = %format!("{wanted:o}"),
                "the data directory was open to other users; its mode is tightened"
            );
        }
    }
    Ok(())
}

/// Gives the socket at `path` its mode and group.
pub fn secure_socket(path: &Path, policy: &Policy) -> Result<()> {
    if let Some(group) = &policy.group {
        std::os::unix::fs::chown(path, None, Some(group.gid))
            .with_context(|| format!("giving {} to group `{}`", path.display(), group.name))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(policy.socket_mode()))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// The process at the other end of a Unix socket, from `SO_PEERCRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its process id.
    pub pid: i32,
}

/// The peer of a connected Unix socket.
pub fn peer(socket: impl AsFd) -> std::io::Result<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(socket)?;
    Ok(Peer {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        pid: cred.pid.as_raw_nonzero().get(),
    })
}

/// The supplementary groups of a process (`Groups:` of `/proc/<pid>/status`); empty when it
/// cannot be read.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("Groups:").map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_and_name() {
        assert_eq!(Group::resolve("4242").unwrap().gid, 4242);
        assert_eq!(Group::resolve("root").unwrap().gid, 0);
        assert!(Group::resolve("no-such-group-here").is_err());
        assert!(Group::resolve("").is_err());
    }

    #[test]
    fn the_configured_group_is_checked_when_the_file_is_read() {
        let path = Path::new("ledgersync.toml");
        let c = Config::parse("[data]\ngroup = \"root\"\n", path).unwrap();
        assert_eq!(c.data_group.as_deref(), Some("root"));
        assert_eq!(Policy::of(&c).unwrap().group.unwrap().gid, 0);
        let e = Config::parse("[data]\ngroup = \"no-such-group-here\"\n", path).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("ledgersync.toml") && e.contains("data.group"),
            "{e}"
        );
        assert!(Config::parse("", path).unwrap().data_group.is_none());
    }

    #[test]
    fn only_the_owner_root_and_the_group_are_admitted() {
        let alone = Policy {
            owner: 1000,
            group: None,
        };
        let peer = |uid, gid| Peer { uid, gid, pid: 1 };
        assert!(alone.admit(&peer(1000, 1000)).is_ok());
        assert!(alone.admit(&peer(0, 0)).is_ok());
        let refused = alone.admit(&peer(65534, 65534)).unwrap_err();
        assert!(
            refused.contains("uid 65534") && refused.contains("uid 1000"),
            "{refused}"
        );
        let shared = Policy {
            owner: 1000,
            group: Some(Group {
                name: "ops".into(),
                gid: 500,
            }),
        };
        assert!(shared.admit(&peer(2000, 500)).is_ok());
        assert!(shared.admit(&peer(2000, 501)).is_err());
        assert_eq!((alone.dir_mode(), alone.socket_mode()), (0o700, 0o600));
        assert_eq!((shared.dir_mode(), shared.socket_mode()), (0o2750, 0o660));
    }
}
