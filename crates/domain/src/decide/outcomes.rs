//! Intent outcomes and server errors: links made by a create (R17, R33), withdrawn creates
//! (R27), and the classification and handling of errors (R10, R11, R12).

use super::*;
use crate::error_kind::ErrorKind;
use crate::policy::retry_after;

impl Decider<'_> {
    // ───────────── outcomes and errors: R10, R11, R12 ─────────────

    pub(super) fn intent_succeeded(&mut self, p: &IntentSucceeded) {
        let s = self.state;
        if let Some(create) = s.withdrawn.get(&p.intent) {
            self.withdrawn_create_succeeded(p, create);
            return;
        }
        let Some(intent) = s.intents.get(&p.intent) else {
            return;
        };
        if intent.kind != IntentKind::Create {
            return;
        }
        // R76: an email row's create on the mail server is its send.
        if !intent.to_crm
            && let Some(rec) = s
                .records
                .get(&intent.record)
                .filter(|r| r.entity() == Entity::Email)
        {
            self.email_sent(p, intent, rec);
            return;
        }
        // R52: the CRM created the email activity. An email has no item on the mail server to
        // link the row to: the outcome closes the command, and nothing more is decided.
        if intent
            .command
            .as_ref()
            .is_some_and(|c| c.command == CommandType::TrackEmail)
        {
            return;
        }
        let remote = p.remote.clone().or_else(|| intent.remote.clone());
        let Some(remote) = remote else { return };
        let title = s
            .records
            .get(&intent.record)
            .map(|r| r.title().to_string())
            .or_else(|| intent.command.as_ref().map(|c| c.title.clone()))
            .unwrap_or_else(|| intent.record.to_string());
        // A CRM command's result names the row the CRM created (its own id, perhaps not the
        // one proposed) and its version; its rule is the command's (R33, R44).
        let (rule, record) = match (&p.crm, &intent.command) {
            (Some(done), Some(c)) => (c.command.rule(c.entity), done.record.clone()),
            _ if intent.to_crm => (R33, intent.record.clone()),
            _ => (R17, intent.record.clone()),
        };
        let waiting = s
            .links
            .get(&intent.record)
            .is_some_and(|l| l.create == Some(p.intent));
        if !waiting {
            self.push(
                rule,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "\"{title}\" was created as {remote} after the row stopped being synced to this mailbox \
                             (or was created again): the item stays where it is, unlinked"
                        ),
                        vec![],
                    ),
                    record: Some(record),
                    remote: Some(remote),
                }),
            );
            return;
        }
        let reason = match &p.crm {
            Some(done) => format!(
                "the CRM carried out {} for \"{title}\": it created row {} version {}; CRM row \
                 and server item are linked",
                done.command, done.record, done.version
            ),
            None => format!(
                "\"{title}\" was created on the {}: CRM row and server item are linked",
                if intent.to_crm { "CRM" } else { "mail server" }
            ),
        };
        self.push(
            rule,
            Event::LinkCreated(LinkCreated {
                basis: basis(reason, vec![]),
                record,
                remote,
            }),
        );
    }

    /// R27 (R42, R45): a create withdrawn while it was already being carried out succeeded
    /// anyway. The row is not synced to this mailbox, so the item it made is deleted, and the
    /// invitation it sent, if any, is cancelled: what attendees were told is taken back.
    pub(super) fn withdrawn_create_succeeded(
        &mut self,
        p: &IntentSucceeded,
        create: &PendingIntent,
    ) {
        let Some(remote) = p.remote.clone().or_else(|| create.remote.clone()) else {
            return;
        };
        let record = create.record.clone();
        let rec = self.state.records.get(&record).cloned();
        let title = rec
            .as_ref()
            .map(|r| r.title().to_string())
            .unwrap_or_else(|| record.to_string());
        let rule = match rec.as_ref().map(|r| r.entity()) {
            Some(Entity::Contact) => R42,
            Some(Entity::Task) => R45,
            _ => R27,
        };
        let version = rec.as_ref().map_or(0, |r| r.version);
        self.push(
            rule,
            Event::DeleteIntent(DeleteIntent {
                basis: basis(
                    format!(
                        "\"{title}\" was created as {remote} by a create withdrawn while it was being carried out; \
                         the row is not synced to this mailbox, so the item is deleted"
                    ),
                    vec![],
                ),
                record: record.clone(),
                remote: Some(remote.clone()),
                target: Side::MailServer,
                key: format!("{}/{}/delete-withdrawn/{}", self.mailbox_id(), record, p.intent),
            }),
        );
        let (Some((notified, _)), Some(a)) =
            (create.notifies, rec.as_ref().and_then(|r| r.appointment()))
        else {
            return;
        };
        let attendees = attendee_addresses(a);
        if attendees.is_empty() {
            return;
        }
        self.push(
            rule,
            Event::CancelIntent(CancelIntent {
                basis: basis(
                    format!(
                        "the withdrawn create of \"{title}\" sent an invitation before it was withdrawn: \
                         {} attendee(s) get a cancellation",
                        attendees.len()
                    ),
                    vec![],
                ),
                record: record.clone(),
                remote: Some(remote),
                attendees,
                version: notified.max(version),
                key: self.key("cancel", &record, notified),
            }),
        );
    }

    /// R12, R79: an item's failure. A transient one is attempt `failures + 1` of
    /// `transient_retry_limit`: below the limit only this item is retried, not before the retry
    /// interval (or the server's Retry-After) has passed; the attempt that reaches the limit
    /// gives the item up, like a permanent error, and tells the mailbox owner. The mailbox is
    /// never disabled for an item (R12).
    pub(super) fn intent_failed(&mut self, p: &IntentFailed) {
        let s = self.state;
        let settings = self.ctx.settings;
        let Some(intent) = s.intents.get(&p.intent) else {
            return;
        };
        // A CRM command's failure is classed by the CRM's own word (R12), never by its code.
        let class = match &p.crm {
            Some(f) if f.retryable => ErrorClass::Transient,
            Some(_) => ErrorClass::Permanent,
            None => classify(&p.error, ErrorSubject::Item).0,
        };
        let command = intent.command.as_ref().filter(|_| p.crm.is_some());
        let what = match command {
            Some(c) => format!("{} command", c.command),
            None => format!("{:?}", intent.kind).to_lowercase(),
        };
        let attempt = intent.failures + 1;
        let limit = settings.transient_retry_limit;
        // An email row's create on the mail server is its send (R75).
        let workload = s.intent_workload(intent);
        let sending = !intent.to_crm && workload == Workload::Outgoing;
        // R77: a send the mail server refused for quota or throttling stays pending and is
        // retried, however often; the mailbox is never disabled for it.
        let throttled =
            sending && class == ErrorClass::Transient && super::send::throttled(&p.error);
        let given_up = class == ErrorClass::Transient && attempt >= limit && !throttled;
        let at = retry_after::next_retry(self.ctx.now, settings.transient_retry_interval, &p.error);
        let next = match (class, intent.kind) {
            _ if throttled => format!(
                "the mail server's quota or throttling (R77): the email stays pending and is sent \
                 again, with the same Message-ID, at or after {at} (attempt {attempt}); the \
                 mailbox is not disabled"
            ),
            (ErrorClass::Permanent, IntentKind::Create) if sending => {
                "the mail server refused the email for good: it is not sent and not retried"
                    .to_string()
            }
            (ErrorClass::Transient, _) if command.is_some() && !given_up => format!(
                "attempt {attempt} of {limit}: the CRM may retry it; the command is offered \
                 again with the same idempotency key at or after {at}; the mailbox is not affected"
            ),
            (ErrorClass::Permanent, _) if command.is_some() => {
                "the CRM refused it for good: the command is given up and not offered again"
                    .to_string()
            }
            _ if p.error.kind() == ErrorKind::Gone => {
                "the item is gone from the server for good (410): it is not retried".to_string()
            }
            (ErrorClass::Transient, _) if given_up => format!(
                "attempt {attempt} of {limit}: the limit is reached, the {what} is given up and \
                 the mailbox owner is told; the mailbox is not affected"
            ),
            (ErrorClass::Transient, _) => format!(
                "attempt {attempt} of {limit}: only this item is retried, with the same \
                 idempotency key, in a cycle at or after {at}; the mailbox is not affected"
            ),
            (ErrorClass::Permanent, IntentKind::Delete) => {
                "the item cannot be deleted: it stays where it is, unlinked".to_string()
            }
            (ErrorClass::Permanent, IntentKind::Create) => {
                "the item was not created; the row is not linked in this mailbox".to_string()
            }
            (ErrorClass::Permanent, _) => {
                "this change is given up; the next change of the row is tried afresh".to_string()
            }
        };
        let used = vec![
            setting(settings, SettingKey::TransientRetryLimit),
            setting(settings, SettingKey::TransientRetryIntervalMinutes),
        ];
        let record = intent.record.clone();
        self.push(
            if throttled { R77 } else { R12 },
            Event::ErrorClassified(ErrorClassified {
                basis: basis(
                    match command {
                        Some(_) => format!(
                            "the CRM answered the {what} for {record}: failed ({} {}): {next}",
                            p.error.code, p.error.message
                        ),
                        None => format!(
                            "the {what} intent for {record} failed ({} {}): {next}",
                            p.error.code, p.error.message
                        ),
                    },
                    used.clone(),
                ),
                // The workload whose connector carries the intent out (ACT, incoming, outgoing).
                workload,
                class,
                scope: ErrorScope::Item,
                attempt,
                limit,
                intent: Some(p.intent),
                error: p.error.clone(),
            }),
        );
        if given_up {
            let title = s
                .records
                .get(&record)
                .map(|r| r.title().to_string())
                .unwrap_or_else(|| record.to_string());
            let side = if intent.to_crm { "CRM" } else { "mail server" };
            self.alert_with(
                R79,
                AlertLevel::Warning,
                format!(
                    "The {what} of \"{title}\" ({record}) on the {side} of mailbox {} failed {attempt} \
                     times (last: {} {}) and is no longer retried. Correct the cause, then change \
                     the row to sync it again.",
                    s.address, p.error.code, p.error.message
                ),
                used,
            );
        }
    }

    pub(super) fn workload_error(&mut self, w: Workload, error: &ServerError) {
        let s = self.state;
        let settings = self.ctx.settings;
        let ws = s.workload(w);
        let (class, scope) = classify(error, ErrorSubject::Workload);
        let note = transient_note(error.kind());
        let attempt = ws.consecutive_errors + 1;
        let limit = settings.transient_retry_limit;
        let used = vec![
            setting(settings, SettingKey::TransientRetryLimit),
            setting(settings, SettingKey::TransientRetryIntervalMinutes),
        ];
        match class {
            ErrorClass::Permanent => {
                self.push(
                    R10,
                    Event::ErrorClassified(ErrorClassified {
                        basis: basis(
                            format!("{} {} is a permanent error", error.code, error.message),
                            used.clone(),
                        ),
                        workload: w,
                        class,
                        scope,
                        attempt,
                        limit,
                        intent: None,
                        error: error.clone(),
                    }),
                );
                if ws.enabled {
                    self.push(
                        R10,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(format!("a permanent error disables {w} at once"), vec![]),
                            workload: w,
                            reason: DisableReason::PermanentError,
                        }),
                    );
                    let who = if scope == ErrorScope::Server {
                        "The owner of the email server profile has been notified."
                    } else {
                        "The mailbox owner must correct the credentials and run Test & Enable again."
                    };
                    self.alert(R10, AlertLevel::Error, format!(
                        "The mailbox {} has been disabled for {w} because the server answered {} {}. {who}",
                        s.address, error.code, error.message
                    ));
                }
            }
            ErrorClass::Transient => {
                self.push(
                    R11,
                    Event::ErrorClassified(ErrorClassified {
                        basis: basis(
                            format!(
                                "{} {} is transient{note}: failure {attempt} of {limit}",
                                error.code, error.message
                            ),
                            used.clone(),
                        ),
                        workload: w,
                        class,
                        scope,
                        attempt,
                        limit,
                        intent: None,
                        error: error.clone(),
                    }),
                );
                if !ws.enabled {
                    return;
                }
                if attempt >= limit {
                    self.push(
                        R11,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(format!("{attempt} consecutive transient failures reach the limit of {limit}"), used.clone()),
                            workload: w,
                            reason: DisableReason::TransientLimit,
                        }),
                    );
                    self.alert_with(R11, AlertLevel::Error, format!(
                        "The mailbox {} has been disabled for {w} after {attempt} consecutive transient failures (last: {} {}{note}). \
                         Check the server, then run Test & Enable again.",
                        s.address, error.code, error.message
                    ), used.clone());
                } else {
                    // Never sooner than the retry interval, never before the server's
                    // Retry-After (capped at an hour): the one policy the throttle also uses.
                    let at = retry_after::next_retry(
                        self.ctx.now,
                        settings.transient_retry_interval,
                        error,
                    );
                    self.push(
                        R11,
                        Event::RetryScheduled(RetryScheduled {
                            basis: basis(
                                format!(
                                    "transient failure {attempt} of {limit}{note}: retry {w} at {at}"
                                ),
                                used,
                            ),
                            workload: w,
                            at,
                        }),
                    );
                }
            }
        }
    }
}

