//! `mailbox test-enable` connects to the mailbox's server (R6): the result recorded is what the
//! server answered, and the command says why.

mod common;

use common::{Site, ledgersync, stderr, stdout};
use serde_json::Value;

fn with_config(site: &Site, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "--config",
        site.config.to_str().unwrap(),
        "--data",
        site.data.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    ledgersync(&all)
}

#[test]
fn test_enable_lists_a_vdir_mailbox_and_records_what_it_found() {
    let site = Site::new();
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The collections do not exist yet: the connection test fails, naming what is missing,
    // and ACT is recorded as failed.
    let out = with_config(&site, &["mailbox", "test-enable", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("vdir connection of `mbx-paul`: act failed (not_found)"),
        "{text}"
    );
    assert!(text.contains("calendar"), "{text}");
    let shown: Value = serde_json::from_str(&stdout(&with_config(
        &site,
        &["--json", "mailbox", "show", "mbx-paul"],
    )))
    .unwrap();
    assert_eq!(shown["workloads"]["act"]["test"], "failure", "{shown}");

    // Once they exist, with one item in the calendar, it succeeds.
    let calendar = site.root.join("vdir/paul/calendar");
    std::fs::create_dir_all(&calendar).unwrap();
    std::fs::create_dir_all(site.root.join("vdir/paul/contacts")).unwrap();
    std::fs::write(
        calendar.join("lunch.ics"),
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:lunch\r\n\
         DTSTAMP:20300101T000000Z\r\nDTSTART:20300101T120000Z\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n",
    )
    .unwrap();
    let out = with_config(&site, &["--json", "mailbox", "test-enable", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["connection"]["connector"], "vdir", "{answer}");
    assert_eq!(answer["connection"]["act"], "success", "{answer}");
    assert!(
        answer["connection"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("1 item(s) listed"),
        "{answer}"
    );
    assert_eq!(answer["mailbox"]["workloads"]["act"]["test"], "success");

    // `mailbox sync` runs one cycle through the connector and says what it saw; a second one
    // finds nothing new.
    // The example's meeting and two contacts are written to Paul's collections first (its
    // pending intents), then the listing sees them and the lunch.
    let out = with_config(&site, &["mailbox", "sync", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("mbx-paul: listing completed in")
            && stdout(&out).contains(
                ": 4 item(s) seen, 0 gone, 0 unreadable; 3 intent(s) carried out (3 succeeded)"
            ),
        "{}",
        stdout(&out)
    );
    let out = with_config(&site, &["--json", "mailbox", "sync", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(again["listing"], "listing_completed", "{again}");
    assert_eq!(again["seen"], 0, "{again}");
    // With `RUST_LOG`, the service's threads log to stderr (the journal's commit thread
    // among them) while the command writes its own answer: none waits for another (the
    // command holds no lock on stderr).
    let log = site.root.join("sync.log");
    let mut sync = std::process::Command::new(env!("CARGO_BIN_EXE_ledgersync"))
        .args(["--config", site.config.to_str().unwrap()])
        .args(["--data", site.data.to_str().unwrap()])
        .args(["mailbox", "sync", "mbx-paul"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = sync.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            sync.kill().unwrap();
            panic!("`mailbox sync` with RUST_LOG=debug did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{logged}");
    assert!(logged.contains("journal group commit"), "{logged}");
    assert!(logged.contains("cycle ran"), "{logged}");
    let out = with_config(&site, &["mailbox", "sync", "mbx-nobody"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("mailbox `mbx-nobody` has no [[mailbox]] table"),
        "{}",
        stderr(&out)
    );

    // `--fail` records by hand, without connecting.
    let out = with_config(
        &site,
        &[
            "--json",
            "mailbox",
            "test-enable",
            "mbx-paul",
            "--fail",
            "act",
        ],
    );
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(answer["connection"].is_null(), "{answer}");
    assert_eq!(answer["mailbox"]["workloads"]["act"]["test"], "failure");
}
