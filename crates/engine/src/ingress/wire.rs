//! The wire types of a CRM change line: what serde reads, before `super` checks and maps it.
//! Each struct denies unknown fields; enumerations are snake_case, and convert both ways so
//! `render` writes exactly the names read here.

use ledgersync_domain::event::{AccessReason, ServerType, TestResult, Workload};
use ledgersync_domain::records::{
    ActivityState, ContactState, EmailState, Entity, Priority, ShowAs, TaskKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

macro_rules! wire_enum {
    ($wire:ident => $domain:ty { $($variant:ident),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, Deserialize, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub(super) enum $wire { $($variant),* }

        impl From<$wire> for $domain {
            fn from(w: $wire) -> Self {
                match w { $($wire::$variant => <$domain>::$variant),* }
            }
        }

        impl From<$domain> for $wire {
            fn from(d: $domain) -> Self {
                match d { $(<$domain>::$variant => $wire::$variant),* }
            }
        }
    };
}

wire_enum!(EntityWire => Entity { Appointment, Contact, Task, Email });
wire_enum!(StateWire => ActivityState { Open, Scheduled, Completed, Canceled });
wire_enum!(ShowAsWire => ShowAs { Busy, Free, Tentative, OutOfOffice });
wire_enum!(PriorityWire => Priority { Low, Normal, High });
wire_enum!(ContactStateWire => ContactState { Active, Inactive });
wire_enum!(TaskKindWire => TaskKind { Task, Fax, Letter, PhoneCall });
wire_enum!(EmailStateWire => EmailState { Draft, PendingSend, Sent, Received });
wire_enum!(ReasonWire => AccessReason { Role, Share, Team, BusinessUnit });
wire_enum!(TestWire => TestResult { NotRun, Success, Failure });
wire_enum!(WorkloadWire => Workload { Incoming, Outgoing, Act });
wire_enum!(ServerTypeWire => ServerType { Groupware, Pop3Smtp, ImapSmtp });

pub(super) fn yes() -> bool {
    true
}
pub(super) fn busy() -> ShowAsWire {
    ShowAsWire::Busy
}
pub(super) fn received() -> EmailStateWire {
    EmailStateWire::Received
}
pub(super) fn normal() -> PriorityWire {
    PriorityWire::Normal
}
pub(super) fn active() -> ContactStateWire {
    ContactStateWire::Active
}
pub(super) fn plain_task() -> TaskKindWire {
    TaskKindWire::Task
}
pub(super) fn not_run() -> TestWire {
    TestWire::NotRun
}
pub(super) fn administrator() -> String {
    "administrator".into()
}
pub(super) fn ten() -> u16 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpsertWire {
    pub(super) record: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OwnerChangedWire {
    pub(super) record: Value,
    pub(super) previous_owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeletedWire {
    pub(super) id: String,
    pub(super) entity: EntityWire,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessWire {
    pub(super) user: String,
    pub(super) records: Vec<String>,
    pub(super) reason: ReasonWire,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilterChangedWire {
    pub(super) user: String,
    pub(super) entity: EntityWire,
    pub(super) filters: Vec<FilterWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilterWire {
    pub(super) id: String,
    pub(super) name: String,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) expr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserWire {
    pub(super) user: String,
    pub(super) name: String,
    pub(super) email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileWire {
    pub(super) profile: String,
    pub(super) name: String,
    pub(super) server_type: ServerTypeWire,
    #[serde(default = "ten")]
    pub(super) max_connections: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileAlertingWire {
    pub(super) profile: String,
    pub(super) send_alert: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MailboxRegisteredWire {
    pub(super) mailbox: String,
    pub(super) address: String,
    pub(super) profile: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MailboxMappedWire {
    pub(super) mailbox: String,
    pub(super) user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddressApprovedWire {
    pub(super) mailbox: String,
    #[serde(default = "yes")]
    pub(super) approved: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MailboxTestedWire {
    pub(super) mailbox: String,
    #[serde(default = "not_run")]
    pub(super) incoming: TestWire,
    #[serde(default = "not_run")]
    pub(super) outgoing: TestWire,
    #[serde(default = "not_run")]
    pub(super) act: TestWire,
    #[serde(default)]
    pub(super) act_org: Option<String>,
    #[serde(default)]
    pub(super) override_other_org: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisableWire {
    pub(super) mailbox: String,
    pub(super) workload: WorkloadWire,
    #[serde(default = "administrator")]
    pub(super) by: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeletesApprovedWire {
    pub(super) mailbox: String,
    #[serde(default = "administrator")]
    pub(super) by: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingWire {
    pub(super) key: String,
    pub(super) value: Value,
}

/// The fields every record has. Each entity's wire struct repeats them: serde's `flatten`
/// does not combine with `deny_unknown_fields`.
pub(super) struct Common {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) version: u64,
}

impl Common {
    pub(super) fn of(id: String, owner: String, version: u64) -> Self {
        Self { id, owner, version }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartyWire {
    #[serde(default)]
    pub(super) user: Option<String>,
    pub(super) email: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefWire {
    pub(super) table: String,
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppointmentWire {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) version: u64,
    pub(super) subject: String,
    #[serde(default)]
    pub(super) organizer: Option<PartyWire>,
    #[serde(default)]
    pub(super) required: Vec<PartyWire>,
    #[serde(default)]
    pub(super) optional: Vec<PartyWire>,
    pub(super) start: String,
    pub(super) end: String,
    #[serde(default)]
    pub(super) all_day: bool,
    #[serde(default)]
    pub(super) location: String,
    #[serde(default)]
    pub(super) body: String,
    pub(super) state: StateWire,
    #[serde(default = "busy")]
    pub(super) show_as: ShowAsWire,
    #[serde(default = "normal")]
    pub(super) priority: PriorityWire,
    #[serde(default)]
    pub(super) regarding: Option<RefWire>,
    #[serde(default)]
    pub(super) service: bool,
    #[serde(default)]
    pub(super) recurrence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContactWire {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) version: u64,
    pub(super) full_name: String,
    #[serde(default)]
    pub(super) email: String,
    #[serde(default)]
    pub(super) phone: String,
    #[serde(default)]
    pub(super) company: String,
    #[serde(default = "active")]
    pub(super) state: ContactStateWire,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskWire {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) version: u64,
    #[serde(default = "plain_task")]
    pub(super) task_kind: TaskKindWire,
    pub(super) subject: String,
    #[serde(default)]
    pub(super) body: String,
    #[serde(default)]
    pub(super) start: Option<String>,
    #[serde(default)]
    pub(super) due: Option<String>,
    #[serde(default)]
    pub(super) actual_start: Option<String>,
    #[serde(default)]
    pub(super) actual_end: Option<String>,
    #[serde(default)]
    pub(super) percent_complete: u8,
    pub(super) state: StateWire,
    #[serde(default = "normal")]
    pub(super) priority: PriorityWire,
    #[serde(default)]
    pub(super) regarding: Option<RefWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailWire {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) version: u64,
    pub(super) subject: String,
    pub(super) from: PartyWire,
    #[serde(default)]
    pub(super) to: Vec<PartyWire>,
    #[serde(default)]
    pub(super) message_id: String,
    #[serde(default)]
    pub(super) regarding: Option<RefWire>,
    #[serde(default = "received")]
    pub(super) state: EmailStateWire,
    #[serde(default)]
    pub(super) cc: Vec<PartyWire>,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) html: Option<String>,
    #[serde(default)]
    pub(super) submitted_by: Option<String>,
    #[serde(default)]
    pub(super) tracking_token: Option<String>,
}
