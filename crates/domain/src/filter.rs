//! Sync filters: which CRM rows go to a user's mailbox (R17–R20).
//!
//! A filter is a small boolean expression over record fields, written as text:
//!
//! ```text
//! organizer = me or required_attendee = me
//! owner = me and state = active
//! start >= now - 30d and not state = canceled
//! ```
//!
//! Grammar (keywords are case-insensitive):
//!
//! ```text
//! expr  := and ('or' and)*
//! and   := unary ('and' unary)*
//! unary := 'not' unary | '(' expr ')' | field op value
//! op    := '=' | '!=' | '<' | '<=' | '>' | '>=' | 'contains'
//! value := 'me' | NAME | "text" | 'now' (('+' | '-') NUMBER ('m' | 'h' | 'd' | 'w'))?
//! ```
//!
//! The full reference, with the fields of each table, is `docs/filters.md`. Several filters
//! for one table are unioned (a row matches if any enabled filter matches), and the union only
//! returns rows the mailbox owner can read (R20): see [`FilterSet`].

use crate::ids::{FilterId, UserId};
use crate::records::{ContactState, Entity, Party, Record, RecordBody};
use crate::time::{Duration, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A saved sync filter of one user for one table, as stored in events (the text is the truth;
/// the parsed form is rebuilt from it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFilter {
    /// Filter id.
    pub id: FilterId,
    /// Display name.
    pub name: String,
    /// The table it selects from.
    pub entity: Entity,
    /// Disabled filters select nothing.
    pub enabled: bool,
    /// The expression text.
    pub expr: String,
}

/// A filter text that does not parse or does not fit its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync filter `{text}` ({entity}): {message} at column {column}")]
pub struct FilterError {
    /// The filter text.
    pub text: String,
    /// The table.
    pub entity: Entity,
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong and what is expected.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Owner,
    Organizer,
    RequiredAttendee,
    OptionalAttendee,
    Attendee,
    State,
    Start,
    End,
    Due,
    Subject,
    Service,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "owner" => Field::Owner,
            "organizer" => Field::Organizer,
            "required_attendee" => Field::RequiredAttendee,
            "optional_attendee" => Field::OptionalAttendee,
            "attendee" => Field::Attendee,
            "state" => Field::State,
            "start" => Field::Start,
            "end" => Field::End,
            "due" => Field::Due,
            "subject" => Field::Subject,
            "service" => Field::Service,
            _ => return None,
        })
    }

    fn applies_to(self, entity: Entity) -> bool {
        use Field::*;
        match entity {
            Entity::Appointment => !matches!(self, Due),
            Entity::Contact => matches!(self, Owner | State),
            Entity::Task => matches!(self, Owner | State | Start | Due | Subject),
            Entity::Email => matches!(self, Owner | Subject),
        }
    }

    fn kind(self) -> FieldKind {
        use Field::*;
        match self {
            Owner | Organizer | RequiredAttendee | OptionalAttendee | Attendee => FieldKind::User,
            State => FieldKind::State,
            Start | End | Due => FieldKind::Date,
            Subject => FieldKind::Text,
            Service => FieldKind::Bool,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldKind {
    User,
    State,
    Date,
    Text,
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Me,
    User(UserId),
    State(String),
    Now(Duration),
    Text(String),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Field, Op, Value),
}

/// A parsed, validated filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFilter {
    expr: Expr,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(i64),
    Op(&'static str),
    LParen,
    RParen,
    Plus,
    Minus,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((Tok::LParen, col));
            i += 1;
        } else if c == ')' {
            out.push((Tok::RParen, col));
            i += 1;
        } else if c == '+' {
            out.push((Tok::Plus, col));
            i += 1;
        } else if c == '-' {
            out.push((Tok::Minus, col));
            i += 1;
        } else if c == '"' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j] != '"' {
                j += 1;
            }
            if j == chars.len() {
                return Err((col, "unterminated string: add the closing \"".into()));
            }
            out.push((Tok::Str(chars[start..j].iter().collect()), col));
            i = j + 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (op, len) = match two.as_str() {
                "!=" => ("!=", 2),
                "<=" => ("<=", 2),
                ">=" => (">=", 2),
                _ => match c {
                    '=' => ("=", 1),
                    '<' => ("<", 1),
                    '>' => (">", 1),
                    _ => return Err((col, "`!` must be followed by `=`".into())),
                },
            };
            out.push((Tok::Op(op), col));
            i += len;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            let n = n
                .parse()
                .map_err(|_| (col, format!("number `{n}` is too large")))?;
            out.push((Tok::Num(n), col));
            // a unit letter directly after a number is lexed as its own word
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '@' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '@'))
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), col));
        } else {
            return Err((col, format!("unexpected character `{c}`")));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    entity: Entity,
    text: &'a str,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> FilterError {
        let column = self
            .toks
            .get(self.pos)
            .map(|t| t.1)
            .unwrap_or(self.text.chars().count() + 1);
        FilterError {
            text: self.text.to_string(),
            entity: self.entity,
            column,
            message: message.into(),
        }
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Word(x), _)) if x.eq_ignore_ascii_case(w))
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.peek_word("and") {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if matches!(self.toks.get(self.pos), Some((Tok::LParen, _))) {
            self.pos += 1;
            let e = self.expr()?;
            if !matches!(self.toks.get(self.pos), Some((Tok::RParen, _))) {
                return Err(self.err("expected `)`"));
            }
            self.pos += 1;
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let name = match self.toks.get(self.pos) {
            Some((Tok::Word(w), _)) => w.to_ascii_lowercase(),
            _ => return Err(self.err("expected a field name such as owner, organizer or state")),
        };
        let field = Field::parse(&name).ok_or_else(|| {
            self.err(format!(
                "unknown field `{name}`; fields are owner, organizer, required_attendee, \
                 optional_attendee, attendee, state, start, end, due, subject, service"
            ))
        })?;
        if !field.applies_to(self.entity) {
            return Err(self.err(format!(
                "field `{name}` does not exist on {} records",
                self.entity
            )));
        }
        self.pos += 1;
        let op = match self.toks.get(self.pos) {
            Some((Tok::Op(o), _)) => match *o {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => unreachable!("lexer only yields known operators"),
            },
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("contains") => Op::Contains,
            _ => return Err(self.err("expected an operator: = != < <= > >= contains")),
        };
        self.pos += 1;
        let kind = field.kind();
        let allowed = match kind {
            FieldKind::User | FieldKind::State | FieldKind::Bool => {
                matches!(op, Op::Eq | Op::Ne)
            }
            FieldKind::Date => !matches!(op, Op::Contains),
            FieldKind::Text => matches!(op, Op::Eq | Op::Ne | Op::Contains),
        };
        if !allowed {
            self.pos -= 1;
            return Err(self.err(format!("operator not allowed on field `{name}`")));
        }
        let value = self.value(kind)?;
        Ok(Expr::Cmp(field, op, value))
    }

    fn value(&mut self, kind: FieldKind) -> Result<Value, FilterError> {
        let tok = self.toks.get(self.pos).cloned();
        let v = match (kind, tok) {
            (FieldKind::User, Some((Tok::Word(w), _))) if w.eq_ignore_ascii_case("me") => Value::Me,
            (FieldKind::User, Some((Tok::Str(s), _))) => Value::User(UserId(s)),
            (FieldKind::User, _) => {
                return Err(self.err("expected `me` or a quoted user id"));
            }
            (FieldKind::State, Some((Tok::Word(w), _))) => {
                let w = w.to_ascii_lowercase();
                let known: &[&str] = match self.entity {
                    Entity::Contact => &["active", "inactive"],
                    _ => &["open", "scheduled", "completed", "canceled"],
                };
                if !known.contains(&w.as_str()) {
                    return Err(self.err(format!(
                        "unknown state `{w}`; {} states are {}",
                        self.entity,
                        known.join(", ")
                    )));
                }
                Value::State(w)
            }
            (FieldKind::State, _) => return Err(self.err("expected a state name")),
            (FieldKind::Bool, Some((Tok::Word(w), _))) if w == "true" || w == "false" => {
                Value::Bool(w == "true")
            }
            (FieldKind::Bool, _) => return Err(self.err("expected true or false")),
            (FieldKind::Text, Some((Tok::Str(s), _))) => Value::Text(s),
            (FieldKind::Text, _) => return Err(self.err("expected a quoted text")),
            (FieldKind::Date, Some((Tok::Word(w), _))) if w.eq_ignore_ascii_case("now") => {
                self.pos += 1;
                let sign = match self.toks.get(self.pos) {
                    Some((Tok::Plus, _)) => 1,
                    Some((Tok::Minus, _)) => -1,
                    _ => return Ok(Value::Now(Duration(0))),
                };
                self.pos += 1;
                let n = match self.toks.get(self.pos) {
                    Some((Tok::Num(n), _)) => *n,
                    _ => return Err(self.err("expected a number after now+/now-, e.g. now-30d")),
                };
                self.pos += 1;
                let unit = match self.toks.get(self.pos) {
                    Some((Tok::Word(u), _)) => u.to_ascii_lowercase(),
                    _ => return Err(self.err("expected a unit: m, h, d or w")),
                };
                let unit_ms: i64 = match unit.as_str() {
                    "m" => Duration::minutes(1).0,
                    "h" => Duration::hours(1).0,
                    "d" => Duration::days(1).0,
                    "w" => Duration::days(7).0,
                    _ => return Err(self.err("expected a unit: m, h, d or w")),
                };
                // At most about 100 years either way: anything larger is a typo.
                const LIMIT_MS: i64 = 100 * 366 * 86_400_000;
                let ms = n
                    .checked_mul(unit_ms)
                    .filter(|ms| *ms <= LIMIT_MS)
                    .ok_or_else(|| {
                        self.err(format!("{n}{unit} is too far from now: at most 100 years"))
                    })?;
                Value::Now(Duration(sign * ms))
            }
            (FieldKind::Date, _) => {
                return Err(self.err("expected now, now+N<unit> or now-N<unit>"));
            }
        };
        self.pos += 1;
        Ok(v)
    }
}

