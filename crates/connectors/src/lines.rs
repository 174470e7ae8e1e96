//! Content lines of iCalendar (RFC 5545 §3.1) and vCard (RFC 6350 §3.2) text: unfolding,
//! folding, escaping, and the few edits the connector makes to an existing item.
//!
//! Parsing into fields is calcard's job (`parse.rs`); this module only moves whole lines, so an
//! update keeps every property it does not own byte for byte.

/// Splits text into unfolded content lines (CRLF or LF; a line starting with a space or a tab
/// continues the previous one). Empty lines are dropped.
pub fn unfold(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.push_str(rest);
            continue;
        }
        if !raw.is_empty() {
            out.push(raw.to_string());
        }
    }
    out
}

/// Joins content lines into text, folding lines longer than 75 octets and ending every line
/// with CRLF.
pub fn fold(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        let mut width = 0;
        for ch in line.chars() {
            let len = ch.len_utf8();
            if width + len > 75 {
                out.push_str("\r\n ");
                width = 1;
            }
            out.push(ch);
            width += len;
        }
        out.push_str("\r\n");
    }
    out
}

/// The property name of a content line, upper-cased, without group or parameters.
pub fn name_of(line: &str) -> String {
    let end = line.find([';', ':']).unwrap_or(line.len());
    let name = &line[..end];
    let name = name.rsplit('.').next().unwrap_or(name);
    name.to_ascii_uppercase()
}

/// The value of a content line (after the first `:` outside a quoted parameter).
pub fn value_of(line: &str) -> &str {
    let mut quoted = false;
    for (i, ch) in line.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ':' if !quoted => return &line[i + 1..],
            _ => {}
        }
    }
    ""
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Quotes a parameter value when it holds characters that need it (RFC 5545 §3.2).
pub fn param(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    if clean.contains([';', ':', ',']) {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

/// The range `[begin, end]` (inclusive line indexes) of the first component named `names`
/// (e.g. `VEVENT`) at any depth.
pub fn component(lines: &[String], names: &[&str]) -> Option<(usize, usize, String)> {
    let begin = lines.iter().position(|l| {
        name_of(l) == "BEGIN"
            && names
                .iter()
                .any(|n| value_of(l).trim().eq_ignore_ascii_case(n))
    })?;
    let kind = value_of(&lines[begin]).trim().to_ascii_uppercase();
    let mut depth = 0usize;
    for (i, line) in lines.iter().enumerate().skip(begin) {
        match name_of(line).as_str() {
            "BEGIN" => depth += 1,
            "END" => {
                depth -= 1;
                if depth == 0 {
                    return Some((begin, i, kind));
                }
            }
            _ => {}
        }
    }
    None
}

/// The first direct property `name` of the component spanning `[begin, end]` (nested
/// components such as VALARM are skipped).
pub fn property<'a>(lines: &'a [String], begin: usize, end: usize, name: &str) -> Option<&'a str> {
    direct(lines, begin, end)
        .find(|i| name_of(&lines[*i]) == name)
        .map(|i| lines[i].as_str())
}

/// Indexes of the direct property lines of the component spanning `[begin, end]`.
pub fn direct(lines: &[String], begin: usize, end: usize) -> impl Iterator<Item = usize> + '_ {
    let mut depth = 0usize;
    (begin..=end).filter(move |i| match name_of(&lines[*i]).as_str() {
        "BEGIN" => {
            depth += 1;
            false
        }
        "END" => {
            depth = depth.saturating_sub(1);
            false
        }
        _ => depth == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_then_fold_round_trips_long_lines() {
        let long = format!("SUMMARY:{}", "é".repeat(60));
        let text = fold(std::slice::from_ref(&long));
        assert!(text.lines().all(|l| l.len() <= 76));
        assert_eq!(unfold(&text), vec![long]);
    }

    #[test]
    fn names_and_values() {
        assert_eq!(name_of("item1.EMAIL;TYPE=work:a@b"), "EMAIL");
        assert_eq!(value_of("ORGANIZER;CN=\"A: B\":mailto:a@b"), "mailto:a@b");
        assert_eq!(escape("a;b,c\nd"), "a\\;b\\,c\\nd");
    }

    #[test]
    fn component_skips_nested_alarm_properties() {
        let lines = unfold(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nBEGIN:VALARM\nSUMMARY:alarm\nEND:VALARM\n\
             SUMMARY:event\nEND:VEVENT\nEND:VCALENDAR\n",
        );
        let (b, e, kind) = component(&lines, &["VEVENT", "VTODO"]).expect("found");
        assert_eq!((b, e, kind.as_str()), (1, 6, "VEVENT"));
        assert_eq!(property(&lines, b, e, "SUMMARY"), Some("SUMMARY:event"));
    }
}
