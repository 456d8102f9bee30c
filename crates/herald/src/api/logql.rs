//! The LogQL subset of the Loki-compatible API (docs/api.md "Loki-compatible API"): a
//! recursive-descent parser from query text to [`Query`], and the evaluation of a parsed query
//! against one line's body and labels. Pure: no store, no HTTP. What the labels of a stored
//! record are is `loki.rs`'s business; here a label is whatever the lookup returns.
//!
//! There is no well-kept LogQL crate to build on (the ones on crates.io are unmaintained or
//! AGPL), and the subset is small, so the parser is hand-written.

use regex::{Regex, RegexBuilder};

/// What the subset is, for every refusal.
pub const SUBSET: &str = "supported: a stream selector `{label=\"v\", …}` with =, !=, =~, !~; line filters \
    |= \"text\", != \"text\", |~ \"regex\", !~ \"regex\"; label filters `| label = \"v\"` (=, !=, =~, !~, \
    joined by `and` or `,`) on labels and structured metadata; `| json`, `| logfmt` and `| drop __error__` \
    (accepted, no effect); and for metrics `count_over_time(<log query> [range])`, optionally inside \
    `sum(…)` or `sum by (labels) (…)`";

/// Compiled size limit of one regular expression: far above any real filter, low enough that
/// a hostile pattern cannot make the herald build a huge automaton.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// `name op "value"`: a stream selector matcher or a label filter. Regexes are anchored at
/// both ends, as in Loki and Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(compile(&format!("^(?:{value})$"), value)?),
            MatchOp::Eq | MatchOp::Ne => None,
        };
        Ok(Matcher { name: name.to_owned(), op, value: value.to_owned(), regex })
    }

    /// Whether a label value passes; an absent label has the value "" (as in Loki).
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::NotRe, Some(re)) => !re.is_match(value),
            // `new` compiles a regex for both regex operators.
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }

    /// An equality with a non-empty value: the only matchers the store can answer.
    pub fn equality(&self) -> Option<&str> {
        (self.op == MatchOp::Eq && !self.value.is_empty()).then_some(self.value.as_str())
    }
}

/// A line filter: on the body, case-sensitive; regexes match anywhere in the line.
#[derive(Debug, Clone)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    Matches(Regex),
    NotMatches(Regex),
}

impl LineFilter {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(text) => line.contains(text.as_str()),
            LineFilter::NotContains(text) => !line.contains(text.as_str()),
            LineFilter::Matches(re) => re.is_match(line),
            LineFilter::NotMatches(re) => !re.is_match(line),
        }
    }
}

/// One pipeline stage that can drop a line (parsers and `drop __error__` leave no trace).
#[derive(Debug, Clone)]
pub enum Stage {
    Line(LineFilter),
    /// Every matcher must pass.
    Labels(Vec<Matcher>),
}

/// A log query: a stream selector and its pipeline.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub selector: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

impl LogQuery {
    /// Every matcher, of the selector and of the label filters, in query order.
    pub fn matchers(&self) -> impl Iterator<Item = &Matcher> {
        self.selector.iter().chain(self.stages.iter().flat_map(|stage| match stage {
            Stage::Labels(matchers) => matchers.as_slice(),
            Stage::Line(_) => &[],
        }))
    }

