//! Address resolution (R66, R67) and the automatic creation of a sender's row (R68).
//!
//! The directory holds every email-enabled row of the organization by address: users, queues,
//! contacts, accounts, leads, equipment, teams, business units and other tables. Resolution
//! never picks a disabled user or an inactive row.

use crate::ids::{RecordId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The kind of an email-enabled row, in the order the sender is resolved (R66).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PartyKind {
    /// A CRM user.
    User,
    /// A contact.
    Contact,
    /// An account.
    Account,
    /// A lead.
    Lead,
    /// Equipment (a facility).
    Equipment,
    /// A team.
    Team,
    /// A business unit.
    BusinessUnit,
    /// A queue (a shared mailbox such as support@).
    Queue,
    /// Another email-enabled table (its name).
    Other(String),
}

impl PartyKind {
    /// Whether R55's "from leads, contacts and accounts" accepts a sender of this kind.
    pub fn is_lead_contact_or_account(&self) -> bool {
        matches!(
            self,
            PartyKind::Lead | PartyKind::Contact | PartyKind::Account
        )
    }
}

impl fmt::Display for PartyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartyKind::User => "user",
            PartyKind::Contact => "contact",
            PartyKind::Account => "account",
            PartyKind::Lead => "lead",
            PartyKind::Equipment => "equipment",
            PartyKind::Team => "team",
            PartyKind::BusinessUnit => "business unit",
            PartyKind::Queue => "queue",
            PartyKind::Other(table) => table,
        })
    }
}

/// One email-enabled row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// Its kind.
    pub kind: PartyKind,
    /// Its id (a user's id for a user).
    pub id: RecordId,
    /// Its display name.
    pub name: String,
    /// Its owner, for rows that have one.
    pub owner: Option<UserId>,
    /// False for a disabled user or an inactive row: never resolved.
    pub active: bool,
}

/// Every email-enabled row by lower-case address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    by_address: BTreeMap<String, Vec<Party>>,
}

/// The address as the directory keys it: trimmed, lower case.
pub fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

impl Directory {
    /// Adds (or replaces, by kind and id) a row under `address`.
    pub fn insert(&mut self, address: &str, party: Party) {
        let rows = self.by_address.entry(normalize(address)).or_default();
        rows.retain(|p| !(p.kind == party.kind && p.id == party.id));
        rows.push(party);
        rows.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    }

    /// Removes a row from `address`.
    pub fn remove(&mut self, address: &str, kind: &PartyKind, id: &RecordId) {
        let key = normalize(address);
        if let Some(rows) = self.by_address.get_mut(&key) {
            rows.retain(|p| !(&p.kind == kind && &p.id == id));
            if rows.is_empty() {
                self.by_address.remove(&key);
            }
        }
    }

    /// The active rows of `address`, in resolution order (kind, then id).
    pub fn active(&self, address: &str) -> Vec<&Party> {
        self.by_address
            .get(&normalize(address))
            .map(|rows| rows.iter().filter(|p| p.active).collect())
            .unwrap_or_default()
    }

    /// Every row of `address`, active or not.
    pub fn all(&self, address: &str) -> &[Party] {
        self.by_address
            .get(&normalize(address))
            .map_or(&[][..], Vec::as_slice)
    }
}

/// What resolution needs to know of the settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveSettings {
    /// `UnresolveSenderInCaseOfMultipleMatch` (default false).
    pub unresolve_sender_on_multiple: bool,
    /// "Set To, cc, bcc fields as unresolved values if multiple matches are found" (default
    /// false).
    pub unresolve_recipients_on_multiple: bool,
}

/// A resolved (or unresolved) address and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// The address.
    pub address: String,
    /// The rows it resolved to (none: unresolved).
    pub parties: Vec<&'a Party>,
    /// Why, in plain words.
    pub why: String,
}

