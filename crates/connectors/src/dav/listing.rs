//! Listing a DAV account: per collection an RFC 6578 `sync-collection` from the cursor's token,
//! the changed members fetched with `calendar-multiget` / `addressbook-multiget`, and the
//! domain's mass-delete guard on what is missing.
//!
//! When the server refuses the token (any answer but 207 to a non-empty token: Radicale 403,
//! Xandikos 412 or 500) or has no sync-collection, the collection is read in full
//! (`PROPFIND Depth: 1` for every member's ETag) and compared with the cursor's known items:
//! only what differs is fetched and reported, matched by href — never a delete and a
//! re-create. A refused token is recorded as a `cursor_reset` observation (its reason names the
//! collection and the status), and the listing still completes.
//!
//! Per collection the listing is all or nothing: a collection whose sync, PROPFIND or multiget
//! fails keeps its cursor state (token and items) unchanged, and the listing is partial (or
//! failed, when no collection could be read). Deletes withheld by the guard keep the
//! collection's old token, so the next listing sees the removals again.

use super::DavConnector;
use super::cursor::{Collection, Known, State};
use super::http::{DavError, MAX_DOCUMENT};
use super::xml::{self, CALDAV, CARDDAV, DAV};
use crate::connector::{Cursor, ItemFailure, Listing, ListingEnd, Observation};
use crate::hash::fnv1a64;
use crate::parse;
use ledgersync_domain::event::{
    CursorReset, DeletionsListed, ItemGone, ItemSeen, ListingCompleted, ListingPartial, RemoteItem,
    ServerError, Workload,
};
use ledgersync_domain::policy::mass_delete::{self, CollectionListing, Verdict};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{ErrorKind, RemoteId};
use reqwest::Url;
use std::collections::{BTreeMap, BTreeSet};

/// Statuses of a sync-collection REPORT that mean "not this way" (a refused token, no
/// sync-collection): the collection is then read in full.
const FALL_BACK_ON: [u16; 9] = [400, 403, 405, 409, 412, 415, 422, 500, 501];

/// The most parts of one truncated sync-collection answer followed in one listing.
const MAX_PARTS: usize = 1000;

/// What one collection's listing found.
struct Found {
    /// The collection's state after the listing, with the missing items removed.
    next: Collection,
    seen: Vec<Observation>,
    failures: Vec<ItemFailure>,
    /// Known items confirmed missing, and whether ledgersync deleted each itself.
    missing: Vec<(String, bool)>,
    /// Items present after the listing.
    present: usize,
    /// Why the token was not used (a refused token), for the `cursor_reset` observation.
    reset: Option<String>,
}

/// One member as a listing reports it.
#[derive(Clone, Debug, Default)]
struct Member {
    etag: Option<String>,
    length: Option<u64>,
    /// The member's calendar or address data, when the server sent it with the listing.
    data: Option<String>,
}

