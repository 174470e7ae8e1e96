//! `ledgersync`: the command line of the ledgersync sync engine.

/// Replay and what-if allocate a small value per decoded field; mimalloc does that about twice
/// as fast as the system allocator here (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod access;
mod alerts;
mod bus_config;
mod bus_status;
mod commands;
mod config;
mod control;
mod crm;
mod ctx;
mod demo;
mod example;
mod mailbox;
mod profiles;
mod render;
mod serve;
mod timeline;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// ledgersync keeps a CRM and mail/groupware servers in sync, and can always say why it did what
/// it did: every decision is an event with its rule, its reason and its causes.
#[derive(Parser, Debug)]
#[command(name = "ledgersync", version, about, long_about = None, after_help = "\
Start with `ledgersync demo`: it builds a small organization in a fresh data directory, plays the \
disappearing-appointment story, and prints the commands to explore it. `ledgersync serve` runs the \
service; while it runs, the other commands on its data directory are answered by it.")]
pub(crate) struct Cli {
    /// Data directory (holds the journal). Also read from LEDGERSYNC_DATA; wins over the
    /// configuration file's `data.dir`.
    #[arg(long, global = true, env = "LEDGERSYNC_DATA", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,

    /// Configuration file (see config/ledgersync.toml). Also read from LEDGERSYNC_CONFIG.
    #[arg(long, global = true, env = "LEDGERSYNC_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (JSON lines for `events`).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the service: the journal in the data directory, mailbox and organization actors, the
    /// connector of every `[[mailbox]]` of the configuration (vdir/Maildir, CalDAV/CardDAV, or
    /// IMAP for incoming email, pushed by IDLE) on the decided cadence, and the projection kept
    /// current. Other `ledgersync` commands on the same data
    /// directory are answered by it through `<data>/control.sock`. Stops gracefully on Ctrl-C
    /// (SIGINT) or SIGTERM. See docs/serve.md.
    #[command(after_help = "\
Example, from the repository root:
  ledgersync --config config/ledgersync.toml serve &
  ledgersync example > example.jsonl
  ledgersync --config config/ledgersync.toml crm apply example.jsonl
  ledgersync --config config/ledgersync.toml mailbox list
  ledgersync --config config/ledgersync.toml timeline apt-bike-repair
  kill %1")]
    Serve {
        /// Log format (default: the configuration's `log.format`, else text). The level comes
        /// from RUST_LOG, else `log.level`.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Run the disappearing-appointment story end to end in a fresh data directory (default: a
    /// new directory under the system temp dir, printed) through the service as `serve` runs
    /// it — actors, the vdir/Maildir connector, CRM changes applied from files — then show the
    /// invitations and cancellations in the attendees' Maildirs, explain, what-if and replay.
    Demo {
        /// Journal backend for the new data directory (default: the configuration's
        /// `journal.backend`, else redb).
        #[arg(long, value_parser = ["redb", "sled"])]
        backend: Option<String>,
    },
    /// Print the example organization of the README as CRM changes (JSON lines for `crm
    /// apply`): a server profile, two users with approved and tested mailboxes, a meeting
    /// tomorrow at 09:30 UTC with an internal and an external attendee, and two contacts.
    /// Its times are taken from today, so applying it always sends the invitations.
    #[command(after_help = "\
Example:
  ledgersync example > example.jsonl
  ledgersync --config config/ledgersync.toml crm apply example.jsonl")]
    Example {
        /// Start the meeting at this RFC 3339 time instead (e.g. 2027-01-15T09:30:00Z).
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
    },
    /// Rebuild state from the journal, re-run every decision and compare with what was recorded.
    /// Exits non-zero on any mismatch and prints a report per item.
    Replay {
        /// Only this mailbox.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
    },
    /// Explain an item: observation → rule → setting → decision → outcome, with a one-line why
    /// and the what-if that would change the outcome.
    Explain {
        /// A CRM id, a server item id, `crm:ID`, `remote:ID`, or part of a subject.
        item: String,
    },
    /// Re-decide the whole journal with other settings and list the decisions that would
    /// differ, item by item.
    #[command(name = "what-if")]
    WhatIf {
        /// A setting to change, `key=value` (repeatable), e.g.
        /// `distinct_physical_logical_deletes=true`.
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
    /// Print the journal as text, or JSON lines with --json.
    Events {
        /// Only this mailbox's stream.
        #[arg(long, value_name = "MAILBOX")]
        mailbox: Option<String>,
        /// Start at this global position.
        #[arg(long, value_name = "POS", default_value_t = 1)]
        from: u64,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Keep following: after the last event, print each new one as it is recorded (one
        /// JSON object per line with --json, the body of the event stream's messages;
        /// docs/event-stream.md).
        #[arg(long)]
        follow: bool,
    },
    /// The CRM side: `crm apply FILE.jsonl` (CRM changes and command results in,
    /// docs/crm-changes.md) and `crm pending` (the CRM commands out, docs/crm-commands.md).
    Crm {
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// The mailbox lifecycle: list, show, approve, approve-deletes, test-enable, enable, disable.
    Mailbox {
        #[command(subcommand)]
        command: MailboxCommand,
    },
    /// The CRM timeline of a row: the activities regarding it (and the row itself when it is an
    /// activity), in time order, with each mailbox's link status and last decision. Catches
    /// the projection (<data>/projections.redb) up with the journal first.
    Timeline {
        /// A CRM row id (an account, an appointment, ...).
        #[arg(
            value_name = "RECORD",
            required_unless_present = "user",
            conflicts_with = "user"
        )]
        record: Option<String>,
        /// A user's activities instead: owned, organized or attended.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// The alerts of the mailboxes and server profiles (R81), oldest first, from the projection
    /// (caught up first); kept for the `alert_retention_days` setting (default 30).
    Alerts {
        /// Only this mailbox's alerts.
        #[arg(long, value_name = "M")]
        mailbox: Option<String>,
        /// Only alerts of this level.
        #[arg(long, value_enum)]
        level: Option<alerts::Level>,
    },
    /// The projections (timeline, links, item failures, mailbox health).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// The journal itself: `journal check` verifies the storage engine's integrity, every
    /// record's checksum and every stream, and lists what is damaged (docs/journal-storage.md).
    /// Runs on a stopped service only (it takes the journal's lock).
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// The bus of the configuration's `[bus]`: `bus status` shows what RabbitMQ holds of it —
    /// queues and exchanges with their arguments, messages ready and consumers, the partitions
    /// without a consumer, the newest dead letters with their reasons — without changing
    /// anything on the broker (docs/bus.md, "Looking at the bus").
    Bus {
        #[command(subcommand)]
        command: BusCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum BusCommand {
    /// Show the broker's side of the bus: each queue and exchange of the topology (or "not
    /// declared"), each queue's ready messages and consumers, a summary of the partitions, and
    /// the newest dead letters with their reasons. Declares nothing and takes no dead letter
    /// (they are read and given back). With `[bus] kind = "in-process"` there is nothing to
    /// show from outside `serve`: it says so and exits 0. Exits 2 when the broker cannot be
    /// reached or refuses the login.
    #[command(after_help = "\
Examples (FILE with `[bus] kind = \"amqp\"` and its `url`):
  ledgersync --config FILE bus status
  ledgersync --config FILE bus status --json --limit 100
  docker compose exec ledgersync ledgersync bus status     # under Docker Compose")]
    Status {
        /// Show at most this many dead letters, the newest first.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum JournalCommand {
    /// Verify the journal: the storage engine's integrity check, the CRC32, layout and position
    /// of every record, every stream from seq 1 to its head. Prints every damaged position or
    /// stream and the last good position; exits 0 when intact, 1 when damaged, 2 when the
    /// journal cannot be opened at all.
    Check,
    /// Copy the intact records of this data directory's journal, from position 1 up to the
    /// first damaged one (or up to `--upto`), into a new data directory `--to`, with the same
    /// positions, seqs, ids and item index. The original is only read. The new directory holds
    /// the journal only: the projection is rebuilt on first use, and no connector cursor is
    /// copied, so the service lists every collection once again. Run `journal check` on it,
    /// then point `--data` (or `data.dir`) at it.
    Recover {
        /// The new data directory (must not exist, or be empty).
        #[arg(long, value_name = "NEW_DIR")]
        to: PathBuf,
        /// Copy no record after this position.
        #[arg(long, value_name = "POS")]
        upto: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProjectionsCommand {
    /// Drop the projections and fold the whole journal again; prints the events folded and the
    /// time it took.
    Rebuild,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CrmCommand {
    /// Apply CRM changes, one JSON object a line (`-` reads standard input), and the CRM's
    /// results of CRM commands (`command_result` lines, docs/crm-commands.md). Every line is
    /// checked first; if any is bad, nothing is applied, every bad line is listed and the exit
    /// code is 2. An empty or missing --data directory gets a new journal. With `[bus] kind =
    /// "amqp"` the lines are published to the broker's CRM queue instead (one message a line,
    /// each confirmed) for the service consuming it; lines it refuses are dead-lettered with
    /// their reasons (`bus status`).
    Apply {
        /// The JSON-lines file, or `-` for standard input.
        #[arg(value_name = "FILE.jsonl")]
        file: PathBuf,
    },
    /// List the open CRM commands: what the CRM is asked to do (a meeting, contact or task
    /// tracked on the mail server, an edit, a completion or a delete made there), each with its
    /// idempotency key; one JSON object a line with --json (docs/crm-commands.md). Answer each
    /// with a `command_result` line through `crm apply`.
    Pending,
}

#[derive(Subcommand, Debug)]
pub(crate) enum MailboxCommand {
    /// Every mailbox: user, address, approval, and each workload's status, consecutive
    /// errors, last error and next run.
    List,
    /// One mailbox, with its links, pending intents and sync filters.
    Show {
        /// Mailbox id.
        mailbox: String,
    },
    /// Approve the mailbox's email address (R5), or withdraw the approval.
    Approve {
        /// Mailbox id.
        mailbox: String,
        /// Withdraw the approval instead.
        #[arg(long)]
        withdraw: bool,
    },
    /// Approve the deletes the mailbox's delete breaker holds (R25): each held item is decided
    /// as deleted on the mail server, and held deletes to the mail server are carried out.
    #[command(name = "approve-deletes")]
    ApproveDeletes {
        /// Mailbox id.
        mailbox: String,
    },
    /// Test & Enable (R2, R6). A mailbox with a [[mailbox]] table in the configuration is
    /// tested for real: ledgersync connects to its server, authenticates, finds its collections
    /// or folders and records the result of the workload its connector runs (appointments,
    /// contacts and tasks for vdir and CalDAV; incoming email for IMAP); the others are not
    /// run. With --fail or --act-org, or for a mailbox the configuration does not name,
    /// the result is recorded as given: every workload succeeds unless listed in --fail.
    #[command(name = "test-enable")]
    TestEnable {
        /// Mailbox id.
        mailbox: String,
        /// Workloads whose test failed, comma-separated: incoming,outgoing,act.
        #[arg(long, value_name = "WORKLOADS")]
        fail: Option<String>,
        /// The organization the mail server says owns ACT sync of this mailbox (R2).
        #[arg(long, value_name = "ORG")]
        act_org: Option<String>,
        /// Take ACT sync over from that organization.
        #[arg(long = "override", requires = "act_org")]
        override_other_org: bool,
    },
    /// Test & Enable with every workload succeeding.
    Enable {
        /// Mailbox id.
        mailbox: String,
    },
    /// Sync one mailbox now: carry out its pending intents and list what changed on its server
    /// since the last cycle, through the connector the configuration gives it, recording what
    /// it sees; then print what the cycle did. A running `serve` runs the cycle at once
    /// instead (a push). The workload its connector runs (appointments, contacts and tasks;
    /// incoming email for an IMAP profile) must be enabled.
    Sync {
        /// Mailbox id.
        mailbox: String,
    },
    /// Ask to disable a workload (default: all three).
    Disable {
        /// Mailbox id.
        mailbox: String,
        /// Only this workload.
        #[arg(long, value_parser = ["act", "incoming", "outgoing"])]
        workload: Option<String>,
    },
}

/// Panics raised inside the storage engines (redb, sled) on a damaged file are caught at the
/// journal boundary and reported as errors naming the file; they are not printed. Every other
/// panic is printed as usual.
fn quiet_storage_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or("");
        if file.contains("/redb-") || file.contains("/sled-") {
            return;
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_storage_panics();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => match config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        None => config::Config::default(),
    };
    // Before anything is created: what ledgersync writes is its owner's (and its group's).
    access::restrict_umask(&config);
    let data = cli.data.clone().or(config.data.clone());
    let result = match cli.command {
        Command::Demo { backend } => demo::run(data, backend.as_deref(), &config, cli.json),
        Command::Serve { log_format } => {
            let format = log_format.map(|f| match f.as_str() {
                "json" => config::LogFormat::Json,
                _ => config::LogFormat::Text,
            });
            serve::run(data, &config, format)
        }
        Command::Example { start } => example::run(&mut std::io::stdout().lock(), start.as_deref())
            .map(|()| ExitCode::SUCCESS),
        Command::Journal {
            command: JournalCommand::Check,
        } => commands::journal_check(data, cli.json),
        Command::Journal {
            command: JournalCommand::Recover { to, upto },
        } => commands::journal_recover(data, &to, upto),
        Command::Bus {
            command: BusCommand::Status { limit },
        } => bus_status::run(&config, cli.json, limit),
        command => run_here_or_in_service(command, data, &config, cli.json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Sends the command to the `serve` running on the data directory when one answers there
/// (control.rs), else runs it in this process.
fn run_here_or_in_service(
    command: Command,
    data: Option<PathBuf>,
    config: &config::Config,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut input = None;
    if let Command::Crm {
        command: CrmCommand::Apply { file },
    } = &command
    {
        let (name, text) = crm::read_input(file, &config.limits)?;
        // With a broker, the lines go to its CRM queue: the service consuming it records them.
        if config.bus.kind == bus_config::BusKind::Amqp {
            return crm::publish(
                &name,
                &text,
                config,
                json,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
        }
        input = Some((name, text));
    }
    if let Some(dir) = &data {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if let Some(answer) = control::forward(dir, args, input.clone()) {
            return answer;
        }
    }
    // Unlocked handles: each write takes the lock for itself. A command that runs the service
    // in this process (`mailbox sync`, `demo`) has threads that log or panic to stderr, and a
    // lock held here for the whole command would block them for ever.
    let mut ctx = ctx::Ctx {
        data,
        config,
        json,
        out: &mut std::io::stdout(),
        err: &mut std::io::stderr(),
        live: None,
        input,
    };
    dispatch(command, &mut ctx)
}

/// Runs a command that works on a data directory, here or inside a running service.
pub(crate) fn dispatch(command: Command, ctx: &mut ctx::Ctx) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo { .. }
        | Command::Serve { .. }
        | Command::Example { .. }
        | Command::Journal { .. }
        | Command::Bus { .. } => Err(anyhow::anyhow!(
            "`demo`, `serve`, `example`, `journal` and `bus` do not run inside a running service"
        )),
        Command::Replay { mailbox } => commands::replay(ctx, mailbox),
        Command::Explain { item } => commands::explain(ctx, &item),
        Command::WhatIf { set } => commands::what_if(ctx, &set),
        Command::Events {
            mailbox,
            from,
            limit,
            follow,
        } => commands::events(ctx, mailbox, from, limit, follow),
        Command::Crm {
            command: CrmCommand::Apply { file },
        } => crm::apply(ctx, &file),
        Command::Crm {
            command: CrmCommand::Pending,
        } => crm::pending(ctx),
        Command::Mailbox { command } => {
            mailbox_action(command).and_then(|action| mailbox::run(ctx, action))
        }
        Command::Timeline { record, user } => {
            let subject = match (record, user) {
                (_, Some(u)) => Ok(timeline::Subject::User(u)),
                (Some(r), None) => Ok(timeline::Subject::Record(r)),
                (None, None) => Err(anyhow::anyhow!("name a CRM row id, or a user with --user")),
            };
            subject.and_then(|s| timeline::timeline(ctx, s))
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild,
        } => timeline::rebuild(ctx),
        Command::Alerts { mailbox, level } => alerts::run(ctx, mailbox, level),
    }
}

/// The number of an exit code the commands return (0, 1 or 2).
pub(crate) fn exit_number(code: ExitCode) -> u8 {
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(1) {
        1
    } else {
        2
    }
}

fn mailbox_action(command: MailboxCommand) -> anyhow::Result<mailbox::Action> {
    use mailbox::Action;
    Ok(match command {
        MailboxCommand::List => Action::List,
        MailboxCommand::Show { mailbox } => Action::Show(mailbox),
        MailboxCommand::Approve { mailbox, withdraw } => Action::Approve { mailbox, withdraw },
        MailboxCommand::ApproveDeletes { mailbox } => Action::ApproveDeletes { mailbox },
        MailboxCommand::TestEnable {
            mailbox,
            fail,
            act_org,
            override_other_org,
        } => Action::Test {
            mailbox,
            connect: fail.is_none() && act_org.is_none(),
            fail: mailbox::parse_workloads(fail.as_deref().unwrap_or(""))?,
            act_org,
            override_other_org,
        },
        MailboxCommand::Enable { mailbox } => Action::Test {
            mailbox,
            fail: vec![],
            act_org: None,
            override_other_org: false,
            connect: false,
        },
        MailboxCommand::Sync { mailbox } => Action::Sync(mailbox),
        MailboxCommand::Disable { mailbox, workload } => Action::Disable {
            mailbox,
            workload: workload
                .as_deref()
                .map(mailbox::parse_workload)
                .transpose()?,
        },
    })
}
