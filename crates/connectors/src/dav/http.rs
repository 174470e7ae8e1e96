//! HTTP for CalDAV and CardDAV: one blocking client with basic auth, a per-request timeout and
//! ledgersync's User-Agent; every answer's status mapped to an [`ErrorKind`].
//!
//! `reqwest::blocking` runs its own I/O thread, so the synchronous [`Connector`] calls are safe
//! on the runtime's blocking pool (never inside an async task, where reqwest refuses to block).
//! Redirects are not followed by the client: reqwest would turn a PROPFIND into a GET on a 301,
//! so discovery follows them itself, and only within the server's origin (the credentials are
//! never sent to another host).
//!
//! The password is only ever handed to reqwest's `basic_auth`; no error message, log line or
//! `Debug` output holds it or the Authorization header (reqwest's errors are stripped of
//! their URL, which never holds credentials either: they are not part of [`super::DavConfig::server`]).
//!
//! [`Connector`]: crate::Connector

use super::Secret;
use ledgersync_domain::ErrorKind;
use ledgersync_domain::event::ServerError;
use ledgersync_domain::time::{Duration as Span, Timestamp};
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use std::fmt;
use std::io::Read;
use std::time::Duration;

/// What went wrong with a request: its kind, a message naming the request, and the server's
/// Retry-After (absolute) when it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DavError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Timestamp>,
}

impl DavError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with `context` in front of its message.
    pub(crate) fn context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub(crate) fn to_server_error(&self) -> ServerError {
        if self.kind == ErrorKind::RateLimited {
            ServerError::rate_limited(self.message.clone(), self.retry_after)
        } else {
            ServerError::of_kind(self.kind, self.message.clone())
        }
    }
}

impl fmt::Display for DavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of an HTTP status that is not a success (see `docs/connectors.md`).
pub(crate) fn status_kind(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Auth,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        410 => ErrorKind::Gone,
        409 | 412 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500 | 502 | 503 => ErrorKind::Unavailable,
        504 | 408 => ErrorKind::Timeout,
        507 => ErrorKind::Quota,
        413 => ErrorKind::TooLarge,
        400 | 422 => ErrorKind::Malformed,
        405 | 501 => ErrorKind::Unsupported,
        _ => ErrorKind::Unknown,
    }
}

/// One answer: status, the headers ledgersync reads, and the body (at most the limit asked).
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
    pub(crate) location: Option<String>,
    retry_after: Option<String>,
    pub(crate) body: String,
    /// True when the body was longer than the limit and was cut.
    pub(crate) truncated: bool,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this answer means, for `what` (the request, e.g. `PROPFIND /alice/`).
    pub(crate) fn error(&self, what: &str) -> DavError {
        let kind = status_kind(self.status);
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut message = format!("{what}: the server answered HTTP {} {reason}", self.status);
        let mut retry_after = None;
        if kind == ErrorKind::RateLimited {
            match &self.retry_after {
                Some(value) => {
                    message.push_str(&format!(" (Retry-After: {value})"));
                    retry_after = retry_at(value);
                }
                None => message.push_str(" (no Retry-After)"),
            }
        }
        message.push_str(match kind {
            ErrorKind::Auth => "; check the user name and password of the mailbox",
            ErrorKind::Forbidden => "; the account may not access this resource",
            ErrorKind::Quota => "; the account's storage is full",
            _ => "",
        });
        DavError {
            kind,
            message,
            retry_after,
        }
    }
}

/// When a Retry-After value (seconds or an HTTP date) says to try again.
fn retry_at(value: &str) -> Option<Timestamp> {
    let now = crate::compose::now();
    if let Ok(secs) = value.trim().parse::<i64>() {
        return Some(now + Span(secs.max(0) * 1000));
    }
    chrono::DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|at| Timestamp(at.timestamp_millis()))
}

/// The blocking HTTP client of one DAV account.
pub(crate) struct Http {
    client: Client,
    username: String,
    password: Secret,
    /// Whether the client can verify a server certificate.
    tls: bool,
}

/// What the client needs to speak TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tls<'a> {
    /// An `http://` server and no certificate file: no certificate roots are loaded (loading
    /// the system's costs about 20 ms for each process), and an `https://` address is refused
    /// with what to change.
    None,
    /// The system's roots.
    System,
    /// The system's roots and the authorities of this PEM file.
    WithFile(&'a std::path::Path),
}

