//! Correlation (R60, R61, R62): which tracked email an incoming one continues.
//!
//! Tried in order, the first hit wins: the In-Reply-To header against the Message-IDs of
//! tracked emails, a tracking token in the subject, the conversation (the `Thread-Index`
//! header's conversation root when present, else the first Message-ID of `References`), and
//! smart matching when it is on. A match copies the regarding row of the earlier email; the
//! parent activity is set only for In-Reply-To and conversation matches (R61).

use super::Message;
use super::smart_match::{self, Hashes, SmartMatchSettings};
use super::token::TokenFormat;
use crate::event::TrackedBy;
use crate::ids::{RecordId, UserId};
use crate::records::RecordRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An email already in the CRM, as correlation needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedEmail {
    /// The email activity's row.
    pub activity: RecordId,
    /// Its Message-ID (without angle brackets, lower case).
    pub message_id: String,
    /// Its tracking token, when it carries one.
    pub token: Option<String>,
    /// Its conversation keys ([`conversation_keys`]).
    pub conversation: Vec<String>,
    /// The row it is regarding.
    pub regarding: Option<RecordRef>,
    /// Its owner.
    pub owner: Option<UserId>,
    /// Its smart-matching hashes.
    pub hashes: Hashes,
    /// Whether it was sent (outgoing) rather than received.
    pub outgoing: bool,
}

/// The tracked emails, looked up by Message-ID, token and conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailIndex {
    emails: Vec<TrackedEmail>,
    by_message_id: BTreeMap<String, Vec<usize>>,
    by_token: BTreeMap<String, usize>,
    by_conversation: BTreeMap<String, usize>,
}

impl EmailIndex {
    /// Adds a tracked email. A later email with the same token or conversation key is the
    /// one a reply continues.
    pub fn insert(&mut self, email: TrackedEmail) {
        let i = self.emails.len();
        self.by_message_id
            .entry(email.message_id.clone())
            .or_default()
            .push(i);
        if let Some(token) = &email.token {
            self.by_token.insert(token.to_uppercase(), i);
        }
        for key in &email.conversation {
            self.by_conversation.insert(key.clone(), i);
        }
        self.emails.push(email);
    }

    /// The tracked emails with this Message-ID (a sent copy and a received copy may share it).
    pub fn by_message_id(&self, message_id: &str) -> impl Iterator<Item = &TrackedEmail> {
        self.by_message_id
            .get(&message_id_key(message_id))
            .into_iter()
            .flatten()
            .map(|&i| &self.emails[i])
    }

    /// Every tracked email, oldest first.
    pub fn all(&self) -> &[TrackedEmail] {
        &self.emails
    }

    /// How many emails are tracked.
    pub fn len(&self) -> usize {
        self.emails.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty()
    }
}

/// A Message-ID as the index keys it: without angle brackets and spaces, lower case.
pub fn message_id_key(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// The conversation keys of an email: `thread:<hex>` for the conversation root of its
/// `Thread-Index` (its first 22 bytes), and `ref:<Message-ID>` for the first entry of its
/// `References`, or its own Message-ID when it has none (it starts the conversation).
pub fn conversation_keys(message: &Message) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(root) = message.thread_index.as_deref().and_then(thread_root) {
        keys.push(format!("thread:{root}"));
    }
    let first = message
        .references
        .first()
        .map(String::as_str)
        .unwrap_or(message.message_id.as_str());
    let first = message_id_key(first);
    if !first.is_empty() {
        keys.push(format!("ref:{first}"));
    }
    keys
}

