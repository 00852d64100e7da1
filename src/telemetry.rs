//! Logging setup: `tracing` to stderr, as text for people or JSON for log pipelines.
//!
//! Request-controlled strings (a review's uid, a namespace name, a parser's message) reach
//! log fields. JSON escapes them; the text format escapes every control character in
//! every field value too, so a uid holding `\n` and a made-up log line cannot forge a
//! line (an `audit: ... allowed` one, say) in the text log.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(s, true)
    }
}

/// Install the global subscriber. `filter` is an `EnvFilter` directive such as `info` or
/// `nsguard=debug,kube=warn`; `RUST_LOG`, when set, wins.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(write_escaped_field).delimited(" "),
            )
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))
}

/// One text-format field, `name=value` (the message bare), its value escaped.
fn write_escaped_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let mut text = String::new();
    write!(text, "{value:?}")?;
    match field.name() {
        "message" => write!(writer, "{}", Escaped(&text)),
        name => write!(writer, "{name}={}", Escaped(&text)),
    }
}

/// A string with every control character (and Unicode line or paragraph separator)
/// written as an escape: one log event stays one line.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(
            Escaped("uid\n2026-11-30T00:00:00Z  INFO audit: allowed\r\t\u{1b}[31m\u{2028}é")
                .to_string(),
            "uid\\n2026-11-30T00:00:00Z  INFO audit: allowed\\r\\t\\u{1b}[31m\\u{2028}é"
        );
        assert_eq!(Escaped("plain").to_string(), "plain");
    }
}
