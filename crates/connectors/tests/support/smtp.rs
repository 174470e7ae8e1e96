//! A tiny SMTP server for the tests of refusals Postfix cannot be made to answer on demand
//! (452, 421).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A tiny SMTP server: answers RCPT TO with what `rcpt` says for the address, records the
/// recipients of every message it accepted.
pub struct FakeSmtp {
    pub port: u16,
    accepted: Arc<Mutex<Vec<String>>>,
}

impl FakeSmtp {
    pub fn start(rcpt: impl Fn(&str) -> String + Send + Sync + 'static) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let seen = accepted.clone();
        let rcpt = Arc::new(rcpt);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (seen, rcpt) = (seen.clone(), rcpt.clone());
                std::thread::spawn(move || session(conn, &*rcpt, &seen));
            }
        });
        FakeSmtp { port, accepted }
    }

    pub fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

fn session(conn: TcpStream, rcpt: &dyn Fn(&str) -> String, seen: &Mutex<Vec<String>>) {
    let mut out = conn.try_clone().unwrap();
    let mut lines = BufReader::new(conn);
    let mut say = |text: &str| {
        let _ = out.write_all(format!("{text}\r\n").as_bytes());
    };
    say("220 fake.example ESMTP");
    let mut recipients: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250 fake.example");
        } else if upper.starts_with("MAIL FROM") {
            recipients.clear();
            say("250 2.1.0 Ok");
        } else if upper.starts_with("RCPT TO") {
            let address = line
                .split(['<', '>'])
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let answer = rcpt(&address);
            if answer.starts_with('2') {
                recipients.push(address);
            }
            say(&answer);
        } else if upper.starts_with("DATA") {
            say("354 End data with <CR><LF>.<CR><LF>");
            loop {
                line.clear();
                if lines.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.trim_end() == "." {
                    break;
                }
            }
            seen.lock().unwrap().extend(recipients.drain(..));
            say("250 2.0.0 Ok: queued");
        } else if upper.starts_with("QUIT") {
            say("221 2.0.0 Bye");
            return;
        } else {
            say("250 2.0.0 Ok");
        }
    }
}