    /// The `|=` texts, in query order.
    pub fn contained_texts(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().filter_map(|stage| match stage {
            Stage::Line(LineFilter::Contains(text)) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Whether the line passes the selector and every stage. `label` gives a label's value
    /// (None when the line has no such label).
    pub fn matches<'a>(&self, line: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let passes = |m: &Matcher| m.matches(label(&m.name).unwrap_or(""));
        self.selector.iter().all(passes)
            && self.stages.iter().all(|stage| match stage {
                Stage::Line(filter) => filter.matches(line),
                Stage::Labels(matchers) => matchers.iter().all(passes),
            })
    }
}

/// How the counts of a metric query are grouped into series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `count_over_time(…)` alone: one series per stream.
    Streams,
    /// `sum by (labels) (…)`; `sum(…)` is `By(vec![])`, one series.
    By(Vec<String>),
}

/// `count_over_time(<log query> [range])`, possibly summed.
#[derive(Debug, Clone)]
pub struct CountQuery {
    pub query: LogQuery,
    pub range_ns: i64,
    pub grouping: Grouping,
}

#[derive(Debug, Clone)]
pub enum Query {
    Log(LogQuery),
    Count(CountQuery),
}

/// Parse a query of the subset; the error says what is wrong and what is supported.
pub fn parse(text: &str) -> Result<Query, String> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let query = parser.query()?;
    match parser.peek() {
        Tok::End => Ok(query),
        other => Err(parser.unsupported(&format!("unexpected {} after the query", other.describe()))),
    }
}

fn compile(pattern: &str, shown: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build().map_err(
        |e| match e {
            regex::Error::CompiledTooBig(_) => {
                format!("the regular expression `{}` is too large", clip(shown))
            }
            other => format!("`{}` is not a valid regular expression: {other}", clip(shown)),
        },
    )
}

/// At most 60 characters of user text, for messages.
fn clip(text: &str) -> String {
    let mut shown: String = text.chars().take(60).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

// ---- lexer ------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number(String),
    /// The raw text between `[` and `]`.
    Range(String),
    /// Punctuation and operators: `{ } ( ) , | |= |~ |> != !~ !> = =~ == > >= < <=`.
    Op(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("`{}`", clip(name)),
            Tok::Str(s) => format!("the string \"{}\"", clip(s)),
            Tok::Number(n) => format!("the number {}", clip(n)),
            Tok::Range(r) => format!("the range [{}]", clip(r)),
            Tok::Op(op) => format!("`{op}`"),
            Tok::End => "the end of the query".to_owned(),
        }
    }
}

const OPERATORS: [&str; 19] =
    ["|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "{", "}", "(", ")", ",", "|", "=", ">", "<"];

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            tokens.push(Tok::End);
            return Ok(tokens);
        };
        let at = text.len() - rest.len();
        if c == '#' {
            // A comment runs to the end of the line.
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
            continue;
        }
        if c == '"' || c == '`' {
            let (value, after) = string(rest).map_err(|why| format!("{why} (at character {})", at + 1))?;
            tokens.push(Tok::Str(value));
            rest = after;
            continue;
        }
        if c == '[' {
            let end = rest.find(']').ok_or_else(|| format!("`[` at character {} is not closed by `]`", at + 1))?;
            tokens.push(Tok::Range(rest[1..end].trim().to_owned()));
            rest = &rest[end + 1..];
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            tokens.push(Tok::Ident(rest[..len].to_owned()));
            rest = &rest[len..];
            continue;
        }
        if c.is_ascii_digit() {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(rest.len());
            tokens.push(Tok::Number(rest[..len].to_owned()));
            rest = &rest[len..];
            continue;
        }
        match OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                tokens.push(Tok::Op(op));
                rest = &rest[op.len()..];
            }
            None => return Err(format!("unexpected character `{c}` at character {}; {SUBSET}", at + 1)),
        }
    }
}

/// A double-quoted string with Go's escapes, or a raw backtick string; returns it and the rest.
fn string(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let quote = chars.next().map(|(_, c)| c).unwrap_or('"');
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((value, &text[i + c.len_utf8()..]));
        }
        if quote == '`' || c != '\\' {
            value.push(c);
            continue;
        }
        let (_, e) = chars.next().ok_or("a string is not closed")?;
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(c) = simple {
            value.push(c);
            continue;
        }
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            other => return Err(format!("unknown escape `\\{other}` in a string")),
        };
        let hex: String = (0..digits).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
        let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == digits);
        // \xHH is a byte in Go; only the ASCII ones make a character on their own.
        let ch = code.filter(|&n| e != 'x' || n < 0x80).and_then(char::from_u32);
        value.push(ch.ok_or_else(|| format!("`\\{e}{hex}` is not a valid escape in a string"))?);
    }
    Err("a string is not closed".to_owned())
}

