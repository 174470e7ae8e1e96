//! Incoming email on the real Dovecot (`--only imap`): how fast the IMAP connector lists a
//! folder of N messages (initial) and one new message (incremental), how fast `decide` turns
//! the listed `email_received`s into decisions with their facts looked up in an organization's
//! email directory, and how soon IDLE wakes after another client's APPEND.
//!
//! Needs `scripts/services.sh start` (Dovecot IMAP on 127.0.0.1:1143, user bob@example.org,
//! whose INBOX the benchmark owns: emptied before and after) and python3 (the other client,
//! imaplib).

use ledgersync_connectors::imap::{ImapConfig, ImapConnector, ImapReader, Security};
use ledgersync_connectors::{Connector, Cursor, ListingEnd, Observation, Secret};
use ledgersync_domain::email::directory::EmailDirectory;
use ledgersync_domain::email::{self, resolve::Party, resolve::PartyKind};
use ledgersync_domain::event::*;
use ledgersync_domain::records::{
    Contact, ContactState, Email, Party as Person, Record, RecordBody, RecordRef,
};
use ledgersync_domain::state::EventMeta;
use ledgersync_domain::{
    Context, EventId, MailboxId, MailboxState, OrgId, OrgSettings, ProfileId, RecordId, Timestamp,
    UserId, decide,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const USER: &str = "bob@example.org";
pub(crate) const PASSWORD: &str = "bobpw";

/// What was measured.
pub struct ImapFigures {
    /// Messages in the folder.
    pub messages: usize,
    /// Loading them through the other client.
    pub load: Duration,
    /// The initial listing.
    pub initial: Duration,
    /// Incremental listings of one new message (each).
    pub incremental: Vec<Duration>,
    /// `decide` over every listed email (facts looked up first).
    pub decide: Duration,
    /// Emails tracked and rejected by those decisions.
    pub tracked: usize,
    /// Rejected.
    pub rejected: usize,
    /// The reason of the decision of the second email (one without a token).
    pub sample: String,
    /// APPEND done → IDLE returned, each run.
    pub idle: Vec<Duration>,
}

pub(crate) fn python(script: &str, args: &[&str], stdin: &[u8]) -> anyhow::Result<String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().expect("piped").write_all(stdin)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the other IMAP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const CLIENT: &str = r#"
import imaplib, sys, time
m = imaplib.IMAP4("127.0.0.1", 1143)
m.login(sys.argv[1], sys.argv[2])
op, folder = sys.argv[3], sys.argv[4]
if op == "create":
    m.create(folder)
elif op == "empty":
    typ, data = m.select(folder)
    if int(data[0]) > 0:
        m.store("1:*", "+FLAGS", "\\Deleted")
        m.expunge()
elif op == "fill":
    n, start = int(sys.argv[5]), int(sys.argv[6])
    for i in range(start, start + n):
        token = " CRM:%07d" % (1000 + i % 2000) if i % 2 == 0 else ""
        raw = ("Message-ID: <bench-%d@customer.example>\r\nSubject: RE: Offer %d%s\r\n"
               "From: Zoe <zoe%d@customer.example>\r\nTo: bob@example.org\r\n"
               "Date: Tue, 05 Mar 2024 11:00:00 +0100\r\n\r\nHello %d\r\n") % (i, i, token, i % 1000, i)
        typ, _ = m.append(folder, None, None, raw.encode())
        assert typ == "OK", typ
    print(time.time())
m.logout()
"#;

pub(crate) fn client(op: &str, folder: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![USER, PASSWORD, op, folder];
    args.extend_from_slice(extra);
    python(CLIENT, &args, b"")
}

fn config(folder: &str) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", USER, Secret::new(PASSWORD));
    c.port = 1143;
    c.security = Security::Plain;
    c.timeout = Duration::from_secs(120);
    if folder != "INBOX" {
        c.folders = vec![folder.to_string()];
    }
    c
}

