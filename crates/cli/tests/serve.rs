//! `ledgersync serve` as an administrator runs it: the real binary on a temporary data
//! directory with vdir collections and Maildirs, CRM changes fed by `crm apply` while it runs
//! (through its control socket), other programs editing the collections, and SIGTERM.
//! Waits poll the files or the commands' answers with a deadline; nothing sleeps to assert.

mod common;

use common::{Serve, Site, ledgersync, stderr, stdout};
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `check` until it answers `Some`, failing with `what` and the service log at the
/// deadline.
fn wait_for<T>(serve: &Serve, what: &str, check: impl FnMut() -> Option<T>) -> T {
    serve.wait_for(what, check)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The messages in `attendee`'s Maildir `new/` that contain `needle`.
fn messages(site: &Site, attendee: &str, needle: &str) -> Vec<String> {
    let new = site.root.join("maildir").join(attendee).join("new");
    let Ok(entries) = fs::read_dir(&new) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|m| m.contains(needle))
        .collect()
}

impl Site {
    fn calendar(&self, user: &str) -> PathBuf {
        self.root.join("vdir").join(user).join("calendar")
    }

    fn contacts(&self, user: &str) -> PathBuf {
        self.root.join("vdir").join(user).join("contacts")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn apply(&self, lines: &str) -> std::process::Output {
        let file = self.root.join(format!(
            "changes-{}.jsonl",
            Instant::now().elapsed().as_nanos() ^ std::process::id() as u128
        ));
        fs::write(&file, lines).unwrap();
        self.run(&["crm", "apply", file.to_str().unwrap()])
    }
}

fn cadence_in_seconds() -> &'static str {
    concat!(
        r#"{"kind": "setting_changed", "key": "schedule_act_min_seconds", "value": 1}"#,
        "\n",
        r#"{"kind": "setting_changed", "key": "schedule_act_max_seconds", "value": 2}"#,
        "\n",
        r#"{"kind": "setting_changed", "key": "schedule_act_max_with_incoming_seconds", "value": 2}"#,
        "\n",
        r#"{"kind": "setting_changed", "key": "schedule_quiet_step_seconds", "value": 1}"#,
        "\n",
    )
}

