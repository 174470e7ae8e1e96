//! Scope and acceptance of an incoming email (R49–R59), and its owner (R69): the whole
//! decision, in SSS's order, every step named by its rule.

use super::Message;
use super::correlate::{self, Correlation, CorrelationSettings, EmailIndex};
use super::resolve::{self, AutoCreate, Directory, PartyKind, ResolveSettings, Resolved};
use crate::ids::{RecordId, UserId};
use crate::records::RecordRef;
use crate::rules::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// "Incoming email filtering method" of a user or queue (SSS values 0–4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IncomingFilter {
    /// 0: all email messages.
    All,
    /// 1: email messages in response to CRM email (the default): only replies that
    /// correlate (R54).
    #[default]
    RepliesOnly,
    /// 2: email messages from leads, contacts and accounts (R55).
    FromLeadsContactsAccounts,
    /// 3: email messages from records that are email enabled.
    FromEmailEnabled,
    /// 4: no email messages.
    None,
}

impl fmt::Display for IncomingFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IncomingFilter::All => "all email messages",
            IncomingFilter::RepliesOnly => "email messages in response to CRM email",
            IncomingFilter::FromLeadsContactsAccounts => {
                "email messages from leads, contacts and accounts"
            }
            IncomingFilter::FromEmailEnabled => {
                "email messages from records that are email enabled"
            }
            IncomingFilter::None => "no email messages",
        })
    }
}

/// A user or queue that can accept email, with its options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptor {
    /// Its row (a user's id for a user).
    pub id: RecordId,
    /// User or queue.
    pub kind: PartyKind,
    /// Its filtering method.
    pub filter: IncomingFilter,
    /// What it creates for an unresolved sender (R68), if anything.
    pub auto_create: Option<AutoCreate>,
    /// Whether it may own email rows (R69: mailbox owners allowed to edit emails).
    pub may_own_emails: bool,
}

/// The folder the email was found in (R49).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Folder {
    /// The Inbox itself.
    InboxRoot,
    /// A tracked folder under the Inbox, with its regarding row (R72).
    Tracked {
        /// The row every email in the folder is regarding.
        regarding: Option<RecordRef>,
    },
    /// The Sent folder.
    Sent,
    /// Any other folder (its name).
    Other(String),
}

/// How a user tracked an email by hand (R56): the filtering method does not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Manual {
    /// The tracking keyword (`$CRMTracked`) or category.
    Category,
    /// A client add-in.
    AddIn,
}

/// The mailbox whose cycle found the email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processing<'a> {
    /// Its address.
    pub address: &'a str,
    /// The user or queue it belongs to.
    pub owner: &'a Acceptor,
    /// Its "process email from" date.
    pub process_from: Option<Timestamp>,
}

/// The settings the email rules consult.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// Correlation (R60–R62, R65).
    pub correlation: CorrelationSettings,
    /// Resolution (R66, R67).
    pub resolve: ResolveSettings,
    /// `UseFilteringMethodOfSyncingMailboxOnlyForCorrelation` (R53, default false).
    pub processing_mailbox_only: bool,
    /// "Track email sent between two users as two activities" (R58, default false).
    pub track_between_users_twice: bool,
    /// `RestrictIRMEmailItems` (R59, default false).
    pub restrict_irm: bool,
    /// `AutoCreateContactOnPromote` (R68, default true).
    pub auto_create_allowed: bool,
    /// `AutoTrackSentFolderItems` (R49, default false).
    pub track_sent_items: bool,
    /// The profile's "process email from" date (R50).
    pub profile_process_from: Option<Timestamp>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            correlation: CorrelationSettings::default(),
            resolve: ResolveSettings::default(),
            processing_mailbox_only: false,
            track_between_users_twice: false,
            restrict_irm: false,
            auto_create_allowed: true,
            track_sent_items: false,
            profile_process_from: None,
        }
    }
}

