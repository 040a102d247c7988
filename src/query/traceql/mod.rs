//! TraceQL, the subset that Grafana's Tempo data source writes: one spanset `{ ... }` of
//! conditions joined by `&&` and `||`, with parentheses. A condition compares a field with a
//! literal: the span intrinsics `name`, `status`, `kind`, `duration`, `statusMessage`, the
//! trace intrinsics `traceDuration`, `rootName`, `rootServiceName` (and their colon forms
//! `span:name`, `trace:duration`, ...), and attributes `span.k`, `resource.k` and `.k` (a span's,
//! else its resource's), with `= != =~ !~ > >= < <=`.
//!
//! [`parse`] reads a query into an [`Expr`]; [`plan`] turns it into a [`TraceSearch`]: the
//! conditions the index and the sidecars can decide (service, name, duration, error status,
//! attribute equality) become its plain filters, so that the search skips what they rule out,
//! and what they cannot say exactly stays as the span predicate [`SpanQuery::expr`], checked
//! on each candidate span, plus trace conditions checked on each trace found.
//!
//! Regular expressions are anchored at both ends, as Prometheus and Loki anchor theirs (and
//! Tempo since 2.5): `name=~"GET.*"` matches `GET /a`, not `x GET`.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::TraceSearch;
use crate::domain::{ArchivedAnyValue, ArchivedKeyValue, ArchivedResource, ArchivedSpan};
use crate::index::TraceSummary;
use crate::limits::{SEARCH_ATTRS_MAX, TRACEQL_BYTES_MAX, TRACEQL_CONDITIONS_MAX};

/// A span's status code, as OTLP numbers it (`Status.StatusCode`).
const STATUS_UNSET: i32 = 0;
const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// A query TraceQL cannot be or that is outside the subset: what and where (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TraceQL: {what} (at character {at})")]
pub struct TraceQlError {
    pub at: usize,
    pub what: String,
}

/// A boolean expression over one span (and its trace, for the trace intrinsics).
#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cond(Cond),
}

/// `field op value`.
#[derive(Debug, Clone)]
pub struct Cond {
    pub field: Field,
    pub op: Op,
    pub value: Literal,
    /// The compiled pattern, for `=~` and `!~`.
    regex: Option<Regex>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Name,
    Status,
    Kind,
    Duration,
    StatusMessage,
    TraceDuration,
    RootName,
    RootServiceName,
    Attr { scope: AttrScope, key: String },
}

impl Field {
    /// Whether the field is the whole trace's, not one span's.
    pub fn of_trace(&self) -> bool {
        matches!(
            self,
            Field::TraceDuration | Field::RootName | Field::RootServiceName
        )
    }
}

/// Where an attribute is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrScope {
    Span,
    Resource,
    /// `.key`: the span's attribute, else its resource's.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    /// The comparison's outcome given how the two sides order.
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Re | Op::NotRe => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(u64),
    /// A status code (`error`, `ok`, `unset`).
    Status(i32),
    /// A span kind (`server`, `client`, ...), as OTLP numbers it.
    Kind(i32),
}

impl Literal {
    /// The text an `attr=key=value` filter compares with, for the literals it can take.
    fn attr_text(&self) -> Option<String> {
        match self {
            Literal::Str(s) => Some(s.clone()),
            Literal::Int(i) => Some(i.to_string()),
            Literal::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// What a condition is evaluated on: one stored span with its resource.
#[derive(Clone, Copy)]
pub struct SpanRef<'a, 's, 'r> {
    pub span: &'a ArchivedSpan<'s>,
    pub resource: &'a ArchivedResource<'r>,
}

/// The span predicate of a search: the conditions its plain filters do not say exactly.
/// Compared by the query text it came from.
#[derive(Debug, Clone)]
pub struct SpanQuery {
    pub text: String,
    pub expr: Expr,
}

impl PartialEq for SpanQuery {
    fn eq(&self, other: &SpanQuery) -> bool {
        self.text == other.text
    }
}

impl SpanQuery {
    pub fn matches(&self, s: SpanRef<'_, '_, '_>) -> bool {
        self.expr.matches(s)
    }
}

/// The trace conditions of a search, checked on each trace found. Compared by query text.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub text: String,
    pub conds: Vec<Cond>,
}

impl PartialEq for TraceQuery {
    fn eq(&self, other: &TraceQuery) -> bool {
        self.text == other.text
    }
}

impl TraceQuery {
    pub fn matches(&self, t: &TraceSummary) -> bool {
        self.conds.iter().all(|c| c.matches_trace(t))
    }
}

impl Expr {
    /// Whether span `s` satisfies the expression. Trace conditions never reach here: the
    /// planner takes them out (they are only allowed at the top level).
    pub fn matches(&self, s: SpanRef<'_, '_, '_>) -> bool {
        match self {
            Expr::And(all) => all.iter().all(|e| e.matches(s)),
            Expr::Or(any) => any.iter().any(|e| e.matches(s)),
            Expr::Cond(c) => c.matches_span(s),
        }
    }

