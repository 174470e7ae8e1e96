//! R15 with a deterministic clock (tokio's paused time): the limit holds with 1,000 mailboxes on
//! one profile, it is counted per credential, waiting mailboxes are served in order, and a
//! Retry-After holds back every mailbox on the credential.

use ledgersync_domain::ProfileId;
use ledgersync_runtime::{ConnectionLimit, Credential, Throttle, ThrottleError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

fn cred(profile: &str, account: &str) -> Credential {
    Credential {
        profile: ProfileId::new(profile),
        account: account.into(),
    }
}

/// Runs `mailboxes` tasks that each take a connection of `creds[i % len]`, hold it for a
/// varying time and give it back; returns the highest number in use at once, counted by the
/// tasks themselves (not by the throttle).
async fn run(throttle: Arc<Throttle>, creds: Vec<Credential>, mailboxes: usize) -> Vec<usize> {
    let in_use: Vec<Arc<AtomicUsize>> = creds
        .iter()
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let peak: Vec<Arc<AtomicUsize>> = creds
        .iter()
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..mailboxes {
        let k = i % creds.len();
        let (throttle, cred) = (throttle.clone(), creds[k].clone());
        let (in_use, peak) = (in_use[k].clone(), peak[k].clone());
        tasks.push(tokio::spawn(async move {
            let _permit = throttle.acquire(&cred).await;
            let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10 + (i as u64 * 7) % 90)).await;
            in_use.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    peak.iter().map(|p| p.load(Ordering::SeqCst)).collect()
}

#[tokio::test(start_paused = true)]
async fn r15_a_thousand_mailboxes_never_exceed_the_profile_limit() {
    let throttle = Arc::new(Throttle::new());
    let c = cred("exchange", "service-account");
    let peaks = run(throttle.clone(), vec![c.clone()], 1000).await;
    assert_eq!(
        peaks,
        [10],
        "the default limit is 10 and it is reached, never passed"
    );
    assert_eq!(throttle.peak(&c), 10);
    assert_eq!(throttle.in_use(&c), 0);
}

#[tokio::test(start_paused = true)]
async fn r15_the_limit_is_counted_per_credential() {
    let throttle = Arc::new(Throttle::new());
    throttle.set_limit(&ProfileId::new("imap"), ConnectionLimit::new(3).unwrap());
    let creds = vec![cred("imap", "alice"), cred("imap", "bob")];
    let peaks = run(throttle, creds, 200).await;
    assert_eq!(peaks, [3, 3]);
}

#[tokio::test(start_paused = true)]
async fn r15_waiting_mailboxes_are_served_in_order() {
    let throttle = Arc::new(Throttle::new());
    throttle.set_limit(&ProfileId::new("p"), ConnectionLimit::new(1).unwrap());
    let c = cred("p", "a");
    let first = throttle.acquire(&c).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (throttle, c, order) = (throttle.clone(), c.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = throttle.acquire(&c).await;
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }));
        tokio::task::yield_now().await; // each asks before the next
    }
    drop(first);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn r15_retry_after_holds_back_every_mailbox_on_the_credential() {
    let throttle = Arc::new(Throttle::new());
    let c = cred("graph", "tenant-app");
    let other = cred("graph", "another-app");
    let start = Instant::now();
    throttle.retry_after(&c, start + Duration::from_secs(60));
    throttle.retry_after(&c, start + Duration::from_secs(30)); // an earlier one does not shorten it
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (throttle, c) = (throttle.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let _p = throttle.acquire(&c).await;
            Instant::now()
        }));
    }
    // Another credential of the same profile is not held back.
    let _p = throttle.acquire(&other).await;
    assert_eq!(Instant::now(), start);
    for t in tasks {
        let got = t.await.unwrap();
        assert!(
            got >= start + Duration::from_secs(60),
            "a connection was handed out {:?} after the Retry-After started",
            got - start
        );
    }
}

#[tokio::test(start_paused = true)]
async fn r15_a_lowered_limit_takes_effect_as_connections_come_back() {
    let throttle = Arc::new(Throttle::new());
    let p = ProfileId::new("p");
    let c = cred("p", "a");
    let held: Vec<_> = futures_held(&throttle, &c, 10).await;
    throttle.set_limit(&p, ConnectionLimit::new(4).unwrap());
    drop(held);
    let peaks = run(throttle.clone(), vec![c.clone()], 100).await;
    assert_eq!(peaks, [4]);
    throttle.set_limit(&p, ConnectionLimit::new(6).unwrap());
    let peaks = run(throttle, vec![c], 100).await;
    assert_eq!(peaks, [6]);
}

async fn futures_held(
    throttle: &Throttle,
    c: &Credential,
    n: usize,
) -> Vec<ledgersync_runtime::Permit> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(throttle.acquire(c).await);
    }
    v
}

#[test]
fn r15_limits_are_validated() {
    assert_eq!(ConnectionLimit::default().get(), 10);
    assert!(ConnectionLimit::new(1).is_ok() && ConnectionLimit::new(300).is_ok());
    assert_eq!(ConnectionLimit::new(0), Err(ThrottleError::InvalidLimit(0)));
    let e = ConnectionLimit::new(301).unwrap_err().to_string();
    assert!(e.contains("between 1 and 300") && e.contains("301"), "{e}");
}
