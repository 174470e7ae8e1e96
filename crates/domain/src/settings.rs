//! Organization settings with the documented SSS defaults, addressable by key for `what-if`.

use crate::time::Duration;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happens to a CRM task when its linked mail-server task is deleted (R46).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskDeletionMode {
    /// 0: delete the CRM task (SSS default).
    Delete,
    /// 1: delete only if the task is not completed.
    DeleteIfNotCompleted,
    /// 2: never delete.
    Never,
}

/// Organization-wide settings. Every field has the default SSS documents (see
/// `sss-behavior.md`, Appendix A); the key of each is its field name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettings {
    /// `DistinctPhysicalAndLogicalDeletesForExchangeSync`: when true a logical delete unlinks
    /// instead of deleting (R22/R23). Default false.
    pub distinct_physical_logical_deletes: bool,
    /// `SSSPropagateAppointmentCancellationsToExchange` (R28). Default false.
    pub propagate_appointment_cancellations: bool,
    /// `SSSUpdatePastMeetingsInNonDraftMode` (R32). Default false.
    pub update_past_meetings: bool,
    /// `TrackAppointmentsFromNonOrganizer` (R34). Default true.
    pub track_appointments_from_non_organizer: bool,
    /// `SSSTaskDeletionSyncBehaviorFromExchange` (R46). Default 0 (delete).
    pub task_deletion_mode: TaskDeletionMode,
    /// `IgnoreCopiedItemsInSSSForMailbox` (R39). Default true.
    pub ignore_copied_items: bool,
    /// A CRM contact delete reaches a mailbox only when its user is not the owner (R42, as SSS
    /// documents it). Default true; false deletes the linked contact in every mailbox.
    pub contact_delete_only_for_non_owner: bool,
    /// "Process emails only for approved users/queues" (R5). Default true.
    pub require_approved_address: bool,
    /// Consecutive transient failures after which a workload is disabled (R11). Default 10.
    pub transient_retry_limit: u32,
    /// Interval between transient retries (R11). Default 5 minutes.
    pub transient_retry_interval: Duration,
    /// Appointments further in the past than this get no reminder (R31). Default 7 days.
    pub reminder_cutoff: Duration,
    /// The SSS cycle cadence of each workload (R7, R8, R9).
    pub schedule: Schedule,
    /// `TraceLogPersistenceTimeInDays`: how long alerts are kept (R81). Default 30 days.
    pub alert_retention_days: u32,
    /// The delete breaker (R25, `docs/decisions/0016-delete-breaker.md`): one cycle that would
    /// delete more than this percent of a mailbox's linked items (two at least), or every one of
    /// them, trips it. 1 to 100; 100 turns the share off (the count still trips). Default 20.
    pub delete_breaker_percent: u8,
    /// The delete breaker (R25): one cycle that would delete more than this many linked items
    /// trips it. 1 or more. Default 50.
    pub delete_breaker_items: u32,
    /// The email settings (R49–R69): correlation, tracking tokens, resolution, acceptance.
    #[serde(default)]
    pub email: EmailOptions,
    /// The version of these settings (not a setting: no key, not changed by `set`).
    #[serde(default = "defaults_version")]
    pub version: SettingsVersion,
}

/// Cycle cadence (R7, R8, R9). Every interval is counted from the end of a cycle; all are
/// settings, in seconds, so a test or a small deployment can run cycles seconds apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Incoming email: next cycle after an ordinary cycle (SSS: 5 minutes).
    pub incoming: Duration,
    /// Incoming email: after a busy cycle (SSS: down to 2 minutes).
    pub incoming_min: Duration,
    /// Incoming email: the longest wait of a quiet mailbox (SSS: up to 12 minutes).
    pub incoming_max: Duration,
    /// Outgoing email: the Pending Send scan interval (SSS: 5 minutes).
    pub outgoing: Duration,
    /// ACT: next cycle of an active mailbox (SSS: 5 minutes).
    pub act_min: Duration,
    /// ACT: the longest wait of a quiet mailbox (SSS: 12 minutes).
    pub act_max: Duration,
    /// ACT: the longest wait when incoming email is also enabled (SSS: 15 minutes).
    pub act_max_with_incoming: Duration,
    /// How much longer each further quiet cycle waits (1 minute).
    pub quiet_step: Duration,
    /// Items in one cycle from which a mailbox counts as busy (10).
    pub busy_items: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            incoming: Duration::minutes(5),
            incoming_min: Duration::minutes(2),
            incoming_max: Duration::minutes(12),
            outgoing: Duration::minutes(5),
            act_min: Duration::minutes(5),
            act_max: Duration::minutes(12),
            act_max_with_incoming: Duration::minutes(15),
            quiet_step: Duration::minutes(1),
            busy_items: 10,
        }
    }
}