impl DavConnector {
    pub(crate) fn list(&mut self, cursor: &Cursor) -> Listing {
        let state = match State::decode(cursor) {
            Ok(state) => state,
            Err(message) => {
                return failed_listing(
                    cursor,
                    ServerError::of_kind(ErrorKind::CursorInvalid, message),
                );
            }
        };
        let resolved = match self.resolve() {
            Ok(r) => r,
            Err(e) => return failed_listing(cursor, e.context("discovery").to_server_error()),
        };
        let collections = resolved.collections();
        let mut next = State::default();
        // Collections of the cursor no longer configured stay as they were.
        for (href, c) in &state.collections {
            if !collections.iter().any(|(u, _)| u.path() == href) {
                next.collections.insert(href.clone(), c.clone());
            }
        }
        let mut resets = Vec::new();
        let mut seen = Vec::new();
        let mut failures = Vec::new();
        let mut partial: Vec<String> = Vec::new();
        let mut errors: Vec<DavError> = Vec::new();
        // Per collection: the old state and the missing items the guard confirmed.
        let mut confirmed: Vec<(String, Collection, Vec<String>)> = Vec::new();
        for (url, calendar) in &collections {
            let href = url.path().to_string();
            let old = state.collections.get(&href).cloned().unwrap_or_default();
            let mut found = match self.list_collection(url, *calendar, &old) {
                Ok(found) => found,
                Err(e) => {
                    errors.push(e);
                    next.collections.insert(href, old);
                    continue;
                }
            };
            seen.append(&mut found.seen);
            failures.append(&mut found.failures);
            if let Some(reason) = found.reset.take() {
                resets.push(Observation::CursorReset(CursorReset {
                    workload: Workload::Act,
                    reason,
                }));
            }
            if !found.missing.is_empty() {
                let known = old.known().count();
                let listing = CollectionListing {
                    known,
                    present: found.present,
                    missing: found.missing.len(),
                    complete: true,
                };
                let missing: Vec<String> = found.missing.iter().map(|(h, _)| h.clone()).collect();
                match mass_delete::missing_items(&listing) {
                    Verdict::Withhold(why) => {
                        partial.push(format!(
                            "{href}: {} deletes withheld: {why} (absence is not deletion, {})",
                            missing.len(),
                            mass_delete::RULE
                        ));
                        withhold(&mut found.next, &old, &missing);
                    }
                    Verdict::Confirm => confirmed.push((href.clone(), old, missing)),
                }
            }
            next.collections.insert(href, found.next);
        }
        if !collections.is_empty() && errors.len() == collections.len() {
            let first = &errors[0];
            let mut error = first.to_server_error();
            if errors.len() > 1 {
                error.message = errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            error.message = format!("no collection could be listed: {}", error.message);
            return failed_listing(cursor, error);
        }
        partial.extend(
            errors
                .iter()
                .map(|e| format!("a collection could not be listed ({e})")),
        );
        let mut observations = resets;
        observations.append(&mut seen);
        let end = if partial.is_empty() {
            let mut changes = observations
                .iter()
                .filter(|e| matches!(e, Observation::Seen(_)))
                .count();
            // The cycle's deletes, listed before their `item_gone`s: the domain's delete
            // breaker weighs them together (R25).
            let gone: Vec<RemoteId> = confirmed
                .iter()
                .flat_map(|(_, _, missing)| missing.iter().cloned().map(RemoteId::new))
                .collect();
            if !gone.is_empty() {
                observations.push(Observation::DeletionsListed(DeletionsListed {
                    workload: Workload::Act,
                    remotes: gone,
                }));
            }
            for (_, _, missing) in confirmed {
                for remote in missing {
                    changes += 1;
                    observations.push(Observation::Gone(ItemGone {
                        remote: RemoteId::new(remote),
                    }));
                }
            }
            ListingEnd::Completed(ListingCompleted {
                workload: Workload::Act,
                items: changes as u32,
            })
        } else {
            // Deletes of a partial listing are withheld too: the items stay known, and the
            // collection keeps its old token so that the next listing sees them again.
            for (href, old, missing) in confirmed {
                if let Some(c) = next.collections.get_mut(&href) {
                    withhold(c, &old, &missing);
                }
            }
            ListingEnd::Partial(ListingPartial {
                workload: Workload::Act,
                reason: partial.join("; "),
            })
        };
        Listing {
            observations,
            end,
            failures,
            cursor: next.encode(),
        }
    }

    /// Lists one collection from its cursor state.
    fn list_collection(
        &self,
        url: &Url,
        calendar: bool,
        old: &Collection,
    ) -> Result<Found, DavError> {
        let path = url.path().to_string();
        let first = if old.token.is_empty() {
            self.first_listing(url, calendar)?
        } else {
            None
        };
        let listed = match first {
            Some((members, token)) => Ok((members, BTreeSet::new(), token)),
            None => self.sync(url, &old.token, calendar)?,
        };
        let (mut members, removed, token, full, reset) = match listed {
            Ok((members, removed, token)) => (members, removed, token, old.token.is_empty(), None),
            Err(status) => {
                let reset = (!old.token.is_empty()).then(|| {
                    format!(
                        "the server refused the sync token of {path} (HTTP {status}): every \
                         member's ETag was read and compared with the {} items known; only \
                         what differs is reported",
                        old.known().count()
                    )
                });
                let (members, token) = self.etags(url)?;
                (members, BTreeSet::new(), token, true, reset)
            }
        };
        let mut next = Collection {
            token,
            items: old.items.clone(),
        };
        let mut missing = Vec::new();
        if full {
            for (href, k) in &old.items {
                if !members.contains_key(href) {
                    if k.etag.is_some() {
                        missing.push((href.clone(), k.deleted));
                    }
                    next.items.remove(href);
                }
            }
        } else {
            for href in &removed {
                if let Some(k) = old.items.get(href) {
                    if k.etag.is_some() {
                        missing.push((href.clone(), k.deleted));
                    }
                    next.items.remove(href);
                }
            }
        }
        // What to fetch: members whose ETag is not the known one, and items still failing.
        let mut fetch: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        let max = self.config.max_item_bytes;
        let entity = (!calendar).then_some(Entity::Contact);
        for (href, m) in &members {
            let known = old.items.get(href);
            let changed = known.is_none_or(|k| k.failing || k.etag.is_none() || k.etag != m.etag)
                || m.etag.is_none();
            if !changed {
                continue;
            }
            if let Some(len) = m.length.filter(|len| *len > max) {
                failures.push(too_large(href, entity, Some(len), max));
                keep_failing(&mut next, href, known, true);
                continue;
            }
            fetch.push(href.clone());
        }
        if !full {
            for (href, k) in &old.items {
                if k.failing && !members.contains_key(href) && !removed.contains(href) {
                    if k.too_large {
                        // Unchanged and still over the limit: reported again, never fetched.
                        failures.push(too_large(href, entity, None, max));
                    } else {
                        fetch.push(href.clone());
                    }
                }
            }
        }
        // Members whose data came with the listing are taken as they are; the rest are
        // fetched with multigets.
        let mut inline = Vec::new();
        fetch.retain(
            |href| match members.get_mut(href).and_then(|m| m.data.take()) {
                Some(body) => {
                    let etag = members[href].etag.clone();
                    inline.push((href.clone(), Some((etag, body))));
                    false
                }
                None => true,
            },
        );
        let mut fetched = vec![inline];
        let batch = self.config.multiget_batch.max(1);
        for hrefs in fetch.chunks(batch) {
            fetched.push(self.multiget(url, calendar, hrefs)?);
        }
        let mut seen = Vec::new();
        for got in fetched {
            for (href, got) in got {
                let known = old.items.get(&href);
                let Some((etag, body)) = got else {
                    // Gone between the listing and the fetch: the next listing says so.
                    continue;
                };
                let etag = etag.or_else(|| members.get(&href).and_then(|m| m.etag.clone()));
                let Some(etag) = etag else {
                    failures.push(ItemFailure {
                        item: href.clone(),
                        entity,
                        kind: ErrorKind::Malformed,
                        error: format!("{href}: the server gave no ETag for the item"),
                    });
                    keep_failing(&mut next, &href, known, false);
                    continue;
                };
                if body.len() as u64 > max {
                    failures.push(too_large(&href, entity, Some(body.len() as u64), max));
                    keep_failing(&mut next, &href, known, true);
                    continue;
                }
                match self.parse_item(calendar, &body) {
                    Err(error) => {
                        failures.push(ItemFailure {
                            item: href.clone(),
                            entity,
                            kind: ErrorKind::Malformed,
                            error: format!("{error}; fix or remove {href} on the server"),
                        });
                        keep_failing(&mut next, &href, known, false);
                    }
                    Ok(parsed) => {
                        if known.and_then(|k| k.etag.as_deref()) != Some(etag.as_str()) {
                            seen.push(Observation::Seen(ItemSeen {
                                item: RemoteItem {
                                    remote: RemoteId::new(href.clone()),
                                    etag: etag.clone(),
                                    content_hash: fnv1a64(body.as_bytes()),
                                    tracked: parsed.tracked,
                                    copy_of: None,
                                    fields: parsed.fields,
                                },
                            }));
                        }
                        next.items.insert(
                            href,
                            Known {
                                etag: Some(etag),
                                ..Known::default()
                            },
                        );
                    }
                }
            }
        }
        let present = next.items.values().filter(|k| k.etag.is_some()).count();
        Ok(Found {
            next,
            seen,
            failures,
            missing,
            present,
            reset,
        })
    }

    /// Parses an item; a panic of the parser is an item failure, never a crash.
    fn parse_item(&self, calendar: bool, body: &str) -> Result<parse::Parsed, String> {
        let category = self.config.tracking_category.as_str();
        let zone = self.config.timezone;
        std::panic::catch_unwind(|| {
            if calendar {
                parse::calendar(body, category, zone)
            } else {
                parse::card(body, category)
            }
        })
        .unwrap_or_else(|_| Err("the parser failed on this item".to_string()))
    }

    /// A sync-collection REPORT: `Ok(Ok((members changed, members removed, new token)))`, or
    /// `Ok(Err(status))` when the server refuses it (the caller reads the collection in full).
    #[allow(clippy::type_complexity)]
    fn sync(
        &self,
        url: &Url,
        token: &str,
        calendar: bool,
    ) -> Result<Result<(BTreeMap<String, Member>, BTreeSet<String>, String), u16>, DavError> {
        match self.sync_asking(url, token, Some(calendar))? {
            // The members' data made the answer too large: the ETags alone, then multigets.
            Err(TOO_LARGE) => self.sync_asking(url, token, None),
            answer => Ok(answer),
        }
    }

    /// [`DavConnector::sync`], asking for the members' data (`Some(calendar)`) or not. An
    /// answer over [`MAX_DOCUMENT`] is `Ok(Err(413))` when the data was asked for.
    #[allow(clippy::type_complexity)]
    fn sync_asking(
        &self,
        url: &Url,
        token: &str,
        data: Option<bool>,
    ) -> Result<Result<(BTreeMap<String, Member>, BTreeSet<String>, String), u16>, DavError> {
        let what = format!("REPORT sync-collection {}", url.path());
        let mut members = BTreeMap::new();
        let mut removed = BTreeSet::new();
        let mut token = token.to_string();
        // A server may answer in parts (RFC 6578 §3.6: a 507 for the collection itself, and
        // the token to go on from); the parts are merged, later ones winning.
        for _ in 0..MAX_PARTS {
            let answer = self.http()?.send(
                "REPORT",
                url,
                &[
                    ("Depth", "1"),
                    ("Content-Type", "application/xml; charset=utf-8"),
                ],
                Some(xml::sync_collection(&token, data)),
                MAX_DOCUMENT,
            )?;
            if answer.truncated && data.is_some() {
                return Ok(Err(TOO_LARGE));
            }
            if answer.status != 207 {
                if FALL_BACK_ON.contains(&answer.status) {
                    return Ok(Err(answer.status));
                }
                return Err(answer.error(&what));
            }
            let m = xml::multistatus(&answer.body)
                .map_err(|e| DavError::new(ErrorKind::Malformed, format!("{what}: {e}")))?;
            let mut truncated = false;
            for r in &m.responses {
                let Some(href) = member_href(url, &r.href) else {
                    truncated |= r.status == Some(507);
                    continue;
                };
                if r.status == Some(404) {
                    members.remove(&href);
                    removed.insert(href);
                } else {
                    removed.remove(&href);
                    members.insert(href, member(r));
                }
            }
            let next = m.sync_token.and_then(|t| clean(&t)).unwrap_or_default();
            if !truncated || next.is_empty() || next == token {
                return Ok(Ok((members, removed, next)));
            }
            token = next;
        }
        Err(DavError::new(
            ErrorKind::Unavailable,
            format!("{what}: still truncated after {MAX_PARTS} parts; the next listing goes on"),
        ))
    }

    /// Every member's ETag (`PROPFIND Depth: 1`) and the collection's sync token, if any.
    fn etags(&self, url: &Url) -> Result<(BTreeMap<String, Member>, String), DavError> {
        let m = self.propfind(
            url,
            "1",
            &["d:getetag", "d:getcontentlength", "d:sync-token"],
        )?;
        let mut members = BTreeMap::new();
        let mut token = String::new();
        for r in &m.responses {
            match member_href(url, &r.href) {
                Some(href) => {
                    members.insert(href, member(r));
                }
                None => {
                    if url.join(&r.href).is_ok_and(|u| u.path() == url.path()) {
                        token = r.text(DAV, "sync-token").unwrap_or_default();
                    }
                }
            }
        }
        Ok((members, clean(&token).unwrap_or_default()))
    }

    /// The first listing of a collection: its sync token (PROPFIND, depth 0), then every
    /// member with its ETag and data in one query — on Radicale a third faster than a
    /// sync-collection from no token, which computes and stores the state the token names. A
    /// change between the two is listed again from the token, never missed. `None` when the
    /// collection has no sync token (listed by ETags, as before), or the server does not
    /// answer the query in full (the sync-collection then lists it).
    #[allow(clippy::type_complexity)]
    fn first_listing(
        &self,
        url: &Url,
        calendar: bool,
    ) -> Result<Option<(BTreeMap<String, Member>, String)>, DavError> {
        let m = self.propfind(url, "0", &["d:sync-token"])?;
        let token = m
            .responses
            .iter()
            .filter(|r| url.join(&r.href).is_ok_and(|u| u.path() == url.path()))
            .find_map(|r| r.text(DAV, "sync-token"))
            .and_then(|t| clean(&t));
        let Some(token) = token else {
            return Ok(None);
        };
        let answer = self.http()?.send(
            "REPORT",
            url,
            &[
                ("Depth", "1"),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(xml::query_all(calendar)),
            MAX_DOCUMENT,
        )?;
        if answer.status != 207 || answer.truncated {
            return Ok(None);
        }
        let Ok(m) = xml::multistatus(&answer.body) else {
            return Ok(None);
        };
        let mut members = BTreeMap::new();
        for r in &m.responses {
            if let Some(href) = member_href(url, &r.href)
                && r.status.is_none_or(|s| s < 300)
            {
                members.insert(href, member(r));
            }
        }
        Ok(Some((members, token)))
    }

    /// Fetches `hrefs` with a multiget: per href, its ETag and body, or `None` when the server
    /// no longer has it.
    #[allow(clippy::type_complexity)]
    fn multiget(
        &self,
        url: &Url,
        calendar: bool,
        hrefs: &[String],
    ) -> Result<Vec<(String, Option<(Option<String>, String)>)>, DavError> {
        let (what, ns, data) = if calendar {
            ("calendar-multiget", CALDAV, "calendar-data")
        } else {
            ("addressbook-multiget", CARDDAV, "address-data")
        };
        let what = format!("REPORT {what} {}", url.path());
        let answer = self.http()?.send(
            "REPORT",
            url,
            &[
                ("Depth", "1"),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(xml::multiget(calendar, hrefs)),
            MAX_DOCUMENT,
        )?;
        if answer.status != 207 {
            return Err(answer.error(&what));
        }
        if answer.truncated {
            return Err(DavError::new(
                ErrorKind::TooLarge,
                format!(
                    "{what}: the answer is larger than {MAX_DOCUMENT} bytes; lower multiget_batch"
                ),
            ));
        }
        let m = xml::multistatus(&answer.body)
            .map_err(|e| DavError::new(ErrorKind::Malformed, format!("{what}: {e}")))?;
        let mut out = Vec::new();
        for r in &m.responses {
            let Some(href) = member_href(url, &r.href) else {
                continue;
            };
            let body = r
                .text(ns, data)
                .filter(|_| r.status.is_none_or(|s| s < 300));
            let etag = r.text(DAV, "getetag").and_then(|e| clean(&e));
            out.push((href, body.map(|b| (etag, b))));
        }
        Ok(out)
    }
}

/// The path of a member of `collection` named by `href`; `None` for the collection itself
/// and for sub-collections.
fn member_href(collection: &Url, href: &str) -> Option<String> {
    let url = collection.join(href).ok()?;
    let path = url.path();
    (path != collection.path() && !path.ends_with('/') && path.starts_with(collection.path()))
        .then(|| path.to_string())
}

/// A value the cursor can hold: not empty, no control characters (tabs and line breaks
/// separate the cursor's fields and lines).
fn clean(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && !value.chars().any(char::is_control)).then(|| value.to_string())
}

fn member(r: &xml::Response) -> Member {
    Member {
        etag: r.text(DAV, "getetag").and_then(|e| clean(&e)),
        length: r
            .text(DAV, "getcontentlength")
            .and_then(|l| l.trim().parse().ok()),
        data: r
            .text(CALDAV, "calendar-data")
            .or_else(|| r.text(CARDDAV, "address-data"))
            .filter(|d| !d.trim().is_empty()),
    }
}

/// The answer to a sync-collection that asked for the members' data was too large.
const TOO_LARGE: u16 = 413;

/// An item that failed: known before, it stays known with its old version (never gone), and is
/// fetched again by every listing until it reads.
fn keep_failing(next: &mut Collection, href: &str, known: Option<&Known>, too_large: bool) {
    next.items.insert(
        href.to_string(),
        Known {
            etag: known.and_then(|k| k.etag.clone()),
            failing: true,
            too_large,
            deleted: false,
        },
    );
}

/// Withholds the deletes of `missing`: they stay known as they were, and the collection keeps
/// its old token (the next listing sees the removals again).
fn withhold(next: &mut Collection, old: &Collection, missing: &[String]) {
    for href in missing {
        if let Some(k) = old.items.get(href) {
            next.items.insert(href.clone(), k.clone());
        }
    }
    next.token = old.token.clone();
}

fn too_large(href: &str, entity: Option<Entity>, len: Option<u64>, max: u64) -> ItemFailure {
    let size = match len {
        Some(len) => format!("the item is {len} bytes,"),
        None => "the item is unchanged and still".to_string(),
    };
    ItemFailure {
        item: href.to_string(),
        entity,
        kind: ErrorKind::TooLarge,
        error: format!(
            "{size} more than the limit of {max} (max_item_bytes in the [limits] table of the \
             configuration); {href} was not read: shrink or remove it, or raise the limit"
        ),
    }
}

fn failed_listing(cursor: &Cursor, error: ServerError) -> Listing {
    Listing::failed(Workload::Act, cursor, error)
}
