//! The organization's state, rebuilt from its stream, and the routing of CRM changes to the
//! mailboxes they concern (owner, organizer, attendees, and every mailbox a row was routed to
//! before, so a row that leaves a filter still reaches the mailbox that links it).
//!
//! The state also folds the failures of each server profile's mailboxes for the profile alert
//! (R14, [`crate::alerting`]): `mailbox_failure_noted` keeps, per profile, the last failure of
//! each mailbox within the last hour; the `alert_raised` that follows it in the same append
//! records when the profile was last alerted.

use crate::alerting::{ProfileFailures, within_window};
use crate::event::{Event, ServerType};
use crate::ids::{MailboxId, OrgId, ProfileId, RecordId, UserId};
use crate::records::Record;
use crate::settings::OrgSettings;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A CRM user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// An email server profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    /// Name.
    pub name: String,
    /// Server type.
    pub server_type: ServerType,
    /// Max concurrent connections.
    pub max_connections: u16,
    /// The profile alert option (SSS `sendemailalert`, default off, R14).
    pub send_alert: bool,
}

/// A mailbox as the organization knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxInfo {
    /// Address.
    pub address: String,
    /// Profile.
    pub profile: ProfileId,
    /// Mapped user.
    pub owner: Option<UserId>,
    /// The last `address_approved` value recorded for it (a repeat of it is not recorded).
    #[serde(default)]
    pub approved: Option<bool>,
}

/// A CRM row as the organization last recorded it: enough to check the changes that name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowInfo {
    /// Its table.
    pub entity: crate::records::Entity,
    /// Its owner in the last snapshot the CRM sent (`record_upserted` or `owner_changed`).
    pub owner: UserId,
    /// The version of that snapshot.
    #[serde(default)]
    pub version: u64,
    /// Its content hash ([`crate::dedupe::content_hash`]): the same version with another
    /// content is a contradiction, with the same content a duplicate.
    #[serde(default)]
    pub hash: u64,
}

/// Everything the organization stream says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgState {
    /// Organization id.
    pub id: Option<OrgId>,
    /// Settings in force.
    pub settings: OrgSettings,
    /// Users.
    pub users: BTreeMap<UserId, UserInfo>,
    /// Server profiles.
    pub profiles: BTreeMap<ProfileId, ProfileInfo>,
    /// Mailboxes.
    pub mailboxes: BTreeMap<MailboxId, MailboxInfo>,
    /// The mailbox of each mapped user (one user, one mailbox: R1).
    pub user_mailbox: BTreeMap<UserId, MailboxId>,
    /// The mailboxes each row has been routed to. The three maps keyed by row grow with the
    /// organization and are only looked up, never walked in order: hash maps, with a fixed
    /// hasher (no per-process seed: the domain takes no randomness).
    pub routed: FxHashMap<RecordId, BTreeSet<MailboxId>>,
    /// The rows the CRM sent and has not deleted since: table and owner of the last snapshot.
    #[serde(default)]
    pub rows: FxHashMap<RecordId, RowInfo>,
    /// Per user and table, the hash of the last `filter_changed` list (a repeat is not
    /// recorded).
    #[serde(default)]
    pub filters: BTreeMap<UserId, BTreeMap<crate::records::Entity, u64>>,
    /// Per user, the hash of the last `access_lost` / `access_regained` (a repeat is not
    /// recorded).
    #[serde(default)]
    pub access: BTreeMap<UserId, u64>,
    /// The rows deleted (and not sent again since), with the version they had when deleted.
    #[serde(default)]
    pub deleted: FxHashMap<RecordId, u64>,
    /// Recent mailbox failures and the last alert, per profile (R14).
    pub profile_failures: BTreeMap<ProfileId, ProfileFailures>,
    /// The profile and time of the `mailbox_failure_noted` just applied: the `alert_raised`
    /// that follows it in the same append is about that profile.
    pub last_noted: Option<(ProfileId, Timestamp)>,
    /// Users and contacts by address, CRM email activities by Message-ID: what an incoming
    /// email's facts are looked up in (decision 0018).
    #[serde(default)]
    pub email_directory: crate::email::directory::EmailDirectory,
}

impl OrgState {
    /// A new organization with default settings.
    pub fn new(id: OrgId) -> Self {
        Self {
            id: Some(id),
            ..Self::default()
        }
    }

    /// Applies `event`, recorded under `id` in the organization stream: a `setting_changed`
    /// also makes `id` the version of the settings (the one decisions made under them name).
    pub fn apply_recorded(&mut self, id: crate::ids::EventId, event: &Event) {
        self.apply(event);
        if matches!(event, Event::SettingChanged(_)) {
            self.settings.version = crate::settings::SettingsVersion(id);
        }
    }

