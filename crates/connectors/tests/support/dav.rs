//! A real Radicale for the CalDAV/CardDAV tests: found on 127.0.0.1:5232 (the standard test
//! setup of `scripts/services.sh`: Radicale 3.9.0, users alice/alicepw and bob/bobpw), or where
//! `LEDGERSYNC_RADICALE_URL` says. No server is a failure, never a skip.
//!
//! Each test makes its own calendar and address book (MKCALENDAR, extended MKCOL) under a
//! unique name, so tests running in parallel never see each other's items.

use ledgersync_connectors::{DavConfig, DavConnector};
use reqwest::blocking::Client;
use reqwest::{Method, Url};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "alicepw";

/// The Radicale to test against; panics, saying what to run, when none is listening.
pub fn radicale_url() -> String {
    let url = std::env::var("LEDGERSYNC_RADICALE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:5232/".to_string());
    let parsed = Url::parse(&url).unwrap_or_else(|e| panic!("LEDGERSYNC_RADICALE_URL={url}: {e}"));
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port_or_known_default().unwrap_or(5232)
    );
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Radicale is listening at {url}. The CalDAV/CardDAV tests need a real one: run \
         `scripts/services.sh start` (Radicale 3.9.0 on 127.0.0.1:5232, users alice/alicepw and \
         bob/bobpw, htpasswd plain), or start your own (`pip install radicale==3.9.0`, then \
         `python -m radicale --config <file>` with [auth] type = htpasswd, htpasswd_encryption = \
         plain, [rights] type = owner_only) and set LEDGERSYNC_RADICALE_URL=http://127.0.0.1:<port>/"
    );
    url
}

/// A unique collection name for this test.
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

/// Another client of the server (what curl or a calendar app would do), and the collections
/// of one test.
pub struct Server {
    pub base: Url,
    pub client: Client,
    /// The test's calendar, as a path (`/alice/ls-cal-…/`).
    pub calendar: String,
    /// The test's address book, as a path.
    pub contacts: String,
}

impl Server {
    /// A fresh calendar (VEVENT + VTODO) and address book for alice.
    pub fn new(name: &str) -> Self {
        let base = Url::parse(&radicale_url()).unwrap();
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let calendar = format!("/{USER}/{}/", unique(&format!("{name}-cal")));
        let contacts = format!("/{USER}/{}/", unique(&format!("{name}-book")));
        let s = Server {
            base,
            client,
            calendar,
            contacts,
        };
        s.mkcalendar(
            &s.calendar,
            &s.display_name(&s.calendar),
            &["VEVENT", "VTODO"],
        );
        s.mkaddressbook(&s.contacts, &s.display_name(&s.contacts));
        s
    }

    /// The display name of a collection this module made: its unique last segment, upper-cased
    /// (so that it is not also its path's segment).
    pub fn display_name(&self, collection: &str) -> String {
        let segment = collection
            .trim_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        format!("Test {}", segment.to_uppercase())
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        self.client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(path),
            )
            .basic_auth(USER, Some(PASSWORD))
    }

    pub fn mkcalendar(&self, path: &str, name: &str, components: &[&str]) {
        let comps: String = components
            .iter()
            .map(|c| format!(r#"<C:comp name="{c}"/>"#))
            .collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>{name}</D:displayname><C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"#
        );
        let r = self.request("MKCALENDAR", path).body(body).send().unwrap();
        assert_eq!(r.status().as_u16(), 201, "MKCALENDAR {path}");
    }

    pub fn mkaddressbook(&self, path: &str, name: &str) {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{name}</D:displayname></D:prop></D:set></D:mkcol>"#
        );
        let r = self.request("MKCOL", path).body(body).send().unwrap();
        assert_eq!(r.status().as_u16(), 201, "MKCOL {path}");
    }

    /// PUTs an item (no precondition) and answers its ETag.
    pub fn put(&self, path: &str, text: &str) -> String {
        let content_type = if path.ends_with(".vcf") {
            "text/vcard; charset=utf-8"
        } else {
            "text/calendar; charset=utf-8"
        };
        let r = self
            .request("PUT", path)
            .header("Content-Type", content_type)
            .body(text.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
        match r.headers().get("etag") {
            Some(e) => e.to_str().unwrap().to_string(),
            None => self.get(path).expect("just written").0,
        }
    }

    /// GETs an item: its ETag and text, `None` when it is not there.
    pub fn get(&self, path: &str) -> Option<(String, String)> {
        let r = self.request("GET", path).send().unwrap();
        if r.status().as_u16() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        Some((etag, r.text().unwrap()))
    }

    pub fn delete(&self, path: &str) {
        let r = self.request("DELETE", path).send().unwrap();
        assert!(r.status().is_success(), "DELETE {path}: {}", r.status());
    }

    /// The hrefs of the items of a collection (PROPFIND Depth 1). It asks for `resourcetype`:
    /// Radicale 3.9 computes a collection's `getetag` outside its storage lock, and answers 500
    /// when an item is deleted at that moment.
    pub fn items(&self, collection: &str) -> Vec<String> {
        let r = self
            .request("PROPFIND", collection)
            .header("Depth", "1")
            .body(r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>"#)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 207);
        let text = r.text().unwrap();
        let mut out: Vec<String> = text
            .split("href>")
            .filter_map(|s| s.strip_suffix("</").or_else(|| s.split("</").next()))
            .filter(|h| h.starts_with(collection) && h.len() > collection.len())
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A connector on this test's calendar and address book.
    pub fn config(&self) -> DavConfig {
        let mut config =
            DavConfig::new("paul@serenity.example", self.base.as_str(), USER, PASSWORD);
        config.calendar = Some(self.calendar.clone());
        config.address_book = Some(self.contacts.clone());
        config.timeout = Duration::from_secs(20);
        config
    }

    pub fn connector(&self) -> DavConnector {
        DavConnector::new(self.config())
    }
}

/// The port of a server that is not running: connecting is refused at once.
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}