/// The organization's email settings, with the SSS defaults (`sss-behavior.md` 3.3–3.9).
/// Each key is `email_` and the field name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailOptions {
    /// "Use correlation to track email conversations" (R60). Default true.
    pub use_correlation: bool,
    /// Tracking tokens in subjects are used (R60, R63). Default true.
    pub use_tracking_token: bool,
    /// `IgnoreConversationIndexAndInReplyToForCorrelation` (R60). Default false.
    pub ignore_conversation_and_in_reply_to: bool,
    /// `DoNotCorrelateForwardedEmailsAsReplies` (R62). Default false.
    pub do_not_correlate_forwards: bool,
    /// Smart matching (R65). Default false.
    pub smart_matching: bool,
    /// `HashMaxCount` (R65): 1 to 100. Default 20.
    pub smart_match_max_count: u32,
    /// `HashDeltaSubjectCount` (R65): 0 to 100. Default 0.
    pub smart_match_delta_subject_count: u32,
    /// `HashMinAddressCount` (R65): 1 to 100. Default 2.
    pub smart_match_min_address_count: u32,
    /// The tracking-token prefix (R63): 1 to 20 characters, not ending with a digit. Default
    /// `CRM:`.
    pub token_prefix: String,
    /// The deployment base tracking number (R63): 0 to 2,147,483,647. Default 0.
    pub token_base: u32,
    /// Digits of the user number (R63): 1 to 10. Default 3.
    pub token_user_digits: u8,
    /// Digits of the message counter (R63): 1 to 9. Default 3.
    pub token_counter_digits: u8,
    /// `MaximumSubjectLengthOnMailServer` (R64): 255 to 400. Default 255.
    pub max_subject_length: u32,
    /// `UseFilteringMethodOfSyncingMailboxOnlyForCorrelation` (R53). Default false.
    pub processing_mailbox_only: bool,
    /// "Track email sent between two users as two activities" (R58). Default false.
    pub track_between_users_twice: bool,
    /// `RestrictIRMEmailItems` (R59). Default false.
    pub restrict_irm: bool,
    /// `AutoCreateContactOnPromote` (R68). Default true.
    pub auto_create_contact_on_promote: bool,
    /// `AutoTrackSentFolderItems` (R49). Default false.
    pub track_sent_items: bool,
    /// `UnresolveSenderInCaseOfMultipleMatch` (R66). Default false.
    pub unresolve_sender_on_multiple_match: bool,
    /// "Set To, cc, bcc fields as unresolved values if multiple matches are found" (R67).
    /// Default false.
    pub unresolve_recipients_on_multiple_match: bool,
    /// The largest incoming message read, in MiB (`IncomingEmailMaximumSizeLimit`; the
    /// 150 MB of Exchange Online): 1 to 2048. Default 150.
    pub max_message_mib: u32,
    /// `SSSSaveOutgoingEmailToExchangeSentFolder` (R76): a sent email is also saved to the
    /// sender's Sent folder. Default true.
    #[serde(default = "yes")]
    pub save_sent_copy: bool,
    /// `EnableMailboxDelegationForOutgoingEmail` (R78): an email submitted by another user is
    /// sent through the submitter's mailbox on behalf of the From user or queue. Default true.
    #[serde(default = "yes")]
    pub outgoing_delegation: bool,
}

fn yes() -> bool {
    true
}

impl Default for EmailOptions {
    fn default() -> Self {
        Self {
            use_correlation: true,
            use_tracking_token: true,
            ignore_conversation_and_in_reply_to: false,
            do_not_correlate_forwards: false,
            smart_matching: false,
            smart_match_max_count: 20,
            smart_match_delta_subject_count: 0,
            smart_match_min_address_count: 2,
            token_prefix: "CRM:".to_string(),
            token_base: 0,
            token_user_digits: 3,
            token_counter_digits: 3,
            max_subject_length: 255,
            processing_mailbox_only: false,
            track_between_users_twice: false,
            restrict_irm: false,
            auto_create_contact_on_promote: true,
            track_sent_items: false,
            unresolve_sender_on_multiple_match: false,
            unresolve_recipients_on_multiple_match: false,
            max_message_mib: 150,
            save_sent_copy: true,
            outgoing_delegation: true,
        }
    }
}

impl EmailOptions {
    fn bool_field(&mut self, key: &str) -> Option<&mut bool> {
        Some(match key {
            "email_use_correlation" => &mut self.use_correlation,
            "email_use_tracking_token" => &mut self.use_tracking_token,
            "email_ignore_conversation_and_in_reply_to" => {
                &mut self.ignore_conversation_and_in_reply_to
            }
            "email_do_not_correlate_forwards" => &mut self.do_not_correlate_forwards,
            "email_smart_matching" => &mut self.smart_matching,
            "email_processing_mailbox_only" => &mut self.processing_mailbox_only,
            "email_track_between_users_twice" => &mut self.track_between_users_twice,
            "email_restrict_irm" => &mut self.restrict_irm,
            "email_auto_create_contact_on_promote" => &mut self.auto_create_contact_on_promote,
            "email_track_sent_items" => &mut self.track_sent_items,
            "email_unresolve_sender_on_multiple_match" => {
                &mut self.unresolve_sender_on_multiple_match
            }
            "email_unresolve_recipients_on_multiple_match" => {
                &mut self.unresolve_recipients_on_multiple_match
            }
            "email_save_sent_copy" => &mut self.save_sent_copy,
            "email_outgoing_delegation" => &mut self.outgoing_delegation,
            _ => return None,
        })
    }

