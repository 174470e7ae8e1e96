//! The error vocabulary: what kind of failure a connector reports, and how the domain reads the
//! `code` of a [`ServerError`] (R10, R11, R12).
//!
//! A connector never decides whether an error is permanent or transient: it reports an
//! [`ErrorKind`] ([`ServerError::of_kind`]), and the domain's [`classify`](crate::decide::classify)
//! decides from the kind alone.
//!
//! Released payloads never change (`docs/event-format.md`), so the kind travels in the existing
//! `ServerError::code` string: a new error carries the kind's canonical code
//! ([`ErrorKind::as_code`]: `not_found`, `gone`, `rate_limited`, ...), and [`ServerError::kind`]
//! reads a code back by **exact** match: the canonical codes, plus the legacy codes earlier
//! releases wrote (`401`, `403`, `404`, `503`, `tls`, `io`, `invalid`, `unsupported`, ...), each
//! mapped to one kind. A code outside the vocabulary is [`ErrorKind::Unknown`]. The table is in
//! `docs/connectors.md` ("Error vocabulary").

use crate::event::ServerError;
use crate::time::Timestamp;
use std::fmt;

/// What kind of failure a mail server (or the local backend standing for one) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credentials were refused (HTTP 401, IMAP `AUTHENTICATIONFAILED`).
    Auth,
    /// The account may not do this (HTTP 403, IMAP `AUTHORIZATIONFAILED`, no licence).
    Forbidden,
    /// The mailbox's address is not approved (R5).
    NotApproved,
    /// The target does not exist (HTTP 404, a missing file or directory). For one item the
    /// item is missing; for a whole collection (a missing calendar folder: an unmounted share,
    /// a folder being recreated) the condition may heal.
    NotFound,
    /// The target existed and was removed for good (HTTP 410).
    Gone,
    /// The item changed on the server since it was read (HTTP 409, 412 Precondition Failed).
    Conflict,
    /// The server asked to slow down (HTTP 429), usually with a Retry-After.
    RateLimited,
    /// The server is unavailable or failed (HTTP 500, 502, 503).
    Unavailable,
    /// No answer in time (HTTP 504, a timed-out connection).
    Timeout,
    /// The connection or the local I/O failed (reset, broken pipe, a read error).
    Network,
    /// The mailbox is over its storage quota (HTTP 507, IMAP `OVERQUOTA`) (R77).
    Quota,
    /// The item is larger than the server accepts (HTTP 413).
    TooLarge,
    /// The request or the item is malformed and will never be accepted (HTTP 400, 422, an
    /// unparsable file, a file name that is not UTF-8).
    Malformed,
    /// The connector cannot carry this out by design (wrong side, missing configuration).
    Unsupported,
    /// The server's TLS certificate or handshake was refused.
    Tls,
    /// The server could not be discovered (autodiscover, DNS SRV).
    Discovery,
    /// The connector cannot read the cursor it was given (the cursor reset policy applies).
    CursorInvalid,
    /// A code outside this vocabulary (a connector of another release, a raw server code).
    Unknown,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::Auth,
        ErrorKind::Forbidden,
        ErrorKind::NotApproved,
        ErrorKind::NotFound,
        ErrorKind::Gone,
        ErrorKind::Conflict,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Network,
        ErrorKind::Quota,
        ErrorKind::TooLarge,
        ErrorKind::Malformed,
        ErrorKind::Unsupported,
        ErrorKind::Tls,
        ErrorKind::Discovery,
        ErrorKind::CursorInvalid,
        ErrorKind::Unknown,
    ];

    /// The canonical code written in `ServerError::code`.
    pub const fn as_code(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotApproved => "not_approved",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Gone => "gone",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Quota => "quota",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Tls => "tls",
            ErrorKind::Discovery => "discovery",
            // The code the vdir connector already wrote for an unreadable cursor.
            ErrorKind::CursorInvalid => "cursor",
            ErrorKind::Unknown => "unknown",
        }
    }

    /// The kind a code names, by exact match: a canonical code or a legacy code of an earlier
    /// release (see the module doc); anything else is [`ErrorKind::Unknown`].
    pub fn from_code(code: &str) -> ErrorKind {
        if let Some(kind) = ErrorKind::ALL.into_iter().find(|k| k.as_code() == code) {
            return kind;
        }
        LEGACY_CODES
            .iter()
            .find(|(legacy, _)| *legacy == code)
            .map_or(ErrorKind::Unknown, |(_, kind)| *kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_code())
    }
}