impl CompiledFilter {
    /// Parses and validates `text` for records of `entity`.
    pub fn parse(entity: Entity, text: &str) -> Result<Self, FilterError> {
        let toks = lex(text).map_err(|(column, message)| FilterError {
            text: text.to_string(),
            entity,
            column,
            message,
        })?;
        let mut p = Parser {
            toks,
            pos: 0,
            entity,
            text,
        };
        if p.toks.is_empty() {
            return Err(p.err("empty filter"));
        }
        let expr = p.expr()?;
        if p.pos != p.toks.len() {
            return Err(p.err("unexpected text after the expression (missing `and`/`or`?)"));
        }
        Ok(Self { expr })
    }

    /// Does `record` match, for the mailbox owner `me` at time `now`?
    pub fn matches(&self, record: &Record, me: &UserId, now: Timestamp) -> bool {
        eval(&self.expr, record, me, now)
    }
}

fn party_is(p: &Party, v: &Value, me: &UserId) -> bool {
    match v {
        Value::Me => p.user.as_ref() == Some(me),
        Value::User(u) => p.user.as_ref() == Some(u),
        _ => false,
    }
}

fn user_eq(u: &UserId, v: &Value, me: &UserId) -> bool {
    match v {
        Value::Me => u == me,
        Value::User(x) => u == x,
        _ => false,
    }
}

