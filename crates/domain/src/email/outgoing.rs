//! Outgoing email (R75–R78): the parts of the message the engine fixes when it decides to
//! send, so that every attempt of the same intent sends the same message.

use super::token::{TokenFormat, TokenedSubject, with_token};
use crate::error_kind::ErrorKind;
use crate::event::ServerError;
use crate::settings::EmailOptions;

/// Whether the mail server's answer to a send is its quota or throttling (R77: `quota`, e.g.
/// SMTP 452, and `rate_limited`, e.g. 421, 450, 451): the email stays pending and is retried
/// later, however often, and the mailbox is not disabled. Any other transient failure is
/// R12's: retried up to `transient_retry_limit`.
pub fn throttled(error: &ServerError) -> bool {
    matches!(error.kind(), ErrorKind::Quota | ErrorKind::RateLimited)
}

/// The Message-ID of the email sent by the intent whose idempotency key is `key`, from the
/// address `from`: `<ls-<16 hex digits of FNV-1a of the key>@<domain of from>>`. A retry of
/// the same intent (after a crash between the send and its outcome) sends the same
/// Message-ID, which is how the sender finds an earlier attempt in the Sent folder and does
/// not send twice.
pub fn message_id(key: &str, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>'))
        .filter(|d| !d.is_empty())
        .unwrap_or("ledgersync.invalid");
    format!(
        "<ls-{:016x}@{}>",
        super::smart_match::fnv1a(key),
        domain.to_ascii_lowercase()
    )
}

/// The subject an email is sent with (R63, R64): the row's subject with the tracking token the
/// CRM assigned to it, when tracking tokens are used and the token has the configured format,
/// cut to the subject limit as R64 says; with a note saying why no token was added, when
/// none was. A subject that already carries the token (a reply) keeps it once.
pub fn subject(
    subject: &str,
    token: Option<&str>,
    options: &EmailOptions,
) -> (TokenedSubject, Option<String>) {
    let limit = options.max_subject_length as usize;
    let plain = |why: String| {
        let cut: String = subject.chars().take(limit).collect();
        let truncated = cut.chars().count() < subject.chars().count();
        (
            TokenedSubject {
                subject: cut,
                token_added: false,
                truncated,
            },
            Some(why),
        )
    };
    if !options.use_tracking_token {
        return plain("tracking tokens are not used (email_use_tracking_token=false)".into());
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return plain("the row carries no tracking token".into());
    };
    let format = TokenFormat {
        prefix: options.token_prefix.clone(),
        base: options.token_base,
        user_digits: options.token_user_digits,
        counter_digits: options.token_counter_digits,
    };
    if format.find(token).is_none_or(|f| f.text != token) {
        return plain(format!(
            "the row's tracking token {token:?} does not have the configured format \
             (email_token_prefix, email_token_user_digits, email_token_counter_digits)"
        ));
    }
    if format.find(subject).is_some_and(|f| f.text == token) {
        let (mut kept, _) = plain(String::new());
        kept.token_added = true;
        return (kept, None);
    }
    (with_token(subject, token, limit), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_the_same_for_the_same_key_and_differs_for_another() {
        let a = message_id(
            "mbx-jayne/email-1/send/v3",
            "Jayne Cobb <jayne@Serenity.example>",
        );
        assert_eq!(
            a,
            message_id("mbx-jayne/email-1/send/v3", "jayne@serenity.example")
        );
        assert!(
            a.starts_with("<ls-") && a.ends_with("@serenity.example>"),
            "{a}"
        );
        assert_ne!(
            a,
            message_id("mbx-jayne/email-1/send/v4", "jayne@serenity.example")
        );
        assert_eq!(a.len(), "<ls-".len() + 16 + "@serenity.example>".len());
    }

    #[test]
    fn the_token_is_added_when_it_has_the_format_and_fits() {
        let o = EmailOptions::default();
        let (s, why) = subject("Your quote", Some("CRM:0001004"), &o);
        assert_eq!(s.subject, "Your quote CRM:0001004");
        assert!(s.token_added && why.is_none());
        let (s, why) = subject("Your quote", Some("XYZ-17"), &o);
        assert_eq!(s.subject, "Your quote");
        assert!(!s.token_added && why.unwrap().contains("format"));
        let (s, why) = subject("Your quote", None, &o);
        assert!(!s.token_added && why.unwrap().contains("no tracking token"));
        let off = EmailOptions {
            use_tracking_token: false,
            ..EmailOptions::default()
        };
        let (s, _) = subject("Your quote", Some("CRM:0001004"), &off);
        assert_eq!(s.subject, "Your quote");
    }

    #[test]
    fn a_long_subject_is_cut_so_that_the_token_fits_r64() {
        let o = EmailOptions::default();
        let long = "x".repeat(300);
        let (s, _) = subject(&long, Some("CRM:0001004"), &o);
        assert_eq!(s.subject.chars().count(), 255);
        assert!(s.subject.ends_with(" CRM:0001004") && s.truncated && s.token_added);
    }
}
