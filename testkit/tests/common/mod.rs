//! What the harness's tests share.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Only a guard against a hang.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e}"))
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names `ip netns list` and `ip link` show.
pub(crate) fn netns_and_links() -> String {
    let mut all = stdout(&run("ip", &["netns", "list"]));
    all.push_str(&stdout(&run("ip", &["-o", "link", "show"])));
    all
}

/// Whether `word` occurs in `text` as a whole word (not as part of
/// `mpt1x0h10` when looking for `mpt1x0h1`).
pub(crate) fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '@')
        .any(|w| w == word)
}