    fn has_trace_field(&self) -> bool {
        match self {
            Expr::And(es) | Expr::Or(es) => es.iter().any(Expr::has_trace_field),
            Expr::Cond(c) => c.field.of_trace(),
        }
    }
}

impl Cond {
    fn matches_span(&self, s: SpanRef<'_, '_, '_>) -> bool {
        let span = s.span;
        match &self.field {
            Field::Name => self.text(span.name.as_str()),
            Field::StatusMessage => self.text(span.status.message.as_str()),
            Field::Status => self.number(span.status.code.to_native() as i64),
            Field::Kind => self.number(span.kind.to_native() as i64),
            Field::Duration => {
                let start = span.start_time_unix_nano.to_native();
                self.number(span.end_time_unix_nano.to_native().saturating_sub(start) as i64)
            }
            Field::Attr { scope, key } => {
                let in_span = || find(&span.attributes, key).map(|v| self.attr(v));
                let in_resource = || find(&s.resource.attributes, key).map(|v| self.attr(v));
                let found = match scope {
                    AttrScope::Span => in_span(),
                    AttrScope::Resource => in_resource(),
                    AttrScope::Any => in_span().or_else(in_resource),
                };
                found.unwrap_or(false)
            }
            Field::TraceDuration | Field::RootName | Field::RootServiceName => false,
        }
    }

    fn matches_trace(&self, t: &TraceSummary) -> bool {
        match &self.field {
            Field::TraceDuration => {
                self.number(t.end_unix_nanos.saturating_sub(t.start_unix_nanos) as i64)
            }
            Field::RootName => self.text(&t.root_span_name),
            Field::RootServiceName => self.text(&t.root_service_name),
            _ => false,
        }
    }

    /// A string field against a string literal.
    fn text(&self, have: &str) -> bool {
        match (&self.value, self.op) {
            (Literal::Str(_), Op::Re) => self.regex.as_ref().is_some_and(|r| r.is_match(have)),
            (Literal::Str(_), Op::NotRe) => self.regex.as_ref().is_some_and(|r| !r.is_match(have)),
            (Literal::Str(want), op) => op.holds(have.cmp(want.as_str())),
            _ => false,
        }
    }

    /// A numeric field (status, kind, a duration in ns) against its literal.
    fn number(&self, have: i64) -> bool {
        let want = match self.value {
            Literal::Duration(d) => d.min(i64::MAX as u64) as i64,
            Literal::Status(c) | Literal::Kind(c) => c as i64,
            Literal::Int(i) => i,
            _ => return false,
        };
        self.op.holds(have.cmp(&want))
    }

    /// An attribute's value against the literal: strings with strings, numbers with numbers
    /// (an int and a double compare as doubles), booleans with booleans; other pairs never
    /// match, whatever the operator.
    fn attr(&self, v: &ArchivedAnyValue<'_>) -> bool {
        match (v, &self.value) {
            (ArchivedAnyValue::String(s), Literal::Str(_)) => self.text(s.as_str()),
            (ArchivedAnyValue::Int(i), Literal::Int(want)) => {
                self.op.holds(i.to_native().cmp(want))
            }
            (ArchivedAnyValue::Int(i), Literal::Float(want)) => {
                self.float(i.to_native() as f64, *want)
            }
            (ArchivedAnyValue::Double(d), Literal::Float(want)) => self.float(d.to_native(), *want),
            (ArchivedAnyValue::Double(d), Literal::Int(want)) => {
                self.float(d.to_native(), *want as f64)
            }
            (ArchivedAnyValue::Bool(b), Literal::Bool(want)) => {
                matches!(self.op, Op::Eq | Op::Ne) && self.op.holds(b.cmp(want))
            }
            _ => false,
        }
    }