// ---- parser -----------------------------------------------------------------------------------

struct Parser {
    tokens: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.at).unwrap_or(&Tok::End)
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.at += 1;
        tok
    }

    fn unsupported(&self, why: &str) -> String {
        format!("{why}; {SUBSET}")
    }

    fn expect(&mut self, op: &'static str, context: &str) -> Result<(), String> {
        match self.next() {
            Tok::Op(o) if o == op => Ok(()),
            other => Err(self.unsupported(&format!("expected `{op}` {context}, found {}", other.describe()))),
        }
    }

    fn query(&mut self) -> Result<Query, String> {
        match self.peek().clone() {
            Tok::Op("{") => Ok(Query::Log(self.log_query()?)),
            Tok::Ident(name) if name == "sum" => {
                self.next();
                let mut grouping = self.grouping()?;
                self.expect("(", "after `sum`")?;
                let (query, range_ns) = self.count_over_time()?;
                self.expect(")", "to close `sum(`")?;
                if let Some(trailing) = self.grouping()? {
                    if grouping.is_some() {
                        return Err(self.unsupported("`sum` has two groupings"));
                    }
                    grouping = Some(trailing);
                }
                Ok(Query::Count(CountQuery { query, range_ns, grouping: Grouping::By(grouping.unwrap_or_default()) }))
            }
            Tok::Ident(name) if name == "count_over_time" => {
                let (query, range_ns) = self.count_over_time()?;
                Ok(Query::Count(CountQuery { query, range_ns, grouping: Grouping::Streams }))
            }
            other => Err(self.unsupported(&format!("a query cannot start with {}", other.describe()))),
        }
    }

    /// `by (a, b)` when present; `without` is refused.
    fn grouping(&mut self) -> Result<Option<Vec<String>>, String> {
        match self.peek().clone() {
            Tok::Ident(word) if word == "by" => {
                self.next();
                self.expect("(", "after `by`")?;
                let mut labels = Vec::new();
                loop {
                    match self.next() {
                        Tok::Op(")") if labels.is_empty() => break,
                        Tok::Ident(label) => labels.push(label),
                        other => {
                            return Err(
                                self.unsupported(&format!("expected a label in `by (…)`, found {}", other.describe()))
                            )
                        }
                    }
                    match self.next() {
                        Tok::Op(",") => continue,
                        Tok::Op(")") => break,
                        other => {
                            return Err(self
                                .unsupported(&format!("expected `,` or `)` in `by (…)`, found {}", other.describe())))
                        }
                    }
                }
                Ok(Some(labels))
            }
            Tok::Ident(word) if word == "without" => Err(self.unsupported("`without` is not supported")),
            _ => Ok(None),
        }
    }

    /// `count_over_time(<log query> [range])`; the range may also follow the selector directly.
    fn count_over_time(&mut self) -> Result<(LogQuery, i64), String> {
        match self.next() {
            Tok::Ident(name) if name == "count_over_time" => {}
            Tok::Ident(name) => {
                return Err(self.unsupported(&format!("the function `{}` is not supported", clip(&name))))
            }
            other => return Err(self.unsupported(&format!("expected count_over_time(…), found {}", other.describe()))),
        }
        self.expect("(", "after `count_over_time`")?;
        let selector = self.selector()?;
        let mut range = self.range()?;
        let stages = self.stages()?;
        if range.is_none() {
            range = self.range()?;
        }
        let range_ns = range.ok_or_else(|| self.unsupported("count_over_time needs a range, e.g. [5m]"))?;
        if let Tok::Ident(word) = self.peek() {
            if word == "offset" {
                return Err(self.unsupported("`offset` is not supported"));
            }
        }
        self.expect(")", "to close `count_over_time(`")?;
        Ok((LogQuery { selector, stages }, range_ns))
    }

    fn range(&mut self) -> Result<Option<i64>, String> {
        let Tok::Range(raw) = self.peek().clone() else { return Ok(None) };
        self.next();
        parse_prometheus_duration(&raw).map(Some)
    }

    fn log_query(&mut self) -> Result<LogQuery, String> {
        let selector = self.selector()?;
        let stages = self.stages()?;
        if let Tok::Range(_) = self.peek() {
            return Err(self.unsupported("a range `[…]` belongs inside count_over_time(…)"));
        }
        Ok(LogQuery { selector, stages })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, String> {
        self.expect("{", "to open the stream selector")?;
        let mut matchers = Vec::new();
        loop {
            if self.peek() == &Tok::Op("}") {
                self.next();
                break;
            }
            matchers.push(self.matcher("the stream selector")?);
            match self.next() {
                Tok::Op(",") => continue,
                Tok::Op("}") => break,
                other => {
                    return Err(self.unsupported(&format!(
                        "expected `,` or `}}` in the stream selector, found {}",
                        other.describe()
                    )))
                }
            }
        }
        // Loki's rule: a selector must narrow the streams down.
        if !matchers.iter().any(|m| matches!(m.op, MatchOp::Eq | MatchOp::Re) && !m.matches("")) {
            return Err(
                "queries require at least one regexp or equality matcher that does not match the empty string, \
                 e.g. {service_name=\"ingest\"} or {service_name=~\".+\"}"
                    .to_owned(),
            );
        }
        Ok(matchers)
    }

    /// `name op "value"` with op one of = != =~ !~.
    fn matcher(&mut self, place: &str) -> Result<Matcher, String> {
        let name = match self.next() {
            Tok::Ident(name) => name,
            other => {
                return Err(self.unsupported(&format!("expected a label name in {place}, found {}", other.describe())))
            }
        };
        let op = match self.next() {
            Tok::Op("=") => MatchOp::Eq,
            Tok::Op("!=") => MatchOp::Ne,
            Tok::Op("=~") => MatchOp::Re,
            Tok::Op("!~") => MatchOp::NotRe,
            Tok::Op(op) if matches!(op, "==" | ">" | ">=" | "<" | "<=") => {
                return Err(self.unsupported(&format!("the comparison `{name} {op}` is not supported")))
            }
            other => {
                return Err(
                    self.unsupported(&format!("expected =, !=, =~ or !~ after `{name}`, found {}", other.describe()))
                )
            }
        };
        match self.next() {
            Tok::Str(value) => Matcher::new(&name, op, &value),
            other => {
                Err(self
                    .unsupported(&format!("the value of `{name}` must be a quoted string, found {}", other.describe())))
            }
        }
    }

    fn stages(&mut self) -> Result<Vec<Stage>, String> {
        let mut stages = Vec::new();
        loop {
            let filter = match self.peek() {
                Tok::Op("|=") => Some(LineFilter::Contains as fn(String) -> LineFilter),
                Tok::Op("!=") => Some(LineFilter::NotContains as fn(String) -> LineFilter),
                Tok::Op(op @ ("|~" | "!~")) => {
                    let negated = *op == "!~";
                    self.next();
                    let pattern = self.line_filter_text()?;
                    let re = compile(&pattern, &pattern)?;
                    stages.push(Stage::Line(if negated {
                        LineFilter::NotMatches(re)
                    } else {
                        LineFilter::Matches(re)
                    }));
                    continue;
                }
                Tok::Op(op @ ("|>" | "!>")) => {
                    return Err(self.unsupported(&format!("pattern line filters (`{op}`) are not supported")))
                }
                Tok::Op("|") => None,
                _ => return Ok(stages),
            };
            self.next();
            if let Some(make) = filter {
                let text = self.line_filter_text()?;
                stages.push(Stage::Line(make(text)));
                continue;
            }
            if let Some(stage) = self.pipe_stage()? {
                stages.push(stage);
            }
        }
    }

    /// The string of a line filter; `or`, `ip(…)` and the like are refused.
    fn line_filter_text(&mut self) -> Result<String, String> {
        let text = match self.next() {
            Tok::Str(text) => text,
            other => {
                return Err(
                    self.unsupported(&format!("a line filter takes a quoted string, found {}", other.describe()))
                )
            }
        };
        if let Tok::Ident(word) = self.peek() {
            if word == "or" {
                return Err(self.unsupported("`or` in line filters is not supported"));
            }
        }
        Ok(text)
    }

    /// What follows a `|`: a parser (no effect), `drop __error__`, or a label filter expression.
    fn pipe_stage(&mut self) -> Result<Option<Stage>, String> {
        let Tok::Ident(word) = self.peek().clone() else {
            return Err(self.unsupported(&format!("expected a stage after `|`, found {}", self.peek().describe())));
        };
        let is_filter = matches!(self.tokens.get(self.at + 1), Some(Tok::Op(_)))
            && !matches!(self.tokens.get(self.at + 1), Some(Tok::Op("|" | "|=" | "|~" | "|>" | ")" | ",")));
        match word.as_str() {
            "json" | "logfmt" if !is_filter => {
                self.next();
                match self.peek() {
                    Tok::Ident(_) | Tok::Str(_) => {
                        Err(self.unsupported(&format!("`| {word}` takes no parameters here")))
                    }
                    _ => Ok(None),
                }
            }
            "drop" if !is_filter => {
                self.next();
                loop {
                    match self.next() {
                        Tok::Ident(label) if label == "__error__" || label == "__error_details__" => {}
                        other => {
                            return Err(self.unsupported(&format!(
                                "only `| drop __error__` (and __error_details__) is supported, found {}",
                                other.describe()
                            )))
                        }
                    }
                    if self.peek() != &Tok::Op(",") {
                        return Ok(None);
                    }
                    self.next();
                }
            }
            _ if is_filter => {
                let mut matchers = vec![self.matcher("a label filter")?];
                loop {
                    match self.peek() {
                        Tok::Op(",") => {}
                        Tok::Ident(word) if word == "and" => {}
                        Tok::Ident(word) if word == "or" => {
                            return Err(self.unsupported("`or` in label filters is not supported"))
                        }
                        _ => return Ok(Some(Stage::Labels(matchers))),
                    }
                    self.next();
                    matchers.push(self.matcher("a label filter")?);
                }
            }
            other => Err(self.unsupported(&format!("the stage `| {}` is not supported", clip(other)))),
        }
    }
}

