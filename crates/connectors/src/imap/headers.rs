//! The header fields of a message that the incoming-email rules look at, read with
//! mail-parser from `BODY.PEEK[HEADER]`.

use mail_parser::{Address, HeaderValue, MessageParser};

/// The header fields of one message. Message ids are given without their angle brackets,
/// addresses lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EmailHeaders {
    /// `Message-ID`.
    pub message_id: Option<String>,
    /// The first id of `In-Reply-To`.
    pub in_reply_to: Option<String>,
    /// Every id of `References`, in order.
    pub references: Vec<String>,
    /// `Thread-Index` (Outlook's conversation index), as written.
    pub thread_index: Option<String>,
    /// `Subject`, decoded.
    pub subject: Option<String>,
    /// The first address of `From`.
    pub from: Option<String>,
    /// The addresses of `To`.
    pub to: Vec<String>,
    /// The addresses of `Cc`.
    pub cc: Vec<String>,
    /// The addresses of `Bcc` (present on messages the mailbox owner sent).
    pub bcc: Vec<String>,
    /// `Date`, in milliseconds since the Unix epoch.
    pub date: Option<i64>,
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|id| !id.is_empty())
        .collect()
}

fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address())
                .map(|addr| addr.trim().to_lowercase())
                .filter(|addr| !addr.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl EmailHeaders {
    /// Reads the header block of a message (the bytes of `BODY.PEEK[HEADER]`, or a whole
    /// message). `None` when nothing in it is a header.
    pub fn parse(raw: &[u8]) -> Option<EmailHeaders> {
        let message = MessageParser::default().parse_headers(raw)?;
        if message.headers().is_empty() {
            return None;
        }
        Some(EmailHeaders {
            message_id: message
                .message_id()
                .map(|id| id.trim_start_matches('<').trim_end_matches('>').to_string()),
            in_reply_to: ids(message.in_reply_to()).into_iter().next(),
            references: ids(message.references()),
            thread_index: message
                .header_raw("Thread-Index")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            subject: message.subject().map(str::to_string),
            from: addresses(message.from()).into_iter().next(),
            to: addresses(message.to()),
            cc: addresses(message.cc()),
            bcc: addresses(message.bcc()),
            date: message.date().map(|d| d.to_timestamp() * 1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_addresses_and_the_date() {
        let raw = b"Message-ID: <m3@customer.example>\r\n\
            In-Reply-To: <m2@example.org> <m1@customer.example>\r\n\
            References: <m1@customer.example>\r\n <m2@example.org>\r\n\
            Thread-Index: AQHZabcd\r\n\
            Subject: =?UTF-8?Q?R=C3=A9?= offer\r\n\
            From: Zoe <Zoe@Customer.Example>\r\n\
            To: alice@example.org, \"Bob\" <BOB@example.org>\r\n\
            Cc: linda@customer.example\r\n\
            Date: Thu, 01 Jan 2099 10:00:00 +0000\r\n\r\n";
        let h = EmailHeaders::parse(raw).unwrap();
        assert_eq!(h.message_id.as_deref(), Some("m3@customer.example"));
        assert_eq!(h.in_reply_to.as_deref(), Some("m2@example.org"));
        assert_eq!(h.references, ["m1@customer.example", "m2@example.org"]);
        assert_eq!(h.thread_index.as_deref(), Some("AQHZabcd"));
        assert_eq!(h.subject.as_deref(), Some("Ré offer"));
        assert_eq!(h.from.as_deref(), Some("zoe@customer.example"));
        assert_eq!(h.to, ["alice@example.org", "bob@example.org"]);
        assert_eq!(h.cc, ["linda@customer.example"]);
        assert!(h.bcc.is_empty());
        assert_eq!(h.date, Some(4_070_944_800_000));
    }
}