/// R66: the sender resolves to exactly one active row: the first in the order user, contact,
/// account, lead, equipment, team, business unit, other tables — but a non-user row the
/// tracking user owns comes before everything else. With `unresolve_sender_on_multiple`, an
/// address with several active rows stays unresolved.
pub fn sender<'a>(
    directory: &'a Directory,
    address: &str,
    tracking_user: Option<&UserId>,
    s: &ResolveSettings,
) -> Resolved<'a> {
    let address = normalize(address);
    let rows = directory.active(&address);
    let inactive = directory.all(&address).len() - rows.len();
    let skipped = if inactive > 0 {
        format!(" ({inactive} disabled or inactive row(s) are never resolved)")
    } else {
        String::new()
    };
    if rows.is_empty() {
        return Resolved {
            why: format!("the sender {address} matches no active row{skipped}"),
            address,
            parties: vec![],
        };
    }
    if rows.len() > 1 && s.unresolve_sender_on_multiple {
        return Resolved {
            why: format!(
                "the sender {address} matches {} rows and unresolve_sender_on_multiple_match is on: left unresolved",
                rows.len()
            ),
            address,
            parties: vec![],
        };
    }
    let owned = tracking_user.and_then(|u| {
        rows.iter()
            .find(|p| p.kind != PartyKind::User && p.owner.as_ref() == Some(u))
    });
    let (chosen, how) = match owned {
        Some(p) if rows.len() > 1 => (
            *p,
            format!(
                ", preferred because {} owns it",
                p.owner.as_ref().map_or("", UserId::as_str)
            ),
        ),
        _ => (
            rows[0],
            if rows.len() > 1 {
                format!(
                    ", first of {} matching rows in the order user, contact, account, lead, equipment, team, business unit, other",
                    rows.len()
                )
            } else {
                String::new()
            },
        ),
    };
    Resolved {
        why: format!(
            "the sender {address} resolves to the {} {} ({}){how}{skipped}",
            chosen.kind, chosen.name, chosen.id
        ),
        address,
        parties: vec![chosen],
    }
}

/// R67: a To, Cc or Bcc address resolves to every active row it matches, or to none when
/// several match and `unresolve_recipients_on_multiple` is on.
pub fn recipient<'a>(directory: &'a Directory, address: &str, s: &ResolveSettings) -> Resolved<'a> {
    let address = normalize(address);
    let rows = directory.active(&address);
    let why = match rows.len() {
        0 => format!("{address} matches no active row"),
        1 => format!(
            "{address} resolves to the {} {}",
            rows[0].kind, rows[0].name
        ),
        n if s.unresolve_recipients_on_multiple => {
            return Resolved {
                why: format!(
                    "{address} matches {n} rows and unresolve_recipients_on_multiple_match is on: left unresolved"
                ),
                address,
                parties: vec![],
            };
        }
        n => format!("{address} resolves to all {n} rows it matches"),
    };
    Resolved {
        address,
        parties: rows,
        why,
    }
}

/// What R68 creates for an unresolved sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoCreate {
    /// A contact.
    Contact,
    /// A lead.
    Lead,
}

impl fmt::Display for AutoCreate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutoCreate::Contact => "contact",
            AutoCreate::Lead => "lead",
        })
    }
}

