//! The one way commands print results: `--json` reports are typed values
//! written as kiln's deterministic JSON (sorted keys, two-space indent),
//! and text goes to stdout. A closed pipe (`kiln verify ... | head`) ends
//! the output quietly instead of panicking.

use serde::Serialize;
use std::io::Write;

/// Writes `text` to stdout as it is.
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    // A reader that went away is not an error worth reporting.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `value` as kiln's JSON, followed by a newline.
pub fn json<T: Serialize>(value: &T) {
    let mut bytes = kiln::json::pretty(value);
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    text(&String::from_utf8_lossy(&bytes));
}