    /// The numeric settings: the field, its range and the text naming the range.
    fn number_field(
        &mut self,
        key: &str,
    ) -> Option<(&mut u32, std::ops::RangeInclusive<u32>, &'static str)> {
        Some(match key {
            "email_smart_match_max_count" => (
                &mut self.smart_match_max_count,
                1..=100,
                "a whole number from 1 to 100",
            ),
            "email_smart_match_delta_subject_count" => (
                &mut self.smart_match_delta_subject_count,
                0..=100,
                "a whole number from 0 to 100",
            ),
            "email_smart_match_min_address_count" => (
                &mut self.smart_match_min_address_count,
                1..=100,
                "a whole number from 1 to 100",
            ),
            "email_token_base" => (
                &mut self.token_base,
                0..=2_147_483_647,
                "a whole number from 0 to 2147483647",
            ),
            "email_max_subject_length" => (
                &mut self.max_subject_length,
                255..=400,
                "a whole number of characters from 255 to 400",
            ),
            "email_max_message_mib" => (
                &mut self.max_message_mib,
                1..=2048,
                "a whole number of MiB from 1 to 2048",
            ),
            _ => return None,
        })
    }

    fn get(&self, key: &str) -> Option<String> {
        let mut copy = self.clone();
        if let Some(b) = copy.bool_field(key) {
            return Some(b.to_string());
        }
        if let Some((n, ..)) = copy.number_field(key) {
            return Some(n.to_string());
        }
        Some(match key {
            "email_token_prefix" => self.token_prefix.clone(),
            "email_token_user_digits" => self.token_user_digits.to_string(),
            "email_token_counter_digits" => self.token_counter_digits.to_string(),
            _ => return None,
        })
    }

    /// Sets an `email_` key; `None` when `key` is not one.
    fn set(&mut self, key: &str, value: &str) -> Option<Result<(), SettingsError>> {
        if let Some(b) = self.bool_field(key) {
            return Some(parse_bool(key, value).map(|v| *b = v));
        }
        if let Some((n, range, expected)) = self.number_field(key) {
            return Some(number_in(key, value, range, expected).map(|v| *n = v));
        }
        let digits = |range: std::ops::RangeInclusive<u32>, expected| {
            number_in(key, value, range, expected).map(|v| v as u8)
        };
        Some(match key {
            "email_token_prefix" => {
                let format = crate::email::token::TokenFormat {
                    prefix: value.to_string(),
                    ..crate::email::token::TokenFormat::default()
                };
                match format.validate() {
                    Ok(()) => {
                        self.token_prefix = value.to_string();
                        Ok(())
                    }
                    Err(_) => Err(SettingsError::InvalidValue {
                        key: key.into(),
                        value: value.into(),
                        expected: "1 to 20 characters, not ending with a digit",
                    }),
                }
            }
            "email_token_user_digits" => {
                digits(1..=10, "a whole number from 1 to 10").map(|v| self.token_user_digits = v)
            }
            "email_token_counter_digits" => {
                digits(1..=9, "a whole number from 1 to 9").map(|v| self.token_counter_digits = v)
            }
            _ => return None,
        })
    }
}

/// A whole number within `range`, else `InvalidValue` with `expected`.
fn number_in(
    key: &str,
    value: &str,
    range: std::ops::RangeInclusive<u32>,
    expected: &'static str,
) -> Result<u32, SettingsError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| SettingsError::InvalidValue {
            key: key.into(),
            value: value.into(),
            expected,
        })
}

fn defaults_version() -> SettingsVersion {
    SettingsVersion::DEFAULTS
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            distinct_physical_logical_deletes: false,
            propagate_appointment_cancellations: false,
            update_past_meetings: false,
            track_appointments_from_non_organizer: true,
            task_deletion_mode: TaskDeletionMode::Delete,
            ignore_copied_items: true,
            contact_delete_only_for_non_owner: true,
            require_approved_address: true,
            transient_retry_limit: 10,
            transient_retry_interval: Duration::minutes(5),
            reminder_cutoff: Duration::days(7),
            schedule: Schedule::default(),
            alert_retention_days: 30,
            delete_breaker_percent: 20,
            delete_breaker_items: 50,
            email: EmailOptions::default(),
            version: SettingsVersion::DEFAULTS,
        }
    }
}

/// Which settings a decision was made under: the id of the organization-stream
/// `setting_changed` event that last changed them, or [`SettingsVersion::DEFAULTS`] (the nil
/// UUID) when none ever did. A mailbox records it as the last id of each observation's
/// causation, so `replay`, `what-if` and `explain` re-decide with exactly those settings,
/// whatever the order in which concurrent appends got their journal positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SettingsVersion(pub crate::ids::EventId);

impl SettingsVersion {
    /// The version of settings that never changed: the SSS defaults.
    pub const DEFAULTS: SettingsVersion = SettingsVersion(crate::ids::EventId([0; 16]));
}

impl fmt::Display for SettingsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::DEFAULTS {
            f.write_str("defaults")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A setting key, value or combination that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The key names no setting.
    #[error("unknown setting `{key}`; known settings: {}", OrgSettings::KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// The value does not fit the setting.
    #[error("setting `{key}` cannot be `{value}`: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// The text is not `key=value`.
    #[error("`{0}` is not of the form key=value")]
    NotKeyValue(String),
}

/// A boolean as a change may give it: `true` or `false` (what a JSON boolean becomes, or the
/// same text as a string). Nothing else: `yes`, `1` or `on` are refused, so a value never means
/// something other than what it says.
fn parse_bool(key: &str, v: &str) -> Result<bool, SettingsError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SettingsError::InvalidValue {
            key: key.into(),
            value: v.into(),
            expected: "true or false (a JSON boolean, or the string \"true\" or \"false\")",
        }),
    }
}