fn link_statuses(timeline: &Value) -> Vec<(String, String)> {
    timeline["activities"][0]["mailboxes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(mailbox, m)| {
            (
                mailbox.clone(),
                m["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn serve_keeps_calendars_address_books_and_maildirs_in_sync_and_stops_on_sigterm() {
    let site = Site::new();
    let mut serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });

    // CRM changes while it runs: answered by the service, not refused for a locked journal.
    let out = site.apply(cadence_in_seconds());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("applied 14 change(s)") && stdout(&out).contains("running service"),
        "{}",
        stdout(&out)
    );

    // The appointment reaches both calendars, the contact Paul's address book.
    let jayne_ics = wait_for(&serve, "Bike repair in Jayne's calendar", || {
        files(&site.calendar("jayne"), "ics").pop()
    });
    wait_for(&serve, "Bike repair in Paul's calendar", || {
        files(&site.calendar("paul"), "ics").pop()
    });
    let contacts = wait_for(
        &serve,
        "Linda Park and River Tam in Paul's address book",
        || {
            let v = files(&site.contacts("paul"), "vcf");
            (v.len() == 2).then_some(v)
        },
    );
    let linda = contacts
        .iter()
        .find(|p| p.to_string_lossy().contains("con-linda-park"))
        .expect("Linda's card")
        .clone();
    assert!(
        fs::read_to_string(&jayne_ics)
            .unwrap()
            .contains("SUMMARY:Bike repair")
    );

    // Jayne organizes it: each attendee gets one invitation (iMIP REQUEST), Jayne none.
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        let invitations = wait_for(&serve, "the invitation", || {
            let v = messages(&site, attendee, "METHOD:REQUEST");
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(invitations.len(), 1, "{attendee}");
        assert!(invitations[0].contains("Subject: Invitation: Bike repair"));
    }
    assert!(messages(&site, "jayne@serenity.example", "METHOD:").is_empty());

    // `mailbox list` and `timeline` through the running service.
    let mailboxes = site.json(&["mailbox", "list"]);
    for m in mailboxes.as_array().unwrap() {
        assert_eq!(m["workloads"]["act"]["status"], "enabled", "{m}");
    }
    let timeline = wait_for(&serve, "both links in the timeline", || {
        let t = site.json(&["timeline", "apt-bike-repair"]);
        (link_statuses(&t)
            == vec![
                ("mbx-jayne".to_string(), "linked".to_string()),
                ("mbx-paul".to_string(), "linked".to_string()),
            ])
        .then_some(t)
    });
    assert_eq!(timeline["activities"][0]["title"], "Bike repair");

    // Another program deletes a contact file: one confirmed delete of the CRM contact, its
    // owner's (R43), at the next cycle. (Emptying the address book would be withheld.)
    fs::remove_file(&linda).unwrap();
    wait_for(&serve, "the deleted contact's R43 decision", || {
        let out = site.run(&["events", "--mailbox", "mbx-paul", "--json"]);
        let deletes = stdout(&out)
            .lines()
            .filter(|l| l.contains("\"delete_intent\"") && l.contains("con-linda-park"))
            .count();
        (deletes == 1).then_some(())
    });

    // Jayne, the organizer, loses access: her copy is deleted and each attendee gets one
    // cancellation in their Maildir.
    let out = site.apply(
        r#"{"kind": "access_lost", "user": "jayne", "records": ["apt-bike-repair"], "reason": "role"}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("R22"), "{}", stdout(&out));
    wait_for(&serve, "Jayne's copy deleted", || {
        files(&site.calendar("jayne"), "ics")
            .is_empty()
            .then_some(())
    });
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        let cancel = wait_for(&serve, "the cancellation", || {
            let v = messages(&site, attendee, "METHOD:CANCEL");
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(cancel.len(), 1, "one cancellation for {attendee}");
        assert!(cancel[0].contains("Bike repair"), "{}", cancel[0]);
        assert_eq!(
            messages(&site, attendee, "METHOD:REQUEST").len(),
            1,
            "and the one invitation sent when the meeting was created"
        );
    }
    // Paul's calendar client matches the cancellation to its copy: the same UID.
    let paul_copy =
        fs::read_to_string(files(&site.calendar("paul"), "ics").pop().unwrap()).unwrap();
    let uid = paul_copy
        .lines()
        .find(|l| l.starts_with("UID:"))
        .expect("a UID")
        .trim_end()
        .to_string();
    let cancel = messages(&site, "paul@serenity.example", "METHOD:CANCEL").remove(0);
    assert!(
        cancel.lines().any(|l| l.trim_end() == uid),
        "{uid} not in\n{cancel}"
    );
    let why = site.run(&["explain", "Bike repair"]);
    assert!(stdout(&why).contains("R22"), "{}", stdout(&why));

    // SIGTERM: a graceful stop, the socket removed, the journal usable by the next command.
    let status = serve.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{}", serve.log());
    assert!(!socket.exists(), "control socket removed");
    assert!(serve.log().contains("SIGTERM"), "{}", serve.log());
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
    assert!(
        stdout(&replay).contains("decisions reproduced"),
        "{}",
        stdout(&replay)
    );
}

#[test]
fn a_bad_change_sent_to_a_running_service_is_refused_with_its_line_and_nothing_is_applied() {
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.apply(concat!(
        r#"{"kind": "user_registered", "user": "kaylee", "name": "Kaylee Frye", "email": "kaylee@serenity.example"}"#,
        "\n",
        r#"{"kind": "setting_changed", "key": "no_such_setting", "value": 1}"#,
        "\n"
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains(":2:"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was applied"),
        "{}",
        stderr(&out)
    );
    let events = site.run(&["events"]);
    assert!(events.status.success(), "{}", stderr(&events));
    assert_eq!(stdout(&events).trim(), "", "nothing recorded");
}

#[test]
fn a_wrong_key_in_the_mailbox_table_names_the_file_the_table_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    fs::write(
        &config,
        "[[mailbox]]\nid = \"mbx-jayne\"\ncalender = \"cal\"\n",
    )
    .unwrap();
    let out = ledgersync(&["--config", config.to_str().unwrap(), "serve"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("bad.toml") && e.contains("calender"), "{e}");
    assert!(e.contains("calendar"), "the allowed keys are listed: {e}");
}

/// Starts `serve` on a site whose collections have all vanished (an unmounted share, a wrong
/// path), applies the example organization with the profile alert on and `settings` (lines of
/// `setting_changed`) before the mailboxes start failing, and waits for the R14 profile alert.
fn serve_with_vanished_collections(site: &Site, settings: &str) -> (Serve, Vec<Value>) {
    let serve = Serve::spawn(
        &site.config,
        site.root.join("serve.log"),
        &["--log-format", "json"],
    );
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    fs::remove_dir_all(site.root.join("vdir")).unwrap();
    let changes = fs::read_to_string(site.example_changes()).unwrap();
    // The option and the settings go before the mailboxes start failing: right after the
    // profile.
    let mut lines: Vec<&str> = changes.lines().collect();
    let mut early: Vec<&str> =
        vec![r#"{"kind": "profile_alerting_set", "profile": "groupware", "send_alert": true}"#];
    early.extend(settings.lines());
    for (i, line) in early.into_iter().enumerate() {
        lines.insert(1 + i, line);
    }
    let out = site.apply(&(lines.join("\n") + "\n"));
    assert!(out.status.success(), "{}", stderr(&out));

    let alerts = wait_for(&serve, "the R14 profile alert", || {
        let v = site.json(&["alerts"]);
        let alerts = v["alerts"].as_array()?.clone();
        alerts.iter().any(|a| a["rule"] == "R14").then_some(alerts)
    });
    let r14: Vec<&Value> = alerts.iter().filter(|a| a["rule"] == "R14").collect();
    assert_eq!(r14.len(), 1, "one profile alert: {alerts:#?}");
    assert_eq!(r14[0]["level"], "error");
    assert_eq!(r14[0]["profile"], "groupware");
    (serve, alerts)
}

#[test]
fn collections_that_cannot_be_listed_are_retried_as_transient_and_alert_the_profile_owner() {
    let site = Site::new();
    let (serve, alerts) = serve_with_vanished_collections(&site, "");
    // A missing collection may come back: no mailbox is disabled (no R10, no R11 disable) by
    // one listing; each is retried per R11 and shows the error as transient.
    assert!(
        alerts
            .iter()
            .all(|a| a["rule"] != "R10" && a["rule"] != "R11"),
        "{alerts:#?}"
    );
    let mailboxes = site.json(&["mailbox", "list"]);
    for m in mailboxes.as_array().unwrap() {
        let act = &m["workloads"]["act"];
        assert_eq!(act["status"], "enabled", "{m}");
        assert!(act["consecutive_errors"].as_u64() >= Some(1), "{m}");
        assert_eq!(act["last_error"]["code"], "not_found", "{m}");
        assert!(act["next_run"].is_string(), "a retry is scheduled: {m}");
    }
    // The decision says why: transient, retried.
    let log = serve.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "service started"),
        "{log}"
    );
    for m in ["mbx-jayne", "mbx-paul"] {
        let explain = site.run(&["mailbox", "show", m]);
        let text = stdout(&explain);
        assert!(
            explain.status.success() && text.contains("not_found"),
            "{m}: {text}{}",
            stderr(&explain)
        );
    }
}

#[test]
fn collections_that_cannot_be_listed_disable_the_mailboxes_when_the_retry_limit_is_reached() {
    let site = Site::new();
    // A limit of one: the first transient failure reaches it.
    let (serve, alerts) = serve_with_vanished_collections(
        &site,
        r#"{"kind": "setting_changed", "key": "transient_retry_limit", "value": 1}"#,
    );
    let alerts = if alerts.iter().filter(|a| a["rule"] == "R11").count() >= 2 {
        alerts
    } else {
        wait_for(&serve, "the R11 alerts", || {
            let v = site.json(&["alerts"]);
            let alerts = v["alerts"].as_array()?.clone();
            (alerts.iter().filter(|a| a["rule"] == "R11").count() >= 2).then_some(alerts)
        })
    };
    // Each mailbox was disabled by the retry limit (R11), not as a permanent error (R10), and
    // the alert says the failure was transient and why.
    assert!(alerts.iter().all(|a| a["rule"] != "R10"), "{alerts:#?}");
    for m in ["mbx-jayne", "mbx-paul"] {
        let a = alerts
            .iter()
            .find(|a| a["rule"] == "R11" && a["mailbox"] == m)
            .unwrap_or_else(|| panic!("{m}: {alerts:#?}"));
        let text = a["text"].as_str().unwrap();
        assert!(
            text.contains("1 consecutive transient failures")
                && text.contains("the collection was not found"),
            "{text}"
        );
    }
    let mailboxes = site.json(&["mailbox", "list"]);
    for m in mailboxes.as_array().unwrap() {
        let act = &m["workloads"]["act"];
        assert_eq!(act["status"], "disabled", "{m}");
        assert_eq!(act["disabled_reason"], "transient_limit", "{m}");
    }
}

#[test]
fn a_serve_killed_mid_batch_restarts_from_its_log_with_nothing_lost_or_doubled() {
    let site = Site::new();
    let mut serve = Serve::spawn(&site.config, site.root.join("serve-1.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A long batch of contacts for Paul, killed while it is being applied: the service
    // records it in appends of up to 1024 changes, and the client prints each line's report
    // once its append is done.
    const LINES: usize = 1500;
    let batch: String = (0..LINES)
        .map(|i| {
            format!(
                "{{\"kind\": \"record_upserted\", \"record\": {{\"entity\": \"contact\", \"id\": \"con-{i:04}\", \"owner\": \"paul\", \"version\": 1, \"full_name\": \"Contact {i}\", \"email\": \"c{i}@customer.example\", \"state\": \"active\"}}}}\n"
            )
        })
        .collect();
    let file = site.root.join("batch.jsonl");
    fs::write(&file, batch).unwrap();
    let mut client = Command::new(env!("CARGO_BIN_EXE_ledgersync"))
        .args(["--data", site.data.to_str().unwrap(), "crm", "apply"])
        .arg(&file)
        .env_remove("LEDGERSYNC_DATA")
        .env_remove("LEDGERSYNC_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some of the batch is recorded (its first reports arrived), not all of it: then the kill.
    let mut reports = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = reports.next().expect("a first report").unwrap();
    assert!(first.contains("batch.jsonl:1 "), "{first}");
    serve.kill();
    // One report per change, each followed by its decisions' lines.
    let rest = reports
        .map_while(Result::ok)
        .filter(|l| l.contains("batch.jsonl:"))
        .count();
    let client = client.wait_with_output().unwrap();
    assert!(
        !client.status.success() && rest + 1 < LINES,
        "the client saw the service go away after {} reports",
        rest + 1
    );

    // Restart: the actors rebuild from the log, pending intents are carried out with their
    // keys, and the projection catches up.
    // The killed service left its socket behind: commands run here meanwhile, and the new
    // service waits for them to release the journal.
    assert!(socket.exists(), "a kill -9 leaves the socket");
    let serve = Serve::spawn(&site.config, site.root.join("serve-2.log"), &[]);
    wait_for(&serve, "the new service ready", || {
        serve.log().contains("ready:").then_some(())
    });
    let recorded = || -> Vec<String> {
        let out = site.run(&["events", "--json"]);
        let mut ids: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["stream"] == "org/serenity"
                    && e["event_type"] == "record_upserted"
                    && e["payload"].to_string().contains("con-")
            })
            .filter_map(|e| {
                let text = e["payload"].to_string();
                let at = text.find("con-")?;
                Some(text[at..].split('"').next()?.to_string())
            })
            // The batch's rows (`con-0000`…), not the example's contacts.
            .filter(|id| id.len() == 8 && id[4..].bytes().all(|b| b.is_ascii_digit()))
            .collect();
        ids.sort();
        ids
    };
    let ids = recorded();
    assert!(
        ids.len() > rest && ids.len() <= LINES,
        "{} recorded, {} acknowledged: every acknowledged change is recorded",
        ids.len(),
        rest + 1
    );
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no change recorded twice");
    // Every recorded contact ends up in the address book exactly once.
    let cards = wait_for(&serve, "every recorded contact in the address book", || {
        let v: Vec<_> = files(&site.contacts("paul"), "vcf")
            .into_iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.len() > 9
                    && name.starts_with("con-")
                    && name[4..8].bytes().all(|b| b.is_ascii_digit())
                    && &name[8..9] == "-"
            })
            .collect();
        (v.len() == ids.len()).then_some(v)
    });
    for id in &ids {
        let n = cards
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{id}-"))
            })
            .count();
        assert_eq!(n, 1, "{id}: one card");
    }
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

#[test]
fn an_edit_made_by_another_program_is_pushed_and_synced_before_the_next_scheduled_cycle() {
    // The default cadence: the next scheduled cycle is 5 minutes away.
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ics = wait_for(&serve, "Bike repair in Jayne's calendar", || {
        files(&site.calendar("jayne"), "ics").pop()
    });
    // The first sighting of the file ledgersync wrote is recorded (its own write was pushed).
    let sightings = || {
        let out = site.run(&["events", "--mailbox", "mbx-jayne", "--json"]);
        stdout(&out)
            .lines()
            .filter(|l| l.contains("\"item_seen\""))
            .count()
    };
    wait_for(&serve, "the first sighting", || {
        (sightings() >= 1).then_some(())
    });

    // As khal would: the meeting is moved to another room.
    let text = fs::read_to_string(&ics).unwrap();
    fs::write(&ics, text.replace("LOCATION:Garage", "LOCATION:Workshop")).unwrap();
    let update = wait_for(&serve, "the edit decided through a push", || {
        let out = site.run(&["events", "--mailbox", "mbx-jayne", "--json"]);
        stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event_type"] == "update_intent")
    });
    assert_eq!(update["payload"]["data"]["target"], "Crm", "{update}");
    assert_eq!(update["rule"], "R18", "{update}");
    let events = stdout(&site.run(&["events", "--mailbox", "mbx-jayne"]));
    assert!(events.contains("push_received"), "{events}");
}

/// The example's "Bike repair" row with `changes` applied to its JSON record, at `version`.
fn bike_repair(site: &Site, version: u64, changes: impl FnOnce(&mut Value)) -> String {
    let example = fs::read_to_string(site.example_changes()).unwrap();
    let mut line: Value = example
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["record"]["id"] == "apt-bike-repair")
        .expect("the example's meeting");
    line["record"]["version"] = version.into();
    changes(&mut line["record"]);
    format!("{line}\n")
}

/// Content lines with folding undone (RFC 5545 §3.1), CR removed.
fn unfolded(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.trim_end_matches('\r');
        match (raw.strip_prefix(' '), out.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => out.push(raw.to_string()),
        }
    }
    out
}

