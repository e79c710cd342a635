//! Text that came from a plugin (its log lines, its error messages, whatever a worker prints on
//! stderr) is untrusted and may carry personal numbers. Before it reaches the appliance's log or
//! an error: control characters become spaces, digit runs that look like an ID, phone or card
//! number (11 or more digits, spaces or dashes between them allowed; 17 digits and an `X`) become
//! `[number]`, and the text is capped at [`MAX_PLUGIN_TEXT`] bytes.

use tokio::io::AsyncReadExt;

/// Longest plugin-supplied text kept, in bytes (then `…`).
pub const MAX_PLUGIN_TEXT: usize = 256;
/// Digit runs this long or longer are personal numbers (mainland phone numbers have 11 digits).
const MIN_NUMBER_DIGITS: usize = 11;
/// What replaces a personal number.
const REDACTED: &str = "[number]";

/// Scrubs and caps one plugin-supplied text (see the module doc).
pub fn scrub_plugin_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len().min(MAX_PLUGIN_TEXT + 8));
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            // A run: digits, with single spaces or dashes between digits.
            let mut j = i;
            let mut digits = 0;
            let mut end = i;
            while j < chars.len() {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if matches!(chars[j], ' ' | '-')
                    && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j += 1;
                } else {
                    break;
                }
            }
            // A resident ID ends in a check character that may be X.
            if digits == 17 && chars.get(end).is_some_and(|c| matches!(c, 'X' | 'x')) {
                digits += 1;
                end += 1;
            }
            if digits >= MIN_NUMBER_DIGITS {
                out.push_str(REDACTED);
            } else {
                out.extend(&chars[i..end]);
            }
            i = end;
            continue;
        }
        let c = chars[i];
        out.push(if c.is_control() { ' ' } else { c });
        i += 1;
    }
    cap(out)
}

fn cap(mut s: String) -> String {
    if s.len() <= MAX_PLUGIN_TEXT {
        return s;
    }
    let mut end = MAX_PLUGIN_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// Emits one plugin log line (ABI `log` callback), scrubbed. In the host process it goes to the
/// appliance's log; in a worker process (no log subscriber) to stderr, which the host reads and
/// scrubs again ([`forward_worker_stderr`]).
pub fn emit_plugin_log(level: i32, msg: &str) {
    let msg = scrub_plugin_text(msg);
    if !tracing::dispatcher::has_been_set() {
        eprintln!("plugin log (level {level}): {msg}");
        return;
    }
    match level {
        1 => tracing::error!(target: "plugin", "{msg}"),
        2 => tracing::warn!(target: "plugin", "{msg}"),
        3 => tracing::info!(target: "plugin", "{msg}"),
        _ => tracing::debug!(target: "plugin", "{msg}"),
    }
}

/// Reads a worker's stderr line by line (lines capped, however long the plugin writes) and logs
/// each scrubbed under the plugin's name, until the worker exits.
pub fn forward_worker_stderr(plugin: String, mut stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let mut line: Vec<u8> = Vec::new();
        let mut overflow = false;
        loop {
            let n = match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    log_worker_line(&plugin, &line);
                    line.clear();
                    overflow = false;
                } else if line.len() < MAX_PLUGIN_TEXT * 4 {
                    line.push(b);
                } else if !overflow {
                    overflow = true;
                }
            }
        }
        if !line.is_empty() {
            log_worker_line(&plugin, &line);
        }
    });
}

fn log_worker_line(plugin: &str, line: &[u8]) {
    let text = scrub_plugin_text(&String::from_utf8_lossy(line));
    if !text.trim().is_empty() {
        tracing::info!(target: "plugin", plugin = %plugin, "worker: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_numbers_are_redacted_and_short_numbers_kept() {
        let s = scrub_plugin_text(
            "id 11010519491231002X phone +86 138 0013 8000 card 6222-0200-0000-0000-018 \
             code 123456 port 8443 score 96.5 id2 110105194912310021",
        );
        for needle in [
            "110105",
            "002X",
            "138",
            "8000",
            "6222",
            "0018",
            "110105194912310021",
        ] {
            assert!(!s.contains(needle), "{needle} in {s}");
        }
        assert!(s.contains("code 123456") && s.contains("port 8443"), "{s}");
        assert_eq!(s.matches(REDACTED).count(), 4, "{s}");
    }

    #[test]
    fn control_characters_and_length_are_capped() {
        let s = scrub_plugin_text("a\nforged line\r\u{1b}[31m");
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\u{1b}'));
        let long = "张".repeat(500);
        let s = scrub_plugin_text(&long);
        assert!(s.len() <= MAX_PLUGIN_TEXT + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }

    #[test]
    fn digits_split_by_letters_are_separate_runs() {
        assert_eq!(scrub_plugin_text("v1.2.3 at 12:30"), "v1.2.3 at 12:30");
        assert_eq!(scrub_plugin_text("13800138000x"), "[number]x");
    }
}