/// A boolean as the journal may hold it: older versions recorded `on`/`off`, `yes`/`no`, `1`/`0`
/// in any case; a recorded value keeps the meaning it had when it was recorded.
fn parse_recorded_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn parse_minutes(key: &str, v: &str, expected: &'static str) -> Result<Duration, SettingsError> {
    v.trim_end_matches("min")
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|m| *m > 0)
        .map(Duration::minutes)
        .ok_or_else(|| SettingsError::InvalidValue {
            key: key.into(),
            value: v.into(),
            expected,
        })
}

impl OrgSettings {
    /// Every key, in documentation order.
    pub const KEYS: &'static [&'static str] = &[
        "distinct_physical_logical_deletes",
        "propagate_appointment_cancellations",
        "update_past_meetings",
        "track_appointments_from_non_organizer",
        "task_deletion_mode",
        "ignore_copied_items",
        "contact_delete_only_for_non_owner",
        "require_approved_address",
        "transient_retry_limit",
        "transient_retry_interval_minutes",
        "reminder_cutoff_days",
        "schedule_incoming_seconds",
        "schedule_incoming_min_seconds",
        "schedule_incoming_max_seconds",
        "schedule_outgoing_seconds",
        "schedule_act_min_seconds",
        "schedule_act_max_seconds",
        "schedule_act_max_with_incoming_seconds",
        "schedule_quiet_step_seconds",
        "schedule_busy_items",
        "alert_retention_days",
        "delete_breaker_percent",
        "delete_breaker_items",
        "email_use_correlation",
        "email_use_tracking_token",
        "email_ignore_conversation_and_in_reply_to",
        "email_do_not_correlate_forwards",
        "email_smart_matching",
        "email_smart_match_max_count",
        "email_smart_match_delta_subject_count",
        "email_smart_match_min_address_count",
        "email_token_prefix",
        "email_token_base",
        "email_token_user_digits",
        "email_token_counter_digits",
        "email_max_subject_length",
        "email_processing_mailbox_only",
        "email_track_between_users_twice",
        "email_restrict_irm",
        "email_auto_create_contact_on_promote",
        "email_track_sent_items",
        "email_unresolve_sender_on_multiple_match",
        "email_unresolve_recipients_on_multiple_match",
        "email_max_message_mib",
        "email_save_sent_copy",
        "email_outgoing_delegation",
    ];

    fn schedule_field(&mut self, key: &str) -> Option<&mut Duration> {
        let s = &mut self.schedule;
        Some(match key {
            "schedule_incoming_seconds" => &mut s.incoming,
            "schedule_incoming_min_seconds" => &mut s.incoming_min,
            "schedule_incoming_max_seconds" => &mut s.incoming_max,
            "schedule_outgoing_seconds" => &mut s.outgoing,
            "schedule_act_min_seconds" => &mut s.act_min,
            "schedule_act_max_seconds" => &mut s.act_max,
            "schedule_act_max_with_incoming_seconds" => &mut s.act_max_with_incoming,
            "schedule_quiet_step_seconds" => &mut s.quiet_step,
            _ => return None,
        })
    }

    /// The current value of `key` as text.
    pub fn get(&self, key: &str) -> Result<String, SettingsError> {
        Ok(match key {
            "distinct_physical_logical_deletes" => {
                self.distinct_physical_logical_deletes.to_string()
            }
            "propagate_appointment_cancellations" => {
                self.propagate_appointment_cancellations.to_string()
            }
            "update_past_meetings" => self.update_past_meetings.to_string(),
            "track_appointments_from_non_organizer" => {
                self.track_appointments_from_non_organizer.to_string()
            }
            "task_deletion_mode" => match self.task_deletion_mode {
                TaskDeletionMode::Delete => "0",
                TaskDeletionMode::DeleteIfNotCompleted => "1",
                TaskDeletionMode::Never => "2",
            }
            .to_string(),
            "ignore_copied_items" => self.ignore_copied_items.to_string(),
            "contact_delete_only_for_non_owner" => {
                self.contact_delete_only_for_non_owner.to_string()
            }
            "require_approved_address" => self.require_approved_address.to_string(),
            "transient_retry_limit" => self.transient_retry_limit.to_string(),
            "transient_retry_interval_minutes" => {
                self.transient_retry_interval.as_minutes().to_string()
            }
            "reminder_cutoff_days" => (self.reminder_cutoff.0 / 86_400_000).to_string(),
            "schedule_busy_items" => self.schedule.busy_items.to_string(),
            "alert_retention_days" => self.alert_retention_days.to_string(),
            "delete_breaker_percent" => self.delete_breaker_percent.to_string(),
            "delete_breaker_items" => self.delete_breaker_items.to_string(),
            _ => match (self.email.get(key), self.clone().schedule_field(key)) {
                (Some(v), _) => v,
                (None, Some(d)) => (d.0 / 1000).to_string(),
                (None, None) => return Err(SettingsError::UnknownKey { key: key.into() }),
            },
        })
    }

    /// Sets `key` from text, validating the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let value = value.trim();
        match key {
            "distinct_physical_logical_deletes" => {
                self.distinct_physical_logical_deletes = parse_bool(key, value)?
            }
            "propagate_appointment_cancellations" => {
                self.propagate_appointment_cancellations = parse_bool(key, value)?
            }
            "update_past_meetings" => self.update_past_meetings = parse_bool(key, value)?,
            "track_appointments_from_non_organizer" => {
                self.track_appointments_from_non_organizer = parse_bool(key, value)?
            }
            "task_deletion_mode" => {
                self.task_deletion_mode = match value {
                    "0" | "delete" => TaskDeletionMode::Delete,
                    "1" | "delete_if_not_completed" => TaskDeletionMode::DeleteIfNotCompleted,
                    "2" | "never" => TaskDeletionMode::Never,
                    _ => {
                        return Err(SettingsError::InvalidValue {
                            key: key.into(),
                            value: value.into(),
                            expected: "0 (delete), 1 (delete if not completed) or 2 (never)",
                        });
                    }
                }
            }
            "ignore_copied_items" => self.ignore_copied_items = parse_bool(key, value)?,
            "contact_delete_only_for_non_owner" => {
                self.contact_delete_only_for_non_owner = parse_bool(key, value)?
            }
            "require_approved_address" => self.require_approved_address = parse_bool(key, value)?,
            "transient_retry_limit" => {
                self.transient_retry_limit =
                    number_in(key, value, 1..=100, "a whole number from 1 to 100")?
            }
            "transient_retry_interval_minutes" => {
                self.transient_retry_interval =
                    parse_minutes(key, value, "a positive number of minutes")?
            }
            "reminder_cutoff_days" => {
                self.reminder_cutoff = value
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .map(Duration::days)
                    .ok_or_else(|| SettingsError::InvalidValue {
                        key: key.into(),
                        value: value.into(),
                        expected: "a whole number of days, 0 or more",
                    })?
            }
            "alert_retention_days" => {
                self.alert_retention_days = number_in(
                    key,
                    value,
                    1..=3650,
                    "a whole number of days from 1 to 3650",
                )?
            }
            "delete_breaker_percent" => {
                self.delete_breaker_percent =
                    number_in(key, value, 1..=100, "a whole percentage from 1 to 100")? as u8
            }
            "delete_breaker_items" => {
                self.delete_breaker_items = number_in(
                    key,
                    value,
                    1..=u32::MAX,
                    "a whole number of items, 1 or more",
                )?
            }
            "schedule_busy_items" => {
                self.schedule.busy_items = number_in(
                    key,
                    value,
                    1..=u32::MAX,
                    "a whole number of items, 1 or more",
                )?
            }
            _ if key.starts_with("email_") => match self.email.set(key, value) {
                Some(result) => result?,
                None => return Err(SettingsError::UnknownKey { key: key.into() }),
            },
            _ => {
                let seconds = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=86_400).contains(n));
                let Some(field) = self.schedule_field(key) else {
                    return Err(SettingsError::UnknownKey { key: key.into() });
                };
                *field = Duration(
                    seconds.ok_or_else(|| SettingsError::InvalidValue {
                        key: key.into(),
                        value: value.into(),
                        expected: "a whole number of seconds from 1 to 86400",
                    })? * 1000,
                );
            }
        }
        Ok(())
    }

    /// Applies a value recorded in the organization stream (`setting_changed`): as [`Self::set`],
    /// except that a boolean also reads the spellings older versions accepted (`yes`, `on`, `1`,
    /// ...), so a journal folds to the settings it was decided under. Input is checked with
    /// [`Self::set`], never with this.
    pub fn set_recorded(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let value = value.trim();
        if Self::BOOL_KEYS.contains(&key)
            && let Some(b) = parse_recorded_bool(value)
        {
            return self.set(key, if b { "true" } else { "false" });
        }
        self.set(key, value)
    }

    /// The keys whose value is a boolean.
    pub const BOOL_KEYS: &'static [&'static str] = &[
        "distinct_physical_logical_deletes",
        "propagate_appointment_cancellations",
        "update_past_meetings",
        "track_appointments_from_non_organizer",
        "ignore_copied_items",
        "contact_delete_only_for_non_owner",
        "require_approved_address",
        "email_use_correlation",
        "email_use_tracking_token",
        "email_ignore_conversation_and_in_reply_to",
        "email_do_not_correlate_forwards",
        "email_smart_matching",
        "email_processing_mailbox_only",
        "email_track_between_users_twice",
        "email_restrict_irm",
        "email_auto_create_contact_on_promote",
        "email_track_sent_items",
        "email_unresolve_sender_on_multiple_match",
        "email_unresolve_recipients_on_multiple_match",
        "email_save_sent_copy",
        "email_outgoing_delegation",
    ];

    /// Applies `key=value` text.
    pub fn apply_assignment(&mut self, text: &str) -> Result<(String, String), SettingsError> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| SettingsError::NotKeyValue(text.into()))?;
        let (k, v) = (k.trim(), v.trim());
        self.set(k, v)?;
        Ok((k.to_string(), v.to_string()))
    }
}

