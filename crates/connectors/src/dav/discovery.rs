//! Finding the collections of a DAV account from the server URL (RFC 6764, RFC 4791 §6,
//! RFC 6352 §7).
//!
//! 1. The context path: `PROPFIND /.well-known/caldav` (and `carddav`) for
//!    `DAV:current-user-principal`, following redirects within the server's origin, else the
//!    server URL itself;
//! 2. the principal's `calendar-home-set` and `addressbook-home-set`;
//! 3. the collections in each home (`Depth: 1`): `resourcetype`, `displayname`,
//!    `supported-calendar-component-set`.
//!
//! A configured collection given as a URL or an absolute path is used as it is, without
//! discovery; one given as a display name (or not given) is looked up in the homes. The result
//! is kept for the connector's life; a failed discovery is tried again on the next call.

use super::http::{DavError, MAX_DOCUMENT};
use super::xml::{self, CALDAV, CARDDAV, DAV};
use super::{DavConnector, Resolved};
use ledgersync_domain::ErrorKind;
use reqwest::Url;

/// One collection found in a home.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    url: Url,
    name: String,
    calendar: bool,
    /// The components a calendar accepts (empty: not announced, so any).
    components: Vec<String>,
    address_book: bool,
}

impl Found {
    fn accepts(&self, component: &str) -> bool {
        self.calendar
            && (self.components.is_empty()
                || self
                    .components
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(component)))
    }
}

/// A configured collection as a URL, when it is one (absolute URL or path), else `None` (a
/// display name).
pub(crate) fn as_url(base: &Url, value: &str) -> Option<Url> {
    let value = value.trim();
    if value.starts_with("http://") || value.starts_with("https://") || value.starts_with('/') {
        let mut url = base.join(value).ok()?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Some(url)
    } else {
        None
    }
}

impl DavConnector {
    /// The collections to sync, discovered once.
    pub(crate) fn resolve(&mut self) -> Result<Resolved, DavError> {
        if let Some(r) = &self.resolved {
            return Ok(r.clone());
        }
        let base = self.base()?;
        let c = &self.config;
        let explicit = |v: &Option<String>| v.as_deref().and_then(|s| as_url(&base, s));
        let (calendar, tasks, contacts) = (
            explicit(&c.calendar),
            explicit(&c.tasks),
            explicit(&c.address_book),
        );
        let everything_named = contacts.is_some() && (tasks.is_some() || c.tasks.is_none());
        let resolved = if let (Some(calendar), true) = (calendar.clone(), everything_named) {
            // Everything named by URL: no discovery; the tasks go to the calendar when it
            // takes VTODOs.
            let tasks = match tasks {
                Some(t) => Some(t),
                None => self
                    .components(&calendar)?
                    .is_none_or(|comps| comps.iter().any(|x| x.eq_ignore_ascii_case("VTODO")))
                    .then(|| calendar.clone()),
            };
            Resolved {
                calendar: Some(calendar),
                tasks,
                contacts,
            }
        } else {
            let found = self.discover(&base)?;
            let pick = |value: &Option<String>,
                        explicit: Option<Url>,
                        what: &str,
                        fits: &dyn Fn(&Found) -> bool|
             -> Result<Option<Url>, DavError> {
                if let Some(url) = explicit {
                    return Ok(Some(url));
                }
                let hit = match value {
                    Some(name) => found
                        .iter()
                        .find(|f| fits(f) && f.name.trim() == name.trim())
                        .or_else(|| {
                            found.iter().find(|f| {
                                fits(f)
                                    && f.url.path().trim_end_matches('/').rsplit('/').next()
                                        == Some(name.trim())
                            })
                        }),
                    None => found.iter().find(|f| fits(f)),
                };
                match (hit, value) {
                    (Some(f), _) => Ok(Some(f.url.clone())),
                    (None, Some(name)) => Err(DavError::new(
                        ErrorKind::NotFound,
                        format!(
                            "no {what} named `{name}` on {}: the account's collections are {}; \
                             set the collection's display name, path or URL",
                            base,
                            list(&found)
                        ),
                    )),
                    (None, None) => Ok(None),
                }
            };
            let calendar = pick(&c.calendar, calendar, "calendar (VEVENT)", &|f: &Found| {
                f.accepts("VEVENT")
            })?;
            let tasks = match (&c.tasks, tasks) {
                (None, _) => calendar.clone().filter(|url| {
                    found
                        .iter()
                        .find(|f| &f.url == url)
                        .is_none_or(|f| f.accepts("VTODO"))
                }),
                (value, explicit) => pick(value, explicit, "task list (VTODO)", &|f: &Found| {
                    f.accepts("VTODO")
                })?,
            };
            let contacts = pick(&c.address_book, contacts, "address book", &|f: &Found| {
                f.address_book
            })?;
            if calendar.is_none() && contacts.is_none() {
                return Err(DavError::new(
                    ErrorKind::Discovery,
                    format!(
                        "{base} holds no calendar that accepts VEVENT and no address book for \
                         `{}` (collections found: {}); create one or configure its URL",
                        c.username,
                        list(&found)
                    ),
                ));
            }
            Resolved {
                calendar,
                tasks,
                contacts,
            }
        };
        self.resolved = Some(resolved.clone());
        Ok(resolved)
    }

