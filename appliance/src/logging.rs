//! Log output: plain text to a terminal, JSON lines otherwise (journald, files, pipes), or as
//! `[log] format` says; never ANSI colours when stderr is not a terminal. Lines written while
//! serving a request carry its `request_id` (the span set up by `ops::request_id`).

use std::io::IsTerminal;

use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// Human-readable text (colours only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: the log format (the level comes from `RUST_LOG`, default `info`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (default), `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .init();
    } else {
        builder.with_ansi(terminal).init();
    }
}