impl<'a> Tls<'a> {
    /// The TLS a profile needs: its server URL and its `ca_file`.
    pub(crate) fn of(server: &str, ca_file: Option<&'a std::path::Path>) -> Self {
        match ca_file {
            Some(path) => Tls::WithFile(path),
            None if server
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")) =>
            {
                Tls::None
            }
            None => Tls::System,
        }
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// The body limit of answers that are not items (multistatus documents): 64 MiB.
pub(crate) const MAX_DOCUMENT: u64 = 64 << 20;

impl Http {
    pub(crate) fn new(
        username: &str,
        password: &Secret,
        timeout: Duration,
        tls: Tls<'_>,
    ) -> Result<Self, DavError> {
        let mut builder = Client::builder()
            .user_agent(concat!("ledgersync/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Tls::None = tls {
            builder = builder.tls_certs_only(Vec::new());
        }
        if let Tls::WithFile(path) = tls {
            let pem = std::fs::read(path).map_err(|e| {
                DavError::new(
                    ErrorKind::Tls,
                    format!(
                        "cannot read the certificate authorities file {}: {e}",
                        path.display()
                    ),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                DavError::new(
                    ErrorKind::Tls,
                    format!(
                        "the certificate authorities file {} is not a PEM bundle ({e})",
                        path.display()
                    ),
                )
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            DavError::new(
                ErrorKind::Tls,
                format!("the HTTP client could not be built ({})", e.without_url()),
            )
        })?;
        Ok(Self {
            client,
            username: username.to_string(),
            password: password.clone(),
            tls: !matches!(tls, Tls::None),
        })
    }

    /// Sends one request; `Err` only when no answer came (connection, timeout, TLS). The body
    /// is read up to `limit` bytes.
    pub(crate) fn send(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<String>,
        limit: u64,
    ) -> Result<Answer, DavError> {
        let what = format!("{method} {}", url.path());
        if !self.tls && url.scheme() == "https" {
            return Err(DavError::new(
                ErrorKind::Tls,
                format!(
                    "{what}: the server sent ledgersync to https://{}, but the profile's url is \
                     plain http://; set the profile's `url` to the https:// address",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| DavError::new(ErrorKind::Unsupported, format!("{what}: bad method")))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| {
                DavError::new(
                    ErrorKind::Malformed,
                    format!("{what}: the {name} header cannot be sent"),
                )
            })?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                DavError::new(
                    ErrorKind::Malformed,
                    format!("{what}: bad header name {name}"),
                )
            })?;
            map.insert(name, value);
        }
        let mut request = self
            .client
            .request(method, url.clone())
            .basic_auth(&self.username, Some(self.password.expose()))
            .headers(map);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().map_err(|e| transport(&what, &e))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = response.status().as_u16();
        let etag = header("etag");
        let location = header("location");
        let retry_after = header("retry-after");
        let mut bytes = Vec::new();
        response
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Network
                };
                DavError::new(kind, format!("{what}: the answer could not be read ({e})"))
            })?;
        let truncated = bytes.len() as u64 > limit;
        bytes.truncate(limit as usize);
        let body = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(Answer {
            status,
            etag,
            location,
            retry_after,
            body,
            truncated,
        })
    }
}

/// The error of a request that got no answer.
fn transport(what: &str, e: &reqwest::Error) -> DavError {
    // A connection refused or reset, DNS, TLS handshake: the network.
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    // Without the URL: the error's text then names only what failed.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    let hint = match kind {
        ErrorKind::Timeout => "; the server did not answer in time (timeout in the configuration)",
        _ => "; is the server running and the URL right?",
    };
    DavError::new(kind, format!("{what}: no answer ({text}){hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_profile_loads_no_roots_and_refuses_an_https_address() {
        let file = std::path::Path::new("/etc/ledgersync/ca.pem");
        assert!(matches!(Tls::of("http://127.0.0.1:5232/", None), Tls::None));
        assert!(matches!(Tls::of("HTTP://dav.example/", None), Tls::None));
        assert!(matches!(Tls::of("https://dav.example/", None), Tls::System));
        assert!(matches!(
            Tls::of("http://dav.example/", Some(file)),
            Tls::WithFile(_)
        ));
        let password = Secret::new("pw".to_owned());
        let http = Http::new("alice", &password, Duration::from_secs(1), Tls::None).unwrap();
        let url = Url::parse("https://dav.example/alice/calendar/").unwrap();
        let error = http.send("PROPFIND", &url, &[], None, 1024).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Tls);
        assert!(
            error
                .message
                .contains("set the profile's `url` to the https:// address"),
            "{}",
            error.message
        );
    }

    #[test]
    fn statuses_map_to_the_error_vocabulary() {
        for (status, kind) in [
            (401, ErrorKind::Auth),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (410, ErrorKind::Gone),
            (409, ErrorKind::Conflict),
            (412, ErrorKind::Conflict),
            (429, ErrorKind::RateLimited),
            (500, ErrorKind::Unavailable),
            (502, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
            (504, ErrorKind::Timeout),
            (507, ErrorKind::Quota),
            (413, ErrorKind::TooLarge),
        ] {
            assert_eq!(status_kind(status), kind, "{status}");
        }
    }

    #[test]
    fn a_rate_limit_keeps_its_retry_after() {
        let answer = Answer {
            status: 429,
            etag: None,
            location: None,
            retry_after: Some("120".into()),
            body: String::new(),
            truncated: false,
        };
        let e = answer.error("REPORT /alice/cal/");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.message.contains("Retry-After: 120"), "{}", e.message);
        let at = e.retry_after.expect("a time");
        let now = crate::compose::now();
        assert!(at.0 > now.0 + 100_000 && at.0 <= now.0 + 120_000);
        let server = e.to_server_error();
        assert_eq!(server.kind(), ErrorKind::RateLimited);
        assert_eq!(server.retry_after, Some(at));
        assert_eq!(
            retry_at("Wed, 21 Oct 2026 07:28:00 GMT").map(|t| t.0),
            Some(1_792_567_680_000)
        );
    }
}
