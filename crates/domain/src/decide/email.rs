//! Incoming email (R49–R69): an `email_received` is decided from the facts recorded with it
//! (decision 0018) by [`crate::email::decide_email`], into `email_accepted` or
//! `email_rejected`, with every step and the `email_*` settings in the basis.

use super::*;
use crate::crm::EmailCommand;
use crate::email::correlate::{EmailIndex, message_id_key};
use crate::email::resolve::{Directory, PartyKind};
use crate::email::{self as rules, Acceptor, EmailSettings, Folder, IncomingFilter, Outcome};
use std::collections::BTreeMap;

/// The settings an email decision consults, named in its basis so that `what-if` re-decides
/// it under another value and `explain` names them: every `email_*` setting but the two the
/// connector applies (the subject length of outgoing mail, the size of a message read) and
/// the two outgoing ones (R76, R78).
fn consulted() -> impl Iterator<Item = SettingKey> {
    SettingKey::ALL.into_iter().filter(|k| {
        k.as_str().starts_with("email_")
            && !matches!(
                k,
                SettingKey::EmailMaxSubjectLength
                    | SettingKey::EmailMaxMessageMib
                    | SettingKey::EmailSaveSentCopy
                    | SettingKey::EmailOutgoingDelegation
            )
    })
}

impl Decider<'_> {
    /// An email observed again (delivered again, its folder read again, or its tracking
    /// keyword changed): the tracking keyword set on a message not tracked yet tracks it by
    /// hand (R56); the keyword removed from one tracked by hand untracks it in the mailbox and
    /// keeps the CRM email (R73); anything else decides nothing new.
    pub(super) fn email_seen_again(&mut self, e: &EmailReceived) {
        let s = self.state;
        let keyword_before = s.keyword_tracked.contains(&e.remote);
        let accepted = !e.message_id.trim().is_empty()
            && s.messages_accepted.contains(&message_id_key(&e.message_id));
        match (e.manual.is_some(), keyword_before) {
            (true, false) if !accepted => self.email_received(e),
            (false, true) if accepted => self.push(
                R73,
                Event::ItemUntracked(ItemUntracked {
                    basis: basis(
                        format!(
                            "the tracking keyword was removed from \"{}\" in the mailbox: it is \
                             untracked there, and the CRM email activity is kept",
                            e.subject
                        ),
                        vec![],
                    ),
                    record: Some(crate::crm::EmailCommand::proposed_record(
                        &e.message_id,
                        &e.remote,
                    )),
                    remote: e.remote.clone(),
                }),
            ),
            _ => {}
        }
    }

    pub(super) fn email_received(&mut self, e: &EmailReceived) {
        let s = self.state;
        let settings: Vec<SettingUsed> =
            consulted().map(|k| setting(self.ctx.settings, k)).collect();
        let reject = |d: &mut Self, rule: RuleId, reason: String, settings: Vec<SettingUsed>| {
            d.push(
                rule,
                Event::EmailRejected(EmailRejected {
                    basis: basis(reason, settings),
                    remote: e.remote.clone(),
                }),
            );
        };
        // R5, R6: no email is processed for an unapproved address or an incoming workload
        // that is not enabled.
        if !s.workload(Workload::Incoming).enabled {
            let (rule, why) = if !s.approved && self.ctx.settings.require_approved_address {
                (R5, format!("the address {} is not approved", s.address))
            } else {
                (
                    R6,
                    "incoming email is not enabled for the mailbox".to_string(),
                )
            };
            let used = vec![setting(
                self.ctx.settings,
                SettingKey::RequireApprovedAddress,
            )];
            reject(
                self,
                rule,
                format!("\"{}\" is not processed: {why}", e.subject),
                used,
            );
            return;
        }
        let Some(owner) = &s.owner else {
            reject(
                self,
                R1,
                format!(
                    "\"{}\" is not processed: the mailbox is not mapped to a CRM user",
                    e.subject
                ),
                vec![],
            );
            return;
        };
        let f = &e.facts;
        let mut directory = Directory::default();
        for (address, rows) in &f.parties {
            for row in rows {
                directory.insert(address, row.clone());
            }
        }
        let mut index = EmailIndex::default();
        for tracked in &f.tracked {
            index.insert(tracked.clone());
        }
        let acceptors: BTreeMap<RecordId, Acceptor> = f
            .acceptors
            .iter()
            .map(|a| (a.id.clone(), a.clone()))
            .collect();
        // The mailbox's user with the default method when the facts name none for them.
        let own_id = RecordId::new(owner.as_str());
        let own = acceptors.get(&own_id).cloned().unwrap_or(Acceptor {
            id: own_id,
            kind: PartyKind::User,
            filter: IncomingFilter::default(),
            auto_create: None,
            may_own_emails: true,
        });
        let message = rules::Message::from(e);
        let folder = match &e.folder {
            EmailFolder::Inbox => Folder::InboxRoot,
            EmailFolder::Tracked(_) => Folder::Tracked {
                regarding: f.folder_regarding.clone(),
            },
            EmailFolder::Sent => Folder::Sent,
            EmailFolder::Other(name) => Folder::Other(name.clone()),
        };
        let processing = rules::Processing {
            address: &s.address,
            owner: &own,
            process_from: None,
        };
        let rules_settings = EmailSettings::of(self.ctx.settings, f.process_from);
        let outcome = rules::decide_email(
            &message,
            &folder,
            e.manual,
            &processing,
            &acceptors,
            &directory,
            &index,
            &rules_settings,
        );
        match outcome {
            Outcome::Reject { rule, why } => reject(
                self,
                rule,
                format!("\"{}\" is not tracked: {why}", e.subject),
                settings,
            ),
            Outcome::Track(t) => {
                let how = match (&t.correlation, e.manual, &e.folder) {
                    (_, Some(rules::Manual::Category), _) => Some(TrackedBy::Category),
                    (_, Some(rules::Manual::AddIn), _) => Some(TrackedBy::AddIn),
                    (_, None, EmailFolder::Tracked(_)) => Some(TrackedBy::Folder),
                    (Some(c), None, _) => Some(c.method.tracked_by()),
                    (None, None, _) => None,
                };
                let mut recipients: Vec<RecordId> = Vec::new();
                for r in &t.recipients {
                    for p in &r.parties {
                        if !recipients.contains(&p.id) {
                            recipients.push(p.id.clone());
                        }
                    }
                }
                let event = Event::EmailAccepted(EmailAccepted {
                    basis: basis(
                        format!("\"{}\" is tracked: {}", e.subject, t.steps.join("; ")),
                        settings,
                    ),
                    remote: e.remote.clone(),
                    message_id: message_id_key(&e.message_id),
                    accepting: t.accepting.clone(),
                    receiving_mailbox: self.mailbox_id(),
                    correlation: how,
                    correlated: t.correlation.as_ref().map(|c| c.with.activity.clone()),
                    parent: t
                        .correlation
                        .as_ref()
                        .is_some_and(|c| c.method.sets_parent()),
                    regarding: t.regarding.clone(),
                    sender: t.sender.parties.first().map(|p| p.id.clone()),
                    recipients,
                    create: t.create,
                    owner: t.owner.clone(),
                });
                self.push(t.rule, event);
                self.track_email(e, t.rule, t.regarding.as_ref());
            }
        }
    }
}