    /// The server URL of the configuration.
    pub(crate) fn base(&self) -> Result<Url, DavError> {
        Url::parse(self.config.server.trim()).map_err(|e| {
            DavError::new(
                ErrorKind::Discovery,
                format!(
                    "the server URL `{}` is not a URL ({e}); write it as http(s)://host:port/",
                    self.config.server
                ),
            )
        })
    }

    /// The `supported-calendar-component-set` of a calendar (`None`: not announced).
    fn components(&self, url: &Url) -> Result<Option<Vec<String>>, DavError> {
        let m = self.propfind(url, "0", &["c:supported-calendar-component-set"])?;
        Ok(m.responses.first().and_then(|r| {
            r.prop(CALDAV, "supported-calendar-component-set")
                .map(|set| {
                    set.children_named(CALDAV, "comp")
                        .filter_map(|c| c.attr("name").map(str::to_string))
                        .collect()
                })
        }))
    }

    /// A PROPFIND whose answer must be a multistatus.
    pub(crate) fn propfind(
        &self,
        url: &Url,
        depth: &str,
        props: &[&str],
    ) -> Result<xml::Multistatus, DavError> {
        let http = self.http()?;
        let what = format!("PROPFIND {}", url.path());
        let answer = http.send(
            "PROPFIND",
            url,
            &[
                ("Depth", depth),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(xml::propfind(props)),
            MAX_DOCUMENT,
        )?;
        if answer.status != 207 {
            return Err(answer.error(&what));
        }
        xml::multistatus(&answer.body)
            .map_err(|e| DavError::new(ErrorKind::Malformed, e).context(&what))
    }

    /// Every calendar and address book in the account's homes.
    fn discover(&self, base: &Url) -> Result<Vec<Found>, DavError> {
        let mut principal: Option<Url> = None;
        let mut tried = Vec::new();
        for service in ["caldav", "carddav"] {
            let start = base
                .join(&format!("/.well-known/{service}"))
                .expect("a path joins");
            tried.push(start.path().to_string());
            if let Some(p) = self.principal_via(base, start)? {
                principal = Some(p);
                break;
            }
        }
        if principal.is_none() {
            tried.push(base.path().to_string());
            principal = self.principal_via(base, base.clone())?;
        }
        let Some(principal) = principal else {
            return Err(DavError::new(
                ErrorKind::Discovery,
                format!(
                    "no DAV:current-user-principal at {} on {base}; configure the collections' \
                     URLs",
                    tried.join(", ")
                ),
            ));
        };
        let m = self.propfind(
            &principal,
            "0",
            &["c:calendar-home-set", "cr:addressbook-home-set"],
        )?;
        let mut homes: Vec<Url> = Vec::new();
        for r in &m.responses {
            for (ns, name) in [
                (CALDAV, "calendar-home-set"),
                (CARDDAV, "addressbook-home-set"),
            ] {
                for href in r
                    .prop(ns, name)
                    .into_iter()
                    .flat_map(|p| p.children_named(DAV, "href"))
                {
                    if let Ok(url) = principal.join(href.text.trim())
                        && !homes.contains(&url)
                    {
                        homes.push(url);
                    }
                }
            }
        }
        if homes.is_empty() {
            return Err(DavError::new(
                ErrorKind::Discovery,
                format!(
                    "the principal {} names no calendar-home-set nor addressbook-home-set",
                    principal.path()
                ),
            ));
        }
        let mut found = Vec::new();
        for home in homes {
            let m = self.propfind(
                &home,
                "1",
                &[
                    "d:resourcetype",
                    "d:displayname",
                    "c:supported-calendar-component-set",
                ],
            )?;
            for r in &m.responses {
                let Some(rt) = r.prop(DAV, "resourcetype") else {
                    continue;
                };
                let calendar = rt.child(CALDAV, "calendar").is_some();
                let address_book = rt.child(CARDDAV, "addressbook").is_some();
                if !calendar && !address_book {
                    continue;
                }
                let Ok(url) = home.join(&r.href) else {
                    continue;
                };
                if found.iter().any(|f: &Found| f.url == url) {
                    continue;
                }
                found.push(Found {
                    name: r.text(DAV, "displayname").unwrap_or_default(),
                    components: r
                        .prop(CALDAV, "supported-calendar-component-set")
                        .map(|set| {
                            set.children_named(CALDAV, "comp")
                                .filter_map(|c| c.attr("name").map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    url,
                    calendar,
                    address_book,
                });
            }
        }
        // Name order: the same account always picks the same default.
        found.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
        Ok(found)
    }

    /// The principal announced at `start`, following redirects within `base`'s origin.
    /// `Ok(None)`: none there (any status but 207, or no principal in the answer); an
    /// authentication failure is an error.
    fn principal_via(&self, base: &Url, start: Url) -> Result<Option<Url>, DavError> {
        let http = self.http()?;
        let mut url = start;
        for _ in 0..5 {
            let answer = http.send(
                "PROPFIND",
                &url,
                &[
                    ("Depth", "0"),
                    ("Content-Type", "application/xml; charset=utf-8"),
                ],
                Some(xml::propfind(&["d:current-user-principal"])),
                MAX_DOCUMENT,
            )?;
            match answer.status {
                301 | 302 | 303 | 307 | 308 => {
                    let Some(next) = answer.location.as_deref().and_then(|l| url.join(l).ok())
                    else {
                        return Ok(None);
                    };
                    if next.origin() != base.origin() {
                        // Never send the credentials to another host.
                        return Ok(None);
                    }
                    url = next;
                }
                401 => return Err(answer.error(&format!("PROPFIND {}", url.path()))),
                207 => {
                    let Ok(m) = xml::multistatus(&answer.body) else {
                        return Ok(None);
                    };
                    return Ok(m
                        .responses
                        .iter()
                        .find_map(|r| r.prop(DAV, "current-user-principal"))
                        .and_then(|p| p.href())
                        .and_then(|h| url.join(&h).ok()));
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

fn list(found: &[Found]) -> String {
    const SHOWN: usize = 10;
    if found.is_empty() {
        return "none".into();
    }
    let mut text = found
        .iter()
        .take(SHOWN)
        .map(|f| {
            let what = if f.calendar {
                "calendar"
            } else {
                "address book"
            };
            format!("{} `{}` ({what})", f.url.path(), f.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    if found.len() > SHOWN {
        text.push_str(&format!(" and {} more", found.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_paths_and_names() {
        let base = Url::parse("http://127.0.0.1:5232/").unwrap();
        assert_eq!(
            as_url(&base, "/alice/work").unwrap().as_str(),
            "http://127.0.0.1:5232/alice/work/"
        );
        assert_eq!(
            as_url(&base, "http://h:1/a/b/").unwrap().as_str(),
            "http://h:1/a/b/"
        );
        assert_eq!(as_url(&base, "Work"), None);
    }
}