/// A setting consulted by a decision, with the value it had: stored with the decision so that
/// `explain` can name it and `what-if` can flip it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SettingUsed {
    /// Setting key.
    pub key: String,
    /// Its value when the decision was made.
    pub value: String,
}

impl fmt::Display for SettingUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults() {
        let s = OrgSettings::default();
        assert!(!s.distinct_physical_logical_deletes);
        assert!(!s.propagate_appointment_cancellations);
        assert!(!s.update_past_meetings);
        assert!(s.track_appointments_from_non_organizer);
        assert_eq!(s.task_deletion_mode, TaskDeletionMode::Delete);
        assert!(s.ignore_copied_items);
        assert_eq!(s.transient_retry_limit, 10);
        assert_eq!(s.transient_retry_interval, Duration::minutes(5));
        assert_eq!(s.alert_retention_days, 30);
    }

    #[test]
    fn every_key_round_trips_through_get_and_set() {
        let mut s = OrgSettings::default();
        for key in OrgSettings::KEYS {
            let v = s.get(key).unwrap();
            s.set(key, &v).unwrap();
        }
        assert_eq!(s, OrgSettings::default());
    }

    #[test]
    fn email_settings_have_the_documented_defaults_and_ranges() {
        let mut s = OrgSettings::default();
        assert_eq!(s.get("email_token_prefix").unwrap(), "CRM:");
        assert_eq!(s.get("email_max_subject_length").unwrap(), "255");
        assert_eq!(s.get("email_smart_matching").unwrap(), "false");
        assert_eq!(
            s.get("email_auto_create_contact_on_promote").unwrap(),
            "true"
        );
        assert_eq!(s.get("email_max_message_mib").unwrap(), "150");
        for (key, bad, expected) in [
            ("email_max_subject_length", "254", "255 to 400"),
            ("email_max_subject_length", "401", "255 to 400"),
            ("email_token_prefix", "CRM1", "not ending with a digit"),
            ("email_token_prefix", "", "1 to 20 characters"),
            ("email_token_user_digits", "11", "1 to 10"),
            ("email_token_counter_digits", "0", "1 to 9"),
            ("email_smart_match_min_address_count", "0", "1 to 100"),
            ("email_token_base", "2147483648", "0 to 2147483647"),
            ("email_smart_matching", "yes", "true or false"),
        ] {
            let e = s.set(key, bad).unwrap_err().to_string();
            assert!(e.contains(expected), "{key}={bad}: {e}");
        }
        s.set("email_token_prefix", "Ticket#").unwrap();
        assert_eq!(s.email.token_prefix, "Ticket#");
        let e = s.set("email_nonsense", "1").unwrap_err().to_string();
        assert!(e.contains("unknown setting `email_nonsense`"), "{e}");
    }

    #[test]
    fn bad_key_and_value_are_named() {
        let mut s = OrgSettings::default();
        let e = s.apply_assignment("distinct_deletes=true").unwrap_err();
        assert!(e.to_string().contains("unknown setting `distinct_deletes`"));
        assert!(e.to_string().contains("distinct_physical_logical_deletes"));
        let e = s.set("task_deletion_mode", "7").unwrap_err();
        assert!(e.to_string().contains("0 (delete)"));
    }

    #[test]
    fn a_boolean_is_true_or_false_and_nothing_else() {
        let mut s = OrgSettings::default();
        for key in OrgSettings::BOOL_KEYS {
            assert!(s.get(key).is_ok(), "{key} is a setting");
            for bad in ["yes", "no", "1", "0", "on", "off", "TRUE", "False", ""] {
                let e = s.set(key, bad).unwrap_err();
                assert!(
                    e.to_string().contains("expected true or false"),
                    "{key}={bad}: {e}"
                );
            }
            s.set(key, "false").unwrap();
            assert_eq!(s.get(key).unwrap(), "false");
            s.set(key, "true").unwrap();
            assert_eq!(s.get(key).unwrap(), "true");
        }
    }

    #[test]
    fn a_recorded_boolean_keeps_the_meaning_it_was_recorded_with() {
        let mut s = OrgSettings::default();
        s.set_recorded("distinct_physical_logical_deletes", "yes")
            .unwrap();
        assert!(s.distinct_physical_logical_deletes);
        s.set_recorded("distinct_physical_logical_deletes", "0")
            .unwrap();
        assert!(!s.distinct_physical_logical_deletes);
        assert!(
            s.set_recorded("distinct_physical_logical_deletes", "maybe")
                .is_err()
        );
        s.set_recorded("transient_retry_limit", "3").unwrap();
        assert_eq!(s.transient_retry_limit, 3);
    }
}

