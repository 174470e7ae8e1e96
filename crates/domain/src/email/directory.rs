//! The organization's email directory, and the facts an incoming email is decided from
//! (decision 0018).
//!
//! The organization stream folds it: every user (`user_registered`) and every contact
//! (`record_upserted`) by address, every CRM email activity by Message-ID, by address and by
//! the digits of the tracking-token-like words of its subject. [`EmailDirectory::facts`] is the
//! shell's lookup for one message: it selects generously (every row of each address, every
//! email the headers name, shares an address with, or whose subject carries the same token
//! digits) and decides nothing; the rules in [`super::accept`] do.

use super::Message;
use super::accept::{Acceptor, IncomingFilter};
use super::correlate::{TrackedEmail, message_id_key};
use super::resolve::{Party, PartyKind, normalize};
use super::smart_match::{self, SmartMatchSettings};
use crate::event::EmailFacts;
use crate::ids::{RecordId, UserId};
use crate::records::{ContactState, Email, Record, RecordBody};
use crate::settings::OrgSettings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A CRM email activity as the directory keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmEmail {
    /// Its Message-ID key ([`message_id_key`]).
    pub message_id: String,
    /// Its subject.
    pub subject: String,
    /// Its addresses: From, then To.
    pub addresses: Vec<String>,
    /// The row it is regarding.
    pub regarding: Option<crate::records::RecordRef>,
    /// Its owner.
    pub owner: UserId,
    /// Sent by a CRM user (outgoing) rather than received.
    pub outgoing: bool,
}

/// Email-enabled rows by address and CRM email activities, folded from the organization stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailDirectory {
    /// Rows by address.
    rows: BTreeMap<String, Vec<Party>>,
    /// The address each row is filed under ([`row_key`]), to move it when it changes.
    row_address: BTreeMap<String, String>,
    /// CRM email activities.
    emails: BTreeMap<RecordId, CrmEmail>,
    /// Email activities by Message-ID key.
    by_message_id: BTreeMap<String, BTreeSet<RecordId>>,
    /// Email activities by each of their addresses.
    by_address: BTreeMap<String, BTreeSet<RecordId>>,
    /// Email activities by the trailing digits (three or more) of each word of their subject:
    /// where a tracking token of any format is found again.
    by_token_digits: BTreeMap<String, BTreeSet<RecordId>>,
}

/// The key of a row in `row_address`: its kind and id.
fn row_key(kind: &PartyKind, id: &RecordId) -> String {
    format!("{kind}\u{1f}{id}")
}

/// The trailing run of three or more digits of each word of `subject`.
fn token_digits(subject: &str) -> impl Iterator<Item = String> + '_ {
    subject.split_whitespace().filter_map(|w| {
        let digits: String = w
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (digits.len() >= 3).then_some(digits)
    })
}

impl EmailDirectory {
    /// Files (or moves) a row under `address`; an empty address removes it.
    pub fn upsert_party(&mut self, address: &str, party: Party) {
        if let Some(old) = self.row_address.remove(&row_key(&party.kind, &party.id)) {
            self.remove_from(&old, &party.kind, &party.id);
        }
        let key = row_key(&party.kind, &party.id);
        let address = normalize(address);
        if address.is_empty() {
            return;
        }
        let rows = self.rows.entry(address.clone()).or_default();
        rows.push(party);
        rows.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        self.row_address.insert(key, address);
    }

    fn remove_from(&mut self, address: &str, kind: &PartyKind, id: &RecordId) {
        if let Some(rows) = self.rows.get_mut(address) {
            rows.retain(|p| !(&p.kind == kind && &p.id == id));
            if rows.is_empty() {
                self.rows.remove(address);
            }
        }
    }

    /// Files a CRM email activity (replacing its earlier version).
    pub fn upsert_email(&mut self, id: &RecordId, email: &Email, owner: &UserId) {
        self.remove_email(id);
        let mut addresses = vec![normalize(&email.from.email)];
        addresses.extend(email.to.iter().map(|p| normalize(&p.email)));
        let entry = CrmEmail {
            message_id: message_id_key(&email.message_id),
            subject: email.subject.clone(),
            addresses,
            regarding: email.regarding.clone(),
            owner: owner.clone(),
            outgoing: email.from.user.is_some(),
        };
        if !entry.message_id.is_empty() {
            self.by_message_id
                .entry(entry.message_id.clone())
                .or_default()
                .insert(id.clone());
        }
        for a in &entry.addresses {
            self.by_address
                .entry(a.clone())
                .or_default()
                .insert(id.clone());
        }
        for d in token_digits(&entry.subject) {
            self.by_token_digits
                .entry(d)
                .or_default()
                .insert(id.clone());
        }
        self.emails.insert(id.clone(), entry);
    }