    fn float(&self, have: f64, want: f64) -> bool {
        have.partial_cmp(&want).is_some_and(|o| self.op.holds(o))
    }
}

fn find<'a, 'b>(attrs: &'a [ArchivedKeyValue<'b>], key: &str) -> Option<&'a ArchivedAnyValue<'b>> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Parses `text`, one spanset `{...}`; `None` for `{}` (every span).
pub fn parse(text: &str) -> Result<Option<Expr>, TraceQlError> {
    if text.len() > TRACEQL_BYTES_MAX {
        return Err(TraceQlError {
            at: TRACEQL_BYTES_MAX,
            what: format!("a query is at most {TRACEQL_BYTES_MAX} bytes"),
        });
    }
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: text.len(),
        conds: 0,
    };
    p.expect(&Tok::Open, "a query starts with {")?;
    let expr = if p.peek() == Some(&Tok::Close) {
        None
    } else {
        Some(p.or()?)
    };
    p.expect(&Tok::Close, "expected && or || or }")?;
    if let Some((at, tok)) = p.tokens.get(p.pos) {
        let what = match tok {
            Tok::Pipe => "pipelines (| count(), | select(), ...) are not supported",
            Tok::And | Tok::Or | Tok::Cmp(_) => {
                "one spanset only: operators between spansets (&&, ||, >>, >, ~, ...) are not supported"
            }
            _ => "unexpected text after the spanset",
        };
        return Err(TraceQlError {
            at: *at,
            what: what.into(),
        });
    }
    Ok(expr)
}

/// Parses `text` into `s`'s filters (see the module's description). `s` keeps what it had
/// (time range, limit, ...).
pub fn plan(text: &str, s: &mut TraceSearch) -> Result<(), TraceQlError> {
    let Some(expr) = parse(text)? else {
        return Ok(());
    };
    let terms = match expr {
        Expr::And(terms) => terms,
        e => vec![e],
    };
    let (mut residual, mut trace_conds) = (Vec::new(), Vec::new());
    for term in terms {
        if term.has_trace_field() {
            match term {
                Expr::Cond(c) => trace_conds.push(c),
                _ => {
                    return Err(TraceQlError {
                        at: 0,
                        what: "traceDuration, rootName and rootServiceName are supported only \
                               joined to the rest with &&, not inside ||"
                            .into(),
                    })
                }
            }
            continue;
        }
        let Expr::Cond(c) = term else {
            residual.push(term);
            continue;
        };
        if !narrow(&c, s) {
            residual.push(Expr::Cond(c));
        }
    }
    if !residual.is_empty() {
        let expr = match residual.len() {
            1 => residual.pop().expect("one term"),
            _ => Expr::And(residual),
        };
        s.span_query = Some(Arc::new(SpanQuery {
            text: text.to_owned(),
            expr,
        }));
    }
    if !trace_conds.is_empty() {
        s.trace_query = Some(Arc::new(TraceQuery {
            text: text.to_owned(),
            conds: trace_conds,
        }));
    }
    Ok(())
}