    fn mailboxes_of(&self, rec: &Record) -> BTreeSet<MailboxId> {
        let mut out: BTreeSet<MailboxId> = rec
            .participants()
            .iter()
            .filter_map(|u| self.user_mailbox.get(u).cloned())
            .collect();
        if let Some(before) = self.routed.get(&rec.id) {
            out.extend(before.iter().cloned());
        }
        out
    }

    /// The mailboxes `event` (a CRM-side or administrative observation) must reach, in id order.
    pub fn route(&self, event: &Event) -> Vec<MailboxId> {
        let set: BTreeSet<MailboxId> = match event {
            Event::MailboxRegistered(p) => [p.mailbox.clone()].into(),
            Event::MailboxMapped(p) => {
                let mut s: BTreeSet<MailboxId> = [p.mailbox.clone()].into();
                if let Some(prev) = self.user_mailbox.get(&p.user) {
                    s.insert(prev.clone());
                }
                s
            }
            Event::AddressApproved(p) => [p.mailbox.clone()].into(),
            Event::MailboxTested(p) => [p.mailbox.clone()].into(),
            Event::DisableRequested(p) => [p.mailbox.clone()].into(),
            Event::DeletesApproved(p) => [p.mailbox.clone()].into(),
            Event::RecordUpserted(p) => self.mailboxes_of(&p.record),
            Event::OwnerChanged(p) => {
                let mut s = self.mailboxes_of(&p.record);
                if let Some(m) = self.user_mailbox.get(&p.previous_owner) {
                    s.insert(m.clone());
                }
                s
            }
            Event::RecordDeleted(p) => self.routed.get(&p.id).cloned().unwrap_or_default(),
            Event::AccessLost(p) => self
                .user_mailbox
                .get(&p.user)
                .cloned()
                .into_iter()
                .collect(),
            Event::AccessRegained(p) => self
                .user_mailbox
                .get(&p.user)
                .cloned()
                .into_iter()
                .collect(),
            Event::FilterChanged(p) => self
                .user_mailbox
                .get(&p.user)
                .cloned()
                .into_iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        set.into_iter().collect()
    }

    /// Applies one event of the organization stream.
    pub fn apply(&mut self, event: &Event) {
        let noted = self.last_noted.take();
        match event {
            Event::ProfileAlertingSet(p) => {
                if let Some(info) = self.profiles.get_mut(&p.profile) {
                    info.send_alert = p.send_alert;
                }
            }
            Event::MailboxFailureNoted(p) => {
                let f = self.profile_failures.entry(p.profile.clone()).or_default();
                f.recent.retain(|_, at| within_window(*at, p.at));
                let last = f.recent.entry(p.mailbox.clone()).or_insert(p.at);
                *last = (*last).max(p.at);
                self.last_noted = Some((p.profile.clone(), p.at));
            }
            Event::AlertRaised(_) => {
                if let Some((profile, at)) = noted {
                    self.profile_failures.entry(profile).or_default().last_alert = Some(at);
                }
            }
            Event::SettingChanged(p) => {
                // Values are validated before they are recorded; a bad one changes nothing.
                let _ = self.settings.set_recorded(&p.key, &p.value);
            }
            Event::UserRegistered(p) => {
                self.email_directory.upsert_party(
                    &p.email,
                    crate::email::resolve::Party {
                        kind: crate::email::resolve::PartyKind::User,
                        id: crate::ids::RecordId::new(p.user.as_str()),
                        name: p.name.clone(),
                        owner: None,
                        active: true,
                    },
                );
                self.users.insert(
                    p.user.clone(),
                    UserInfo {
                        name: p.name.clone(),
                        email: p.email.clone(),
                    },
                );
            }
            Event::ProfileRegistered(p) => {
                self.profiles.insert(
                    p.profile.clone(),
                    ProfileInfo {
                        name: p.name.clone(),
                        server_type: p.server_type,
                        max_connections: p.max_connections,
                        send_alert: self
                            .profiles
                            .get(&p.profile)
                            .is_some_and(|old| old.send_alert),
                    },
                );
            }
            Event::MailboxRegistered(p) => {
                self.mailboxes.insert(
                    p.mailbox.clone(),
                    MailboxInfo {
                        address: p.address.clone(),
                        profile: p.profile.clone(),
                        owner: None,
                        approved: None,
                    },
                );
            }
            Event::MailboxMapped(p) => {
                if let Some(prev_mailbox) = self.user_mailbox.remove(&p.user)
                    && let Some(m) = self.mailboxes.get_mut(&prev_mailbox)
                {
                    m.owner = None;
                }
                if let Some(m) = self.mailboxes.get_mut(&p.mailbox) {
                    if let Some(prev_user) = m.owner.take() {
                        self.user_mailbox.remove(&prev_user);
                    }
                    m.owner = Some(p.user.clone());
                }
                self.user_mailbox.insert(p.user.clone(), p.mailbox.clone());
            }
            Event::RecordUpserted(_) | Event::OwnerChanged(_) => {
                let targets = self.route(event);
                let rec = match event {
                    Event::RecordUpserted(p) => &p.record,
                    Event::OwnerChanged(p) => &p.record,
                    _ => unreachable!("matched above"),
                };
                self.deleted.remove(&rec.id);
                self.email_directory.upsert_record(rec);
                self.rows.insert(
                    rec.id.clone(),
                    RowInfo {
                        entity: rec.entity(),
                        owner: rec.owner.clone(),
                        version: rec.version,
                        hash: crate::dedupe::content_hash(rec),
                    },
                );
                self.routed
                    .entry(rec.id.clone())
                    .or_default()
                    .extend(targets);
            }
            Event::RecordDeleted(p) => {
                // `routed` is kept: a late change for the row still reaches those mailboxes.
                // The version deleted is kept (0 for a row never seen): a repeat of the delete,
                // or a change of the row not newer than it, is recognised.
                self.email_directory.remove_record(&p.id);
                let version = self.rows.remove(&p.id).map_or(0, |row| row.version);
                self.deleted.insert(p.id.clone(), version);
            }
            Event::AddressApproved(p) => {
                if let Some(m) = self.mailboxes.get_mut(&p.mailbox) {
                    m.approved = Some(p.approved);
                }
            }
            Event::FilterChanged(p) => {
                self.filters
                    .entry(p.user.clone())
                    .or_default()
                    .insert(p.entity, crate::dedupe::stable_hash(&p.filters));
            }
            Event::AccessLost(p) => {
                self.access
                    .insert(p.user.clone(), crate::dedupe::stable_hash(event));
            }
            Event::AccessRegained(p) => {
                self.access
                    .insert(p.user.clone(), crate::dedupe::stable_hash(event));
            }
            _ => {}
        }
    }

    /// The mailboxes registered on `profile`.
    pub fn mailboxes_on(&self, profile: &ProfileId) -> impl Iterator<Item = &MailboxId> {
        self.mailboxes
            .iter()
            .filter(move |(_, m)| &m.profile == profile)
            .map(|(id, _)| id)
    }

    /// The mailbox of a user, if mapped.
    pub fn mailbox_of(&self, user: &UserId) -> Option<&MailboxId> {
        self.user_mailbox.get(user)
    }
}

/// The version byte of an organization snapshot ([`OrgSnapshot`]); a snapshot of another
/// version is refused and the organization is rebuilt from its whole stream.
pub const ORG_SNAPSHOT_VERSION: u8 = 3;

/// An organization snapshot: the state after the last event it includes, and what a recovery
/// needs to know about that event (the organization's last recorded id and the mailboxes it
/// had to reach, computed on the state before it) to finish a routing a crash interrupted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSnapshot {
    /// The state.
    pub state: OrgState,
    /// The id of the last event included.
    pub last: Option<crate::ids::EventId>,
    /// The mailboxes that event had to reach, in id order.
    pub last_targets: Vec<MailboxId>,
}