/// A Prometheus duration: one or more `<integer><unit>` with units ms, s, m, h, d, w, y; > 0.
pub fn parse_prometheus_duration(raw: &str) -> Result<i64, String> {
    let bad = || format!("`{}` is not a duration (e.g. 30s, 5m, 1h30m; units ms, s, m, h, d, w, y)", clip(raw));
    if raw.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let scale: i64 = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 7 * 86_400_000_000_000,
            "y" => 365 * 86_400_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{}` is too long", clip(raw)))?;
    }
    if total == 0 {
        return Err(format!("the range `{}` must be longer than zero", clip(raw)));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn log(text: &str) -> LogQuery {
        match parse(text) {
            Ok(Query::Log(q)) => q,
            Ok(other) => panic!("{text}: not a log query: {other:?}"),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    /// A line with these labels (absent ones are absent).
    fn passes(query: &str, line: &str, labels: &[(&str, &str)]) -> bool {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        log(query).matches(line, |name| labels.get(name).copied())
    }

    #[test]
    fn selectors_filters_and_label_filters_decide_each_line() {
        let svc = [("service_name", "ingest"), ("level", "error"), ("helix_entity_id", "cand-42")];
        let cases: &[(&str, &str, bool)] = &[
            (r#"{service_name="ingest"}"#, "x", true),
            (r#"{service_name="other"}"#, "x", false),
            (r#"{service_name!="other", level="error"}"#, "x", true),
            (r#"{service_name=~"ing.*"}"#, "x", true),
            (r#"{service_name=~"ing"}"#, "x", false), // anchored
            (r#"{level="error", service_name!~"ing.*"}"#, "x", false),
            (r#"{service_name=~".+", trace_id=""}"#, "x", true), // absent is ""
            (r#"{service_name="ingest"} |= "disk full""#, "the disk full now", true),
            (r#"{service_name="ingest"} |= "Disk""#, "the disk full", false), // case-sensitive
            (r#"{service_name="ingest"} != "disk""#, "the disk full", false),
            (r#"{service_name="ingest"} |~ "d.sk""#, "the disk full", true), // unanchored
            (r#"{service_name="ingest"} |~ "(?i)DISK""#, "the disk", true),
            (r#"{service_name="ingest"} !~ "^the""#, "the disk", false),
            (r#"{service_name="ingest"} |= "a" |= "b" != "c""#, "ab", true),
            (r#"{service_name="ingest"} |= "a" |= "b" != "c""#, "abc", false),
            (r#"{service_name="ingest"} | helix_entity_id = "cand-42""#, "x", true),
            (r#"{service_name="ingest"} | helix_entity_id="cand-7""#, "x", false),
            (r#"{service_name="ingest"} | helix_entity_id != "cand-7""#, "x", true),
            (r#"{service_name="ingest"} | helix_entity_id =~ "cand-\\d+""#, "x", true),
            (r#"{service_name="ingest"} | helix_entity_id !~ "cand-.*""#, "x", false),
            (r#"{service_name="ingest"} | level="error" and helix_entity_id="cand-42""#, "x", true),
            (r#"{service_name="ingest"} | level="error", helix_entity_id="cand-7""#, "x", false),
            (r#"{service_name="ingest"} | json | level="error""#, "x", true),
            (r#"{service_name="ingest"} | logfmt |= "x""#, "x", true),
            (r#"{service_name="ingest"} | drop __error__, __error_details__"#, "x", true),
            (r#"{service_name="ingest"} | __error__ = """#, "x", true),
            ("{service_name=`ingest`} |= `a\\b`", "a\\b", true), // raw strings
            ("{service_name=\"ingest\"} |= \"tab\\there\"", "tab\there", true),
            ("{service_name=\"ingest\"} |= \"\\u00fc\"", "über", true),
            ("# a comment\n{service_name=\"ingest\"}", "x", true),
        ];
        for (query, line, want) in cases {
            assert_eq!(passes(query, line, &svc), *want, "{query} on {line:?}");
        }
    }

    #[test]
    fn equality_matchers_and_contained_texts_are_what_the_store_can_answer() {
        let q = log(r#"{service_name="a", level=~"e.*", trace_id=""} |= "x" != "y" | helix_entity_id="e" |= "zz""#);
        let eq: Vec<(&str, &str)> = q.matchers().filter_map(|m| m.equality().map(|v| (m.name.as_str(), v))).collect();
        assert_eq!(eq, [("service_name", "a"), ("helix_entity_id", "e")]);
        assert_eq!(q.contained_texts().collect::<Vec<_>>(), ["x", "zz"]);
    }

    #[test]
    fn metric_queries_parse_to_counts() {
        let cases: &[(&str, i64, Grouping)] = &[
            (r#"count_over_time({service_name="a"}[5m])"#, 300, Grouping::Streams),
            (r#"count_over_time({service_name="a"} |= "x" [1h30m])"#, 5_400, Grouping::Streams),
            (r#"count_over_time({service_name="a"}[10s] |= "x")"#, 10, Grouping::Streams),
            (r#"sum(count_over_time({service_name="a"}[1m]))"#, 60, Grouping::By(vec![])),
            (
                r#"sum by (level) (count_over_time({service_name="a"} | drop __error__[1m]))"#,
                60,
                Grouping::By(vec!["level".into()]),
            ),
            (
                r#"sum(count_over_time({service_name="a"}[1d])) by (level, service_name)"#,
                86_400,
                Grouping::By(vec!["level".into(), "service_name".into()]),
            ),
        ];
        for (text, seconds, grouping) in cases {
            match parse(text) {
                Ok(Query::Count(c)) => {
                    assert_eq!(c.range_ns, seconds * 1_000_000_000, "{text}");
                    assert_eq!(&c.grouping, grouping, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_constructs_are_refused_with_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (r#"{service_name="a"} | line_format "{{.x}}""#, "`| line_format`"),
            (r#"{service_name="a"} | label_format a=b"#, "`| label_format`"),
            (r#"{service_name="a"} | pattern "<x>""#, "`| pattern`"),
            (r#"{service_name="a"} | regexp "(?P<x>.)""#, "`| regexp`"),
            (r#"{service_name="a"} | json a="b""#, "takes no parameters"),
            (r#"{service_name="a"} | unwrap x"#, "`| unwrap`"),
            (r#"{service_name="a"} | drop level"#, "only `| drop __error__`"),
            (r#"{service_name="a"} | status > 500"#, "comparison"),
            (r#"{service_name="a"} | a="b" or c="d""#, "`or` in label filters"),
            (r#"{service_name="a"} |= "x" or "y""#, "`or` in line filters"),
            (r#"{service_name="a"} |> "<_> x""#, "pattern line filters"),
            (r#"{service_name="a"} |= ip("1.2.3.4")"#, "quoted string"),
            (r#"rate({service_name="a"}[5m])"#, "cannot start with `rate`"),
            (r#"sum(rate({service_name="a"}[5m]))"#, "`rate` is not supported"),
            (r#"sum without (level) (count_over_time({service_name="a"}[5m]))"#, "`without`"),
            (r#"count_over_time({service_name="a"}[5m] offset 1h)"#, "`offset`"),
            (r#"count_over_time({service_name="a"})"#, "needs a range"),
            (r#"count_over_time({service_name="a"}[0s])"#, "longer than zero"),
            (r#"count_over_time({service_name="a"}[5x])"#, "not a duration"),
            (r#"{service_name="a"}[5m]"#, "belongs inside count_over_time"),
            (r#"count_over_time({service_name="a"}[5m]) > 10"#, "after the query"),
            (r#"{service_name="a"} or {b="c"}"#, "after the query"),
            (r#"{service_name=a}"#, "quoted string"),
            (r#"{service_name=="a"}"#, "comparison"),
            (r#"{service_name="a""#, "expected `,` or `}`"),
            (r#"{service_name="a} "#, "not closed"),
            (r#"{service_name="a"} |~ "(""#, "not a valid regular expression"),
            (r#"{service_name=~"a{1000}{1000}"}"#, "too large"),
            (r#"{service_name=~".*"}"#, "at least one regexp or equality matcher"),
            (r#"{}"#, "at least one regexp or equality matcher"),
            (r#"{service_name!="a"}"#, "at least one regexp or equality matcher"),
            (r#"{service_name="\q"}"#, "unknown escape"),
            (r#"{service_name="a"} @ 5"#, "unexpected character `@`"),
            ("", "cannot start with the end of the query"),
        ];
        for (query, named) in cases {
            let err = parse(query).expect_err(query);
            assert!(err.contains(named), "{query}: {err}");
        }
        // Refusals of the grammar say what is supported.
        let err = parse(r#"{service_name="a"} | line_format "x""#).expect_err("refused");
        assert!(err.ends_with(SUBSET), "{err}");
    }

    #[test]
    fn prometheus_durations() {
        for (raw, ns) in
            [("1ms", 1_000_000), ("30s", 30_000_000_000), ("1h30m", 5_400_000_000_000), ("2w", 1_209_600_000_000_000)]
        {
            assert_eq!(parse_prometheus_duration(raw), Ok(ns), "{raw}");
        }
        for bad in ["", "5", "m", "1.5m", "-1m", "1mo", "99999999999999999y"] {
            assert!(parse_prometheus_duration(bad).is_err(), "{bad}");
        }
    }
}
