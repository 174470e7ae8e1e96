//! WebDAV XML: the request bodies ledgersync sends and a namespace-aware reading of the
//! `multistatus` answers (quick-xml's `NsReader`: Radicale binds `DAV:` as the default
//! namespace, other servers use prefixes; only the namespace URI counts).

use quick_xml::NsReader;
use quick_xml::events::Event as Xml;
use quick_xml::name::ResolveResult;

pub(crate) const DAV: &str = "DAV:";
pub(crate) const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
pub(crate) const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";

/// One element: namespace, local name, attributes, text and children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
    /// The first child `ns:name`.
    pub(crate) fn child(&self, ns: &str, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.is(ns, name))
    }
    pub(crate) fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The text of the first `DAV:href` child, trimmed.
    pub(crate) fn href(&self) -> Option<String> {
        self.child(DAV, "href").map(|h| h.text.trim().to_string())
    }
}

/// Parses an XML document into its root element. `Err`: why it is not well-formed XML.
pub(crate) fn parse(text: &str) -> Result<Node, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML ({e})"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => n.0.to_string(),
            _ => String::new(),
        };
        match event {
            Xml::Start(e) => stack.push(element(ns, &e)),
            Xml::Empty(e) => {
                stack.push(element(ns, &e));
                close(&mut stack, &mut root);
            }
            Xml::End(_) => close(&mut stack, &mut root),
            Xml::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Xml::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Xml::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .map(str::to_string)
                            .ok_or_else(|| format!("unknown XML entity &{name};"))?
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("not well-formed XML (the document ends inside an element)".into());
    }
    root.ok_or_else(|| "not XML (no root element)".to_string())
}

fn element(ns: String, e: &quick_xml::events::BytesStart<'_>) -> Node {
    let mut node = Node {
        ns,
        name: e.local_name().as_ref().to_string(),
        ..Node::default()
    };
    for a in e.attributes().flatten() {
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_else(|_| a.value.to_string());
        node.attrs
            .push((a.key.local_name().as_ref().to_string(), value));
    }
    node
}

fn close(stack: &mut Vec<Node>, root: &mut Option<Node>) {
    if let Some(node) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
    }
}

/// One `DAV:response` of a multistatus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Response {
    /// The href as the server wrote it (percent-encoded path or URL).
    pub(crate) href: String,
    /// The response-level status (a sync-collection's removed member: 404), when given.
    pub(crate) status: Option<u16>,
    /// The properties of the propstats answered 2xx.
    pub(crate) props: Vec<Node>,
}

impl Response {
    pub(crate) fn prop(&self, ns: &str, name: &str) -> Option<&Node> {
        self.props.iter().find(|p| p.is(ns, name))
    }
    pub(crate) fn text(&self, ns: &str, name: &str) -> Option<String> {
        self.prop(ns, name).map(|p| p.text.clone())
    }
}

/// A multistatus document: its responses and the `DAV:sync-token` (sync-collection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Multistatus {
    pub(crate) responses: Vec<Response>,
    pub(crate) sync_token: Option<String>,
}

/// The status code of a `HTTP/1.1 404 Not Found` line.
fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a `DAV:multistatus` answer.
pub(crate) fn multistatus(text: &str) -> Result<Multistatus, String> {
    let root = parse(text)?;
    if !root.is(DAV, "multistatus") {
        return Err(format!(
            "the answer is <{}> in namespace `{}`, not a DAV:multistatus",
            root.name, root.ns
        ));
    }
    let mut out = Multistatus {
        sync_token: root
            .child(DAV, "sync-token")
            .map(|t| t.text.trim().to_string()),
        ..Multistatus::default()
    };
    for r in root.children_named(DAV, "response") {
        let Some(href) = r.href() else { continue };
        let mut response = Response {
            href,
            status: r
                .child(DAV, "status")
                .and_then(|s| status_code(s.text.trim())),
            props: Vec::new(),
        };
        for ps in r.children_named(DAV, "propstat") {
            let ok = ps
                .child(DAV, "status")
                .and_then(|s| status_code(s.text.trim()))
                .is_none_or(|c| (200..300).contains(&c));
            if let (true, Some(prop)) = (ok, ps.child(DAV, "prop")) {
                response.props.extend(prop.children.iter().cloned());
            }
        }
        out.responses.push(response);
    }
    Ok(out)
}

/// Escapes text for an XML element.
pub(crate) fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

const HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// A PROPFIND asking for `props` (already-qualified names with the `d:`, `c:`, `cr:` prefixes).
pub(crate) fn propfind(props: &[&str]) -> String {
    let mut body = format!(
        r#"{HEAD}<d:propfind xmlns:d="{DAV}" xmlns:c="{CALDAV}" xmlns:cr="{CARDDAV}"><d:prop>"#
    );
    for p in props {
        body.push_str(&format!("<{p}/>"));
    }
    body.push_str("</d:prop></d:propfind>");
    body
}