/// A setting a rule consults, by name: the typed form of the keys of [`OrgSettings::KEYS`], so a
/// rule cannot name a setting that does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SettingKey {
    /// `distinct_physical_logical_deletes`.
    DistinctPhysicalLogicalDeletes,
    /// `propagate_appointment_cancellations`.
    PropagateAppointmentCancellations,
    /// `update_past_meetings`.
    UpdatePastMeetings,
    /// `track_appointments_from_non_organizer`.
    TrackAppointmentsFromNonOrganizer,
    /// `task_deletion_mode`.
    TaskDeletionMode,
    /// `ignore_copied_items`.
    IgnoreCopiedItems,
    /// `contact_delete_only_for_non_owner`.
    ContactDeleteOnlyForNonOwner,
    /// `require_approved_address`.
    RequireApprovedAddress,
    /// `transient_retry_limit`.
    TransientRetryLimit,
    /// `transient_retry_interval_minutes`.
    TransientRetryIntervalMinutes,
    /// `reminder_cutoff_days`.
    ReminderCutoffDays,
    /// `schedule_incoming_seconds`.
    ScheduleIncomingSeconds,
    /// `schedule_incoming_min_seconds`.
    ScheduleIncomingMinSeconds,
    /// `schedule_incoming_max_seconds`.
    ScheduleIncomingMaxSeconds,
    /// `schedule_outgoing_seconds`.
    ScheduleOutgoingSeconds,
    /// `schedule_act_min_seconds`.
    ScheduleActMinSeconds,
    /// `schedule_act_max_seconds`.
    ScheduleActMaxSeconds,
    /// `schedule_act_max_with_incoming_seconds`.
    ScheduleActMaxWithIncomingSeconds,
    /// `schedule_quiet_step_seconds`.
    ScheduleQuietStepSeconds,
    /// `schedule_busy_items`.
    ScheduleBusyItems,
    /// `alert_retention_days`.
    AlertRetentionDays,
    /// `delete_breaker_percent`.
    DeleteBreakerPercent,
    /// `delete_breaker_items`.
    DeleteBreakerItems,
    /// `email_use_correlation`.
    EmailUseCorrelation,
    /// `email_use_tracking_token`.
    EmailUseTrackingToken,
    /// `email_ignore_conversation_and_in_reply_to`.
    EmailIgnoreConversationAndInReplyTo,
    /// `email_do_not_correlate_forwards`.
    EmailDoNotCorrelateForwards,
    /// `email_smart_matching`.
    EmailSmartMatching,
    /// `email_smart_match_max_count`.
    EmailSmartMatchMaxCount,
    /// `email_smart_match_delta_subject_count`.
    EmailSmartMatchDeltaSubjectCount,
    /// `email_smart_match_min_address_count`.
    EmailSmartMatchMinAddressCount,
    /// `email_token_prefix`.
    EmailTokenPrefix,
    /// `email_token_base`.
    EmailTokenBase,
    /// `email_token_user_digits`.
    EmailTokenUserDigits,
    /// `email_token_counter_digits`.
    EmailTokenCounterDigits,
    /// `email_max_subject_length`.
    EmailMaxSubjectLength,
    /// `email_processing_mailbox_only`.
    EmailProcessingMailboxOnly,
    /// `email_track_between_users_twice`.
    EmailTrackBetweenUsersTwice,
    /// `email_restrict_irm`.
    EmailRestrictIrm,
    /// `email_auto_create_contact_on_promote`.
    EmailAutoCreateContactOnPromote,
    /// `email_track_sent_items`.
    EmailTrackSentItems,
    /// `email_unresolve_sender_on_multiple_match`.
    EmailUnresolveSenderOnMultipleMatch,
    /// `email_unresolve_recipients_on_multiple_match`.
    EmailUnresolveRecipientsOnMultipleMatch,
    /// `email_max_message_mib`.
    EmailMaxMessageMib,
    /// `email_save_sent_copy`.
    EmailSaveSentCopy,
    /// `email_outgoing_delegation`.
    EmailOutgoingDelegation,
}

