//! `ConfigError`: every problem with a config file as one line that names where (file, line,
//! field path), what value, and what to do.

use std::path::{Path, PathBuf};

#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or TOML that does not fit the schema (unknown field, wrong type, missing field).
    #[error(
        "{}line {line}, column {column}: {field}: {message}",
        file_prefix(file)
    )]
    Syntax {
        file: Option<PathBuf>,
        line: usize,
        column: usize,
        /// Dotted path of the field, e.g. `service[1].backend[0].port`.
        field: String,
        message: String,
    },
    /// Well-formed TOML whose values break a rule.
    #[error("{}{at}: {message}", file_prefix(file))]
    Invalid {
        file: Option<PathBuf>,
        /// What the value belongs to, e.g. `service[0] "web": backend[1] 10.0.1.11:0`.
        at: String,
        message: String,
    },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => format!("{}: ", f.display()),
        None => String::new(),
    }
}

impl ConfigError {
    pub(super) fn invalid(at: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            at: at.into(),
            message: message.into(),
        }
    }

    /// Names `path` as the file the error was found in.
    pub(super) fn in_file(mut self, path: &Path) -> Self {
        match &mut self {
            ConfigError::Read { .. } => {}
            ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } => {
                *file = Some(path.to_path_buf())
            }
        }
        self
    }

    /// toml's own Display spans several lines (a source excerpt with a caret); keep its facts
    /// (line, column, message) and add the field path, on one line.
    pub(super) fn from_toml(text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(text.len(), |s| s.start);
        let at = locate(text, offset);
        // Our schema reads numbers as i64; say it in the reader's words.
        let mut message = one_line(err.message()).replace("expected i64", "expected an integer");
        if !at.line_text.is_empty() {
            message.push_str(&format!(" (in `{}`)", at.line_text));
        }
        ConfigError::Syntax {
            file: None,
            line: at.line,
            column: at.column,
            field: if at.field.is_empty() {
                "top level".into()
            } else {
                at.field
            },
            message,
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a byte offset falls in the file.
struct Location {
    line: usize,
    column: usize,
    /// Dotted field path, best effort (`service[0].health.path`); empty at the top level.
    field: String,
    /// The line's text, trimmed and shortened, empty when it is a table header or blank.
    line_text: String,
}

/// Finds the field path at `offset` by replaying the table headers above it. Best effort: it
/// understands the `[[service]]`, `[service.health]` (and other `[service.X]`), `[[service.backend]]` layout the docs use;
/// for anything else the line and column still point at the spot.
fn locate(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[..offset].matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;

    let mut table = String::new();
    let (mut service, mut backend) = (None::<usize>, None::<usize>);
    for l in text[..line_end].lines() {
        let Some(header) = table_header(l) else {
            continue;
        };
        table = match header {
            ("service", true) => {
                service = Some(service.map_or(0, |i| i + 1));
                backend = None;
                format!("service[{}]", service.unwrap_or(0))
            }
            ("service.backend", true) => {
                backend = Some(backend.map_or(0, |i| i + 1));
                format!(
                    "service[{}].backend[{}]",
                    service.unwrap_or(0),
                    backend.unwrap_or(0)
                )
            }
            // [service.health], [service.shunt], [service.load_alerts]
            (name, false) if name.starts_with("service.") => {
                format!("service[{}].{}", service.unwrap_or(0), &name["service.".len()..])
            }
            (name, _) => name.to_string(),
        };
    }

    let current = text[line_start..line_end].trim();
    let key = match current.split_once('=') {
        Some((k, _)) if table_header(current).is_none() => k.trim().trim_matches('"'),
        _ => "",
    };
    let field = match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key.to_string(),
        (false, false) => format!("{table}.{key}"),
    };
    let line_text = if table_header(current).is_some() || current.starts_with('#') {
        String::new()
    } else if current.chars().count() > 80 {
        format!("{}...", current.chars().take(77).collect::<String>())
    } else {
        current.to_string()
    };
    Location {
        line,
        column,
        field,
        line_text,
    }
}

/// `[[a.b]]` -> ("a.b", true), `[a.b]` -> ("a.b", false), anything else None.
fn table_header(line: &str) -> Option<(&str, bool)> {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("[[") {
        let end = rest.find("]]")?;
        return Some((rest[..end].trim(), true));
    }
    let rest = t.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some((rest[..end].trim(), false))
}