impl EmailSettings {
    /// The organization's email settings as the rules read them, with the profile's
    /// "process email from" date.
    pub fn of(org: &crate::settings::OrgSettings, profile_process_from: Option<Timestamp>) -> Self {
        let e = &org.email;
        Self {
            correlation: CorrelationSettings {
                use_correlation: e.use_correlation,
                ignore_conversation_and_in_reply_to: e.ignore_conversation_and_in_reply_to,
                do_not_correlate_forwards: e.do_not_correlate_forwards,
                smart_matching: e.smart_matching,
                smart: super::smart_match::SmartMatchSettings {
                    max_count: e.smart_match_max_count as usize,
                    delta_subject_count: e.smart_match_delta_subject_count as usize,
                    min_address_count: e.smart_match_min_address_count as usize,
                },
                token: super::token::TokenFormat {
                    prefix: e.token_prefix.clone(),
                    base: e.token_base,
                    user_digits: e.token_user_digits,
                    counter_digits: e.token_counter_digits,
                },
                use_tracking_token: e.use_tracking_token,
            },
            resolve: ResolveSettings {
                unresolve_sender_on_multiple: e.unresolve_sender_on_multiple_match,
                unresolve_recipients_on_multiple: e.unresolve_recipients_on_multiple_match,
            },
            processing_mailbox_only: e.processing_mailbox_only,
            track_between_users_twice: e.track_between_users_twice,
            restrict_irm: e.restrict_irm,
            auto_create_allowed: e.auto_create_contact_on_promote,
            track_sent_items: e.track_sent_items,
            profile_process_from,
        }
    }
}

/// What the rules decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The email is tracked.
    Track(Box<Tracked<'a>>),
    /// It is not, by this rule, for this reason.
    Reject {
        /// The deciding rule.
        rule: RuleId,
        /// Why, in plain words, with what the earlier steps found.
        why: String,
    },
}

/// A tracked email: everything the CRM email activity gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked<'a> {
    /// R52 (accepted by a recipient's filtering method) or R56 (tracked by hand).
    pub rule: RuleId,
    /// The user or queue that accepted it (R52: the accepting entity).
    pub accepting: RecordId,
    /// How it correlated, if it did.
    pub correlation: Option<Correlation<'a>>,
    /// The row it is regarding: the tracked folder's (R72), else the correlated email's (R61).
    pub regarding: Option<RecordRef>,
    /// The sender as resolved (R66).
    pub sender: Resolved<'a>,
    /// To, Cc and Bcc as resolved (R67).
    pub recipients: Vec<Resolved<'a>>,
    /// A row to create for the unresolved sender (R68).
    pub create: Option<AutoCreate>,
    /// The email's owner (R69).
    pub owner: Option<RecordId>,
    /// Each step, with its rule, in plain words.
    pub steps: Vec<String>,
}