#[derive(Serialize)]
struct OrgSnapshotRef<'a> {
    state: &'a OrgState,
    last: Option<crate::ids::EventId>,
    last_targets: &'a [MailboxId],
}

impl OrgSnapshot {
    /// Encodes a snapshot of `state` without copying it: one version byte
    /// ([`ORG_SNAPSHOT_VERSION`]), then bincode 2 (field order of [`OrgSnapshot`]).
    pub fn encode(
        state: &OrgState,
        last: Option<crate::ids::EventId>,
        last_targets: &[MailboxId],
    ) -> Vec<u8> {
        let mut out = vec![ORG_SNAPSHOT_VERSION];
        let snapshot = OrgSnapshotRef {
            state,
            last,
            last_targets,
        };
        bincode::serde::encode_into_std_write(&snapshot, &mut out, crate::envelope::config())
            .expect("encoding a state to a Vec cannot fail");
        out
    }

    /// Decodes a snapshot written by [`OrgSnapshot::encode`]. Another version, damaged bytes or
    /// trailing bytes are an error: the caller rebuilds the organization from its stream.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::envelope::DecodeError> {
        use crate::envelope::DecodeError;
        match bytes.split_first() {
            Some((&ORG_SNAPSHOT_VERSION, body)) => {
                let (snapshot, used) =
                    bincode::serde::decode_from_slice(body, crate::envelope::config())
                        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                if used != body.len() {
                    return Err(DecodeError::Malformed(format!(
                        "{} trailing bytes after the organization snapshot",
                        body.len() - used
                    )));
                }
                Ok(snapshot)
            }
            Some((&v, _)) => Err(DecodeError::Malformed(format!(
                "organization snapshot version {v}, this build reads version \
                 {ORG_SNAPSHOT_VERSION}"
            ))),
            None => Err(DecodeError::Empty),
        }
    }
}