/// Codes written by earlier releases (and raw protocol codes a connector may pass through),
/// each mapped to exactly one kind. Never remove a line: released events carry these codes.
pub const LEGACY_CODES: &[(&str, ErrorKind)] = &[
    ("400", ErrorKind::Malformed),
    ("401", ErrorKind::Auth),
    ("403", ErrorKind::Forbidden),
    ("404", ErrorKind::NotFound),
    ("409", ErrorKind::Conflict),
    ("410", ErrorKind::Gone),
    ("412", ErrorKind::Conflict),
    ("413", ErrorKind::TooLarge),
    ("422", ErrorKind::Malformed),
    ("429", ErrorKind::RateLimited),
    ("500", ErrorKind::Unavailable),
    ("502", ErrorKind::Unavailable),
    ("503", ErrorKind::Unavailable),
    ("504", ErrorKind::Timeout),
    ("507", ErrorKind::Quota),
    ("AUTHENTICATIONFAILED", ErrorKind::Auth),
    ("NO [AUTHENTICATIONFAILED]", ErrorKind::Auth),
    ("AUTHORIZATIONFAILED", ErrorKind::Forbidden),
    ("NO [AUTHORIZATIONFAILED]", ErrorKind::Forbidden),
    ("OVERQUOTA", ErrorKind::Quota),
    ("NO [OVERQUOTA]", ErrorKind::Quota),
    ("unapproved", ErrorKind::NotApproved),
    ("license", ErrorKind::Forbidden),
    ("certificate", ErrorKind::Tls),
    ("autodiscover", ErrorKind::Discovery),
    // The vdir connector's codes before this vocabulary.
    ("io", ErrorKind::Network),
    ("invalid", ErrorKind::Malformed),
    ("unparsable", ErrorKind::Malformed),
    ("file_name", ErrorKind::Malformed),
];

impl ServerError {
    /// An error of `kind`: its canonical code, the message, no Retry-After.
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> ServerError {
        ServerError {
            code: kind.as_code().to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A [`ErrorKind::RateLimited`] answer with the server's Retry-After, when it sent one.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Timestamp>) -> ServerError {
        ServerError {
            retry_after,
            ..ServerError::of_kind(ErrorKind::RateLimited, message)
        }
    }

    /// The kind this error's code names (exact match, see the module doc).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_codes_round_trip_and_are_distinct() {
        let mut codes = std::collections::BTreeSet::new();
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.as_code()), kind);
            assert!(codes.insert(kind.as_code()), "{kind:?}");
            assert_eq!(ServerError::of_kind(kind, "m").kind(), kind);
        }
    }

    #[test]
    fn legacy_codes_never_shadow_a_canonical_one_and_match_exactly() {
        for (code, _) in LEGACY_CODES {
            assert!(
                ErrorKind::ALL.iter().all(|k| k.as_code() != *code),
                "{code}"
            );
        }
        assert_eq!(ErrorKind::from_code("404"), ErrorKind::NotFound);
        assert_eq!(ErrorKind::from_code("410"), ErrorKind::Gone);
        assert_eq!(ErrorKind::from_code("x404"), ErrorKind::Unknown);
        assert_eq!(ErrorKind::from_code("TLS"), ErrorKind::Unknown);
        assert_eq!(ErrorKind::from_code("connection reset"), ErrorKind::Unknown);
    }
}