impl SettingKey {
    /// Every setting, in the order of [`OrgSettings::KEYS`].
    pub const ALL: [SettingKey; 46] = [
        SettingKey::DistinctPhysicalLogicalDeletes,
        SettingKey::PropagateAppointmentCancellations,
        SettingKey::UpdatePastMeetings,
        SettingKey::TrackAppointmentsFromNonOrganizer,
        SettingKey::TaskDeletionMode,
        SettingKey::IgnoreCopiedItems,
        SettingKey::ContactDeleteOnlyForNonOwner,
        SettingKey::RequireApprovedAddress,
        SettingKey::TransientRetryLimit,
        SettingKey::TransientRetryIntervalMinutes,
        SettingKey::ReminderCutoffDays,
        SettingKey::ScheduleIncomingSeconds,
        SettingKey::ScheduleIncomingMinSeconds,
        SettingKey::ScheduleIncomingMaxSeconds,
        SettingKey::ScheduleOutgoingSeconds,
        SettingKey::ScheduleActMinSeconds,
        SettingKey::ScheduleActMaxSeconds,
        SettingKey::ScheduleActMaxWithIncomingSeconds,
        SettingKey::ScheduleQuietStepSeconds,
        SettingKey::ScheduleBusyItems,
        SettingKey::AlertRetentionDays,
        SettingKey::DeleteBreakerPercent,
        SettingKey::DeleteBreakerItems,
        SettingKey::EmailUseCorrelation,
        SettingKey::EmailUseTrackingToken,
        SettingKey::EmailIgnoreConversationAndInReplyTo,
        SettingKey::EmailDoNotCorrelateForwards,
        SettingKey::EmailSmartMatching,
        SettingKey::EmailSmartMatchMaxCount,
        SettingKey::EmailSmartMatchDeltaSubjectCount,
        SettingKey::EmailSmartMatchMinAddressCount,
        SettingKey::EmailTokenPrefix,
        SettingKey::EmailTokenBase,
        SettingKey::EmailTokenUserDigits,
        SettingKey::EmailTokenCounterDigits,
        SettingKey::EmailMaxSubjectLength,
        SettingKey::EmailProcessingMailboxOnly,
        SettingKey::EmailTrackBetweenUsersTwice,
        SettingKey::EmailRestrictIrm,
        SettingKey::EmailAutoCreateContactOnPromote,
        SettingKey::EmailTrackSentItems,
        SettingKey::EmailUnresolveSenderOnMultipleMatch,
        SettingKey::EmailUnresolveRecipientsOnMultipleMatch,
        SettingKey::EmailMaxMessageMib,
        SettingKey::EmailSaveSentCopy,
        SettingKey::EmailOutgoingDelegation,
    ];

