//! The Prometheus text exposition format (version 0.0.4), read back: the checks a scraper
//! applies, for tests and for anyone who wants to validate a scrape. `families` writes it
//! through the prometheus-client crate, so writer and checker are not one reading of the format.

use std::collections::BTreeMap;

/// What `Content-Type` a scrape answer carries.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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