/// Decides an incoming email found in `folder` by the `processing` mailbox's cycle.
#[allow(clippy::too_many_arguments)]
pub fn decide_email<'a>(
    message: &Message,
    folder: &Folder,
    manual: Option<Manual>,
    processing: &Processing<'_>,
    acceptors: &BTreeMap<RecordId, Acceptor>,
    directory: &'a Directory,
    index: &'a EmailIndex,
    s: &EmailSettings,
) -> Outcome<'a> {
    let reject = |rule: RuleId, why: String| Outcome::Reject { rule, why };
    let mut steps = Vec::new();

    // Scope: the folder (R49), the start date (R50), IRM (R59).
    let folder_regarding = match folder {
        Folder::InboxRoot => {
            steps.push("R49: found in the Inbox".to_string());
            None
        }
        Folder::Tracked { regarding } => {
            steps.push(match regarding {
                Some(r) => format!(
                    "R49: found in a tracked folder regarding {} {}",
                    r.table, r.name
                ),
                None => "R49: found in a tracked folder".to_string(),
            });
            regarding.clone()
        }
        Folder::Sent if s.track_sent_items => {
            steps.push("R49: found in Sent, and sent items are tracked".to_string());
            None
        }
        Folder::Sent => {
            return reject(R49, "it is in the Sent folder and sent items are not tracked (auto_track_sent_folder_items is off)".into());
        }
        Folder::Other(name) => {
            return reject(
                R49,
                format!(
                    "it is in the folder {name:?}, which is neither the Inbox, a tracked folder nor Sent"
                ),
            );
        }
    };
    let from = [s.profile_process_from, processing.process_from]
        .into_iter()
        .flatten()
        .max();
    if let Some(from) = from
        && message.received < from
    {
        return reject(
            R50,
            format!(
                "it was received at {} ms, before the mailbox processes email (from {} ms, the later of the profile's and the mailbox's dates)",
                message.received.0, from.0
            ),
        );
    }
    if message.irm_protected && s.restrict_irm {
        return reject(
            R59,
            "it is protected by rights management and restrict_irm_email_items is on".into(),
        );
    }

    // Correlation (R60–R62, R65).
    let correlation = match correlate::correlate(message, index, &s.correlation) {
        Ok(c) => {
            steps.push(format!("R60: correlated: {}", c.why));
            Some(c)
        }
        Err(why) => {
            steps.push(format!("R60: not correlated: {why}"));
            None
        }
    };

    // Resolution (R66, R67).
    let sender = resolve::sender(
        directory,
        &message.from,
        Some(&UserId::new(processing.owner.id.as_str())),
        &s.resolve,
    );
    steps.push(format!("R66: {}", sender.why));
    let recipients: Vec<Resolved<'a>> = message
        .to
        .iter()
        .chain(&message.cc)
        .chain(&message.bcc)
        .map(|a| resolve::recipient(directory, a, &s.resolve))
        .collect();

    // R58: mail between two users is tracked once, unless the option says twice.
    let sender_is_user = sender
        .parties
        .first()
        .is_some_and(|p| p.kind == PartyKind::User);
    if sender_is_user
        && !s.track_between_users_twice
        && index
            .by_message_id(&correlate::message_id_key(&message.message_id))
            .any(|e| e.outgoing)
    {
        return reject(
            R58,
            format!(
                "it is from the user {} and its sent copy is already tracked; track_email_between_users_as_two_activities is off",
                sender.parties[0].name
            ),
        );
    }

    // Acceptance: by hand (R56), else by a recipient's filtering method (R52–R55, R57).
    let manual_how = match (manual, folder) {
        (Some(Manual::Category), _) => Some("the tracking keyword"),
        (Some(Manual::AddIn), _) => Some("the client add-in"),
        (None, Folder::Tracked { .. }) => Some("the tracked folder"),
        (None, _) => None,
    };
    let (rule, accepting) = if let Some(how) = manual_how {
        steps.push(format!(
            "R56: tracked by hand through {how}: the filtering method does not apply"
        ));
        (R56, processing.owner.id.clone())
    } else {
        match accept(
            message,
            processing,
            acceptors,
            &sender,
            &recipients,
            correlation.is_some(),
            s,
        ) {
            Ok((accepting, why)) => {
                steps.push(why);
                (R52, accepting)
            }
            Err((rule, why)) => {
                steps.push(why);
                return reject(rule, steps.join("; "));
            }
        }
    };

    // R68: a row for an unresolved sender.
    let create = if sender.parties.is_empty() {
        let choice = acceptors.get(&accepting).and_then(|a| a.auto_create);
        match resolve::auto_create(s.auto_create_allowed, choice) {
            Ok(kind) => {
                steps.push(format!(
                    "R68: the sender is unresolved: a {kind} is created for {}",
                    sender.address
                ));
                Some(kind)
            }
            Err(why) => {
                steps.push(format!("R68: the sender stays unresolved: {why}"));
                None
            }
        }
    } else {
        None
    };

    // The regarding row: the tracked folder's (R72) over the correlated email's (R61).
    let regarding =
        folder_regarding.or_else(|| correlation.as_ref().and_then(|c| c.with.regarding.clone()));
    if let Some(c) = &correlation {
        steps.push(format!(
            "R61: regarding copied from {}{}",
            c.with.activity,
            if c.method.sets_parent() {
                ", which is its parent activity"
            } else {
                ""
            }
        ));
    }

    let owner = owner(
        acceptors,
        &recipients,
        correlation.as_ref(),
        &sender,
        processing,
    );
    steps.push(format!("R69: {}", owner.1));
    Outcome::Track(Box::new(Tracked {
        rule,
        accepting,
        correlation,
        regarding,
        sender,
        recipients,
        create,
        owner: owner.0,
        steps,
    }))
}

