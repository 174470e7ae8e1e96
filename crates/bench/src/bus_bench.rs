//! The service on RabbitMQ (`--only bus`): mail observations published on the partitions of an
//! [`AmqpBus`] (quorum queues, a vhost of the run's own), consumed by `spawn_consumers` into the
//! registry's mailbox actors over a redb journal, each answered through [`Replies`] once
//! durable, then acked. Three figures:
//!
//! 1. **throughput**: N observations published (batches, confirms awaited together) by a task
//!    running while the consumers take them; first publish → last answer. Then every queue
//!    must be empty (every message acked) and the journal must hold exactly the N observations
//!    (events without a rule in mailbox streams, by event id): otherwise the run fails.
//! 2. **publish → decision latency**: publishing paced at `--rate` observations/s in small
//!    batches every few ms; per observation, the instant its answer arrived minus the instant
//!    just before its publish call.
//! 3. **public stream lag**: during the paced run, the [`EventPublisher`] follows the same
//!    journal on the same vhost and a consumer bound to `ledgersync.events` (`#`) measures its
//!    receive time (system clock) minus each event's `recorded_at`.
//!
//! Everything (actors, consumers, publisher, lapin) runs in one actix `System` on one thread,
//! as `serve` runs them; the journal writer has its own thread.

use crate::runtime_bench::in_system;
use crate::workload::Gen;
use actix::Actor;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ledgersync_bus::events::{EventPublisher, EventPublisherConfig};
use ledgersync_bus::test_broker::{Vhost, rabbitmqctl};
use ledgersync_bus::{AmqpBus, AmqpConfig, Bus, BusMessage, QueueType};
use ledgersync_domain::event::{
    ItemSeen, ListingCompleted, RemoteFields, RemoteItem, TrackedBy, Workload,
};
use ledgersync_domain::records::ShowAs;
use ledgersync_domain::{Duration, Event, EventId, OrgId, OrgSettings, RemoteId};
use ledgersync_engine::mailbox::Incoming;
use ledgersync_engine::{Clock, IdGen, SystemClock};
use ledgersync_journal::{Backend, Journal, JournalOptions};
use ledgersync_runtime::{
    ConsumerConfig, InspectOrg, ObserveMailbox, OrgActor, Registry, RegistryConfig, Replies, Reply,
    SharedSettings, Shutdown, Targets, spawn_consumers,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What a run does (flags `--bus-*` and `--rate` of the binary).
#[derive(Debug, Clone)]
pub struct BusArgs {
    /// Observations in the throughput run.
    pub observations: usize,
    /// Mailboxes they are spread over (round robin).
    pub mailboxes: usize,
    /// Observations per `publish_all` in the throughput run.
    pub batch: usize,
    /// Observations of one mailbox carried by one message (a driver's chunk of a listing is
    /// up to 128; 1: a message each). Consecutive observations go to the same mailbox in runs
    /// of this many.
    pub per_message: usize,
    /// Publishing tasks in the throughput run (each its share of the batches).
    pub publishers: usize,
    /// Partition queues.
    pub partitions: usize,
    /// Consumer prefetch.
    pub prefetch: u16,
    /// A `ListingCompleted` every this many observations (the others are `ItemSeen`).
    pub listing_every: usize,
    /// Paced run: observations/s (`None`: half the measured throughput; 0: no paced run).
    pub rate: Option<f64>,
    /// Paced run: how long.
    pub paced_secs: f64,
    /// Paced run: a batch published every this many ms.
    pub tick_ms: u64,
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct BusFigures {
    /// Observations in the throughput run.
    pub observations: usize,
    /// Mailboxes.
    pub mailboxes: usize,
    /// First publish → last answer.
    pub took: StdDuration,
    /// First publish → last confirm.
    pub publish_took: StdDuration,
    /// Decisions answered in the throughput run.
    pub decisions: u64,
    /// Paced run: the rate asked, the rate reached, observations, p50 / p99 / max latency.
    pub paced: Option<Paced>,
    /// Body size of one `ItemSeen` on the wire.
    pub body_bytes: usize,
}

/// The paced run.
#[derive(Debug, Clone)]
pub struct Paced {
    /// Observations/s asked.
    pub rate: f64,
    /// Observations published.
    pub observations: usize,
    /// Over this long.
    pub took: StdDuration,
    /// Publish → answer: p50, p99, max.
    pub latency: (StdDuration, StdDuration, StdDuration),
    /// Publish → every confirm of the batch (part of the above), per batch: p50, p99, max.
    pub confirm: (StdDuration, StdDuration, StdDuration),
    /// Public stream: events received, and lag p50, p99, max in ms.
    pub stream: (usize, i64, i64, i64),
}

impl BusFigures {
    /// Observations per second.
    pub fn observations_per_sec(&self) -> f64 {
        self.observations as f64 / self.took.as_secs_f64()
    }
    /// Events (observations + decisions) per second.
    pub fn events_per_sec(&self) -> f64 {
        (self.observations as u64 + self.decisions) as f64 / self.took.as_secs_f64()
    }
}

fn incoming(event: Event) -> Incoming {
    let id = IdGen.next();
    Incoming {
        event,
        id,
        causation: vec![],
        correlation: id,
    }
}

/// The `i`-th observation of a run tagged `tag`: mostly a new appointment tracked by the
/// category (a new remote id each), a `ListingCompleted` every `listing_every`.
fn observation(tag: &str, i: usize, a: &BusArgs, now: ledgersync_domain::Timestamp) -> BusMessage {
    let u = (i / a.per_message.max(1)) % a.mailboxes;
    let mailbox = Gen::new(u).id;
    let event = if a.listing_every > 0 && i % a.listing_every == a.listing_every - 1 {
        Event::ListingCompleted(ListingCompleted {
            workload: Workload::Act,
            items: (i / a.mailboxes) as u32,
        })
    } else {
        let start = now + Duration::days(1 + (i % 20) as i64) + Duration::hours(9);
        Event::ItemSeen(ItemSeen {
            item: RemoteItem {
                remote: RemoteId(format!("/dav/u{u}/calendar/{tag}-{i}.ics")),
                etag: format!("\"{i:x}-1\""),
                content_hash: 0x9e37_79b9_7f4a_7c15 ^ i as u64,
                tracked: Some(TrackedBy::Category),
                copy_of: None,
                fields: RemoteFields::Appointment {
                    subject: format!("Quarterly review {i} with Fabrikam"),
                    organizer: Some(format!("u{u}@org.example")),
                    start,
                    end: start + Duration::minutes(90),
                    show_as: ShowAs::Busy,
                },
            },
        })
    };
    BusMessage::MailObservation {
        mailbox,
        incoming: incoming(event),
    }
}

fn id_of(m: &BusMessage) -> EventId {
    m.id()
}

/// `singles` (one observation each) with consecutive observations of one mailbox carried
/// together, at most `per_message` a message, as a driver publishes a listing's chunk.
fn pack(singles: Vec<BusMessage>, per_message: usize) -> Vec<BusMessage> {
    if per_message <= 1 {
        return singles;
    }
    let mut out: Vec<BusMessage> = Vec::new();
    for m in singles {
        let BusMessage::MailObservation { mailbox, incoming } = m else {
            out.push(m);
            continue;
        };
        match out.last_mut() {
            Some(BusMessage::MailObservations {
                mailbox: last,
                incomings,
            }) if *last == mailbox && incomings.len() < per_message => incomings.push(incoming),
            _ => out.push(BusMessage::MailObservations {
                mailbox,
                incomings: vec![incoming],
            }),
        }
    }
    out
}

/// Messages in the vhost's queues (ready + unacked), by queue name.
fn queued(vhost: &Vhost) -> BTreeMap<String, u64> {
    rabbitmqctl(&["list_queues", "-p", &vhost.name, "name", "messages"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// Waits (up to 30 s) until every queue of the vhost is empty; fails with what is left.
async fn queues_empty(vhost: &Vhost) -> anyhow::Result<()> {
    // A stream that fell behind gets time to catch up: its lag is what is measured.
    let deadline = Instant::now() + StdDuration::from_secs(300);
    loop {
        let q = queued(vhost);
        let left: BTreeMap<_, _> = q.into_iter().filter(|(_, n)| *n > 0).collect();
        if left.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "messages left in the queues (not acked, or dead-lettered): {left:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
}

/// Checks that the journal holds, after `after`, exactly the observations `ids` in mailbox
/// streams (events without a rule), each once.
fn check_journal(journal: &dyn Journal, after: u64, ids: &HashSet<EventId>) -> anyhow::Result<()> {
    let mut from = after + 1;
    let mut seen = HashSet::with_capacity(ids.len());
    let mut other = 0usize;
    loop {
        let page = journal.read_all(from, 10_000)?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for e in &page {
            if e.stream.as_mailbox().is_some() && e.rule.is_none() {
                if !ids.contains(&e.event_id) {
                    other += 1;
                } else {
                    anyhow::ensure!(
                        seen.insert(e.event_id),
                        "observation {} recorded twice",
                        e.event_id
                    );
                }
            }
        }
    }
    anyhow::ensure!(
        seen.len() == ids.len() && other == 0,
        "the journal holds {} of the {} observations published (and {other} others)",
        seen.len(),
        ids.len()
    );
    Ok(())
}

fn percentiles(mut v: Vec<StdDuration>) -> (StdDuration, StdDuration, StdDuration) {
    if v.is_empty() {
        return Default::default();
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), *v.last().expect("samples"))
}

fn answered(reply: Result<Reply, oneshot::error::RecvError>) -> anyhow::Result<u64> {
    match reply {
        Ok(Reply::Decided(d)) => Ok(d.len() as u64),
        Ok(Reply::Refused(why)) => anyhow::bail!("an observation was dead-lettered: {why}"),
        Err(_) => anyhow::bail!("a wait was dropped without an answer"),
    }
}

/// Runs the three measurements; see the module documentation.
pub fn run(dir: &Path, a: BusArgs) -> anyhow::Result<BusFigures> {
    let journal = ledgersync_journal::open(dir, &JournalOptions::with_backend(Backend::Redb))?;
    let checkpoint = dir.with_extension("events-checkpoint");
    in_system(move || async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
        let registry = Registry::new(
            journal.clone(),
            clock.clone(),
            settings.clone(),
            RegistryConfig::default(),
        )
        .start();
        let org_id = OrgId::new("bench");
        let org = OrgActor::new(
            org_id.clone(),
            journal.clone(),
            clock.clone(),
            settings,
            registry.clone(),
        );
        let known = org.known_mailboxes();
        let org = org.start();
        // The recovery is done (it sets the known mailboxes from the organization stream).
        org.send(InspectOrg).await??;

        eprintln!(
            "[bus] {} mailboxes made ready by their lifecycle…",
            a.mailboxes
        );
        let mut setup = Vec::new();
        for u in 0..a.mailboxes {
            let g = Gen::new(u);
            for e in g.lifecycle(&org_id) {
                setup.push(registry.send(ObserveMailbox::new(g.id.clone(), incoming(e))));
            }
        }
        for r in setup {
            r.await??;
        }
        known
            .write()
            .expect("known mailboxes")
            .extend((0..a.mailboxes).map(|u| Gen::new(u).id));

        let vhost = Vhost::new();
        let config = AmqpConfig {
            url: vhost.url(),
            partitions: a.partitions,
            queue_type: QueueType::Quorum,
            prefetch: a.prefetch,
            ..AmqpConfig::default()
        };
        let bus = Arc::new(
            AmqpBus::connect(config, clock.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let replies = Replies::default();
        let targets = Targets {
            org: org.clone(),
            registry: registry.clone(),
            known,
            replies: replies.clone(),
            touched: None,
        };
        spawn_consumers(bus.clone(), &targets, &ConsumerConfig::default());

        // 1. Throughput.
        let now = clock.now();
        let all: Vec<BusMessage> = (0..a.observations)
            .map(|i| observation("t", i, &a, now))
            .collect();
        let body_bytes = ledgersync_bus::wire::encode(&all[0]).body.len();
        let ids: HashSet<EventId> = all.iter().map(id_of).collect();
        let waits: Vec<_> = all.iter().map(|m| replies.wait_for(id_of(m))).collect();
        let all = pack(all, a.per_message);
        let messages = all.len();
        let before = journal.last_position()?;
        eprintln!(
            "[bus] throughput: {} observations in {messages} messages (up to {} a message), batches of {}, {} publisher(s)…",
            a.observations, a.per_message, a.batch, a.publishers
        );
        // `batch` observations to a publish, whatever a message carries.
        let per_publish = (a.batch / a.per_message.max(1)).max(1);
        let batches: Vec<Vec<BusMessage>> = all.chunks(per_publish).map(<[_]>::to_vec).collect();
        drop(all);
        let mut shares: Vec<Vec<Vec<BusMessage>>> = vec![Vec::new(); a.publishers.max(1)];
        for (i, b) in batches.into_iter().enumerate() {
            shares[i % a.publishers.max(1)].push(b);
        }
        let started = Instant::now();
        let mut publishers = Vec::new();
        for share in shares {
            let bus = bus.clone();
            publishers.push(actix::spawn(async move {
                for b in share {
                    bus.publish_all(&b).await?;
                }
                Ok::<_, ledgersync_bus::PublishError>(Instant::now())
            }));
        }
        let mut decisions = 0u64;
        for w in waits {
            decisions += answered(w.await)?;
        }
        let took = started.elapsed();
        let mut publish_done = started;
        for p in publishers {
            publish_done = publish_done.max(p.await??);
        }
        let publish_took = publish_done - started;
        eprintln!(
            "  {:.0} obs/s ({:.2} s; publish {:.2} s), {decisions} decisions",
            a.observations as f64 / took.as_secs_f64(),
            took.as_secs_f64(),
            publish_took.as_secs_f64()
        );
        queues_empty(&vhost).await?;
        check_journal(journal.as_ref(), before, &ids)?;
        eprintln!("  queues empty; the journal holds each observation once");
        let throughput = a.observations as f64 / took.as_secs_f64();

        // 2. and 3. Paced, with the public stream.
        let rate = a.rate.unwrap_or(throughput / 2.0);
        let paced = if rate > 0.0 && a.paced_secs > 0.0 {
            Some(
                paced(
                    &a,
                    rate,
                    bus.clone(),
                    &replies,
                    journal.clone(),
                    &vhost,
                    &org_id,
                    &checkpoint,
                    clock.clone(),
                )
                .await?,
            )
        } else {
            None
        };

        bus.close().await;
        registry.send(Shutdown).await?;
        drop(vhost);
        let _ = std::fs::remove_file(&checkpoint);
        Ok(BusFigures {
            observations: a.observations,
            mailboxes: a.mailboxes,
            took,
            publish_took,
            decisions,
            paced,
            body_bytes,
        })
    })
}

#[allow(clippy::too_many_arguments)]
async fn paced(
    a: &BusArgs,
    rate: f64,
    bus: Arc<AmqpBus>,
    replies: &Replies,
    journal: Arc<dyn Journal>,
    vhost: &Vhost,
    org: &OrgId,
    checkpoint: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Paced> {
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use ledgersync_bus::events::{Checkpoint, EVENTS_EXCHANGE};

    // The public stream from the journal's end on.
    let start_at = journal.last_position()?;
    Checkpoint::at(checkpoint)
        .store(start_at)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn =
        lapin::Connection::connect(&vhost.url(), lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "lag".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let lag_clock = clock.clone();
    let lags = actix::spawn(async move {
        let mut lags: Vec<i64> = Vec::new();
        while let Some(Ok(d)) = consumer.next().await {
            let received = lag_clock.now().0;
            let body: serde_json::Value = serde_json::from_slice(&d.data).unwrap_or_default();
            if let Some(at) = body.get("recorded_at").and_then(serde_json::Value::as_i64) {
                lags.push(received - at);
            }
        }
        lags
    });
    let publisher = EventPublisher::new(
        journal.clone(),
        EventPublisherConfig::new(vhost.url(), org.as_str(), checkpoint.to_path_buf()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .spawn()
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Answers, timed as they arrive.
    type Wait = (Instant, oneshot::Receiver<Reply>);
    let (tx, mut rx) = mpsc::unbounded_channel::<Wait>();
    let collector = actix::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut latencies = Vec::new();
        let mut open = true;
        loop {
            tokio::select! {
                w = rx.recv(), if open => match w {
                    Some((t, r)) => pending.push(async move { (t, r.await) }),
                    None => open = false,
                },
                Some((t, reply)) = pending.next(), if !pending.is_empty() => {
                    let at = Instant::now();
                    answered(reply)?;
                    latencies.push(at - t);
                }
                else => break,
            }
        }
        Ok::<_, anyhow::Error>(latencies)
    });

    let tick = StdDuration::from_millis(a.tick_ms.max(1));
    let now = clock.now();
    eprintln!(
        "[bus] paced: {rate:.0} obs/s for {} s, a batch every {} ms, with the public stream…",
        a.paced_secs,
        tick.as_millis()
    );
    let started = Instant::now();
    let mut sent = 0usize;
    let mut confirms = Vec::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while started.elapsed().as_secs_f64() < a.paced_secs {
        interval.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        if due <= sent {
            continue;
        }
        let batch: Vec<BusMessage> = (sent..due).map(|i| observation("p", i, a, now)).collect();
        let mut waits: Vec<_> = batch.iter().map(|m| replies.wait_for(id_of(m))).collect();
        let batch = pack(batch, a.per_message);
        let t = Instant::now();
        bus.publish_all(&batch).await?;
        confirms.push(t.elapsed());
        for w in waits.drain(..) {
            tx.send((t, w))
                .map_err(|_| anyhow::anyhow!("the collector stopped"))?;
        }
        sent = due;
    }
    let publish_took = started.elapsed();
    drop(tx);
    let latencies = collector.await??;
    anyhow::ensure!(latencies.len() == sent, "answers missing");

    // The public stream: everything appended since `start_at` published and received.
    let end = journal.last_position()?;
    // A stream that fell behind gets time to catch up: its lag is what is measured.
    let deadline = Instant::now() + StdDuration::from_secs(300);
    while publisher.confirmed() < end {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the event publisher did not catch up ({} of {end})",
            publisher.confirmed()
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    publisher.stop().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    conn.close(0, "done".into()).await?;
    let mut lags = lags.await?;
    anyhow::ensure!(
        lags.len() as u64 >= end - start_at,
        "the public stream delivered {} of {} events",
        lags.len(),
        end - start_at
    );
    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    let stream = (lags.len(), at(0.5), at(0.99), *lags.last().unwrap_or(&0));
    Ok(Paced {
        rate,
        observations: sent,
        took: publish_took,
        latency: percentiles(latencies),
        confirm: percentiles(confirms),
        stream,
    })
}