impl Decider<'_> {
    /// R52: an accepted email leaves for the CRM as a `track_email` command, a create intent
    /// with target CRM whose proposed row is derived from the Message-ID
    /// ([`EmailCommand::proposed_record`]): every mailbox that tracks the same message proposes
    /// the same row, and the CRM creates at most one activity per Message-ID. The command
    /// carries the headers and what `email_accepted` decided (the state fixes them when the
    /// intent is applied).
    fn track_email(
        &mut self,
        e: &EmailReceived,
        accepted_by: RuleId,
        regarding: Option<&crate::records::RecordRef>,
    ) {
        let record = EmailCommand::proposed_record(&e.message_id, &e.remote);
        let regarding = match regarding {
            Some(r) => format!("regarding {} {} ({})", r.table, r.id, r.name),
            None => "regarding no row".to_string(),
        };
        let key = self.key("crm-create", &record, 0);
        self.push(
            CommandType::TrackEmail.rule(Entity::Email),
            Event::CreateIntent(CreateIntent {
                basis: basis(
                    format!(
                        "\"{}\" was accepted ({accepted_by}), {regarding}: the CRM creates its email \
                         activity ({}), one per Message-ID",
                        e.subject,
                        CommandType::TrackEmail
                    ),
                    vec![],
                ),
                record,
                remote: Some(e.remote.clone()),
                target: Side::Crm,
                item: ItemWrite {
                    title: e.subject.clone(),
                    version: 0,
                    show_as: None,
                    reminder: false,
                    notify_attendees: false,
                    attendees: 0,
                    completed: false,
                    actual_start: None,
                },
                key,
            }),
        );
    }
}