/// R52–R55, R57: the first recipient (To, then Cc, then Bcc) whose filtering method accepts
/// the email, or the rule that rejects it.
#[allow(clippy::too_many_arguments)]
fn accept(
    message: &Message,
    processing: &Processing<'_>,
    acceptors: &BTreeMap<RecordId, Acceptor>,
    sender: &Resolved<'_>,
    recipients: &[Resolved<'_>],
    correlated: bool,
    s: &EmailSettings,
) -> Result<(RecordId, String), Refusal> {
    let judge = |a: &Acceptor| verdict(a, sender, correlated);
    let own = &processing.owner;
    let addressed = message
        .to
        .iter()
        .chain(&message.cc)
        .any(|a| resolve::normalize(a) == resolve::normalize(processing.address));
    // R53: only the processing mailbox's own method.
    if s.processing_mailbox_only {
        return check_processing(own, addressed, sender, correlated)
            .map(|why| (own.id.clone(), format!("R53: only the processing mailbox's method counts: {why}")))
            .map_err(|(rule, why)| (rule, format!("R53: only the processing mailbox's method counts, and {} ({}) rejects it: {why}", own.id, own.filter)));
    }
    let mut refusals = Vec::new();
    let mut first_rule = None;
    let mut own_judged = false;
    for r in recipients {
        for party in &r.parties {
            if !matches!(party.kind, PartyKind::User | PartyKind::Queue) {
                continue;
            }
            let Some(a) = acceptors.get(&party.id) else {
                continue;
            };
            if a.id == own.id && !addressed {
                continue; // judged below, as the processing mailbox (R57)
            }
            own_judged |= a.id == own.id;
            match judge(a) {
                Ok(()) => {
                    return Ok((
                        a.id.clone(),
                        format!("R52: the recipient {} accepts it ({})", a.id, a.filter),
                    ));
                }
                Err((rule, why)) => {
                    first_rule.get_or_insert(rule);
                    refusals.push(format!("{} ({}): {why}", a.id, a.filter));
                }
            }
        }
    }
    // The processing mailbox's user is a recipient even when the directory lists no row for
    // its address.
    if !own_judged {
        match check_processing(own, addressed, sender, correlated) {
            Ok(why) => return Ok((own.id.clone(), why)),
            Err((rule, why)) => {
                first_rule.get_or_insert(rule);
                refusals.push(why);
            }
        }
    }
    let rule = first_rule.unwrap_or(R52);
    let why = if refusals.is_empty() {
        "R52: no recipient is a CRM user or queue that accepts email".to_string()
    } else {
        format!("{rule}: no recipient accepts it: {}", refusals.join("; "))
    };
    Err((rule, why))
}

/// A rejection: the rule and why.
type Refusal = (RuleId, String);

/// Whether `a`'s filtering method accepts an email from `sender` (R52, R54, R55).
fn verdict(a: &Acceptor, sender: &Resolved<'_>, correlated: bool) -> Result<(), Refusal> {
    let sender_kind = sender.parties.first().map(|p| &p.kind);
    let (ok, rule, why) = match a.filter {
        IncomingFilter::All => (true, R52, String::new()),
        IncomingFilter::RepliesOnly => (
            correlated,
            R54,
            "it answers no email in the CRM".to_string(),
        ),
        IncomingFilter::FromLeadsContactsAccounts => (
            sender_kind.is_some_and(PartyKind::is_lead_contact_or_account),
            R55,
            format!(
                "its sender {} is not a lead, contact or account",
                sender.address
            ),
        ),
        IncomingFilter::FromEmailEnabled => (
            sender_kind.is_some(),
            R52,
            format!("its sender {} matches no email-enabled row", sender.address),
        ),
        IncomingFilter::None => (false, R52, "it accepts no email".to_string()),
    };
    if ok { Ok(()) } else { Err((rule, why)) }
}

/// The processing mailbox's own verdict; when it is not among To and Cc (a distribution list
/// or Bcc), only "all email messages" accepts (R57).
fn check_processing(
    own: &Acceptor,
    addressed: bool,
    sender: &Resolved<'_>,
    correlated: bool,
) -> Result<String, Refusal> {
    if !addressed && own.filter != IncomingFilter::All {
        return Err((
            R57,
            format!(
                "R57: it reached {} through a distribution list or Bcc, and only \"all email messages\" accepts such mail ({} has \"{}\")",
                own.id, own.id, own.filter
            ),
        ));
    }
    verdict(own, sender, correlated).map(|()| {
        format!(
            "the processing mailbox's {} accepts it ({})",
            own.id, own.filter
        )
    })
}

/// R69: the first eligible mailbox owner among To, Cc and Bcc, preferring the owner of the
/// correlated email, then the owner of the sender's row; without any, the processing
/// mailbox's owner.
fn owner(
    acceptors: &BTreeMap<RecordId, Acceptor>,
    recipients: &[Resolved<'_>],
    correlation: Option<&Correlation<'_>>,
    sender: &Resolved<'_>,
    processing: &Processing<'_>,
) -> (Option<RecordId>, String) {
    let eligible: Vec<&RecordId> = recipients
        .iter()
        .flat_map(|r| &r.parties)
        .filter_map(|p| acceptors.get(&p.id))
        .filter(|a| a.kind == PartyKind::User && a.may_own_emails)
        .map(|a| &a.id)
        .collect();
    let is_eligible = |u: &UserId| {
        eligible
            .iter()
            .find(|id| id.as_str() == u.as_str())
            .copied()
    };
    if let Some(c) = correlation
        && let Some(u) = &c.with.owner
        && let Some(id) = is_eligible(u)
    {
        return (
            Some(id.clone()),
            format!("owned by {id}, a recipient who owns the correlated email"),
        );
    }
    if let Some(row) = sender.parties.first()
        && let Some(u) = &row.owner
        && let Some(id) = is_eligible(u)
    {
        return (
            Some(id.clone()),
            format!(
                "owned by {id}, a recipient who owns the sender's {} {}",
                row.kind, row.name
            ),
        );
    }
    if let Some(id) = eligible.first() {
        return (
            Some((*id).clone()),
            format!("owned by {id}, the first recipient allowed to own emails"),
        );
    }
    let own = &processing.owner;
    if own.kind == PartyKind::User && own.may_own_emails {
        return (
            Some(own.id.clone()),
            format!(
                "owned by {}, the processing mailbox's user: no recipient may own emails",
                own.id
            ),
        );
    }
    (None, "no recipient and not the processing mailbox's owner may own emails: the CRM's default owner applies".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::correlate::{TrackedEmail, conversation_keys, message_id_key};
    use crate::email::resolve::Party;
    use crate::email::smart_match::{self, SmartMatchSettings};

    const PAUL: &str = "paul@serenity.example";
    const JAYNE: &str = "jayne@serenity.example";
    const ZOE: &str = "zoe@customer.example";

    fn acceptor(id: &str, kind: PartyKind, filter: IncomingFilter) -> Acceptor {
        Acceptor {
            id: RecordId::new(id),
            kind,
            filter,
            auto_create: None,
            may_own_emails: true,
        }
    }

    struct World {
        directory: Directory,
        index: EmailIndex,
        acceptors: BTreeMap<RecordId, Acceptor>,
    }

    fn blue_sun() -> RecordRef {
        RecordRef {
            table: "account".into(),
            id: RecordId::new("account-blue-sun"),
            name: "Blue Sun".into(),
        }
    }

    fn world() -> World {
        let mut directory = Directory::default();
        let row = |kind, id: &str, owner: Option<&str>| Party {
            kind,
            id: RecordId::new(id),
            name: id.to_string(),
            owner: owner.map(UserId::new),
            active: true,
        };
        directory.insert(PAUL, row(PartyKind::User, "paul", None));
        directory.insert(JAYNE, row(PartyKind::User, "jayne", None));
        directory.insert(
            "support@serenity.example",
            row(PartyKind::Queue, "queue-support", None),
        );
        directory.insert(ZOE, row(PartyKind::Contact, "contact-zoe", Some("jayne")));
        let mut acceptors = BTreeMap::new();
        for a in [
            acceptor("paul", PartyKind::User, IncomingFilter::RepliesOnly),
            acceptor("jayne", PartyKind::User, IncomingFilter::RepliesOnly),
            acceptor("queue-support", PartyKind::Queue, IncomingFilter::All),
        ] {
            acceptors.insert(a.id.clone(), a);
        }
        // Paul's offer to Zoe, tracked with its token, regarding Blue Sun.
        let sent = Message {
            message_id: "<offer-1@serenity.example>".into(),
            subject: "Cargo offer CRM:0001001".into(),
            from: PAUL.into(),
            to: vec![ZOE.into()],
            ..incoming("")
        };
        let mut index = EmailIndex::default();
        index.insert(TrackedEmail {
            activity: RecordId::new("email-offer"),
            message_id: message_id_key(&sent.message_id),
            token: Some("CRM:0001001".into()),
            conversation: conversation_keys(&sent),
            regarding: Some(blue_sun()),
            owner: Some(UserId::new("paul")),
            hashes: smart_match::hashes(
                &sent.subject,
                sent.addresses().iter().map(String::as_str),
                &SmartMatchSettings::default(),
            ),
            outgoing: true,
        });
        World {
            directory,
            index,
            acceptors,
        }
    }

    fn incoming(subject: &str) -> Message {
        Message {
            message_id: "<reply-1@customer.example>".into(),
            in_reply_to: None,
            references: vec![],
            thread_index: None,
            subject: subject.into(),
            from: ZOE.into(),
            to: vec![PAUL.into()],
            cc: vec![],
            bcc: vec![],
            received: Timestamp(1_000),
            irm_protected: false,
        }
    }

    fn decide<'a>(
        w: &'a World,
        m: &Message,
        folder: &Folder,
        manual: Option<Manual>,
        s: &EmailSettings,
    ) -> Outcome<'a> {
        let owner = &w.acceptors[&RecordId::new("paul")];
        let processing = Processing {
            address: PAUL,
            owner,
            process_from: None,
        };
        decide_email(
            m,
            folder,
            manual,
            &processing,
            &w.acceptors,
            &w.directory,
            &w.index,
            s,
        )
    }

    fn tracked<'a>(o: Outcome<'a>) -> Tracked<'a> {
        match o {
            Outcome::Track(t) => *t,
            Outcome::Reject { rule, why } => panic!("rejected by {rule}: {why}"),
        }
    }

    fn rejected(o: Outcome<'_>) -> (RuleId, String) {
        match o {
            Outcome::Reject { rule, why } => (rule, why),
            Outcome::Track(t) => panic!("tracked: {:#?}", t.steps),
        }
    }

    #[test]
    fn a_reply_carrying_the_token_lands_on_the_offers_account() {
        let w = world();
        let t = tracked(decide(
            &w,
            &incoming("RE: Cargo offer CRM:0001001"),
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(t.rule, R52);
        assert_eq!(t.accepting, RecordId::new("paul"));
        assert_eq!(
            t.correlation.as_ref().unwrap().method,
            correlate::Method::Token
        );
        assert_eq!(t.regarding, Some(blue_sun()));
        assert_eq!(t.sender.parties[0].id, RecordId::new("contact-zoe"));
        assert_eq!(t.owner, Some(RecordId::new("paul")));
        let steps = t.steps.join("\n");
        assert!(
            steps.contains("R60: correlated: the subject carries the tracking token CRM:0001001"),
            "{steps}"
        );
        assert!(
            steps.contains("R69: owned by paul, a recipient who owns the correlated email"),
            "{steps}"
        );
    }

    #[test]
    fn a_reply_with_only_in_reply_to_lands_there_too_and_a_mail_with_neither_is_rejected_by_r54() {
        let w = world();
        let mut m = incoming("Re: offer");
        m.in_reply_to = Some("<offer-1@serenity.example>".into());
        let t = tracked(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(
            t.correlation.as_ref().unwrap().method,
            correlate::Method::InReplyTo
        );
        assert_eq!(t.regarding, Some(blue_sun()));

        let (rule, why) = rejected(decide(
            &w,
            &incoming("A new question"),
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(rule, R54);
        assert!(
            why.contains(
                "paul (email messages in response to CRM email): it answers no email in the CRM"
            ),
            "{why}"
        );
        assert!(why.contains("R60: not correlated"), "{why}");
    }

    #[test]
    fn r62_a_forward_with_in_reply_to_is_rejected_when_forwards_do_not_correlate() {
        let w = world();
        let mut m = incoming("FW: Cargo offer");
        m.in_reply_to = Some("<offer-1@serenity.example>".into());
        assert!(matches!(
            decide(&w, &m, &Folder::InboxRoot, None, &EmailSettings::default()),
            Outcome::Track(_)
        ));
        let mut s = EmailSettings::default();
        s.correlation.do_not_correlate_forwards = true;
        let (rule, why) = rejected(decide(&w, &m, &Folder::InboxRoot, None, &s));
        assert_eq!(rule, R54);
        assert!(
            why.contains("forwards do not correlate as replies (R62)"),
            "{why}"
        );
    }

    #[test]
    fn the_queue_in_cc_accepts_what_pauls_option_refuses() {
        let w = world();
        let mut m = incoming("A new question");
        m.cc = vec!["Support@Serenity.example".into()];
        let t = tracked(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(t.accepting, RecordId::new("queue-support"));
        // R53: only Paul's own option counts.
        let s = EmailSettings {
            processing_mailbox_only: true,
            ..EmailSettings::default()
        };
        let (rule, why) = rejected(decide(&w, &m, &Folder::InboxRoot, None, &s));
        assert_eq!(rule, R54);
        assert!(why.contains("R53"), "{why}");
    }

    #[test]
    fn r57_mail_through_bcc_or_a_list_needs_all_email_messages() {
        let mut w = world();
        let mut m = incoming("To the whole crew");
        m.to = vec!["crew@serenity.example".into()];
        let (rule, _) = rejected(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(rule, R57);
        w.acceptors.get_mut(&RecordId::new("paul")).unwrap().filter = IncomingFilter::All;
        let t = tracked(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(t.accepting, RecordId::new("paul"));
    }

    #[test]
    fn r55_from_leads_contacts_and_accounts() {
        let mut w = world();
        w.acceptors.get_mut(&RecordId::new("paul")).unwrap().filter =
            IncomingFilter::FromLeadsContactsAccounts;
        assert!(matches!(
            decide(
                &w,
                &incoming("Hello"),
                &Folder::InboxRoot,
                None,
                &EmailSettings::default()
            ),
            Outcome::Track(_)
        ));
        let mut m = incoming("Hello");
        m.from = "stranger@elsewhere.example".into();
        let (rule, why) = rejected(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(rule, R55);
        assert!(
            why.contains("stranger@elsewhere.example is not a lead, contact or account"),
            "{why}"
        );
    }

    #[test]
    fn r56_tracking_by_hand_bypasses_the_filtering_method_and_r68_creates_the_sender() {
        let mut w = world();
        w.acceptors
            .get_mut(&RecordId::new("paul"))
            .unwrap()
            .auto_create = Some(AutoCreate::Contact);
        let mut m = incoming("A new question");
        m.from = "river@customer.example".into();
        let t = tracked(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            Some(Manual::Category),
            &EmailSettings::default(),
        ));
        assert_eq!(t.rule, R56);
        assert_eq!(t.create, Some(AutoCreate::Contact));
        // A tracked folder is tracking by hand too, and its regarding row wins (R72).
        let folder = Folder::Tracked {
            regarding: Some(RecordRef {
                table: "opportunity".into(),
                id: RecordId::new("opp-1"),
                name: "Freight".into(),
            }),
        };
        let m = incoming("RE: Cargo offer CRM:0001001");
        let t = tracked(decide(&w, &m, &folder, None, &EmailSettings::default()));
        assert_eq!(t.rule, R56);
        assert_eq!(t.regarding.unwrap().id, RecordId::new("opp-1"));
    }

    #[test]
    fn the_org_defaults_are_the_rules_defaults_and_a_changed_setting_changes_the_decision() {
        let mut org = crate::settings::OrgSettings::default();
        assert_eq!(EmailSettings::of(&org, None), EmailSettings::default());
        let w = world();
        let mut m = incoming("FW: Cargo offer");
        m.in_reply_to = Some("<offer-1@serenity.example>".into());
        let before = decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::of(&org, None),
        );
        assert!(matches!(before, Outcome::Track(_)));
        org.set("email_do_not_correlate_forwards", "true").unwrap();
        let after = decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::of(&org, None),
        );
        assert_eq!(rejected(after).0, R54);
    }

    #[test]
    fn scope_rules_r49_r50_r59() {
        let w = world();
        let m = incoming("RE: Cargo offer CRM:0001001");
        let s = EmailSettings::default();
        assert_eq!(
            rejected(decide(&w, &m, &Folder::Other("Junk".into()), None, &s)).0,
            R49
        );
        assert_eq!(rejected(decide(&w, &m, &Folder::Sent, None, &s)).0, R49);
        let later = EmailSettings {
            profile_process_from: Some(Timestamp(2_000)),
            ..EmailSettings::default()
        };
        assert_eq!(
            rejected(decide(&w, &m, &Folder::InboxRoot, None, &later)).0,
            R50
        );
        let mut protected = m.clone();
        protected.irm_protected = true;
        assert!(matches!(
            decide(&w, &protected, &Folder::InboxRoot, None, &s),
            Outcome::Track(_)
        ));
        let irm = EmailSettings {
            restrict_irm: true,
            ..EmailSettings::default()
        };
        assert_eq!(
            rejected(decide(&w, &protected, &Folder::InboxRoot, None, &irm)).0,
            R59
        );
    }

    #[test]
    fn r58_mail_between_two_users_is_tracked_once_unless_twice_is_asked() {
        let w = world();
        // Paul's offer, as it arrives in Jayne's... here Paul's own inbox copy: same Message-ID.
        let mut m = incoming("Cargo offer CRM:0001001");
        m.message_id = "<OFFER-1@serenity.example>".into();
        m.from = PAUL.into();
        m.to = vec![PAUL.into(), JAYNE.into()];
        let (rule, why) = rejected(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(rule, R58);
        assert!(why.contains("its sent copy is already tracked"), "{why}");
        let twice = EmailSettings {
            track_between_users_twice: true,
            ..EmailSettings::default()
        };
        assert!(matches!(
            decide(&w, &m, &Folder::InboxRoot, None, &twice),
            Outcome::Track(_)
        ));
    }

    #[test]
    fn r69_the_owner_of_the_senders_row_among_the_recipients_comes_before_the_first_recipient() {
        let w = world();
        let mut m = incoming("A new question");
        m.to = vec![PAUL.into(), JAYNE.into()];
        m.cc = vec!["support@serenity.example".into()];
        // Accepted by the queue; Zoe's contact is Jayne's, and Jayne is a recipient.
        let t = tracked(decide(
            &w,
            &m,
            &Folder::InboxRoot,
            None,
            &EmailSettings::default(),
        ));
        assert_eq!(t.owner, Some(RecordId::new("jayne")));
        assert!(
            t.steps
                .last()
                .unwrap()
                .contains("owns the sender's contact contact-zoe"),
            "{:?}",
            t.steps
        );
    }
}