/// An organization directory: 1000 contacts (zoe0…zoe999) and 2000 sent CRM emails whose
/// subjects carry tokens CRM:0001000…, regarding an account.
fn directory() -> EmailDirectory {
    let mut d = EmailDirectory::default();
    d.upsert_party(
        USER,
        Party {
            kind: PartyKind::User,
            id: RecordId::new("bob"),
            name: "Bob".into(),
            owner: None,
            active: true,
        },
    );
    for record in organization_rows() {
        d.upsert_record(&record);
    }
    d
}

/// The organization's rows: 1,000 contacts (zoe0…zoe999) and 2,000 CRM emails Bob sent them,
/// whose subjects carry the tokens CRM:0001000…, each regarding one of 100 accounts
/// ([`account`]). The incoming-email benchmarks look incoming mail up among them.
pub(crate) fn organization_rows() -> Vec<Record> {
    let contacts = (0..1000).map(|i| Record {
        id: RecordId::new(format!("contact-{i}")),
        owner: UserId::new("bob"),
        version: 1,
        body: RecordBody::Contact(Contact {
            full_name: format!("Zoe {i}"),
            email: format!("zoe{i}@customer.example"),
            phone: String::new(),
            company: String::new(),
            state: ContactState::Active,
        }),
    });
    let emails = (0..2000).map(|i| Record {
        id: RecordId::new(format!("email-{i}")),
        owner: UserId::new("bob"),
        version: 1,
        body: RecordBody::Email(Email {
            subject: format!("Offer CRM:{:07}", 1000 + i),
            from: Person {
                user: Some(UserId::new("bob")),
                email: USER.into(),
                name: "Bob".into(),
            },
            to: vec![Person {
                user: None,
                email: format!("zoe{}@customer.example", i % 1000),
                name: "Zoe".into(),
            }],
            message_id: format!("<offer-{i}@example.org>"),
            regarding: Some(account(i)),
            state: ledgersync_domain::records::EmailState::Received,
            cc: Vec::new(),
            text: None,
            html: None,
            submitted_by: None,
            tracking_token: None,
        }),
    });
    contacts.chain(emails).collect()
}

/// The account the CRM email with token number `1000 + i` is regarding.
pub(crate) fn account(i: usize) -> RecordRef {
    RecordRef {
        table: "account".into(),
        id: RecordId::new(format!("account-{}", i % 100)),
        name: format!("Account {}", i % 100),
    }
}

/// Bob's mailbox, registered, mapped, approved and tested: every workload enabled.
fn ready_mailbox(settings: &OrgSettings) -> MailboxState {
    let mailbox = MailboxId::new("mbx-bob");
    let mut state = MailboxState::default();
    let mut n = 0u128;
    let mut feed = |state: &mut MailboxState, obs: Event| {
        let ctx = Context {
            settings,
            now: Timestamp(0),
        };
        let ds = decide(state, &obs, &ctx);
        n += 1;
        state.apply(
            EventMeta {
                id: EventId::from_u128(n),
                at: Timestamp(0),
            },
            &obs,
        );
        for d in ds {
            n += 1;
            state.apply(
                EventMeta {
                    id: EventId::from_u128(n),
                    at: Timestamp(0),
                },
                &d.event,
            );
        }
    };
    for obs in [
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox.clone(),
            org: OrgId::new("bench"),
            address: USER.into(),
            profile: ProfileId::new("imap"),
            server_type: ServerType::ImapSmtp,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: mailbox.clone(),
            user: UserId::new("bob"),
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: mailbox.clone(),
            approved: true,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox,
            incoming: TestResult::Success,
            outgoing: TestResult::Success,
            act: TestResult::NotRun,
            act_org_marker: None,
            override_other_org: false,
        }),
    ] {
        feed(&mut state, obs);
    }
    state
}

/// Runs the measurements with a folder of `messages` messages and `idle_runs` IDLE wake-ups.
pub fn run(messages: usize, idle_runs: usize) -> anyhow::Result<ImapFigures> {
    // The Inbox itself: mail there is judged by the filtering method (R52, R54), not tracked
    // by hand as in a tracked folder (R56).
    let folder = "INBOX";
    client("empty", folder, &[])?;
    let result = measure(folder, messages, idle_runs);
    let _ = client("empty", folder, &[]);
    result
}

