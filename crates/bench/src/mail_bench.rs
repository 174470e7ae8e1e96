//! Incoming email end to end (`--only mail`): the live `Service`, with Bob's mailbox on an
//! IMAP/SMTP profile of the real Dovecot, decides what arrives in his INBOX.
//!
//! - **Initial**: an INBOX of N messages (appended by Python's imaplib before the mailbox is
//!   enabled); from the `mailbox_tested` that enables the incoming workload to the last of the N
//!   decisions durable in the journal (the first listing, the facts looked up through the
//!   organization actor, `decide`, the group commits).
//! - **Freshness**: one message delivered to Dovecot over LMTP (as Postfix delivers), the time
//!   from the end of the delivery to its decision durable in the journal (a scheduler tick's
//!   report, sent after the group commit), and to its row on the timeline of the account it is
//!   regarding (the projection, as `ledgersync timeline` reads it). The path is IDLE → push →
//!   cycle: nothing else asks for a cycle.
//! - **While running**: M messages delivered over one LMTP connection while the service runs;
//!   from the end of the delivery to the last decision (the lag behind the server).
//! - **Incremental**: M more delivered while the service is stopped, then the service started
//!   again on the same journal and data directory: from its start to the last of them decided
//!   (the IDLE session that opens pushes once, so they are read at once).
//!
//! Needs `scripts/services.sh start` (Dovecot IMAP 127.0.0.1:1143 and LMTP 2424, user
//! bob@example.org, whose INBOX the benchmark owns: emptied before and after) and python3.

use crate::imap_bench::{PASSWORD, USER, account, client, python};
use ledgersync_connectors::ConnectorConfig;
use ledgersync_connectors::Secret;
use ledgersync_connectors::imap::{ImapConfig, Security};
use ledgersync_domain::event::*;
use ledgersync_domain::{Event, MailboxId, OrgId, ProfileId, UserId};
use ledgersync_engine::SystemClock;
use ledgersync_journal::{Backend, JournalOptions};
use ledgersync_runtime::{
    MailboxEndpoint, RegistryConfig, SchedulerConfig, Service, ServiceConfig, TickReport,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const ORG: &str = "bench";
const MAILBOX: &str = "mbx-bob";

/// What was measured.
#[derive(Debug)]
pub struct MailFigures {
    /// Messages in the INBOX when the workload was enabled.
    pub initial_messages: usize,
    /// Enabled → every one of them decided.
    pub initial: Duration,
    /// Delivered → decision durable, each run.
    pub decided: Vec<Duration>,
    /// Delivered → row on the timeline, each run.
    pub timeline: Vec<Duration>,
    /// Messages delivered while running.
    pub incremental_messages: usize,
    /// Their delivery over LMTP while the service ran.
    pub incremental_delivery: Duration,
    /// End of that delivery → the last of them decided.
    pub running_lag: Duration,
    /// As many delivered while the service was stopped: its start → every one decided.
    pub incremental: Duration,
    /// Peak resident set of the benchmark process.
    pub peak_rss: u64,
}

/// Delivers messages to Bob over LMTP (Dovecot 127.0.0.1:2424), one connection; prints the
/// time (seconds since the epoch) when the last delivery was answered.
const LMTP: &str = r#"
import smtplib, sys, time
start, n, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = smtplib.LMTP("127.0.0.1", 2424)
for i in range(start, start + n):
    raw = ("Message-ID: <%s-%d@customer.example>\r\nSubject: RE: Offer CRM:%07d\r\n"
           "From: Zoe <zoe%d@customer.example>\r\nTo: bob@example.org\r\n"
           "Date: Tue, 05 Mar 2024 11:00:00 +0100\r\n\r\nHello %d\r\n") % (prefix, i, 1000 + i % 2000, i % 1000, i)
    s.sendmail("zoe%d@customer.example" % (i % 1000), ["bob@example.org"], raw.encode())
print(time.time())
s.quit()
"#;

fn deliver(start: usize, n: usize, prefix: &str) -> anyhow::Result<f64> {
    let out = python(LMTP, &[&start.to_string(), &n.to_string(), prefix], b"")?;
    Ok(out.trim().parse()?)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The organization: the IMAP profile, Bob, 1,000 contacts (zoe0…zoe999) and 2,000 CRM
/// emails Bob sent them, whose subjects carry the tokens CRM:0001000…, each regarding one of
/// 100 accounts.
fn directory_events() -> Vec<Event> {
    let mut events = vec![
        Event::ProfileRegistered(ProfileRegistered {
            profile: ProfileId::new("imap"),
            name: "Bench mail (IMAP/SMTP)".into(),
            server_type: ServerType::ImapSmtp,
            max_connections: 10,
        }),
        Event::UserRegistered(UserRegistered {
            user: UserId::new("bob"),
            name: "Bob".into(),
            email: USER.into(),
        }),
    ];
    events.extend(
        crate::imap_bench::organization_rows()
            .into_iter()
            .map(|record| Event::RecordUpserted(RecordUpserted { record })),
    );
    events
}

fn mailbox_events() -> Vec<Event> {
    let mailbox = MailboxId::new(MAILBOX);
    vec![
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox.clone(),
            org: OrgId::new(ORG),
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
            outgoing: TestResult::NotRun,
            act: TestResult::NotRun,
            act_org_marker: None,
            override_other_org: false,
        }),
    ]
}

