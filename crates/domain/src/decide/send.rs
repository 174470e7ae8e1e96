//! Outgoing email (R75–R78): a CRM email row in Pending Send is sent by its sender's mailbox,
//! or by the submitting user's mailbox on the sender's behalf (R78); the send is a create
//! intent to the mail server whose success marks the row Sent through a CRM command (R76)
//! and whose quota or throttling answers keep it pending (R77).

use super::*;
use crate::email::outgoing;
use crate::records::{Email, EmailState};

/// The settings a send decision consults, named in its basis.
fn consulted(s: &OrgSettings) -> Vec<SettingUsed> {
    [
        SettingKey::RequireApprovedAddress,
        SettingKey::EmailOutgoingDelegation,
        SettingKey::EmailUseTrackingToken,
        SettingKey::EmailTokenPrefix,
        SettingKey::EmailTokenUserDigits,
        SettingKey::EmailTokenCounterDigits,
        SettingKey::EmailMaxSubjectLength,
        SettingKey::EmailSaveSentCopy,
    ]
    .into_iter()
    .map(|k| setting(s, k))
    .collect()
}

pub(super) use outgoing::throttled;

impl Decider<'_> {
    /// R78: the user whose mailbox sends `e`, and whether it sends on behalf of the From user
    /// or queue. With outgoing delegation on, an email submitted by another user is sent
    /// through the submitter's mailbox; otherwise through the From user's (or queue's).
    fn sending_mailbox_is_this(&self, e: &Email) -> (bool, bool) {
        let s = self.state;
        let submitter = e
            .submitted_by
            .as_ref()
            .filter(|u| Some(*u) != e.from.user.as_ref());
        match submitter {
            Some(u) if self.ctx.settings.email.outgoing_delegation => {
                (s.owner.as_ref() == Some(u), true)
            }
            _ => match &e.from.user {
                Some(u) => (s.owner.as_ref() == Some(u), false),
                None => (s.address.eq_ignore_ascii_case(e.from.email.trim()), false),
            },
        }
    }

    /// R75: a CRM email row reached this mailbox. Only the sending mailbox decides (R78);
    /// it sends only a row in Pending Send, with the outgoing workload enabled and the address
    /// approved, once.
    pub(super) fn outgoing_email(&mut self, rec: &Record, e: &Email) {
        let s = self.state;
        let (ours, on_behalf) = self.sending_mailbox_is_this(e);
        if !ours {
            return;
        }
        let used = consulted(self.ctx.settings);
        let no_action = |d: &mut Self, reason: String, used: Vec<SettingUsed>| {
            d.push(
                R75,
                Event::NoAction(NoAction {
                    basis: basis(reason, used),
                    record: Some(rec.id.clone()),
                    remote: None,
                }),
            );
        };
        let title = &e.subject;
        // A received or sent row (a tracked email, this mailbox's own send coming back after
        // its mark_email_sent) is not one to send: nothing to say. A draft is said not to be
        // sent, which is what a user who expected it to go out asks about.
        if matches!(e.state, EmailState::Received | EmailState::Sent) {
            return;
        }
        if e.state != EmailState::PendingSend {
            no_action(
                self,
                format!(
                    "\"{title}\" is {}, not pending send: it is not sent",
                    e.state
                ),
                vec![],
            );
            return;
        }
        if let Some((id, _)) = s
            .intents
            .iter()
            .find(|(_, i)| i.record == rec.id && !i.to_crm)
        {
            no_action(
                self,
                format!("\"{title}\" is being sent (intent {id}): it is not sent twice"),
                vec![],
            );
            return;
        }
        if let Some(link) = s.links.get(&rec.id) {
            let how = link
                .remote
                .as_ref()
                .map(|r| format!(" as {r}"))
                .unwrap_or_default();
            no_action(
                self,
                format!("\"{title}\" was already sent{how}: it is not sent again"),
                vec![],
            );
            return;
        }
        let require = self.ctx.settings.require_approved_address;
        if require && !s.approved {
            no_action(
                self,
                format!(
                    "\"{title}\" stays pending: the address {} is not approved",
                    s.address
                ),
                used,
            );
            return;
        }
        if !s.workload(Workload::Outgoing).enabled {
            no_action(
                self,
                format!(
                    "\"{title}\" stays pending: outgoing email is not tested and enabled for the \
                     mailbox {}",
                    s.address
                ),
                used,
            );
            return;
        }
        if e.to.is_empty() && e.cc.is_empty() {
            no_action(
                self,
                format!("\"{title}\" has no recipient: it is not sent"),
                vec![],
            );
            return;
        }
        let key = self.key("send", &rec.id, rec.version);
        let message_id = outgoing::message_id(&key, &e.from.email);
        let (sent_subject, no_token) = outgoing::subject(
            &e.subject,
            e.tracking_token.as_deref(),
            &self.ctx.settings.email,
        );
        let mut notes = Vec::new();
        if on_behalf {
            notes.push(format!(
                "sent through {}'s mailbox on behalf of {} (R78)",
                self.owner_name(),
                e.from.email
            ));
        }
        match no_token {
            Some(why) => notes.push(format!("no tracking token: {why} (R63)")),
            None if sent_subject.truncated => {
                notes.push("the subject was cut so that the tracking token fits (R64)".into())
            }
            None => notes.push("the subject carries the tracking token (R63)".into()),
        }
        notes.push(if self.ctx.settings.email.save_sent_copy {
            "a copy is saved to the Sent folder (R76)".into()
        } else {
            "no copy is saved to the Sent folder (email_save_sent_copy=false)".into()
        });
        self.push(
            R75,
            Event::CreateIntent(CreateIntent {
                basis: basis(
                    with_notes(
                        format!(
                            "\"{title}\" is pending send and {} has outgoing email enabled: it is \
                             sent to {} recipient(s) as {message_id}",
                            s.address,
                            e.to.len() + e.cc.len()
                        ),
                        &notes,
                    ),
                    used,
                ),
                record: rec.id.clone(),
                remote: None,
                target: Side::MailServer,
                item: ItemWrite {
                    title: sent_subject.subject,
                    version: rec.version,
                    show_as: None,
                    reminder: false,
                    notify_attendees: false,
                    attendees: u32::try_from(e.to.len() + e.cc.len()).unwrap_or(u32::MAX),
                    completed: false,
                    actual_start: None,
                },
                key,
            }),
        );
    }

    /// R76: the email was sent. The row is linked to the message sent (its Message-ID), and
    /// the CRM is told to mark it Sent (`mark_email_sent`).
    pub(super) fn email_sent(&mut self, p: &IntentSucceeded, intent: &PendingIntent, rec: &Record) {
        let remote = p
            .remote
            .clone()
            .or_else(|| intent.remote.clone())
            .unwrap_or_else(|| RemoteId::new(format!("sent/{}", rec.id)));
        self.push(
            R76,
            Event::LinkCreated(LinkCreated {
                basis: basis(format!("\"{}\" was sent as {remote}", rec.title()), vec![]),
                record: rec.id.clone(),
                remote: remote.clone(),
            }),
        );
        let key = self.key("crm-sent", &rec.id, rec.version);
        self.push(
            R76,
            Event::UpdateIntent(UpdateIntent {
                basis: basis(
                    format!(
                        "\"{}\" was sent: the CRM marks the email Sent ({})",
                        rec.title(),
                        CommandType::MarkEmailSent
                    ),
                    vec![],
                ),
                record: rec.id.clone(),
                remote: Some(remote),
                target: Side::Crm,
                item: ItemWrite {
                    title: rec.title().to_string(),
                    version: rec.version,
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