fn sequence_of(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix("SEQUENCE:"))
        .expect("a SEQUENCE")
        .parse()
        .unwrap()
}

/// `20271203T143000Z` for an RFC 3339 time.
fn ics_utc(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[test]
fn r18_r26_r29_a_moved_meeting_reaches_every_copy_and_request_and_the_new_organizer_outranks_the_cancel()
 {
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.apply(cadence_in_seconds());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = |user: &str| {
        files(&site.calendar(user), "ics")
            .pop()
            .and_then(|p| fs::read_to_string(p).ok())
    };
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        wait_for(&serve, "the invitation", || {
            (!messages(&site, attendee, "METHOD:REQUEST").is_empty()).then_some(())
        });
    }
    wait_for(&serve, "Paul's copy", || copy("paul"));

    // Version 2: the meeting moves a day later, to the workshop, and River joins.
    let (mut start, mut end) = (String::new(), String::new());
    let moved = bike_repair(&site, 2, |r| {
        let later = |t: &Value| {
            let t = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
            (t + chrono::Duration::days(1) + chrono::Duration::hours(4)).to_rfc3339()
        };
        start = later(&r["start"]);
        end = later(&r["end"]);
        r["start"] = start.clone().into();
        r["end"] = end.clone().into();
        r["location"] = "Workshop".into();
        r["optional"] =
            serde_json::json!([{"email": "river@customer.example", "name": "River Tam"}]);
    });
    let out = site.apply(&moved);
    assert!(out.status.success(), "{}", stderr(&out));
    let (start, end) = (ics_utc(&start), ics_utc(&end));
    let wanted = [
        format!("DTSTART:{start}"),
        format!("DTEND:{end}"),
        "LOCATION:Workshop".to_string(),
        "ORGANIZER;CN=Jayne Cobb:mailto:jayne@serenity.example".to_string(),
        "CN=River Tam:mailto:river@customer.example".to_string(),
    ];
    let holds_all = |text: &str| {
        let lines = unfolded(text);
        wanted
            .iter()
            .all(|w| lines.iter().any(|l| l.contains(w.as_str())))
    };
    for user in ["jayne", "paul"] {
        let text = wait_for(&serve, "the moved meeting in every copy", || {
            copy(user).filter(|t| holds_all(t))
        });
        assert_eq!(
            sequence_of(&text),
            if user == "jayne" { 5 } else { 4 },
            "{text}"
        );
    }
    for attendee in [
        "paul@serenity.example",
        "zoe@customer.example",
        "river@customer.example",
    ] {
        let update = wait_for(&serve, "the update request", || {
            messages(&site, attendee, "METHOD:REQUEST")
                .into_iter()
                .find(|m| {
                    m.contains("Subject: Updated: Bike repair") || attendee.starts_with("river")
                })
        });
        assert!(holds_all(&update), "{attendee}:\n{update}");
        assert_eq!(sequence_of(&update), 5, "{update}");
    }

    // Version 3: Paul becomes the organizer, Jayne leaves the meeting (R29).
    let handed_over = bike_repair(&site, 3, |r| {
        r["start"] = moved_value(&moved, "start");
        r["end"] = moved_value(&moved, "end");
        r["location"] = "Workshop".into();
        r["organizer"] = serde_json::json!({"user": "paul", "email": "paul@serenity.example", "name": "Paul Blart"});
        r["required"] =
            serde_json::json!([{"email": "zoe@customer.example", "name": "Zoe Washburne"}]);
    });
    let out = site.apply(&handed_over);
    assert!(out.status.success(), "{}", stderr(&out));
    let paul = wait_for(&serve, "Paul's copy made the organizer's", || {
        copy("paul").filter(|t| t.contains("ORGANIZER;CN=Paul Blart:mailto:paul@serenity.example"))
    });
    assert!(!paul.contains("ORGANIZER;CN=Jayne"), "{paul}");
    assert_eq!(sequence_of(&paul), 7, "{paul}");
    let cancel = wait_for(&serve, "Jayne's cancellation", || {
        messages(&site, "zoe@customer.example", "METHOD:CANCEL").pop()
    });
    let request = wait_for(&serve, "Paul's update request", || {
        messages(&site, "zoe@customer.example", "METHOD:REQUEST")
            .into_iter()
            .find(|m| m.contains("ORGANIZER;CN=Paul Blart:mailto:paul@serenity.example"))
    });
    assert_eq!(sequence_of(&cancel), 6, "{cancel}");
    assert_eq!(sequence_of(&request), 7, "{request}");
    assert!(
        sequence_of(&request) > sequence_of(&cancel),
        "Zoe's client keeps the meeting whichever message it reads last"
    );

    // Read as users' software reads them (Python's email, icalendar and vobject): Zoe's client
    // keeps Paul's meeting whichever of the two messages it applies last.
    let cancel = message_paths(&site, "zoe@customer.example", "METHOD:CANCEL").remove(0);
    let request = message_paths(&site, "zoe@customer.example", "METHOD:REQUEST")
        .into_iter()
        .find(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains("ORGANIZER;CN=Paul Blart")
        })
        .unwrap();
    for order in [[&cancel, &request], [&request, &cancel]] {
        let seen = clients("attendee", &[order[0].as_path(), order[1].as_path()]);
        let calendar = seen["calendar"].as_object().unwrap();
        assert_eq!(calendar.len(), 1, "the meeting is kept: {seen:#}");
        let kept = calendar.values().next().unwrap();
        assert_eq!(kept["organizer"], "paul@serenity.example", "{seen:#}");
        assert_eq!(kept["location"], "Workshop", "{seen:#}");
    }
    let mut written = files(&site.calendar("jayne"), "ics");
    written.extend(files(&site.calendar("paul"), "ics"));
    written.extend(files(&site.contacts("paul"), "vcf"));
    let paths: Vec<&Path> = written.iter().map(PathBuf::as_path).collect();
    let seen = clients("files", &paths);
    let pauls = files(&site.calendar("paul"), "ics").remove(0);
    let copy = &seen[pauls.to_str().unwrap()]["events"][0];
    assert_eq!(copy["organizer"], "paul@serenity.example", "{seen:#}");
    assert_eq!(copy["sequence"], 7, "{seen:#}");
    let linda = files(&site.contacts("paul"), "vcf")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("con-linda-park"))
        .unwrap();
    let card = &seen[linda.to_str().unwrap()];
    assert_eq!(
        (&card["family"], &card["given"]),
        (&Value::from("Park"), &Value::from("Linda")),
        "{card:#}"
    );
}

