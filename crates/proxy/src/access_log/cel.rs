//! Envoy's CEL access log filter (`envoy.access_loggers.extension_filters.cel`): an
//! expression over Envoy's attributes that must be true for a line to be written.
//!
//! The subset Istio's Telemetry docs and configs use is compiled at config time into a
//! tree whose attributes are already resolved (header names to record slots): literals
//! (strings, integers, booleans, lists), the attributes below, `==` `!=` `<` `<=` `>`
//! `>=` `in`, `&&` `||` `!`, `has()`, `size()`, and the string functions `startsWith`,
//! `endsWith`, `contains` and `matches` (a literal pattern). Anything else is refused
//! with the expression and the reason. As in Envoy, an expression that errs (a missing
//! header compared, say) counts as false; `&&` and `||` absorb errors as CEL's do.

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;

use super::record::{Headers, Record};

/// A compiled CEL filter expression.
#[derive(Clone)]
pub struct Expression {
    source: String,
    root: Expr,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Expression) -> bool {
        self.source == other.source
    }
}

impl Eq for Expression {}

impl Expression {
    /// Compiles `source`, registering the headers it reads in `headers`.
    pub fn compile(source: &str, headers: &mut Headers) -> Result<Expression, String> {
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            headers,
        };
        let root = parser.expr()?;
        if let Some(extra) = parser.tokens.get(parser.at) {
            return Err(format!("unexpected {extra} after the expression"));
        }
        Ok(Expression {
            source: source.to_owned(),
            root,
        })
    }

    /// Whether `record` passes: the expression is true (not false, not an error).
    pub fn passes(&self, record: &Record) -> bool {
        matches!(self.root.eval(record), Value::Bool(true))
    }
}

/// An attribute of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    RequestPath,
    RequestUrlPath,
    RequestHost(usize),
    RequestMethod,
    RequestProtocol,
    RequestSize,
    RequestHeader(usize),
    ResponseCode,
    ResponseCodeDetails,
    ResponseSize,
    ResponseHeader(usize),
    SourceAddress,
    SourcePort,
    DestinationAddress,
    DestinationPort,
    UpstreamAddress,
    UpstreamPort,
    ConnectionMtls,
    ConnectionServerName,
    ClusterName,
    RouteName,
}

/// A string function called on a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(Value<'static>),
    List(Vec<Expr>),
    Attr(Attr),
    /// `has(...)`: whether the attribute has a value.
    Has(Attr),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Cmp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    Str(StrFn, Box<Expr>, Box<Expr>),
    Matches(Box<Expr>, regex::Regex),
    Size(Box<Expr>),
}

/// A CEL value while evaluating.
#[derive(Debug, Clone, PartialEq)]
enum Value<'r> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(Cow<'r, str>),
    List(Vec<Value<'r>>),
    /// No such value, or a type mismatch: CEL's error.
    Error,
}

impl Expr {
    fn eval<'r>(&self, record: &'r Record) -> Value<'r> {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::List(items) => Value::List(items.iter().map(|i| i.eval(record)).collect()),
            Expr::Attr(attr) => attr.value(record),
            Expr::Has(attr) => Value::Bool(attr.value(record) != Value::Error),
            Expr::Not(inner) => match inner.eval(record) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Error,
            },
            // CEL's logic is commutative: a decisive side wins over an error.
            Expr::And(l, r) => match (l.eval(record), r.eval(record)) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Error,
            },
            Expr::Or(l, r) => match (l.eval(record), r.eval(record)) {
                (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Error,
            },
            Expr::Compare(op, l, r) => compare(*op, &l.eval(record), &r.eval(record)),
            Expr::In(item, list) => match (item.eval(record), list.eval(record)) {
                (Value::Error, _) | (_, Value::Error) => Value::Error,
                (item, Value::List(list)) => Value::Bool(
                    list.iter()
                        .any(|v| compare(Cmp::Eq, &item, v) == Value::Bool(true)),
                ),
                _ => Value::Error,
            },
            Expr::Str(f, target, arg) => match (target.eval(record), arg.eval(record)) {
                (Value::Str(s), Value::Str(a)) => Value::Bool(match f {
                    StrFn::StartsWith => s.starts_with(&*a),
                    StrFn::EndsWith => s.ends_with(&*a),
                    StrFn::Contains => s.contains(&*a),
                }),
                _ => Value::Error,
            },
            Expr::Matches(target, regex) => match target.eval(record) {
                Value::Str(s) => Value::Bool(regex.is_match(&s)),
                _ => Value::Error,
            },
            Expr::Size(inner) => match inner.eval(record) {
                Value::Str(s) => Value::Int(s.chars().count() as i64),
                Value::List(l) => Value::Int(l.len() as i64),
                _ => Value::Error,
            },
        }
    }
}