fn eval(e: &Expr, r: &Record, me: &UserId, now: Timestamp) -> bool {
    match e {
        Expr::Or(parts) => parts.iter().any(|p| eval(p, r, me, now)),
        Expr::And(parts) => parts.iter().all(|p| eval(p, r, me, now)),
        Expr::Not(inner) => !eval(inner, r, me, now),
        Expr::Cmp(field, op, value) => {
            let hit = match field {
                Field::Owner => Some(user_eq(&r.owner, value, me)),
                Field::Organizer => r
                    .appointment()
                    .map(|a| a.organizer.as_ref().is_some_and(|p| party_is(p, value, me))),
                Field::RequiredAttendee => r
                    .appointment()
                    .map(|a| a.required.iter().any(|p| party_is(p, value, me))),
                Field::OptionalAttendee => r
                    .appointment()
                    .map(|a| a.optional.iter().any(|p| party_is(p, value, me))),
                Field::Attendee => r
                    .appointment()
                    .map(|a| a.attendees().any(|p| party_is(p, value, me))),
                Field::State => {
                    let name = match &r.body {
                        RecordBody::Appointment(a) => a.state.name(),
                        RecordBody::Task(t) => t.state.name(),
                        RecordBody::Contact(c) => match c.state {
                            ContactState::Active => "active",
                            ContactState::Inactive => "inactive",
                        },
                        RecordBody::Email(_) => return false,
                    };
                    Some(matches!(value, Value::State(s) if s == name))
                }
                Field::Service => r
                    .appointment()
                    .map(|a| matches!(value, Value::Bool(b) if *b == a.service)),
                Field::Subject => {
                    let Value::Text(t) = value else { return false };
                    let subject = r.title().to_lowercase();
                    let t = t.to_lowercase();
                    return match op {
                        Op::Eq => subject == t,
                        Op::Ne => subject != t,
                        Op::Contains => subject.contains(&t),
                        _ => false,
                    };
                }
                Field::Start | Field::End | Field::Due => {
                    let Value::Now(offset) = value else {
                        return false;
                    };
                    let at = match (&r.body, field) {
                        (RecordBody::Appointment(a), Field::Start) => Some(a.start),
                        (RecordBody::Appointment(a), Field::End) => Some(a.end),
                        (RecordBody::Task(t), Field::Start) => t.start,
                        (RecordBody::Task(t), Field::Due) => t.due,
                        _ => None,
                    };
                    let Some(at) = at else { return false };
                    let bound = now + *offset;
                    return match op {
                        Op::Eq => at == bound,
                        Op::Ne => at != bound,
                        Op::Lt => at < bound,
                        Op::Le => at <= bound,
                        Op::Gt => at > bound,
                        Op::Ge => at >= bound,
                        Op::Contains => false,
                    };
                }
            };
            match (hit, op) {
                (Some(h), Op::Ne) => !h,
                (Some(h), _) => h,
                (None, _) => false,
            }
        }
    }
}