/// Email decisions in a tick report: (accepted Message-IDs, how many decided in all).
fn email_decisions(report: &TickReport) -> (Vec<String>, usize) {
    let mut accepted = Vec::new();
    let mut all = 0;
    for ran in &report.ran {
        for d in &ran.cycle.decisions {
            match &d.decision.event {
                Event::EmailAccepted(a) => {
                    accepted.push(a.message_id.clone());
                    all += 1;
                }
                Event::EmailRejected(_) => all += 1,
                _ => {}
            }
        }
    }
    (accepted, all)
}

/// Runs the measurements: an INBOX of `messages`, `runs` deliveries timed one by one, then
/// `incremental` delivered at once.
pub fn run(
    dir: &Path,
    messages: usize,
    runs: usize,
    incremental: usize,
) -> anyhow::Result<MailFigures> {
    client("empty", "INBOX", &[])?;
    let result = measure(dir, messages, runs, incremental);
    let _ = client("empty", "INBOX", &[]);
    result
}

fn measure(
    dir: &Path,
    messages: usize,
    runs: usize,
    incremental: usize,
) -> anyhow::Result<MailFigures> {
    client("fill", "INBOX", &[&messages.to_string(), "0"])?;
    std::fs::create_dir_all(dir)?;
    let journal = ledgersync_journal::open(
        &dir.join("journal"),
        &JournalOptions::with_backend(Backend::Redb),
    )?;
    let mut imap = ImapConfig::new("127.0.0.1", USER, Secret::new(PASSWORD));
    imap.port = 1143;
    imap.security = Security::Plain;
    imap.timeout = Duration::from_secs(120);
    let config = ServiceConfig {
        org: OrgId::new(ORG),
        data_dir: dir.to_path_buf(),
        registry: RegistryConfig::default(),
        scheduler: SchedulerConfig::default(),
        mailboxes: vec![MailboxEndpoint {
            mailbox: MailboxId::new(MAILBOX),
            connector: ConnectorConfig::Imap(imap),
            account: "bob".into(),
            watch: true,
            list_at_start: false,
        }],
        projection_every: Duration::from_secs(1),
        push_quiet: Duration::from_millis(500),
    };
    let journal_again = journal.clone();
    let config_again = config.clone();
    crate::runtime_bench::in_system(move || async move {
        let (reports, mut ticks) = mpsc::unbounded_channel();
        let service = Service::start(journal, Arc::new(SystemClock), config, Some(reports)).await?;
        let failed = |what: &str, e: &dyn std::fmt::Display| anyhow::anyhow!("{what}: {e}");
        let directory = service.crm_batch(directory_events()).await?;
        if let Some((i, e)) = directory.failed {
            return Err(failed(&format!("organization change {i}"), &e));
        }

        // Initial: enabled → every message of the INBOX decided.
        let started = Instant::now();
        let enabled = service.crm_batch(mailbox_events()).await?;
        if let Some((i, e)) = enabled.failed {
            return Err(failed(&format!("mailbox change {i}"), &e));
        }
        let mut decided = 0;
        while decided < messages {
            let report = tokio::time::timeout(Duration::from_secs(600), ticks.recv())
                .await
                .map_err(|_| anyhow::anyhow!("{decided} of {messages} decided after 600 s"))?
                .ok_or_else(|| anyhow::anyhow!("the scheduler stopped"))?;
            for (m, e) in &report.failed {
                eprintln!("  a cycle of {m} failed: {e}");
            }
            decided += email_decisions(&report).1;
        }
        let initial = started.elapsed();

        // Freshness: one delivery at a time; IDLE is the only thing that wakes the mailbox.
        let mut fresh_decided = Vec::new();
        let mut fresh_timeline = Vec::new();
        for k in 0..runs {
            // A token of a CRM email: the message is tracked, regarding its account.
            let i = messages + k;
            let id = format!("fresh-{i}@customer.example");
            let delivered = deliver(i, 1, "fresh")?;
            let decided_at = loop {
                let report = tokio::time::timeout(Duration::from_secs(60), ticks.recv())
                    .await
                    .map_err(|_| anyhow::anyhow!("{id} not decided within 60 s"))?
                    .ok_or_else(|| anyhow::anyhow!("the scheduler stopped"))?;
                if email_decisions(&report).0.contains(&id) {
                    break now_s();
                }
            };
            fresh_decided.push(Duration::from_secs_f64((decided_at - delivered).max(0.0)));
            let regarding = account(i % 2000).id;
            let subject = format!("RE: Offer CRM:{:07}", 1000 + i % 2000);
            let on_timeline = loop {
                let found = {
                    let projection = service.projection().lock().expect("projection lock");
                    projection
                        .timeline_of_record(&regarding)?
                        .iter()
                        .any(|a| a.title == subject)
                };
                if found {
                    break now_s();
                }
                anyhow::ensure!(
                    now_s() - delivered < 60.0,
                    "{id} not on the timeline of {regarding} within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            fresh_timeline.push(Duration::from_secs_f64((on_timeline - delivered).max(0.0)));
        }

        // While running: M messages delivered at once; from the end of the delivery to the
        // last decision (how far the service lags behind the server).
        let started_wall = now_s();
        let deliver_task =
            tokio::task::spawn_blocking(move || deliver(messages + runs, incremental, "more"));
        let mut all = 0;
        let mut last_decided = started_wall;
        while all < incremental {
            let report = tokio::time::timeout(Duration::from_secs(600), ticks.recv())
                .await
                .map_err(|_| anyhow::anyhow!("{all} of {incremental} decided after 600 s"))?
                .ok_or_else(|| anyhow::anyhow!("the scheduler stopped"))?;
            all += email_decisions(&report).1;
            last_decided = now_s();
        }
        let delivered_at = deliver_task.await??;
        let delivery = Duration::from_secs_f64((delivered_at - started_wall).max(0.0));
        let lag = Duration::from_secs_f64((last_decided - delivered_at).max(0.0));
        service.stop().await?;
        drop(service);

        // Incremental: M more delivered while the service is stopped; the service started
        // again on the same journal and data directory → all of them decided.
        deliver(messages + runs + incremental, incremental, "stopped")?;
        let (reports, mut ticks) = mpsc::unbounded_channel();
        let started = Instant::now();
        let service = Service::start(
            journal_again,
            Arc::new(SystemClock),
            config_again,
            Some(reports),
        )
        .await?;
        let mut all = 0;
        while all < incremental {
            let report = tokio::time::timeout(Duration::from_secs(600), ticks.recv())
                .await
                .map_err(|_| anyhow::anyhow!("{all} of {incremental} decided after 600 s"))?
                .ok_or_else(|| anyhow::anyhow!("the scheduler stopped"))?;
            all += email_decisions(&report).1;
        }
        let incremental_took = started.elapsed();
        service.stop().await?;
        Ok(MailFigures {
            initial_messages: messages,
            initial,
            decided: fresh_decided,
            timeline: fresh_timeline,
            incremental_messages: incremental,
            incremental_delivery: delivery,
            running_lag: lag,
            incremental: incremental_took,
            peak_rss: crate::runtime_bench::peak_rss_bytes(),
        })
    })
}
