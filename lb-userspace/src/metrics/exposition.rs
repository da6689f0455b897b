//! The Prometheus text exposition format (version 0.0.4), written and read back.
//!
//! Writing: samples can only be added through the `Family` that wrote their `# HELP` and
//! `# TYPE` lines, so every sample follows its TYPE and a family's samples stay together.
//! Reading (`parse`): the checks a scraper applies, for tests and for anyone who wants to
//! validate a scrape.

use std::{collections::BTreeMap, fmt::Write};

/// What `Content-Type` a scrape answer carries.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (restarts at 0 when its thing is recreated); name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value: counts print as integers, measurements as floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// A whole exposition, family after family.
#[derive(Default)]
pub struct Exposition {
    out: String,
    names: Vec<&'static str>,
}

impl Exposition {
    /// Starts a family: writes its HELP and TYPE lines. Panics on a name that is not a valid
    /// metric name, is used twice, or (for a counter) does not end in `_total`: all names are
    /// constants in this crate, so that is a bug the unit tests catch.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        assert!(!self.names.contains(&name), "metric family {name} written twice");
        assert!(kind != Kind::Counter || name.ends_with("_total"), "counter {name} must end in _total");
        self.names.push(name);
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family { out: &mut self.out, name }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Writes the samples of one family.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// One sample. Label names are constants of this crate (checked like metric names); label
    /// values are escaped.
    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: impl Into<Value>) -> &mut Self {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                assert!(valid_label_name(name), "invalid label name {name:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value.into() {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) => self.out.push_str(&format_float(v)),
        }
        self.out.push('\n');
        self
    }
}

/// A label value in a sample line: backslash, double quote and line feed are escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: backslash and line feed are escaped (quotes are not, in this format).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's ParseFloat spellings, which Prometheus reads; Rust prints `inf` and `NaN` otherwise.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// One sample as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: the type of every family and every sample in order.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include every pair of `labels`, if exactly
    /// one matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }

    /// Every sample of family `name`.
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// Reads an exposition and checks what a scraper relies on: every line is a HELP, a TYPE or a
/// sample; every sample's family has a TYPE before it, at most one, and its samples are not
/// split by another family; names and label names are valid; label values use only the three
/// escapes; no series (name and label set) appears twice; values are numbers; counters are not
/// negative; the text ends with a line feed. The error names the line.
pub fn parse(text: &str) -> Result<Scrape, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a line feed".into());
    }
    let mut scrape = Scrape::default();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let arg = parts.next();
            match keyword {
                "HELP" | "TYPE" => {
                    if !valid_metric_name(name) {
                        return Err(at(format!("invalid metric name {name:?}")));
                    }
                    if current.as_deref() != Some(name) {
                        if finished.iter().any(|f| f == name) {
                            return Err(at(format!("family {name} appears in two places")));
                        }
                        if let Some(c) = current.take() {
                            finished.push(c);
                        }
                        current = Some(name.to_string());
                    }
                }
                _ => continue, // other comments are allowed
            }
            if keyword == "TYPE" {
                let kind = arg.unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if scrape.samples.iter().any(|s| s.name == name) {
                    return Err(at(format!("TYPE of {name} after its samples")));
                }
                if scrape.types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(at(format!("second TYPE line for {name}")));
                }
            } else if let Some(help) = arg {
                check_escapes(help, &['\\', 'n']).map_err(at)?;
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        if !scrape.types.contains_key(&sample.name) {
            return Err(at(format!("sample of {} before (or without) its TYPE line", sample.name)));
        }
        if current.as_deref() != Some(sample.name.as_str()) {
            return Err(at(format!("sample of {} inside another family's block", sample.name)));
        }
        // NaN is not a count either.
        if scrape.types[&sample.name] == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at(format!("counter {} is {}", sample.name, sample.value)));
        }
        if !seen.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("the same series twice".into()));
        }
        scrape.samples.push(sample);
    }
    Ok(scrape)
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let label = &rest[..eq];
            if !valid_label_name(label) {
                return Err(format!("invalid label name {label:?}"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
            let (value, after) = read_quoted(rest)?;
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("value {v:?} is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| format!("timestamp {ts:?} is not an integer"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Reads a label value up to its closing quote; returns it unescaped and the text after.
fn read_quoted(s: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape \\{:?} in a label value", other.map(|(_, c)| c))),
            },
            '\n' => return Err("raw line feed in a label value".into()),
            c => value.push(c),
        }
    }
    Err("label value not closed".into())
}

fn check_escapes(s: &str, allowed: &[char]) -> Result<(), String> {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e) if allowed.contains(&e) => {}
                e => return Err(format!("bad escape \\{e:?} in HELP text")),
            }
        }
    }
    Ok(())
}