/// Compares as CEL does: numbers across int and uint, strings by bytes, booleans for
/// equality; values of different kinds are unequal, and unordered.
fn compare(op: Cmp, l: &Value<'_>, r: &Value<'_>) -> Value<'static> {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (l, r) {
        (Value::Error, _) | (_, Value::Error) => return Value::Error,
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Uint(a), Value::Uint(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Uint(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Value::Uint(a), Value::Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::List(a), Value::List(b)) => {
            return match op {
                Cmp::Eq => Value::Bool(a == b),
                Cmp::Ne => Value::Bool(a != b),
                _ => Value::Error,
            };
        }
        _ => None,
    };
    match (op, ordering) {
        (Cmp::Eq, o) => Value::Bool(o == Some(Ordering::Equal)),
        (Cmp::Ne, o) => Value::Bool(o != Some(Ordering::Equal)),
        (_, None) => Value::Error,
        (Cmp::Lt, Some(o)) => Value::Bool(o.is_lt()),
        (Cmp::Le, Some(o)) => Value::Bool(o.is_le()),
        (Cmp::Gt, Some(o)) => Value::Bool(o.is_gt()),
        (Cmp::Ge, Some(o)) => Value::Bool(o.is_ge()),
    }
}

impl Attr {
    /// The attribute `path` (`request.url_path`), if known; the headers it reads go
    /// into `headers`.
    fn named(path: &str, headers: &mut Headers) -> Option<Attr> {
        Some(match path {
            "request.path" => Attr::RequestPath,
            "request.url_path" => Attr::RequestUrlPath,
            "request.host" => Attr::RequestHost(headers.request_slot(http::header::HOST)),
            "request.method" => Attr::RequestMethod,
            "request.protocol" => Attr::RequestProtocol,
            "request.size" => Attr::RequestSize,
            "response.code" => Attr::ResponseCode,
            "response.code_details" => Attr::ResponseCodeDetails,
            "response.size" => Attr::ResponseSize,
            "source.address" => Attr::SourceAddress,
            "source.port" => Attr::SourcePort,
            "destination.address" => Attr::DestinationAddress,
            "destination.port" => Attr::DestinationPort,
            "upstream.address" => Attr::UpstreamAddress,
            "upstream.port" => Attr::UpstreamPort,
            "connection.mtls" => Attr::ConnectionMtls,
            "connection.requested_server_name" => Attr::ConnectionServerName,
            "xds.cluster_name" => Attr::ClusterName,
            "xds.route_name" => Attr::RouteName,
            _ => return None,
        })
    }

    fn value<'r>(self, record: &'r Record) -> Value<'r> {
        let text = |s: Option<&'r str>| s.map_or(Value::Error, |s| Value::Str(Cow::Borrowed(s)));
        let header = |values: &'r [Option<http::HeaderValue>], slot: usize| {
            let value = values.get(slot).and_then(Option::as_ref);
            text(value.and_then(|v| v.to_str().ok()))
        };
        let uri = record.request.as_ref().map(|(_, uri)| uri);
        match self {
            Attr::RequestPath => text(uri.and_then(|u| u.path_and_query()).map(|p| p.as_str())),
            Attr::RequestUrlPath => text(uri.map(|u| u.path())),
            Attr::RequestHost(host) => text(record.authority(Some(host))),
            Attr::RequestMethod => text(record.request.as_ref().map(|(m, _)| m.as_str())),
            Attr::RequestProtocol => match record.protocol {
                Some(v) => Value::Str(Cow::Owned(format!("{v:?}"))),
                None => Value::Error,
            },
            Attr::RequestSize => Value::Int(record.bytes_received as i64),
            Attr::RequestHeader(slot) => header(&record.request_headers, slot),
            Attr::ResponseCode => record
                .status
                .map_or(Value::Error, |s| Value::Int(i64::from(s.as_u16()))),
            Attr::ResponseCodeDetails => text(record.details.as_deref()),
            Attr::ResponseSize => Value::Int(record.bytes_sent as i64),
            Attr::ResponseHeader(slot) => header(&record.response_headers, slot),
            Attr::SourceAddress => Value::Str(Cow::Owned(record.downstream_remote.to_string())),
            Attr::SourcePort => Value::Int(i64::from(record.downstream_remote.port())),
            Attr::DestinationAddress => Value::Str(Cow::Owned(record.downstream_local.to_string())),
            Attr::DestinationPort => Value::Int(i64::from(record.downstream_local.port())),
            Attr::UpstreamAddress => record
                .upstream_host
                .map_or(Value::Error, |h| Value::Str(Cow::Owned(h.to_string()))),
            Attr::UpstreamPort => record
                .upstream_host
                .map_or(Value::Error, |h| Value::Int(i64::from(h.port()))),
            Attr::ConnectionMtls => {
                Value::Bool(record.tls.as_ref().is_some_and(|t| t.peer.is_some()))
            }
            Attr::ConnectionServerName => text(record.tls.as_ref().and_then(|t| t.sni.as_deref())),
            Attr::ClusterName => text(record.upstream_cluster.as_deref()),
            Attr::RouteName => text(record.route_name.as_deref()),
        }
    }
}