/// An RFC 6578 `sync-collection` REPORT from `token` (empty: everything), level 1, asking for
/// the ETag and the length of each member and, with `data`, its calendar or address data
/// (RFC 6578 §3.2 lets the client ask for any property: a server that returns the data saves
/// a multiget per batch of changed members).
pub(crate) fn sync_collection(token: &str, data: Option<bool>) -> String {
    let data = match data {
        Some(true) => format!(r#"<c:calendar-data xmlns:c="{CALDAV}"/>"#),
        Some(false) => format!(r#"<c:address-data xmlns:c="{CARDDAV}"/>"#),
        None => String::new(),
    };
    format!(
        r#"{HEAD}<d:sync-collection xmlns:d="{DAV}"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/><d:getcontentlength/>{data}</d:prop></d:sync-collection>"#,
        escape(token)
    )
}

/// A `calendar-query` (RFC 4791 §7.8) or `addressbook-query` (RFC 6352 §8.6) matching every
/// member, asking for its ETag and its data: a whole collection in one request.
pub(crate) fn query_all(calendar: bool) -> String {
    if calendar {
        format!(
            r#"{HEAD}<c:calendar-query xmlns:d="{DAV}" xmlns:c="{CALDAV}"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>"#
        )
    } else {
        format!(
            r#"{HEAD}<c:addressbook-query xmlns:d="{DAV}" xmlns:c="{CARDDAV}"><d:prop><d:getetag/><c:address-data/></d:prop></c:addressbook-query>"#
        )
    }
}

/// A `calendar-multiget` (RFC 4791) or `addressbook-multiget` (RFC 6352) of `hrefs`.
pub(crate) fn multiget(calendar: bool, hrefs: &[String]) -> String {
    let (root, data, ns) = if calendar {
        ("c:calendar-multiget", "c:calendar-data", CALDAV)
    } else {
        ("c:addressbook-multiget", "c:address-data", CARDDAV)
    };
    let mut body = format!(
        r#"{HEAD}<{root} xmlns:d="{DAV}" xmlns:c="{ns}"><d:prop><d:getetag/><{data}/></d:prop>"#
    );
    for h in hrefs {
        body.push_str(&format!("<d:href>{}</d:href>", escape(h)));
    }
    body.push_str(&format!("</{root}>"));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_and_prefixes_read_the_same() {
        let radicale = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><response><href>/alice/t1/</href><propstat><prop><resourcetype><C:calendar /><collection /></resourcetype><displayname>Work &amp; play</displayname><C:supported-calendar-component-set><C:comp name="VTODO" /><C:comp name="VEVENT" /></C:supported-calendar-component-set></prop><status>HTTP/1.1 200 OK</status></propstat><propstat><prop><getctag/></prop><status>HTTP/1.1 404 Not Found</status></propstat></response><sync-token>tok-1</sync-token></multistatus>"#;
        let prefixed = r#"<ns0:multistatus xmlns:ns0="DAV:" xmlns:ns1="urn:ietf:params:xml:ns:caldav"><ns0:response><ns0:href>/alice/t1/</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype><ns1:calendar/><ns0:collection/></ns0:resourcetype><ns0:displayname>Work &#38; play</ns0:displayname><ns1:supported-calendar-component-set><ns1:comp name="VTODO"/><ns1:comp name="VEVENT"/></ns1:supported-calendar-component-set></ns0:prop><ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response><ns0:sync-token>tok-1</ns0:sync-token></ns0:multistatus>"#;
        for doc in [radicale, prefixed] {
            let m = multistatus(doc).expect("parses");
            assert_eq!(m.sync_token.as_deref(), Some("tok-1"));
            let r = &m.responses[0];
            assert_eq!(r.href, "/alice/t1/");
            assert_eq!(r.text(DAV, "displayname").as_deref(), Some("Work & play"));
            let rt = r.prop(DAV, "resourcetype").unwrap();
            assert!(rt.child(CALDAV, "calendar").is_some());
            assert!(rt.child(DAV, "collection").is_some());
            let comps: Vec<&str> = r
                .prop(CALDAV, "supported-calendar-component-set")
                .unwrap()
                .children_named(CALDAV, "comp")
                .filter_map(|c| c.attr("name"))
                .collect();
            assert_eq!(comps, ["VTODO", "VEVENT"]);
            assert!(
                r.prop(DAV, "getctag").is_none(),
                "a 404 propstat is no value"
            );
        }
    }

    #[test]
    fn removed_members_and_bad_xml() {
        let m = multistatus(r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/a/x.ics</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response></D:multistatus>"#).unwrap();
        assert_eq!(m.responses[0].status, Some(404));
        assert!(multistatus("<multistatus xmlns=\"DAV:\"><response>").is_err());
        assert!(multistatus("<html>no</html>").is_err());
        assert!(multistatus("not xml at all").is_err());
    }
}