/// Narrows `s`'s plain filters by condition `c` of the top-level `&&`; `true` if they now say
/// exactly what `c` says (else `c` must also be checked on each span).
fn narrow(c: &Cond, s: &mut TraceSearch) -> bool {
    match (&c.field, c.op, &c.value) {
        (Field::Attr { scope, key }, Op::Eq, Literal::Str(v))
            if *scope != AttrScope::Span && key == "service.name" && s.service.is_none() =>
        {
            s.service = Some(v.clone());
            *scope == AttrScope::Resource
        }
        (Field::Name, Op::Eq, Literal::Str(v)) if s.name.is_none() => {
            s.name = Some(v.clone());
            true
        }
        (Field::Duration, op, Literal::Duration(d)) => {
            let (lo, hi) = match op {
                Op::Gt => (Some(d.saturating_add(1)), None),
                Op::Ge => (Some(*d), None),
                Op::Lt if *d == 0 => (Some(1), Some(0)),
                Op::Lt => (None, Some(d - 1)),
                Op::Le => (None, Some(*d)),
                Op::Eq => (Some(*d), Some(*d)),
                _ => return false,
            };
            if let Some(lo) = lo {
                s.min_duration_nanos = Some(s.min_duration_nanos.map_or(lo, |m| m.max(lo)));
            }
            if let Some(hi) = hi {
                s.max_duration_nanos = Some(s.max_duration_nanos.map_or(hi, |m| m.min(hi)));
            }
            true
        }
        (Field::Status, Op::Eq, Literal::Status(STATUS_ERROR)) if s.error.is_none() => {
            s.error = Some(true);
            true
        }
        (Field::Status, Op::Ne, Literal::Status(STATUS_ERROR)) if s.error.is_none() => {
            s.error = Some(false);
            true
        }
        // An equality on an attribute also becomes an `attr` filter, which lets the sidecars'
        // needle filters skip blocks; it matches by text and in either scope, so the
        // condition stays to say the type and the scope exactly.
        (Field::Attr { key, .. }, Op::Eq, value) => {
            if let Some(text) = value.attr_text() {
                if s.attrs.len() < SEARCH_ATTRS_MAX {
                    s.attrs.push((key.clone(), text));
                }
            }
            false
        }
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LParen,
    RParen,
    And,
    Or,
    Pipe,
    Cmp(Op),
    /// A field name, an enum literal, `true` / `false`.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Duration(u64),
}

/// The units of a duration literal, in nanoseconds.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, TraceQlError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, what: &str| TraceQlError {
        at,
        what: what.into(),
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = text.get(i..i + 2).unwrap_or("");
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'{' => Tok::Open,
            b'}' => Tok::Close,
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            _ if two == "&&" => Tok::And,
            _ if two == "||" => Tok::Or,
            b'|' => Tok::Pipe,
            _ if two == "!=" => Tok::Cmp(Op::Ne),
            _ if two == "=~" => Tok::Cmp(Op::Re),
            _ if two == "!~" => Tok::Cmp(Op::NotRe),
            _ if two == ">=" => Tok::Cmp(Op::Ge),
            _ if two == "<=" => Tok::Cmp(Op::Le),
            b'=' => Tok::Cmp(Op::Eq),
            b'>' => Tok::Cmp(Op::Gt),
            b'<' => Tok::Cmp(Op::Lt),
            b'"' | b'`' => {
                let (s, next) = string(text, i).ok_or_else(|| err(i, "unterminated string"))?;
                i = next;
                out.push((start, Tok::Str(s)));
                continue;
            }
            b'0'..=b'9' | b'-' => {
                let (tok, next) = number(text, i).ok_or_else(|| err(i, "malformed number"))?;
                i = next;
                out.push((start, tok));
                continue;
            }
            _ if c.is_ascii_alphabetic() || c == b'.' || c == b'_' => {
                let mut j = i;
                while j < b.len() {
                    let d = b[j];
                    if d.is_ascii_alphanumeric() || matches!(d, b'_' | b'.' | b':' | b'/' | b'-') {
                        j += 1;
                    } else if d == b'"' && j > i && b[j - 1] == b'.' {
                        // `span."a key with spaces"`.
                        let (key, next) =
                            string(text, j).ok_or_else(|| err(j, "unterminated string"))?;
                        let mut name = text[i..j].to_owned();
                        name.push_str(&key);
                        out.push((start, Tok::Ident(name)));
                        i = next;
                        break;
                    } else {
                        break;
                    }
                }
                if i > start {
                    continue; // the quoted form was pushed
                }
                i = j;
                out.push((start, Tok::Ident(text[start..j].to_owned())));
                continue;
            }
            _ => return Err(err(i, "unexpected character")),
        };
        i += match tok {
            Tok::And | Tok::Or => 2,
            Tok::Cmp(Op::Ne | Op::Re | Op::NotRe | Op::Ge | Op::Le) => 2,
            _ => 1,
        };
        out.push((start, tok));
    }
    Ok(out)
}