// ---- Lexing -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Int(i64),
    Uint(u64),
    Str(String),
    Punct(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Int(i) => write!(f, "{i}"),
            Token::Uint(u) => write!(f, "{u}u"),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Punct(p) => write!(f, "{p:?}"),
        }
    }
}

const PUNCTS: [&str; 18] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "-", "?", ":",
];

fn lex(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if c.is_ascii_digit() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let digits = &rest[..end];
            rest = &rest[end..];
            if let Some(after) = rest.strip_prefix(['u', 'U']) {
                rest = after;
                tokens.push(Token::Uint(
                    digits
                        .parse()
                        .map_err(|_| format!("{digits}u is too large"))?,
                ));
            } else {
                tokens.push(Token::Int(
                    digits
                        .parse()
                        .map_err(|_| format!("{digits} is too large"))?,
                ));
            }
        } else if c == '_' || c.is_ascii_alphabetic() {
            let end = rest
                .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            tokens.push(Token::Ident(rest[..end].to_owned()));
            rest = &rest[end..];
        } else if c == '\'' || c == '"' {
            let (text, after) = string(&rest[1..], c)?;
            tokens.push(Token::Str(text));
            rest = after;
        } else if let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) {
            tokens.push(Token::Punct(p));
            rest = &rest[p.len()..];
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

/// A string literal's text up to the closing `quote`, and what follows it.
fn string(body: &str, quote: char) -> Result<(String, &str), String> {
    let mut text = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((text, &body[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                Some(c @ ('\\' | '\'' | '"')) => text.push(c),
                other => return Err(format!("unsupported escape \\{}", other.unwrap_or(' '))),
            },
            c => text.push(c),
        }
    }
    Err("unterminated string".into())
}

// ---- Parsing ------------------------------------------------------------------------

struct Parser<'h> {
    tokens: Vec<Token>,
    at: usize,
    headers: &'h mut Headers,
}