    /// The key as written in `setting_changed`, `what-if --set` and a decision's basis.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKey::DistinctPhysicalLogicalDeletes => "distinct_physical_logical_deletes",
            SettingKey::PropagateAppointmentCancellations => "propagate_appointment_cancellations",
            SettingKey::UpdatePastMeetings => "update_past_meetings",
            SettingKey::TrackAppointmentsFromNonOrganizer => {
                "track_appointments_from_non_organizer"
            }
            SettingKey::TaskDeletionMode => "task_deletion_mode",
            SettingKey::IgnoreCopiedItems => "ignore_copied_items",
            SettingKey::ContactDeleteOnlyForNonOwner => "contact_delete_only_for_non_owner",
            SettingKey::RequireApprovedAddress => "require_approved_address",
            SettingKey::TransientRetryLimit => "transient_retry_limit",
            SettingKey::TransientRetryIntervalMinutes => "transient_retry_interval_minutes",
            SettingKey::ReminderCutoffDays => "reminder_cutoff_days",
            SettingKey::ScheduleIncomingSeconds => "schedule_incoming_seconds",
            SettingKey::ScheduleIncomingMinSeconds => "schedule_incoming_min_seconds",
            SettingKey::ScheduleIncomingMaxSeconds => "schedule_incoming_max_seconds",
            SettingKey::ScheduleOutgoingSeconds => "schedule_outgoing_seconds",
            SettingKey::ScheduleActMinSeconds => "schedule_act_min_seconds",
            SettingKey::ScheduleActMaxSeconds => "schedule_act_max_seconds",
            SettingKey::ScheduleActMaxWithIncomingSeconds => {
                "schedule_act_max_with_incoming_seconds"
            }
            SettingKey::ScheduleQuietStepSeconds => "schedule_quiet_step_seconds",
            SettingKey::ScheduleBusyItems => "schedule_busy_items",
            SettingKey::AlertRetentionDays => "alert_retention_days",
            SettingKey::DeleteBreakerPercent => "delete_breaker_percent",
            SettingKey::DeleteBreakerItems => "delete_breaker_items",
            SettingKey::EmailUseCorrelation => "email_use_correlation",
            SettingKey::EmailUseTrackingToken => "email_use_tracking_token",
            SettingKey::EmailIgnoreConversationAndInReplyTo => {
                "email_ignore_conversation_and_in_reply_to"
            }
            SettingKey::EmailDoNotCorrelateForwards => "email_do_not_correlate_forwards",
            SettingKey::EmailSmartMatching => "email_smart_matching",
            SettingKey::EmailSmartMatchMaxCount => "email_smart_match_max_count",
            SettingKey::EmailSmartMatchDeltaSubjectCount => "email_smart_match_delta_subject_count",
            SettingKey::EmailSmartMatchMinAddressCount => "email_smart_match_min_address_count",
            SettingKey::EmailTokenPrefix => "email_token_prefix",
            SettingKey::EmailTokenBase => "email_token_base",
            SettingKey::EmailTokenUserDigits => "email_token_user_digits",
            SettingKey::EmailTokenCounterDigits => "email_token_counter_digits",
            SettingKey::EmailMaxSubjectLength => "email_max_subject_length",
            SettingKey::EmailProcessingMailboxOnly => "email_processing_mailbox_only",
            SettingKey::EmailTrackBetweenUsersTwice => "email_track_between_users_twice",
            SettingKey::EmailRestrictIrm => "email_restrict_irm",
            SettingKey::EmailAutoCreateContactOnPromote => "email_auto_create_contact_on_promote",
            SettingKey::EmailTrackSentItems => "email_track_sent_items",
            SettingKey::EmailUnresolveSenderOnMultipleMatch => {
                "email_unresolve_sender_on_multiple_match"
            }
            SettingKey::EmailUnresolveRecipientsOnMultipleMatch => {
                "email_unresolve_recipients_on_multiple_match"
            }
            SettingKey::EmailMaxMessageMib => "email_max_message_mib",
            SettingKey::EmailSaveSentCopy => "email_save_sent_copy",
            SettingKey::EmailOutgoingDelegation => "email_outgoing_delegation",
        }
    }

    /// The setting named `key`, if there is one.
    pub fn parse(key: &str) -> Option<SettingKey> {
        Self::ALL.into_iter().find(|k| k.as_str() == key)
    }
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrgSettings {
    /// The value of `key` as text, as `get` writes it.
    pub fn value(&self, key: SettingKey) -> String {
        self.get(key.as_str())
            .expect("every SettingKey names a known setting")
    }
}

#[cfg(test)]
mod setting_key_tests {
    use super::*;

    #[test]
    fn every_key_is_a_setting_key_and_back() {
        let typed: Vec<&str> = SettingKey::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(typed, OrgSettings::KEYS);
        for k in SettingKey::ALL {
            assert_eq!(SettingKey::parse(k.as_str()), Some(k));
            OrgSettings::default().value(k);
        }
    }
}