/// A string literal opening at `i` (`"` with `\` escapes, or a backtick raw string): its
/// value and the offset past it.
fn string(text: &str, i: usize) -> Option<(String, usize)> {
    let quote = text[i..].chars().next()?;
    let mut out = String::new();
    let mut chars = text[i + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            _ if c == quote => return Some((out, i + 1 + k + 1)),
            '\\' if quote == '"' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => out.push(other),
            },
            _ => out.push(c),
        }
    }
    None
}

/// A number at `i`: an int, a float, or a duration (a number and a unit).
fn number(text: &str, i: usize) -> Option<(Tok, usize)> {
    let b = text.as_bytes();
    let mut j = i + usize::from(b[i] == b'-');
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
        j += 1;
    }
    let digits = &text[i..j];
    let rest = &text[j..];
    let unit = DURATION_UNITS
        .iter()
        .filter(|(u, _)| rest.starts_with(u))
        .filter(|(u, _)| {
            // `m` is not the start of `ms`, nor of an identifier.
            let after = rest[u.len()..].bytes().next();
            !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
        .max_by_key(|(u, _)| u.len());
    if let Some((u, scale)) = unit {
        let value: f64 = digits.parse().ok()?;
        let nanos = value * *scale as f64;
        if !(0.0..=u64::MAX as f64).contains(&nanos) {
            return None;
        }
        return Some((Tok::Duration(nanos.round() as u64), j + u.len()));
    }
    if rest.bytes().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    if digits.contains('.') {
        Some((Tok::Float(digits.parse().ok()?), j))
    } else {
        Some((Tok::Int(digits.parse().ok()?), j))
    }
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    /// The query's length: where an error at its end points.
    end: usize,
    conds: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn error(&self, what: impl Into<String>) -> TraceQlError {
        TraceQlError {
            at: self.at(),
            what: what.into(),
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), TraceQlError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn or(&mut self) -> Result<Expr, TraceQlError> {
        let mut any = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.pop().expect("one")
        } else {
            Expr::Or(any)
        })
    }

    fn and(&mut self) -> Result<Expr, TraceQlError> {
        let mut all = vec![self.primary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            all.push(self.primary()?);
        }
        if all.len() == 1 {
            return Ok(all.pop().expect("one"));
        }
        // `a && (b && c)` is one conjunction: the planner sees every term of the top level.
        let mut flat = Vec::new();
        for e in all {
            match e {
                Expr::And(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        Ok(Expr::And(flat))
    }

    fn primary(&mut self) -> Result<Expr, TraceQlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(&Tok::RParen, "expected )")?;
            return Ok(e);
        }
        self.cond().map(Expr::Cond)
    }

    fn cond(&mut self) -> Result<Cond, TraceQlError> {
        self.conds += 1;
        if self.conds > TRACEQL_CONDITIONS_MAX {
            return Err(self.error(format!(
                "at most {TRACEQL_CONDITIONS_MAX} conditions in a query"
            )));
        }
        let field_at = self.at();
        let field = match self.peek() {
            Some(Tok::Ident(name)) => {
                field(name).map_err(|what| TraceQlError { at: field_at, what })?
            }
            _ => return Err(self.error("expected a field (name, status, span.key, ...)")),
        };
        self.pos += 1;
        let op = match self.peek() {
            Some(Tok::Cmp(op)) => *op,
            _ => return Err(self.error("expected an operator (= != =~ !~ > >= < <=)")),
        };
        self.pos += 1;
        let value_at = self.at();
        let value = match self.tokens.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Int(i)) => Literal::Int(i),
            Some(Tok::Float(f)) => Literal::Float(f),
            Some(Tok::Duration(d)) => Literal::Duration(d),
            Some(Tok::Ident(word)) => match word.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "error" => Literal::Status(STATUS_ERROR),
                "ok" => Literal::Status(STATUS_OK),
                "unset" => Literal::Status(STATUS_UNSET),
                "unspecified" => Literal::Kind(0),
                "internal" => Literal::Kind(1),
                "server" => Literal::Kind(2),
                "client" => Literal::Kind(3),
                "producer" => Literal::Kind(4),
                "consumer" => Literal::Kind(5),
                "nil" => return Err(self.error("nil is not supported")),
                _ => return Err(self.error(format!("unknown value {word}"))),
            },
            _ => return Err(self.error("expected a value")),
        };
        self.pos += 1;
        check(&field, op, &value).map_err(|what| TraceQlError { at: value_at, what })?;
        let regex = match (&value, op) {
            (Literal::Str(pattern), Op::Re | Op::NotRe) => Some(
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(crate::limits::TRACEQL_REGEX_BYTES_MAX)
                    .build()
                    .map_err(|e| TraceQlError {
                        at: value_at,
                        what: format!("bad regular expression: {e}"),
                    })?,
            ),
            _ => None,
        };
        Ok(Cond {
            field,
            op,
            value,
            regex,
        })
    }
}