/// What a failure was about: a whole workload (a listing of a collection, a connection) or one
/// item (an intent on one server item). The same kind can mean different things: a collection
/// not found may come back, an item not found will not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSubject {
    /// A workload's listing or connection.
    Workload,
    /// One item (an intent's target).
    Item,
}

/// Classifies a server answer from its [`ErrorKind`] (R10, R11, R12), never from its text.
///
/// | kind                                              | class     | scope (workload)     |
/// |---------------------------------------------------|-----------|----------------------|
/// | auth, forbidden, not_approved                     | permanent | mailbox              |
/// | tls, discovery, unsupported, malformed, too_large | permanent | server               |
/// | gone (410: removed for good)                      | permanent | server               |
/// | not_found, item                                   | permanent | item                 |
/// | not_found, workload (a missing collection)        | transient | server               |
/// | quota (R77)                                       | transient | mailbox              |
/// | conflict, rate_limited, unavailable, timeout, network, cursor, unknown | transient | server |
///
/// An item's error always has the item scope (R12): only that item is affected.
pub fn classify(error: &ServerError, subject: ErrorSubject) -> (ErrorClass, ErrorScope) {
    use ErrorClass::{Permanent, Transient};
    use ErrorScope::{Mailbox, Server};
    let (class, scope) = match error.kind() {
        ErrorKind::Auth | ErrorKind::Forbidden | ErrorKind::NotApproved => (Permanent, Mailbox),
        ErrorKind::Tls
        | ErrorKind::Discovery
        | ErrorKind::Unsupported
        | ErrorKind::Malformed
        | ErrorKind::TooLarge
        | ErrorKind::Gone => (Permanent, Server),
        ErrorKind::NotFound => match subject {
            ErrorSubject::Item => (Permanent, Server),
            ErrorSubject::Workload => (Transient, Server),
        },
        ErrorKind::Quota => (Transient, Mailbox),
        ErrorKind::Conflict
        | ErrorKind::RateLimited
        | ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::Network
        | ErrorKind::CursorInvalid
        | ErrorKind::Unknown => (Transient, Server),
    };
    match subject {
        ErrorSubject::Item => (class, ErrorScope::Item),
        ErrorSubject::Workload => (class, scope),
    }
}

/// What a transient workload error is, in words, when the kind says more than "transient".
fn transient_note(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => {
            " (the collection was not found: a missing folder may come back, e.g. an unmounted \
             share or a folder being recreated, so it is retried, not given up)"
        }
        ErrorKind::RateLimited => " (the server asked to slow down)",
        ErrorKind::Quota => " (the mailbox is over its quota)",
        _ => "",
    }
}
