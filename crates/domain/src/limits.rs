//! Size limits on what enters ledgersync: a CRM change file, one of its lines, one text field,
//! one item a connector reads. Configured in the `[limits]` table of `ledgersync.toml`
//! (`docs/serve.md`); the defaults are [`Limits::default`]. Input beyond a limit is refused with
//! where it is (file, line, field or item) and what to do, before it is held whole in memory.

use serde::{Deserialize, Serialize};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// One kibibyte.
pub const KIB: u64 = 1024;

/// The size limits, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A `crm apply` input (file or standard input), also as sent over the control socket.
    pub max_file_bytes: u64,
    /// One line of a `crm apply` input (one change).
    pub max_line_bytes: u64,
    /// One `body` text field of a change (an appointment's, a task's description).
    pub max_body_bytes: u64,
    /// Any other text field of a change (subject, name, location, address, id, filter…).
    pub max_field_bytes: u64,
    /// One item file a connector reads (`.ics`, `.vcf`).
    pub max_item_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 * MIB,
            max_line_bytes: MIB,
            max_body_bytes: 256 * KIB,
            max_field_bytes: 8 * KIB,
            max_item_bytes: 4 * MIB,
        }
    }
}

impl Limits {
    /// The limit of a text field named `key` (`body`: [`Limits::max_body_bytes`], else
    /// [`Limits::max_field_bytes`]) and the name of its setting.
    pub fn of_field(&self, key: &str) -> (u64, &'static str) {
        if key == "body" {
            (self.max_body_bytes, "max_body_bytes")
        } else {
            (self.max_field_bytes, "max_field_bytes")
        }
    }
}