impl fmt::Display for SyncFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.entity, self.expr)
    }
}

/// The default filter templates copied to a user when the mailbox is first set up (SSS
/// "Outlook templates" with Is Default): appointment — organizer or required attendee;
/// contact — owner is me and active; task — owner is me.
pub fn default_templates() -> Vec<SyncFilter> {
    vec![
        SyncFilter {
            id: FilterId::new("default-appointment"),
            name: "My Appointments".into(),
            entity: Entity::Appointment,
            enabled: true,
            expr: "organizer = me or required_attendee = me".into(),
        },
        SyncFilter {
            id: FilterId::new("default-contact"),
            name: "My Outlook Contacts".into(),
            entity: Entity::Contact,
            enabled: true,
            expr: "owner = me and state = active".into(),
        },
        SyncFilter {
            id: FilterId::new("default-task"),
            name: "My Tasks".into(),
            entity: Entity::Task,
            enabled: true,
            expr: "owner = me".into(),
        },
    ]
}

/// One user's filters, compiled, grouped by table.
#[derive(Clone, Debug, Default)]
pub struct FilterSet {
    filters: Vec<(SyncFilter, CompiledFilter)>,
}

impl FilterSet {
    /// Compiles a list of filters; the first invalid one is an error.
    pub fn compile(filters: &[SyncFilter]) -> Result<Self, FilterError> {
        let mut out = Vec::with_capacity(filters.len());
        for f in filters {
            out.push((f.clone(), CompiledFilter::parse(f.entity, &f.expr)?));
        }
        Ok(Self { filters: out })
    }

    /// The filters as stored.
    pub fn filters(&self) -> impl Iterator<Item = &SyncFilter> {
        self.filters.iter().map(|(f, _)| f)
    }

    /// Replaces every filter of `entity` with `filters` (a "filter changed" observation carries
    /// the user's whole set for one table).
    pub fn replace_entity(
        &mut self,
        entity: Entity,
        filters: &[SyncFilter],
    ) -> Result<(), FilterError> {
        let compiled = FilterSet::compile(filters)?;
        self.filters.retain(|(f, _)| f.entity != entity);
        self.filters.extend(
            compiled
                .filters
                .into_iter()
                .filter(|(f, _)| f.entity == entity),
        );
        Ok(())
    }

    /// True when at least one enabled filter exists for `entity` (R19).
    pub fn has_enabled(&self, entity: Entity) -> bool {
        self.filters
            .iter()
            .any(|(f, _)| f.entity == entity && f.enabled)
    }

    /// The first enabled filter of the record's table that matches it, if any. This is the
    /// union of R17: the record is in the union exactly when one filter matches. It does not
    /// apply the read-permission gate (R20); the mailbox state does.
    pub fn first_match(&self, record: &Record, me: &UserId, now: Timestamp) -> Option<&SyncFilter> {
        let entity = record.entity();
        self.filters
            .iter()
            .find(|(f, c)| f.entity == entity && f.enabled && c.matches(record, me, now))
            .map(|(f, _)| f)
    }
}

impl PartialEq for FilterSet {
    fn eq(&self, other: &Self) -> bool {
        self.filters().eq(other.filters())
    }
}

impl Eq for FilterSet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dates_parse_with_or_without_spaces() {
        for text in [
            "start >= now-30d",
            "start >= now - 30d",
            "start <= now+2w",
            "start > now",
        ] {
            CompiledFilter::parse(Entity::Appointment, text)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn huge_offsets_are_an_error_not_an_overflow() {
        let e = CompiledFilter::parse(Entity::Appointment, "start >= now + 9999999999999999d")
            .unwrap_err();
        assert!(e.message.contains("too far from now"), "{e}");
    }
}