/// The conversation root of a `Thread-Index` header (base64: a 22-byte header, then 5 bytes
/// per reply), as hex; `None` when it is not base64 or shorter than 22 bytes.
fn thread_root(header: &str) -> Option<String> {
    let bytes = base64(header.trim())?;
    (bytes.len() >= 22).then(|| bytes[..22].iter().map(|b| format!("{b:02x}")).collect())
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Whether a subject is a forward's (`FW:`, `Fwd:`, `WG:`, `TR:` first, after any blanks).
pub fn is_forward(subject: &str) -> bool {
    let s = subject.trim_start().to_lowercase();
    ["fw:", "fwd:", "fw :", "wg:", "tr:"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// The correlation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelationSettings {
    /// "Use correlation to track email conversations" (default on). Off: no email correlates.
    pub use_correlation: bool,
    /// `IgnoreConversationIndexAndInReplyToForCorrelation` (default false): In-Reply-To and the
    /// conversation are not used.
    pub ignore_conversation_and_in_reply_to: bool,
    /// `DoNotCorrelateForwardedEmailsAsReplies` (default false): an In-Reply-To match does not
    /// count for a forward (R62).
    pub do_not_correlate_forwards: bool,
    /// Smart matching (default off, R65).
    pub smart_matching: bool,
    /// Its thresholds.
    pub smart: SmartMatchSettings,
    /// The tracking-token format.
    pub token: TokenFormat,
    /// Tracking tokens are used (default on).
    pub use_tracking_token: bool,
}

impl Default for CorrelationSettings {
    fn default() -> Self {
        Self {
            use_correlation: true,
            ignore_conversation_and_in_reply_to: false,
            do_not_correlate_forwards: false,
            smart_matching: false,
            smart: SmartMatchSettings::default(),
            token: TokenFormat::default(),
            use_tracking_token: true,
        }
    }
}

/// How an email correlated (`email.correlationmethod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// 3: In-Reply-To.
    InReplyTo,
    /// 4: the tracking token.
    Token,
    /// 5: the conversation.
    Conversation,
    /// 6: smart matching.
    SmartMatch,
}

impl Method {
    /// The tracking signal recorded with the decision.
    pub fn tracked_by(self) -> TrackedBy {
        match self {
            Method::InReplyTo => TrackedBy::InReplyTo,
            Method::Token => TrackedBy::Token,
            Method::Conversation => TrackedBy::Conversation,
            Method::SmartMatch => TrackedBy::SmartMatch,
        }
    }

    /// R61: the parent activity is set for In-Reply-To and conversation matches only.
    pub fn sets_parent(self) -> bool {
        matches!(self, Method::InReplyTo | Method::Conversation)
    }
}

/// A correlation: the method, the earlier email, and what the methods tried before said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correlation<'a> {
    /// How.
    pub method: Method,
    /// The earlier email: its regarding row is copied (R61).
    pub with: &'a TrackedEmail,
    /// Why, in plain words (with what the earlier methods found).
    pub why: String,
}

