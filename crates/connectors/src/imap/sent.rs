//! The Sent folder of the outgoing-email sender: finding a message sent before by its
//! Message-ID (read-only: `EXAMINE`, `UID SEARCH`), and saving the copy of a message sent
//! (`APPEND`, the only command of the `imap` module that changes a mailbox).

use super::ImapError;
use super::reader::{ImapReader, lib_error};
use ledgersync_domain::ErrorKind;

/// A Message-ID the `HEADER` search can name between quotes: `<…>`, printable ASCII, no
/// quote, backslash or space.
fn searchable(message_id: &str) -> bool {
    message_id.len() > 2
        && message_id.starts_with('<')
        && message_id.ends_with('>')
        && message_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl ImapReader {
    /// The folder the server marks `\Sent` (special use, RFC 6154), if there is one.
    pub fn sent_folder(&mut self) -> Result<Option<String>, ImapError> {
        Ok(self
            .tracked()?
            .into_iter()
            .find(|(_, special_use)| special_use.as_deref() == Some("\\Sent"))
            .map(|(name, _)| name))
    }

    /// Whether a message with the Message-ID `message_id` (`<…>`) is in `folder`: the folder is
    /// opened read-only and searched by header (`UID SEARCH HEADER Message-ID`).
    pub fn contains_message_id(
        &mut self,
        folder: &str,
        message_id: &str,
    ) -> Result<bool, ImapError> {
        if !searchable(message_id) {
            return Err(ImapError::new(
                ErrorKind::Malformed,
                format!("`{message_id}` is not a Message-ID that can be searched for"),
            ));
        }
        let server = self.config().server();
        let what = format!("searching `{folder}` at {server} for {message_id}");
        self.exchange(&what, async |s| {
            s.examine(folder)
                .await
                .map_err(|e| lib_error(&what, ErrorKind::NotFound, e))?;
            let uids = s
                .uid_search(format!("HEADER Message-ID \"{message_id}\""))
                .await
                .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
            Ok(!uids.is_empty())
        })
    }

    /// Saves `message` (the whole RFC 5322 text) to `folder` with the flag list `flags`
    /// (`(\Seen)`).
    pub fn append(&mut self, folder: &str, flags: &str, message: &[u8]) -> Result<(), ImapError> {
        let server = self.config().server();
        let what = format!("APPEND to `{folder}` at {server}");
        self.exchange(&what, async |s| {
            s.append(folder, Some(flags), None, message)
                .await
                .map_err(|e| lib_error(&what, ErrorKind::NotFound, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::searchable;

    #[test]
    fn only_a_plain_message_id_is_searched_for() {
        assert!(searchable("<ls-0123456789abcdef@serenity.example>"));
        assert!(!searchable("ls-0123@serenity.example"));
        assert!(!searchable("<a\"b@c>"));
        assert!(!searchable("<a b@c>"));
        assert!(!searchable("<>"));
    }
}