/// The field a name stands for.
fn field(name: &str) -> Result<Field, String> {
    Ok(match name {
        "name" | "span:name" => Field::Name,
        "status" | "span:status" => Field::Status,
        "kind" | "span:kind" => Field::Kind,
        "duration" | "span:duration" => Field::Duration,
        "statusMessage" | "span:statusMessage" => Field::StatusMessage,
        "traceDuration" | "trace:duration" => Field::TraceDuration,
        "rootName" | "trace:rootName" => Field::RootName,
        "rootServiceName" | "trace:rootService" | "trace:rootServiceName" => Field::RootServiceName,
        _ => {
            let (scope, key) = if let Some(k) = name.strip_prefix("span.") {
                (AttrScope::Span, k)
            } else if let Some(k) = name.strip_prefix("resource.") {
                (AttrScope::Resource, k)
            } else if let Some(k) = name.strip_prefix('.') {
                (AttrScope::Any, k)
            } else if let Some((scope, _)) = name.split_once(['.', ':']) {
                return Err(format!(
                    "the scope {scope} is not supported (span., resource. and . are)"
                ));
            } else {
                return Err(format!("unknown field {name}"));
            };
            if key.is_empty() {
                return Err(format!("{name} names no attribute"));
            }
            Field::Attr {
                scope,
                key: key.to_owned(),
            }
        }
    })
}

/// Whether `field op value` is well typed.
fn check(field: &Field, op: Op, value: &Literal) -> Result<(), String> {
    let regex = matches!(op, Op::Re | Op::NotRe);
    let equality = matches!(op, Op::Eq | Op::Ne);
    let ok = match field {
        Field::Name | Field::StatusMessage | Field::RootName | Field::RootServiceName => {
            matches!(value, Literal::Str(_))
        }
        Field::Status => matches!(value, Literal::Status(_)) && equality,
        Field::Kind => matches!(value, Literal::Kind(_)) && equality,
        Field::Duration | Field::TraceDuration => matches!(value, Literal::Duration(_)) && !regex,
        Field::Attr { .. } => match value {
            Literal::Str(_) => true,
            Literal::Int(_) | Literal::Float(_) => !regex,
            Literal::Bool(_) => equality,
            _ => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{field} {} {value} is not supported", op.text()))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Name => f.write_str("name"),
            Field::Status => f.write_str("status"),
            Field::Kind => f.write_str("kind"),
            Field::Duration => f.write_str("duration"),
            Field::StatusMessage => f.write_str("statusMessage"),
            Field::TraceDuration => f.write_str("traceDuration"),
            Field::RootName => f.write_str("rootName"),
            Field::RootServiceName => f.write_str("rootServiceName"),
            Field::Attr { scope, key } => match scope {
                AttrScope::Span => write!(f, "span.{key}"),
                AttrScope::Resource => write!(f, "resource.{key}"),
                AttrScope::Any => write!(f, ".{key}"),
            },
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write!(f, "{s:?}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Duration(d) => write!(f, "{d}ns"),
            Literal::Status(c) => f.write_str(match *c {
                STATUS_ERROR => "error",
                STATUS_OK => "ok",
                _ => "unset",
            }),
            Literal::Kind(k) => write!(f, "kind {k}"),
        }
    }
}

#[cfg(test)]
mod tests;
