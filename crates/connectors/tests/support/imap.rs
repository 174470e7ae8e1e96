//! Included by `tests/imap.rs` alone (`#[path]`), next to the shared `support` module.
//!
//! A real Dovecot for the IMAP reading tests: found on 127.0.0.1:1143 (the standard test setup
//! of `scripts/services.sh`: Dovecot 2.3, plain IMAP), or where `LEDGERSYNC_IMAP_HOST` and
//! `LEDGERSYNC_IMAP_PORT` say. No server is a failure, never a skip.
//!
//! Every test works as `river@customer.example` (a user no other test touches), in folders of
//! its own under INBOX (`INBOX/ls-…`), created and deleted by the test. The other mail client
//! (what a person's mail program does: APPEND, MOVE, setting a keyword, deleting a folder) is
//! Python's `imaplib`, a client independent of the code under test.

use ledgersync_connectors::Secret;
use ledgersync_connectors::imap::{ImapConfig, Security};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const USER: &str = "river@customer.example";
pub const PASSWORD: &str = "riverpw";

/// The Dovecot to test against; panics, saying what to run, when none is listening.
pub fn dovecot() -> (String, u16) {
    let host = std::env::var("LEDGERSYNC_IMAP_HOST").unwrap_or_else(|_| "127.0.0.1".to_string());
    let port: u16 = std::env::var("LEDGERSYNC_IMAP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1143);
    let reachable = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no IMAP server is listening at {host}:{port}. The IMAP tests need a real Dovecot: run \
         `scripts/services.sh start` (Dovecot 2.3, plain IMAP on 127.0.0.1:1143, user \
         {USER}/{PASSWORD}), or point LEDGERSYNC_IMAP_HOST and LEDGERSYNC_IMAP_PORT at your own \
         server with that user"
    );
    (host, port)
}

/// The reader's configuration for the test user, tracking `folders`.
pub fn config(folders: &[&str]) -> ImapConfig {
    let (host, port) = dovecot();
    let mut c = ImapConfig::new(host, USER, Secret::new(PASSWORD));
    c.port = port;
    c.security = Security::Plain;
    c.timeout = Duration::from_secs(20);
    c.folders = folders.iter().map(|f| f.to_string()).collect();
    c
}

/// The other mail client: runs one `imaplib` operation as the test user, `stdin` as its data.
pub fn other_client(args: &[&str], stdin: &[u8]) {
    const SCRIPT: &str = r#"
import imaplib, os, sys
def ok(answer):
    typ, data = answer
    if typ != 'OK':
        sys.exit('%s failed: %s %r' % (sys.argv[1], typ, data))
    return data
def uid_of(folder, message_id):
    ok(m.select(folder))
    data = ok(m.uid('SEARCH', 'HEADER', 'Message-ID', message_id))
    uids = data[0].split()
    if len(uids) != 1:
        sys.exit('expected one message %s in %s, found %r' % (message_id, folder, uids))
    return uids[0].decode()
m = imaplib.IMAP4(os.environ['IMAP_HOST'], int(os.environ['IMAP_PORT']))
ok(m.login(os.environ['IMAP_USER'], os.environ['IMAP_PASSWORD']))
op, args = sys.argv[1], sys.argv[2:]
if op == 'create':
    ok(m.create(args[0]))
elif op == 'delete':
    ok(m.delete(args[0]))
elif op == 'append':
    flags = args[1] if len(args) > 1 and args[1] else None
    ok(m.append(args[0], flags, '"05-Mar-2024 10:00:00 +0000"', sys.stdin.buffer.read()))
elif op == 'move':
    uid = uid_of(args[0], args[2])
    ok(m.uid('MOVE', uid, args[1]))
elif op == 'keyword':
    uid = uid_of(args[0], args[1])
    ok(m.uid('STORE', uid, '+FLAGS', '(' + args[2] + ')'))
elif op == 'unkeyword':
    uid = uid_of(args[0], args[1])
    ok(m.uid('STORE', uid, '-FLAGS', '(' + args[2] + ')'))
elif op == 'expunge':
    uid = uid_of(args[0], args[1])
    ok(m.uid('STORE', uid, '+FLAGS', '(\\Deleted)'))
    ok(m.expunge())
else:
    sys.exit('unknown operation ' + op)
m.logout()
"#;
    let (host, port) = dovecot();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .env("IMAP_HOST", host)
        .env("IMAP_PORT", port.to_string())
        .env("IMAP_USER", USER)
        .env("IMAP_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the other IMAP client of the tests) must be installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the other IMAP client failed at {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A unique folder name for this test (`ls-<what>-<pid>-<nanos>-<n>`).
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "ls-{what}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The INTERNALDATE the other client gives every message it appends, in milliseconds.
pub const APPEND_DATE_MS: i64 = 1_709_632_800_000; // 2024-03-05 10:00:00 UTC

/// A folder of one test under INBOX, deleted when dropped.
pub struct TestFolder {
    pub name: String,
}

impl TestFolder {
    pub fn new(what: &str) -> Self {
        let name = format!("INBOX/{}", unique(what));
        other_client(&["create", &name], b"");
        TestFolder { name }
    }

    /// Appends `raw` (with `flags`, e.g. `(\Seen)`, or none) through the other client.
    pub fn append(&self, raw: &[u8], flags: &str) {
        other_client(&["append", &self.name, flags], raw);
    }
}

impl Drop for TestFolder {
    fn drop(&mut self) {
        let (host, port) = dovecot();
        // Best effort: the test may have deleted the folder itself.
        let _ = Command::new("python3")
            .arg("-c")
            .arg(
                "import imaplib,sys\nm=imaplib.IMAP4(sys.argv[1],int(sys.argv[2]))\n\
                 m.login(sys.argv[3],sys.argv[4])\nm.delete(sys.argv[5])\nm.logout()",
            )
            .args([&host, &port.to_string(), USER, PASSWORD, &self.name])
            .output();
    }
}

/// A message with every header the reader parses; `body_bytes` of body, CRLF line ends.
pub fn message(id: &str, subject: &str, body_bytes: usize) -> Vec<u8> {
    let mut raw = format!(
        "Message-ID: <{id}>\r\n\
         In-Reply-To: <parent-{id}>\r\n\
         References: <root-{id}> <parent-{id}>\r\n\
         Thread-Index: AQHZ{}\r\n\
         Subject: {subject}\r\n\
         From: Zoe Washburne <Zoe@Customer.Example>\r\n\
         To: River <river@customer.example>, Jayne@Serenity.Example\r\n\
         Cc: linda@customer.example\r\n\
         Date: Tue, 05 Mar 2024 11:00:00 +0100\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        id.len()
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n";
    while raw.len() < body_bytes {
        raw.extend_from_slice(line);
    }
    raw.extend_from_slice(b"end\r\n");
    raw
}
