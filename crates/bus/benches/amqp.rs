//! The bus on RabbitMQ, classic against quorum queues: publish N persistent messages with
//! batched confirms, then consume and ack them on every partition at once. Figures in
//! `docs/benchmarks.md` ("The bus on RabbitMQ"), the choice in `docs/decisions/0013`.
//!
//! ```sh
//! cargo bench -p ledgersync-bus --features test-broker --bench amqp -- \
//!     [--messages 100000] [--batch 1000] [--prefetch 32] [--partitions 64] [--runs 3]
//! ```
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (`scripts/services.sh start`); each run works in a vhost of
//! its own, deleted afterwards. The in-process bus runs the same steps for reference.

use ledgersync_bus::test_broker::Vhost;
use ledgersync_bus::{
    AmqpBus, AmqpConfig, Bus, BusMessage, Consumer, InProcessBus, InProcessConfig, Queue,
    QueueType, WireLimits,
};
use ledgersync_domain::event::IntentSucceeded;
use ledgersync_domain::{Event, EventId, MailboxId, Timestamp};
use ledgersync_engine::ManualClock;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Args {
    messages: usize,
    batch: usize,
    prefetch: u16,
    partitions: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        messages: 100_000,
        batch: 1000,
        prefetch: 32,
        partitions: 64,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--messages" => a.messages = value(),
            "--batch" => a.batch = value().max(1),
            "--prefetch" => a.prefetch = u16::try_from(value()).expect("prefetch fits u16"),
            "--partitions" => a.partitions = value().max(1),
            "--runs" => a.runs = value().max(1),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// An intent outcome of one of 1,000 mailboxes: about 300 bytes of JSON.
fn messages(n: usize) -> Vec<BusMessage> {
    (0..n)
        .map(|i| {
            BusMessage::observation(
                MailboxId::new(format!("mbx-{:04}", i % 1000)),
                Event::IntentSucceeded(IntentSucceeded {
                    intent: EventId::from_u128(i as u128),
                    remote: Some(ledgersync_domain::RemoteId(format!(
                        "calendars/mbx-{:04}/{i}.ics",
                        i % 1000
                    ))),
                    etag: Some(format!("\"{i:016x}\"")),
                    crm: None,
                }),
            )
        })
        .collect()
}

struct Figures {
    publish: f64,
    consume: f64,
}

async fn run<B: Bus>(bus: &B, all: &[BusMessage], batch: usize) -> Figures {
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        bus.publish_all(chunk).await.expect("published");
    }
    let publish = all.len() as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let left = Arc::new(AtomicUsize::new(all.len()));
    let mut tasks = Vec::new();
    for queue in Queue::all(bus.partitions()) {
        let mut consumer = bus.consume(queue).await.expect("consumer");
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            while left.load(Ordering::Acquire) > 0 {
                let next = tokio::time::timeout(Duration::from_millis(200), consumer.next());
                match next.await {
                    Ok(Some(d)) => {
                        d.ack().await.expect("acked");
                        left.fetch_sub(1, Ordering::AcqRel);
                    }
                    Ok(None) => return,
                    Err(_) => {} // this queue is drained; look at the counter again
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("consumer task");
    }
    let consume = all.len() as f64 / started.elapsed().as_secs_f64();
    Figures { publish, consume }
}

fn report(label: &str, figures: &[Figures]) {
    let range = |f: &dyn Fn(&Figures) -> f64| {
        let v: Vec<f64> = figures.iter().map(f).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{:>7.0} – {:>7.0}", min, max)
    };
    println!(
        "| {label:<22} | {} | {} |",
        range(&|f| f.publish),
        range(&|f| f.consume)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let all = messages(a.messages);
    let size = ledgersync_bus::wire::encode(&all[0]).body.len();
    println!(
        "{} persistent messages of ~{size} bytes, batches of {} confirmed together, {} \
         partitions, prefetch {}, {} run(s) each; msg/s (min – max)",
        a.messages, a.batch, a.partitions, a.prefetch, a.runs
    );
    println!("| backend                | publish, confirmed  | consume + ack       |");
    println!("|---|---|---|");
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    for queue_type in [QueueType::Classic, QueueType::Quorum] {
        let mut figures = Vec::new();
        for _ in 0..a.runs {
            let vhost = Vhost::new();
            let config = AmqpConfig {
                url: vhost.url(),
                partitions: a.partitions,
                prefetch: a.prefetch,
                queue_type,
                limits: WireLimits::default(),
                ..AmqpConfig::default()
            };
            let bus = AmqpBus::connect(config, clock.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            figures.push(run(&bus, &all, a.batch).await);
            bus.close().await;
        }
        report(&format!("RabbitMQ, {}", queue_type.name()), &figures);
    }
    let mut figures = Vec::new();
    for _ in 0..a.runs {
        let bus = InProcessBus::with_config(
            InProcessConfig {
                partitions: a.partitions,
                prefetch: a.prefetch,
                limits: WireLimits::default(),
            },
            clock.clone(),
        );
        figures.push(run(&bus, &all, a.batch).await);
    }
    report("in process", &figures);
}