    /// Forgets a CRM email activity.
    pub fn remove_email(&mut self, id: &RecordId) {
        let Some(old) = self.emails.remove(id) else {
            return;
        };
        let drop = |map: &mut BTreeMap<String, BTreeSet<RecordId>>, key: &str| {
            if let Some(set) = map.get_mut(key) {
                set.remove(id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        };
        drop(&mut self.by_message_id, &old.message_id);
        for a in &old.addresses {
            drop(&mut self.by_address, a);
        }
        for d in token_digits(&old.subject) {
            drop(&mut self.by_token_digits, &d);
        }
    }

    /// Applies a CRM row: a contact is filed by its address (inactive contacts are kept, never
    /// resolved), an email activity by its headers.
    pub fn upsert_record(&mut self, rec: &Record) {
        match &rec.body {
            RecordBody::Contact(c) => self.upsert_party(
                &c.email,
                Party {
                    kind: PartyKind::Contact,
                    id: rec.id.clone(),
                    name: c.full_name.clone(),
                    owner: Some(rec.owner.clone()),
                    active: c.state == ContactState::Active,
                },
            ),
            RecordBody::Email(e) => self.upsert_email(&rec.id, e, &rec.owner),
            RecordBody::Appointment(_) | RecordBody::Task(_) => {}
        }
    }

    /// Forgets a deleted CRM row.
    pub fn remove_record(&mut self, id: &RecordId) {
        if let Some(old) = self.row_address.remove(&row_key(&PartyKind::Contact, id)) {
            self.remove_from(&old, &PartyKind::Contact, id);
        }
        self.remove_email(id);
    }

    /// The facts an incoming `message`, found by the mailbox of `user`, is decided from.
    pub fn facts(&self, message: &Message, user: &UserId, settings: &OrgSettings) -> EmailFacts {
        let addresses: BTreeSet<String> = message.addresses().into_iter().collect();
        let parties: Vec<(String, Vec<Party>)> = addresses
            .iter()
            .filter_map(|a| self.rows.get(a).map(|rows| (a.clone(), rows.clone())))
            .collect();
        // Users and queues among them, and the mailbox's user: the organization has no
        // per-user filtering method yet, so each has SSS's default (replies only).
        let mut acceptors: BTreeMap<RecordId, Acceptor> = BTreeMap::new();
        let own = RecordId::new(user.as_str());
        for p in parties
            .iter()
            .flat_map(|(_, rows)| rows)
            .filter(|p| matches!(p.kind, PartyKind::User | PartyKind::Queue))
            .map(|p| (p.id.clone(), p.kind.clone()))
            .chain(std::iter::once((own, PartyKind::User)))
        {
            acceptors.entry(p.0.clone()).or_insert(Acceptor {
                id: p.0,
                kind: p.1,
                filter: IncomingFilter::default(),
                auto_create: None,
                may_own_emails: true,
            });
        }
        // The tracked emails the message can refer to.
        let mut candidates: BTreeSet<&RecordId> = BTreeSet::new();
        for id in message.in_reply_to.iter().chain(&message.references) {
            candidates.extend(
                self.by_message_id
                    .get(&message_id_key(id))
                    .into_iter()
                    .flatten(),
            );
        }
        for d in token_digits(&message.subject) {
            candidates.extend(self.by_token_digits.get(&d).into_iter().flatten());
        }
        // By shared address, for smart matching: not the mailbox user's own address, which
        // every email of theirs shares (smart matching needs two addresses in common).
        let own_address = self
            .row_address
            .get(&row_key(&PartyKind::User, &RecordId::new(user.as_str())));
        for a in addresses.iter().filter(|a| Some(*a) != own_address) {
            candidates.extend(self.by_address.get(a).into_iter().flatten());
        }
        let smart = SmartMatchSettings {
            max_count: settings.email.smart_match_max_count as usize,
            delta_subject_count: settings.email.smart_match_delta_subject_count as usize,
            min_address_count: settings.email.smart_match_min_address_count as usize,
        };
        let format = super::EmailSettings::of(settings, None).correlation.token;
        let tracked = candidates
            .into_iter()
            .filter_map(|id| self.emails.get(id).map(|e| (id, e)))
            .map(|(id, e)| TrackedEmail {
                activity: id.clone(),
                message_id: e.message_id.clone(),
                token: format.find(&e.subject).map(|t| t.text),
                conversation: vec![format!("ref:{}", e.message_id)],
                regarding: e.regarding.clone(),
                owner: Some(e.owner.clone()),
                hashes: smart_match::hashes(
                    &e.subject,
                    e.addresses.iter().map(String::as_str),
                    &smart,
                ),
                outgoing: e.outgoing,
            })
            .collect();
        EmailFacts {
            parties,
            acceptors: acceptors.into_values().collect(),
            tracked,
            folder_regarding: None,
            process_from: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Contact, Party as Attendee, RecordRef};
    use crate::time::Timestamp;

    fn contact(id: &str, email: &str, owner: &str, state: ContactState) -> Record {
        Record {
            id: RecordId::new(id),
            owner: UserId::new(owner),
            version: 1,
            body: RecordBody::Contact(Contact {
                full_name: format!("{id} name"),
                email: email.into(),
                phone: String::new(),
                company: String::new(),
                state,
            }),
        }
    }

    fn offer() -> Record {
        Record {
            id: RecordId::new("email-offer"),
            owner: UserId::new("paul"),
            version: 1,
            body: RecordBody::Email(Email {
                subject: "Cargo offer CRM:0001001".into(),
                from: Attendee {
                    user: Some(UserId::new("paul")),
                    email: "paul@serenity.example".into(),
                    name: "Paul".into(),
                },
                to: vec![Attendee {
                    user: None,
                    email: "Zoe@Customer.example".into(),
                    name: "Zoe".into(),
                }],
                message_id: "<Offer-1@serenity.example>".into(),
                regarding: Some(RecordRef {
                    table: "account".into(),
                    id: RecordId::new("account-blue-sun"),
                    name: "Blue Sun".into(),
                }),
                state: crate::records::EmailState::Received,
                cc: Vec::new(),
                text: None,
                html: None,
                submitted_by: None,
                tracking_token: None,
            }),
        }
    }

    fn reply(subject: &str, from: &str) -> Message {
        Message {
            message_id: "<r@customer.example>".into(),
            in_reply_to: None,
            references: vec![],
            thread_index: None,
            subject: subject.into(),
            from: from.into(),
            to: vec!["paul@serenity.example".into()],
            cc: vec![],
            bcc: vec![],
            received: Timestamp(0),
            irm_protected: false,
        }
    }

    #[test]
    fn a_token_reply_from_an_unknown_address_finds_the_offer_and_the_users_row() {
        let mut d = EmailDirectory::default();
        d.upsert_party(
            "paul@serenity.example",
            Party {
                kind: PartyKind::User,
                id: RecordId::new("paul"),
                name: "Paul".into(),
                owner: None,
                active: true,
            },
        );
        d.upsert_record(&offer());
        let f = d.facts(
            &reply("RE: Cargo offer CRM:0001001", "stranger@elsewhere.example"),
            &UserId::new("paul"),
            &OrgSettings::default(),
        );
        assert_eq!(f.tracked.len(), 1, "found by the token's digits");
        let t = &f.tracked[0];
        assert_eq!(t.token.as_deref(), Some("CRM:0001001"));
        assert_eq!(t.message_id, "offer-1@serenity.example");
        assert!(t.outgoing);
        assert_eq!(f.parties.len(), 1, "paul's row; the stranger has none");
        assert_eq!(f.acceptors.len(), 1);
        assert_eq!(f.acceptors[0].filter, IncomingFilter::RepliesOnly);
    }

    fn paul() -> Party {
        Party {
            kind: PartyKind::User,
            id: RecordId::new("paul"),
            name: "Paul".into(),
            owner: None,
            active: true,
        }
    }

    #[test]
    fn a_contact_moves_with_its_address_and_a_deleted_email_is_forgotten() {
        let mut d = EmailDirectory::default();
        d.upsert_party("paul@serenity.example", paul());
        d.upsert_record(&contact(
            "c1",
            "zoe@customer.example",
            "jayne",
            ContactState::Active,
        ));
        d.upsert_record(&contact(
            "c1",
            "zoe@new.example",
            "jayne",
            ContactState::Active,
        ));
        d.upsert_record(&contact(
            "c2",
            "zoe@new.example",
            "paul",
            ContactState::Inactive,
        ));
        d.upsert_record(&offer());
        let f = d.facts(
            &reply("Hello", "zoe@new.example"),
            &UserId::new("paul"),
            &OrgSettings::default(),
        );
        let rows = &f
            .parties
            .iter()
            .find(|(a, _)| a == "zoe@new.example")
            .unwrap()
            .1;
        assert_eq!(
            rows.len(),
            2,
            "both rows, the inactive one too (never resolved)"
        );
        assert!(!f.parties.iter().any(|(a, _)| a == "zoe@customer.example"));
        // The offer shares only Paul's own address with this message: not a candidate.
        assert!(f.tracked.is_empty());
        // A message from Zoe's old address shares the offer's recipient: a candidate, for
        // smart matching to judge (the lookup selects, the rules decide).
        let from_old = reply("Hello", "zoe@customer.example");
        assert_eq!(
            d.facts(&from_old, &UserId::new("jayne"), &OrgSettings::default())
                .tracked
                .len(),
            1
        );
        let mut by_reply = reply("Re: offer", "zoe@customer.example");
        by_reply.in_reply_to = Some("<OFFER-1@serenity.example>".into());
        assert_eq!(
            d.facts(&by_reply, &UserId::new("paul"), &OrgSettings::default())
                .tracked
                .len(),
            1
        );
        d.remove_record(&RecordId::new("email-offer"));
        d.remove_record(&RecordId::new("c1"));
        assert!(
            d.facts(&by_reply, &UserId::new("paul"), &OrgSettings::default())
                .tracked
                .is_empty()
        );
        assert_eq!(d, {
            let mut only_c2 = EmailDirectory::default();
            only_c2.upsert_party("paul@serenity.example", paul());
            only_c2.upsert_record(&contact(
                "c2",
                "zoe@new.example",
                "paul",
                ContactState::Inactive,
            ));
            only_c2
        });
    }
}