/// The messages in `attendee`'s Maildir `new/` that contain `needle`, by path.
fn message_paths(site: &Site, attendee: &str, needle: &str) -> Vec<PathBuf> {
    let new = site.root.join("maildir").join(attendee).join("new");
    let mut v: Vec<PathBuf> = fs::read_dir(&new)
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| fs::read_to_string(p).is_ok_and(|m| m.contains(needle)));
    v.sort();
    v
}

/// What clients nobody here wrote see in `paths` (crates/cli/tests/clients/read_as_clients.py:
/// Python's email, icalendar and vobject, installed by ./scripts/test).
fn clients(mode: &str, paths: &[&Path]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/read_as_clients.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .args(paths)
        .output()
        .expect("python3 runs (./scripts/test installs it with icalendar and vobject)");
    assert!(
        out.status.success(),
        "{} {mode} failed (./scripts/test installs icalendar and vobject with pip): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn moved_value(line: &str, key: &str) -> Value {
    serde_json::from_str::<Value>(line.trim()).unwrap()["record"][key].clone()
}

/// The example's meeting line with `version`, `state` and the meeting times kept.
fn meeting_line(example: &str, version: u64, state: &str) -> String {
    let line = example
        .lines()
        .find(|l| l.contains("apt-bike-repair"))
        .expect("the meeting line");
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["record"]["version"] = version.into();
    v["record"]["state"] = state.into();
    format!("{v}\n")
}

#[test]
fn r27_a_meeting_deleted_before_serve_ever_ran_sends_neither_invitation_nor_cancellation() {
    let site = Site::new();
    // CRM changes recorded without a running service: the creates wait for the connector.
    let example = site.example_changes();
    let out = site.run(&["crm", "apply", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.apply(
        "{\"kind\": \"record_deleted\", \"id\": \"apt-bike-repair\", \"entity\": \"appointment\"}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "mbx-jayne: create withdrawn before it was carried out, nothing written or sent  [R27]"
        ),
        "{}",
        stdout(&out)
    );

    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    // The pending contact creates are carried out…
    wait_for(&serve, "Paul's two contacts", || {
        (files(&site.contacts("paul"), "vcf").len() == 2).then_some(())
    });
    settled(&serve, &site, Duration::from_secs(1));
    // …but nothing of the withdrawn meeting: no file, no invitation, no cancellation.
    assert!(files(&site.calendar("jayne"), "ics").is_empty());
    assert!(files(&site.calendar("paul"), "ics").is_empty());
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        assert!(
            messages(&site, attendee, "METHOD:").is_empty(),
            "{attendee} got {:?}",
            messages(&site, attendee, "METHOD:")
        );
    }
}

#[test]
fn r82_a_cancelled_meeting_delivered_again_or_late_is_not_created_or_invited_again() {
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.apply(
        "{\"kind\": \"setting_changed\", \"key\": \"propagate_appointment_cancellations\", \"value\": true}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let example = site.example_changes();
    let out = site.run(&["crm", "apply", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(&serve, "Zoe's invitation", || {
        (messages(&site, "zoe@customer.example", "METHOD:REQUEST").len() == 1).then_some(())
    });

    // R28 with propagation on: cancelled in the CRM, deleted in Jayne's calendar, cancelled.
    let text = fs::read_to_string(&example).unwrap();
    let canceled = meeting_line(&text, 2, "canceled");
    let out = site.apply(&canceled);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(&serve, "Zoe's cancellation", || {
        (messages(&site, "zoe@customer.example", "METHOD:CANCEL").len() == 1).then_some(())
    });
    wait_for(&serve, "Jayne's copy deleted", || {
        files(&site.calendar("jayne"), "ics")
            .is_empty()
            .then_some(())
    });
    settled(&serve, &site, Duration::from_secs(1));

    // The same line again, then version 1 late: nothing is decided, written or sent.
    for line in [canceled.clone(), meeting_line(&text, 1, "scheduled")] {
        let out = site.apply(&line);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stdout(&out).contains("created"), "{}", stdout(&out));
    }
    settled(&serve, &site, Duration::from_secs(1));
    assert!(files(&site.calendar("jayne"), "ics").is_empty());
    assert_eq!(
        messages(&site, "zoe@customer.example", "METHOD:REQUEST").len(),
        1
    );
    assert_eq!(
        messages(&site, "zoe@customer.example", "METHOD:CANCEL").len(),
        1
    );
}

/// The number of events in the journal, as the running service answers `events --json`.
fn event_count(site: &Site) -> usize {
    let out = site.run(&["events", "--json"]);
    assert!(out.status.success(), "events: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Waits until the journal has not grown for `calm` (longer than the half-second push
/// debounce plus a listing), and returns its size.
fn settled(serve: &Serve, site: &Site, calm: Duration) -> usize {
    let mut last = event_count(site);
    let mut since = Instant::now();
    wait_for(serve, "the journal to settle", || {
        std::thread::sleep(Duration::from_millis(250));
        let now = event_count(site);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        (since.elapsed() >= calm).then_some(now)
    })
}

/// The `update_intent`s of `mailbox` that write to the CRM (an edit seen on the mail server,
/// R18/R48).
fn updates_to_the_crm(site: &Site, mailbox: &str) -> Vec<Value> {
    let out = site.run(&["events", "--mailbox", mailbox, "--json"]);
    stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event_type"] == "update_intent" && e["payload"]["data"]["target"] == "Crm")
        .collect()
}

#[test]
fn ledgersyncs_own_writes_are_never_edits_and_an_idle_service_appends_nothing() {
    // The default cadence (the next scheduled cycle is 5 minutes away) and watchers on.
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let example = site.example_changes();
    let out = site.run(&["crm", "apply", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ics = |user: &str| {
        let site = &site;
        let user = user.to_string();
        move || files(&site.calendar(&user), "ics").pop()
    };
    let jayne_ics = wait_for(&serve, "Bike repair in Jayne's calendar", ics("jayne"));
    let paul_ics = wait_for(&serve, "Bike repair in Paul's calendar", ics("paul"));

    // The CRM renames the meeting: ledgersync rewrites both copies.
    let text = fs::read_to_string(&example).unwrap();
    let mut moved: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|c| c["kind"] == "record_upserted" && c["record"]["id"] == "apt-bike-repair")
        .expect("the example's meeting");
    moved["record"]["version"] = 2.into();
    moved["record"]["subject"] = "Bike repair and tune-up".into();
    let out = site.apply(&moved.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [&jayne_ics, &paul_ics] {
        wait_for(&serve, "the meeting rewritten", || {
            fs::read_to_string(file)
                .is_ok_and(|t| t.contains("SUMMARY:Bike repair and tune-up"))
                .then_some(())
        });
    }
    // Each rewrite is pushed once and its sighting recorded: ledgersync's own version.
    wait_for(&serve, "the sighting of the rewritten copies", || {
        let seen = |mailbox: &str| {
            let out = site.run(&["events", "--mailbox", mailbox, "--json"]);
            stdout(&out)
                .lines()
                .any(|l| l.contains("\"item_seen\"") && l.contains("Bike repair and tune-up"))
        };
        (seen("mbx-jayne") && seen("mbx-paul")).then_some(())
    });
    let before = settled(&serve, &site, Duration::from_secs(3));

    // Its own writes are not edits: no update back to the CRM in either mailbox.
    for mailbox in ["mbx-jayne", "mbx-paul"] {
        assert_eq!(
            updates_to_the_crm(&site, mailbox),
            Vec::<Value>::new(),
            "{mailbox}"
        );
    }

    // Idle for a minute: its listings read the collections, which is no change. Watchers woken
    // by reads once appended about 8 events a second per mailbox; no scheduled cycle (5
    // minutes away) falls in the window.
    std::thread::sleep(Duration::from_secs(60));
    let after = event_count(&site);
    assert_eq!(
        after - before,
        0,
        "an idle service appended {} events:\n{}",
        after - before,
        stdout(&site.run(&["events", "--mailbox", "mbx-jayne"]))
    );

    // An edit by another program is still an edit, pushed and decided at once (R18).
    let text = fs::read_to_string(&jayne_ics).unwrap();
    let edited = Instant::now();
    fs::write(
        &jayne_ics,
        text.replace("LOCATION:Garage", "LOCATION:Workshop"),
    )
    .unwrap();
    let update = wait_for(&serve, "the edit decided through a push", || {
        updates_to_the_crm(&site, "mbx-jayne").pop()
    });
    assert_eq!(update["rule"], "R18", "{update}");
    assert!(
        edited.elapsed() < Duration::from_secs(5),
        "decided {:?} after the edit",
        edited.elapsed()
    );
    assert_eq!(updates_to_the_crm(&site, "mbx-paul"), Vec::<Value>::new());
}

#[test]
fn an_invitation_that_cannot_be_delivered_is_given_up_at_the_retry_limit_and_shown() {
    let site = Site::new();
    // Where Zoe's Maildir should be is a plain file: no invitation can reach her.
    fs::create_dir_all(site.root.join("maildir")).unwrap();
    fs::write(
        site.root.join("maildir").join("zoe@customer.example"),
        "not a Maildir",
    )
    .unwrap();
    let mut serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    // A limit of one: the first transient failure of the item reaches it.
    let out = site.apply(&format!(
        "{}{}\n",
        cadence_in_seconds(),
        r#"{"kind": "setting_changed", "key": "transient_retry_limit", "value": 1}"#
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Jayne organizes the meeting: her create carries the invitation, and fails.
    let shown = wait_for(&serve, "the item error of Jayne's mailbox", || {
        let v = site.json(&["mailbox", "show", "mbx-jayne"]);
        let given_up = v["item_errors"]
            .as_array()?
            .iter()
            .any(|e| e["status"] == "given_up" && e["record"] == "apt-bike-repair");
        given_up.then_some(v)
    });
    let e = shown["item_errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["record"] == "apt-bike-repair")
        .unwrap();
    assert_eq!(
        (e["kind"].as_str(), e["attempts"].as_u64()),
        (Some("create"), Some(1)),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invitation"),
        "{e}"
    );
    let act = &shown["workloads"]["act"];
    assert_eq!(act["status"], "enabled", "an item never disables: {shown}");
    assert!(act["item_errors"].as_u64() >= Some(1), "{shown}");
    let text = stdout(&site.run(&["mailbox", "show", "mbx-jayne"]));
    assert!(
        text.contains("item errors (") && text.contains("given up"),
        "{text}"
    );

    // The owner is told (R79), and the create is not executed again.
    let alerts = site.json(&["alerts"]);
    let r79: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "R79")
        .collect();
    assert_eq!(r79.len(), 1, "{alerts:#}");
    assert!(
        r79[0]["text"]
            .as_str()
            .unwrap()
            .contains("no longer retried"),
        "{alerts:#}"
    );
    let timeline = stdout(&site.run(&["timeline", "apt-bike-repair"]));
    assert!(timeline.contains("given up after 1 attempts"), "{timeline}");
    let attempts = |serve: &Serve| {
        serve
            .log()
            .lines()
            .filter(|l| l.contains("intent failed"))
            .count()
    };
    let before = attempts(&serve);
    assert!(before >= 1, "the failure is logged: {}", serve.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(attempts(&serve), before, "given up: never attempted again");
    assert!(serve.terminate().success());
}

/// A seeded run of a few thousand CRM changes during which the service is killed (SIGKILL)
/// several times, each killed batch sent again after the restart, as an at-least-once sender
/// does: every acknowledged change is recorded, none twice; every contact is written exactly
/// once; replay reproduces every decision. `LEDGERSYNC_KILL_SEED=n` repeats a run.
#[test]
fn seeded_kills_during_thousands_of_changes_lose_nothing_acknowledged_and_double_nothing() {
    const BATCHES: usize = 8;
    const PER_BATCH: usize = 250;
    let seed = std::env::var("LEDGERSYNC_KILL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("LEDGERSYNC_KILL_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let site = Site::new();
    let mut run = 1;
    let start = |run: usize| {
        let serve = Serve::spawn(
            &site.config,
            site.root.join(format!("serve-{run}.log")),
            &[],
        );
        wait_for(&serve, "the service ready", || {
            serve.log().contains("ready:").then_some(())
        });
        serve
    };
    let mut serve = start(run);
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let apply = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ledgersync"))
            .args(["--data", site.data.to_str().unwrap(), "crm", "apply"])
            .arg(file)
            .env_remove("LEDGERSYNC_DATA")
            .env_remove("LEDGERSYNC_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut acknowledged: std::collections::BTreeSet<String> = Default::default();
    let mut kills = 0;
    for b in 0..BATCHES {
        let ids: Vec<String> = (0..PER_BATCH)
            .map(|i| format!("con-{b:02}-{i:03}"))
            .collect();
        let text: String = ids
            .iter()
            .map(|id| {
                format!(
                    "{{\"kind\": \"record_upserted\", \"record\": {{\"entity\": \"contact\", \"id\": \"{id}\", \"owner\": \"paul\", \"version\": 1, \"full_name\": \"Contact {id}\", \"email\": \"{id}@customer.example\", \"state\": \"active\"}}}}\n"
                )
            })
            .collect();
        let file = site.root.join(format!("batch-{b}.jsonl"));
        fs::write(&file, text).unwrap();
        let client = apply(&file);
        // Three batches in eight, chosen by the seed, are cut by a kill at a seeded moment.
        let kill = next() % 8 < 3;
        if kill {
            std::thread::sleep(Duration::from_millis(next() % 700));
            serve.kill();
            kills += 1;
        }
        let done = client.wait_with_output().unwrap();
        if done.status.success() {
            acknowledged.extend(ids.iter().cloned());
        } else {
            assert!(
                kill,
                "batch {b} refused: {}",
                String::from_utf8_lossy(&done.stderr)
            );
        }
        if kill {
            run += 1;
            serve = start(run);
            // Sent again: what was recorded before the kill is acknowledged, not recorded twice.
            let again = apply(&file).wait_with_output().unwrap();
            assert!(
                again.status.success(),
                "batch {b} sent again: {}",
                String::from_utf8_lossy(&again.stderr)
            );
            acknowledged.extend(ids.iter().cloned());
        }
    }
    eprintln!("{kills} kill(s) during {} changes", BATCHES * PER_BATCH);

    // Acknowledged = recorded, and each once.
    let out = site.run(&["events", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut recorded: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["stream"] == "org/serenity" && e["event_type"] == "record_upserted")
        .filter_map(|e| {
            e["payload"]["data"]["record"]["id"]
                .as_str()
                .map(String::from)
        })
        .filter(|id| id.len() == "con-00-000".len() && id.starts_with("con-"))
        .collect();
    recorded.sort();
    let unique: std::collections::BTreeSet<String> = recorded.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        recorded.len(),
        "a change recorded twice (seed {seed})"
    );
    assert_eq!(
        unique, acknowledged,
        "acknowledged ≠ recorded (seed {seed})"
    );

    // Effects exactly once: one card per contact (and the example's two).
    let cards = wait_for(&serve, "every contact in Paul's address book", || {
        let v = files(&site.contacts("paul"), "vcf");
        (v.len() >= acknowledged.len() + 2).then_some(v)
    });
    assert_eq!(cards.len(), acknowledged.len() + 2, "seed {seed}");
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "seed {seed}: {}", stdout(&replay));
}

/// The delete breaker (R25) on a running service: another program empties Paul's address
/// book, the complete listing reports both cards gone, the breaker trips with an alert and
/// the CRM keeps its contacts; `mailbox approve-deletes` sent to the running service closes it
/// and decides the held deletes.
#[test]
fn r25_an_emptied_address_book_trips_the_breaker_until_an_administrator_approves() {
    let site = Site::new();
    let serve = Serve::spawn(&site.config, site.root.join("serve.log"), &[]);
    let socket = site.data.join("control.sock");
    wait_for(&serve, "the control socket", || {
        socket.exists().then_some(())
    });
    let out = site.apply(cadence_in_seconds());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cards = wait_for(&serve, "Paul's two contacts", || {
        let v = files(&site.contacts("paul"), "vcf");
        (v.len() == 2).then_some(v)
    });
    wait_for(&serve, "Bike repair in Paul's calendar", || {
        files(&site.calendar("paul"), "ics").pop()
    });
    settled(&serve, &site, Duration::from_secs(1));

    for card in &cards {
        fs::remove_file(card).unwrap();
    }
    let breaker = wait_for(&serve, "the delete breaker of mbx-paul", || {
        let m = site.json(&["mailbox", "show", "mbx-paul"]);
        (!m["delete_breaker"].is_null()).then(|| m["delete_breaker"].clone())
    });
    assert_eq!(breaker["deletes"], 2, "{breaker}");
    assert!(
        breaker["reason"]
            .as_str()
            .unwrap()
            .starts_with("2 of 3 linked items would have been deleted in one cycle"),
        "{breaker}"
    );
    let alerts = stdout(&site.run(&["alerts", "--mailbox", "mbx-paul"]));
    assert!(
        alerts.contains("The delete breaker of the mailbox"),
        "{alerts}"
    );
    let shown = site.json(&["mailbox", "show", "mbx-paul"]);
    let links: Vec<&str> = shown["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert!(links.iter().all(|s| *s == "linked"), "{links:?}");

    let out = site.run(&["mailbox", "approve-deletes", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("administrator approved the deletes the delete breaker holds in mbx-paul")
            && text.contains("breaker closed in mbx-paul"),
        "{text}"
    );
    assert!(
        site.json(&["mailbox", "show", "mbx-paul"])["delete_breaker"].is_null(),
        "closed"
    );
}