/// A member chain being resolved: a path of identifiers not yet known to be an
/// attribute (`request`, `request.headers`), or a finished expression.
enum Member {
    Path(String),
    Expr(Expr),
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, punct: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Punct(p)) if *p == punct);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, punct: &str) -> Result<(), String> {
        if self.eat(punct) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(t) => format!("expected {punct:?}, found {t}"),
            None => format!("expected {punct:?} at the end"),
        })
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let left = self.or()?;
        if matches!(self.peek(), Some(Token::Punct("?"))) {
            return Err("the conditional operator ?: is not supported".into());
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.relation()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.relation()?));
        }
        Ok(left)
    }

    fn relation(&mut self) -> Result<Expr, String> {
        let left = self.unary()?;
        let op = match self.peek() {
            Some(Token::Punct(p)) => match *p {
                "==" => Cmp::Eq,
                "!=" => Cmp::Ne,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                _ => return Ok(left),
            },
            Some(Token::Ident(word)) if word == "in" => {
                self.at += 1;
                let right = self.unary()?;
                return Ok(Expr::In(Box::new(left), Box::new(right)));
            }
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.unary()?;
        Ok(Expr::Compare(op, Box::new(left), Box::new(right)))
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return match self.tokens.get(self.at).cloned() {
                Some(Token::Int(i)) => {
                    self.at += 1;
                    Ok(Expr::Literal(Value::Int(-i)))
                }
                _ => Err("negation is supported on integer literals only".into()),
            };
        }
        self.member()
    }

    /// A primary and its selections, indexes and method calls.
    fn member(&mut self) -> Result<Expr, String> {
        let mut member = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Token::Ident(field)) = self.peek().cloned() else {
                    return Err("expected a field name after \".\"".into());
                };
                self.at += 1;
                if self.eat("(") {
                    let target = self.finish(member)?;
                    member = Member::Expr(self.method(target, &field)?);
                } else {
                    member = match member {
                        Member::Path(path) => Member::Path(format!("{path}.{field}")),
                        Member::Expr(_) => {
                            return Err(format!("field .{field} of a value is not supported"));
                        }
                    };
                }
            } else if self.eat("[") {
                let key = self.expr()?;
                self.expect("]")?;
                member = Member::Expr(self.index(member, key)?);
            } else {
                return self.finish(member);
            }
        }
    }

    /// A member chain as an expression: a path must name an attribute.
    fn finish(&mut self, member: Member) -> Result<Expr, String> {
        match member {
            Member::Expr(e) => Ok(e),
            Member::Path(path) => Attr::named(&path, self.headers)
                .map(Expr::Attr)
                .ok_or_else(|| format!("unknown attribute {path}")),
        }
    }

    /// `request.headers['name']` (and the response's): the header, by slot.
    fn index(&mut self, member: Member, key: Expr) -> Result<Expr, String> {
        let Member::Path(path) = member else {
            return Err("indexing a value is not supported".into());
        };
        let Expr::Literal(Value::Str(name)) = key else {
            return Err(format!("{path}[...] needs a string literal key"));
        };
        self.header(&path, &name).map(Expr::Attr)
    }

    fn header(&mut self, map: &str, name: &str) -> Result<Attr, String> {
        let header =
            HeaderName::try_from(name).map_err(|_| format!("{name:?} is not a header name"))?;
        match map {
            "request.headers" => Ok(Attr::RequestHeader(self.headers.request_slot(header))),
            "response.headers" => Ok(Attr::ResponseHeader(self.headers.response_slot(header))),
            other => Err(format!("unknown map {other}")),
        }
    }

    fn method(&mut self, target: Expr, name: &str) -> Result<Expr, String> {
        let function = match name {
            "startsWith" => StrFn::StartsWith,
            "endsWith" => StrFn::EndsWith,
            "contains" => StrFn::Contains,
            "matches" => {
                let Expr::Literal(Value::Str(pattern)) = self.expr()? else {
                    return Err("matches() needs a string literal pattern".into());
                };
                self.expect(")")?;
                let regex = regex::Regex::new(&pattern)
                    .map_err(|e| format!("matches({pattern:?}): {e}"))?;
                return Ok(Expr::Matches(Box::new(target), regex));
            }
            other => return Err(format!("function {other}() is not supported")),
        };
        let argument = self.expr()?;
        self.expect(")")?;
        Ok(Expr::Str(function, Box::new(target), Box::new(argument)))
    }

    fn primary(&mut self) -> Result<Member, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("unexpected end of the expression")?;
        self.at += 1;
        let literal = |v: Value<'static>| Ok(Member::Expr(Expr::Literal(v)));
        match token {
            Token::Int(i) => literal(Value::Int(i)),
            Token::Uint(u) => literal(Value::Uint(u)),
            Token::Str(s) => literal(Value::Str(Cow::Owned(s))),
            Token::Punct("(") => {
                let inner = self.expr()?;
                self.expect(")")?;
                Ok(Member::Expr(inner))
            }
            Token::Punct("[") => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Member::Expr(Expr::List(items)))
            }
            Token::Ident(word) => match word.as_str() {
                "true" => literal(Value::Bool(true)),
                "false" => literal(Value::Bool(false)),
                "has" => {
                    self.expect("(")?;
                    let attr = self.has_argument()?;
                    self.expect(")")?;
                    Ok(Member::Expr(Expr::Has(attr)))
                }
                "size" => {
                    self.expect("(")?;
                    let inner = self.expr()?;
                    self.expect(")")?;
                    Ok(Member::Expr(Expr::Size(Box::new(inner))))
                }
                "null" => Err("null is not supported".into()),
                _ => Ok(Member::Path(word)),
            },
            other => Err(format!("unexpected {other}")),
        }
    }

    /// `has(a.b.c)`: an attribute, or a header of `request.headers`/`response.headers`.
    fn has_argument(&mut self) -> Result<Attr, String> {
        let mut path = match self.tokens.get(self.at).cloned() {
            Some(Token::Ident(word)) => word,
            _ => return Err("has() needs a field selection".into()),
        };
        self.at += 1;
        while self.eat(".") {
            let Some(Token::Ident(field)) = self.tokens.get(self.at).cloned() else {
                return Err("expected a field name after \".\"".into());
            };
            self.at += 1;
            if path.ends_with(".headers") {
                return self.header(&path, &field);
            }
            path = format!("{path}.{field}");
        }
        Attr::named(&path, self.headers).ok_or_else(|| format!("unknown attribute {path}"))
    }
}

#[cfg(test)]
mod tests;