/// R68: an unresolved sender of an email being tracked gets a new contact or lead when the
/// organization allows it (`AutoCreateContactOnPromote`) and the tracking user chose it.
pub fn auto_create(
    org_allows: bool,
    user_choice: Option<AutoCreate>,
) -> Result<AutoCreate, &'static str> {
    match (org_allows, user_choice) {
        (false, _) => Err("automatic record creation is off for the organization"),
        (true, None) => Err("the tracking user does not create records automatically"),
        (true, Some(kind)) => Ok(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(kind: PartyKind, id: &str, owner: Option<&str>, active: bool) -> Party {
        Party {
            kind,
            id: RecordId::new(id),
            name: id.to_string(),
            owner: owner.map(UserId::new),
            active,
        }
    }

    fn directory() -> Directory {
        let mut d = Directory::default();
        d.insert(
            "Zoe@Customer.example",
            party(PartyKind::Contact, "contact-zoe", Some("jayne"), true),
        );
        d.insert(
            "zoe@customer.example",
            party(PartyKind::Lead, "lead-zoe", Some("paul"), true),
        );
        d.insert(
            "zoe@customer.example",
            party(PartyKind::Account, "account-blue-sun", Some("paul"), true),
        );
        d.insert(
            "paul@serenity.example",
            party(PartyKind::User, "paul", None, true),
        );
        d.insert(
            "paul@serenity.example",
            party(PartyKind::Contact, "contact-paul", Some("paul"), true),
        );
        d.insert(
            "wash@serenity.example",
            party(PartyKind::User, "wash", None, false),
        );
        d
    }

    #[test]
    fn r66_the_sender_resolves_in_kind_order_preferring_a_row_the_tracking_user_owns() {
        let d = directory();
        let s = ResolveSettings::default();
        // No preference: contact before account before lead.
        let r = sender(&d, "ZOE@customer.example", None, &s);
        assert_eq!(r.parties[0].id, RecordId::new("contact-zoe"));
        assert!(r.why.contains("first of 3 matching rows"), "{}", r.why);
        // Paul owns the account and the lead: the account (first of his) wins.
        let r = sender(&d, "zoe@customer.example", Some(&UserId::new("paul")), &s);
        assert_eq!(r.parties[0].id, RecordId::new("account-blue-sun"));
        assert!(
            r.why.contains("preferred because paul owns it"),
            "{}",
            r.why
        );
        // A user comes first, unless the tracking user owns a duplicate row.
        let r = sender(&d, "paul@serenity.example", Some(&UserId::new("jayne")), &s);
        assert_eq!(r.parties[0].kind, PartyKind::User);
        let r = sender(&d, "paul@serenity.example", Some(&UserId::new("paul")), &s);
        assert_eq!(r.parties[0].id, RecordId::new("contact-paul"));
    }

    #[test]
    fn r66_a_disabled_user_is_never_resolved_and_an_ambiguous_sender_can_stay_unresolved() {
        let d = directory();
        let r = sender(
            &d,
            "wash@serenity.example",
            None,
            &ResolveSettings::default(),
        );
        assert!(r.parties.is_empty());
        assert!(r.why.contains("never resolved"), "{}", r.why);
        let s = ResolveSettings {
            unresolve_sender_on_multiple: true,
            ..ResolveSettings::default()
        };
        let r = sender(&d, "zoe@customer.example", None, &s);
        assert!(r.parties.is_empty(), "{}", r.why);
    }

    #[test]
    fn r67_a_recipient_resolves_to_every_match_or_to_none_when_asked() {
        let d = directory();
        let r = recipient(&d, "zoe@customer.example", &ResolveSettings::default());
        assert_eq!(r.parties.len(), 3);
        let s = ResolveSettings {
            unresolve_recipients_on_multiple: true,
            ..ResolveSettings::default()
        };
        assert!(recipient(&d, "zoe@customer.example", &s).parties.is_empty());
        assert_eq!(recipient(&d, "nobody@example.org", &s).parties.len(), 0);
    }

    #[test]
    fn r68_a_row_is_created_only_when_the_organization_and_the_user_allow_it() {
        assert_eq!(
            auto_create(true, Some(AutoCreate::Lead)),
            Ok(AutoCreate::Lead)
        );
        assert!(auto_create(false, Some(AutoCreate::Contact)).is_err());
        assert!(auto_create(true, None).is_err());
    }

    #[test]
    fn a_row_is_replaced_by_kind_and_id_and_removed_cleanly() {
        let mut d = directory();
        d.insert(
            "zoe@customer.example",
            party(PartyKind::Contact, "contact-zoe", Some("jayne"), false),
        );
        assert_eq!(d.active("zoe@customer.example").len(), 2);
        assert_eq!(d.all("zoe@customer.example").len(), 3);
        d.remove(
            "zoe@customer.example",
            &PartyKind::Lead,
            &RecordId::new("lead-zoe"),
        );
        d.remove(
            "zoe@customer.example",
            &PartyKind::Account,
            &RecordId::new("account-blue-sun"),
        );
        d.remove(
            "zoe@customer.example",
            &PartyKind::Contact,
            &RecordId::new("contact-zoe"),
        );
        assert!(d.all("zoe@customer.example").is_empty());
    }
}