/// R60: the first method that matches, or why none did.
pub fn correlate<'a>(
    message: &Message,
    index: &'a EmailIndex,
    s: &CorrelationSettings,
) -> Result<Correlation<'a>, String> {
    if !s.use_correlation {
        return Err("correlation is off for the organization".to_string());
    }
    let mut tried: Vec<String> = Vec::new();
    let found = |method, with: &'a TrackedEmail, what: String, tried: &[String]| {
        let mut why = what;
        if !tried.is_empty() {
            why = format!("{why} ({})", tried.join("; "));
        }
        Ok(Correlation { method, with, why })
    };
    let conversation_used = !s.ignore_conversation_and_in_reply_to;
    // 1. In-Reply-To.
    match (&message.in_reply_to, conversation_used) {
        (_, false) => tried.push(
            "In-Reply-To and the conversation are ignored by the organization's setting".into(),
        ),
        (None, true) => tried.push("no In-Reply-To header".into()),
        (Some(id), true) => {
            let key = message_id_key(id);
            match index.by_message_id(&key).last() {
                Some(_) if s.do_not_correlate_forwards && is_forward(&message.subject) => tried.push(format!(
                    "In-Reply-To <{key}> names a tracked email, but this is a forward and forwards do not correlate as replies (R62)"
                )),
                Some(with) => {
                    return found(
                        Method::InReplyTo,
                        with,
                        format!("In-Reply-To <{key}> is the tracked email {}", with.activity),
                        &tried,
                    );
                }
                None => tried.push(format!("In-Reply-To <{key}> names no tracked email")),
            }
        }
    }
    // 2. The tracking token.
    if s.use_tracking_token {
        match s.token.find(&message.subject) {
            None => tried.push("no tracking token in the subject".into()),
            Some(token) => match index.by_token.get(&token.text.to_uppercase()) {
                Some(&i) => {
                    let with = &index.emails[i];
                    return found(
                        Method::Token,
                        with,
                        format!(
                            "the subject carries the tracking token {token} of the tracked email {}",
                            with.activity
                        ),
                        &tried,
                    );
                }
                None => tried.push(format!("the token {token} belongs to no tracked email")),
            },
        }
    }
    // 3. The conversation.
    if conversation_used {
        let own = message_id_key(&message.message_id);
        let keys: Vec<String> = conversation_keys(message)
            .into_iter()
            .filter(|k| *k != format!("ref:{own}"))
            .collect();
        match keys
            .iter()
            .find_map(|k| index.by_conversation.get(k).map(|&i| (k, i)))
        {
            Some((key, i)) => {
                let with = &index.emails[i];
                return found(
                    Method::Conversation,
                    with,
                    format!(
                        "the conversation ({key}) is that of the tracked email {}",
                        with.activity
                    ),
                    &tried,
                );
            }
            None if keys.is_empty() => tried.push("no Thread-Index or References".into()),
            None => tried.push("no tracked email is in its conversation".into()),
        }
    }
    // 4. Smart matching, when on.
    if s.smart_matching {
        let addresses = message.addresses();
        let hashes = smart_match::hashes(
            &message.subject,
            addresses.iter().map(String::as_str),
            &s.smart,
        );
        let best = index
            .emails
            .iter()
            .rev()
            .map(|e| (e, smart_match::compare(&hashes, &e.hashes)))
            .find(|(_, c)| c.matches(&s.smart));
        match best {
            Some((with, c)) => {
                return found(
                    Method::SmartMatch,
                    with,
                    format!(
                        "smart matching: the subject's words and {} address(es) match the tracked email {}",
                        c.common_addresses, with.activity
                    ),
                    &tried,
                );
            }
            None => tried.push("smart matching found no tracked email with the same subject words and enough addresses".into()),
        }
    } else {
        tried.push("smart matching is off".into());
    }
    Err(tried.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn message(subject: &str) -> Message {
        Message {
            message_id: "<reply-1@customer.example>".into(),
            in_reply_to: None,
            references: vec![],
            thread_index: None,
            subject: subject.into(),
            from: "zoe@customer.example".into(),
            to: vec!["paul@serenity.example".into()],
            cc: vec![],
            bcc: vec![],
            received: Timestamp(0),
            irm_protected: false,
        }
    }

    fn tracked(
        activity: &str,
        message_id: &str,
        token: Option<&str>,
        subject: &str,
    ) -> TrackedEmail {
        let m = Message {
            message_id: message_id.into(),
            subject: subject.into(),
            from: "paul@serenity.example".into(),
            to: vec!["zoe@customer.example".into()],
            ..message(subject)
        };
        TrackedEmail {
            activity: RecordId::new(activity),
            message_id: message_id_key(message_id),
            token: token.map(str::to_string),
            conversation: conversation_keys(&m),
            regarding: Some(RecordRef {
                table: "account".into(),
                id: RecordId::new("account-blue-sun"),
                name: "Blue Sun".into(),
            }),
            owner: Some(UserId::new("paul")),
            hashes: smart_match::hashes(
                &m.subject,
                m.addresses().iter().map(String::as_str),
                &SmartMatchSettings::default(),
            ),
            outgoing: true,
        }
    }

    fn index() -> EmailIndex {
        let mut i = EmailIndex::default();
        i.insert(tracked(
            "email-1",
            "<offer-1@serenity.example>",
            Some("CRM:0001001"),
            "Cargo offer CRM:0001001",
        ));
        i.insert(tracked(
            "email-2",
            "<audit-2@serenity.example>",
            Some("CRM:0001002"),
            "Cargo audit CRM:0001002",
        ));
        i
    }

    #[test]
    fn r60_in_reply_to_comes_first_and_the_token_second() {
        let i = index();
        let s = CorrelationSettings::default();
        // In-Reply-To names email-1, the token email-2: In-Reply-To wins.
        let mut m = message("RE: Cargo audit CRM:0001002");
        m.in_reply_to = Some("<Offer-1@serenity.example>".into());
        let c = correlate(&m, &i, &s).unwrap();
        assert_eq!(
            (c.method, c.with.activity.as_str()),
            (Method::InReplyTo, "email-1")
        );
        assert!(c.method.sets_parent());
        // Without In-Reply-To, the token.
        m.in_reply_to = None;
        let c = correlate(&m, &i, &s).unwrap();
        assert_eq!(
            (c.method, c.with.activity.as_str()),
            (Method::Token, "email-2")
        );
        assert!(!c.method.sets_parent(), "R61: no parent for a token match");
        assert!(c.why.contains("no In-Reply-To header"), "{}", c.why);
    }

    #[test]
    fn r60_the_conversation_from_references_then_nothing() {
        let i = index();
        let s = CorrelationSettings::default();
        let mut m = message("RE: Cargo audit");
        m.references = vec![
            "<audit-2@serenity.example>".into(),
            "<other@customer.example>".into(),
        ];
        let c = correlate(&m, &i, &s).unwrap();
        assert_eq!(
            (c.method, c.with.activity.as_str()),
            (Method::Conversation, "email-2")
        );
        let none = correlate(&message("Hello"), &i, &s).unwrap_err();
        assert!(
            none.contains("no tracking token") && none.contains("smart matching is off"),
            "{none}"
        );
    }

    #[test]
    fn the_conversation_root_of_a_thread_index_is_its_first_22_bytes() {
        // 22 bytes of root then one 5-byte reply block.
        let root = "AQHZ7k3bVx2oYcN5Q0uFZ8L7Jq9w3g==";
        let reply = "AQHZ7k3bVx2oYcN5Q0uFZ8L7Jq9w3oAAAAAA";
        let a = thread_root(root).unwrap();
        let b = thread_root(reply).unwrap();
        assert_eq!(a.len(), 44, "22 bytes as hex");
        assert_eq!(a, b, "a reply keeps its conversation's root");
        assert_eq!(thread_root("not base64!"), None);
        assert_eq!(thread_root("AQID"), None, "shorter than 22 bytes");
    }

    #[test]
    fn r62_a_forward_does_not_correlate_through_in_reply_to_when_the_setting_says_so() {
        let i = index();
        let mut m = message("FW: Cargo offer");
        m.in_reply_to = Some("<offer-1@serenity.example>".into());
        assert_eq!(
            correlate(&m, &i, &CorrelationSettings::default())
                .unwrap()
                .method,
            Method::InReplyTo
        );
        let s = CorrelationSettings {
            do_not_correlate_forwards: true,
            ..CorrelationSettings::default()
        };
        let e = correlate(&m, &i, &s).unwrap_err();
        assert!(e.contains("R62"), "{e}");
    }

    #[test]
    fn r65_smart_matching_only_when_on() {
        let i = index();
        let m = message("RE: Cargo audit");
        assert!(correlate(&m, &i, &CorrelationSettings::default()).is_err());
        let s = CorrelationSettings {
            smart_matching: true,
            ..CorrelationSettings::default()
        };
        let mut m = m;
        m.subject = "RE: Cargo audit CRM:0009999".into();
        // The unknown token is a word of the subject: the counts differ, no smart match.
        assert!(correlate(&m, &i, &s).is_err());
        m.subject = "RE: Cargo audit".into();
        let tracked_subject = tracked("email-3", "<audit-3@serenity.example>", None, "Cargo audit");
        let mut i = i;
        i.insert(tracked_subject);
        let c = correlate(&m, &i, &s).unwrap();
        assert_eq!(
            (c.method, c.with.activity.as_str()),
            (Method::SmartMatch, "email-3")
        );
    }

    #[test]
    fn correlation_off_correlates_nothing() {
        let mut m = message("RE: Cargo audit CRM:0001002");
        m.in_reply_to = Some("<audit-2@serenity.example>".into());
        let s = CorrelationSettings {
            use_correlation: false,
            ..CorrelationSettings::default()
        };
        assert!(correlate(&m, &index(), &s).is_err());
    }
}