fn measure(folder: &str, messages: usize, idle_runs: usize) -> anyhow::Result<ImapFigures> {
    let started = Instant::now();
    client("fill", folder, &[&messages.to_string(), "0"])?;
    let load = started.elapsed();

    let mut imap = ImapConnector::new(config(folder));
    let started = Instant::now();
    let first = imap.list_changes(&Cursor::initial());
    let initial = started.elapsed();
    anyhow::ensure!(
        matches!(first.end, ListingEnd::Completed(_)),
        "the initial listing did not complete: {:?}",
        first.end
    );
    let emails: Vec<EmailReceived> = first
        .observations
        .iter()
        .filter_map(|o| match o {
            Observation::Email(e) if e.remote.as_str().starts_with(folder) => {
                Some(e.as_ref().clone())
            }
            _ => None,
        })
        .collect();
    anyhow::ensure!(
        emails.len() == messages,
        "{} emails listed in {folder}, not {messages}",
        emails.len()
    );

    // decide, with the facts looked up for each email first.
    let settings = OrgSettings::default();
    let dir = directory();
    let mut state = ready_mailbox(&settings);
    let (mut tracked, mut rejected) = (0, 0);
    let mut sample = String::new();
    let started = Instant::now();
    for (i, mut e) in emails.into_iter().enumerate() {
        let message = email::Message::from(&e);
        e.facts = dir.facts(&message, &UserId::new("bob"), &settings);
        let obs = Event::EmailReceived(e);
        let ctx = Context {
            settings: &settings,
            now: Timestamp(0),
        };
        let ds = decide(&state, &obs, &ctx);
        if i == 1 {
            sample = ds
                .iter()
                .filter_map(|d| {
                    d.event
                        .basis()
                        .map(|b| format!("{} ({})", b.reason, d.rule))
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        for d in &ds {
            match d.event {
                Event::EmailAccepted(_) => tracked += 1,
                Event::EmailRejected(_) => rejected += 1,
                _ => {}
            }
        }
        let base = 1_000_000 + 10 * i as u128;
        state.apply(
            EventMeta {
                id: EventId::from_u128(base),
                at: Timestamp(0),
            },
            &obs,
        );
        for (k, d) in ds.iter().enumerate() {
            state.apply(
                EventMeta {
                    id: EventId::from_u128(base + 1 + k as u128),
                    at: Timestamp(0),
                },
                &d.event,
            );
        }
    }
    let decide_took = started.elapsed();

    // One new message, listed from the cursor: five times.
    let mut cursor = first.cursor;
    let mut incremental = Vec::new();
    for k in 0..5 {
        client("fill", folder, &["1", &(messages + k).to_string()])?;
        let started = Instant::now();
        let next = imap.list_changes(&cursor);
        incremental.push(started.elapsed());
        let new = next
            .observations
            .iter()
            .filter(|o| matches!(o, Observation::Email(e) if e.remote.as_str().starts_with(folder)))
            .count();
        anyhow::ensure!(new == 1, "{new} new emails listed, not 1");
        cursor = next.cursor;
    }

    // IDLE: another client appends while the reader waits; from the end of its APPEND to
    // the reader's return.
    let mut reader = ImapReader::connect(&config(folder))?;
    let mut idle = Vec::new();
    for k in 0..idle_runs {
        let folder_name = folder.to_string();
        let n = (messages + 10 + k).to_string();
        let appender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            client("fill", &folder_name, &["1", &n])
        });
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
        };
        let woke = reader.idle_once(folder, Duration::from_secs(30))?;
        let mut returned = now()?;
        let done: f64 = appender
            .join()
            .expect("the appender thread")?
            .trim()
            .parse()?;
        anyhow::ensure!(woke, "IDLE did not wake within 30 s");
        if returned < done {
            // Woken by something before this APPEND: wait for the APPEND's own wake-up.
            anyhow::ensure!(
                reader.idle_once(folder, Duration::from_secs(30))?,
                "IDLE did not wake within 30 s"
            );
            returned = now()?;
        }
        idle.push(Duration::from_secs_f64((returned - done).max(0.0)));
    }
    Ok(ImapFigures {
        messages,
        load,
        initial,
        incremental,
        decide: decide_took,
        tracked,
        rejected,
        sample,
        idle,
    })
}
