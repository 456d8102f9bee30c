//! Error fingerprints for notifications: `instrument | event | normalised message | stage`
//! hashed to 16 hex characters, the same value the older herald computes for the same input
//! (so issues it opened are found again). Pure; `docs/notifications.md` explains the rule.

use std::sync::OnceLock;

use regex::Regex;
use sha2::{Digest, Sha256};

/// The volatile parts of a message, replaced by `?` in this order. Word boundaries and digits
/// are ASCII-only and `\s` is Go's ASCII set, as in the older herald's (Go RE2) patterns.
const PATTERNS: [&str; 5] = [
    // UUIDs (lowercase).
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    // Long lowercase hex (trace and span IDs).
    r"(?-u:\b)[0-9a-f]{16,}(?-u:\b)",
    // IPv4 dotted quads.
    r"(?-u:\b)[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?-u:\b)",
    // File paths.
    r#"/[^\t\n\x0C\r "']+"#,
    // Bare integers.
    r"(?-u:\b)[0-9]+(?-u:\b)",
];

fn patterns() -> &'static [Regex] {
    static COMPILED: OnceLock<Vec<Regex>> = OnceLock::new();
    // The patterns are constants checked by the tests below.
    COMPILED.get_or_init(|| PATTERNS.iter().map(|p| Regex::new(p).expect("valid pattern")).collect())
}

fn runs() -> &'static Regex {
    static RUNS: OnceLock<Regex> = OnceLock::new();
    RUNS.get_or_init(|| Regex::new(r"\?([\t\n\x0C\r ]*\?)+").expect("valid pattern"))
}

/// Whether `text` can hold a match of `PATTERNS[i]`: a character every match has (a cheap
/// scan that lets the regex be skipped, as it is for most error messages and patterns).
fn may_match(i: usize, text: &str) -> bool {
    let b = text.as_bytes();
    match i {
        0 => b.contains(&b'-'),
        1 => b.split(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f')).any(|run| run.len() >= 16),
        2 => b.contains(&b'.'),
        3 => b.contains(&b'/'),
        _ => b.iter().any(u8::is_ascii_digit),
    }
}

/// `message` with UUIDs, long hex, IPv4 addresses, paths and integers replaced by `?`, runs of
/// `?` (with only whitespace between) collapsed into one, and surrounding whitespace trimmed.
pub fn normalise(message: &str) -> String {
    let mut text = std::borrow::Cow::Borrowed(message);
    for (i, p) in patterns().iter().enumerate() {
        if !may_match(i, &text) {
            continue;
        }
        if let std::borrow::Cow::Owned(replaced) = p.replace_all(&text, "?") {
            text = std::borrow::Cow::Owned(replaced);
        }
    }
    // A run needs two `?`.
    if text.bytes().filter(|&c| c == b'?').nth(1).is_some() {
        if let std::borrow::Cow::Owned(collapsed) = runs().replace_all(&text, "?") {
            text = std::borrow::Cow::Owned(collapsed);
        }
    }
    text.trim_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']).to_owned()
}

/// The fingerprint of an event: the first 8 bytes of SHA-256 of
/// `instrument|event|normalise(message)|stage`, as 16 lowercase hex characters.
pub fn fingerprint(instrument_id: &str, event_name: &str, message: &str, stage: &str) -> String {
    // The joined input hashed piece by piece: the same bytes without building the string.
    let mut hash = Sha256::new();
    for part in [instrument_id, "|", event_name, "|", &normalise(message), "|", stage] {
        hash.update(part.as_bytes());
    }
    crate::ids::to_hex(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_normalisation_examples() {
        let cases = [
            ("entity 123e4567-e89b-12d3-a456-426614174000 failed", "entity ? failed"),
            ("trace id 0af7651916cd43dd8448eb211c80319c failed", "trace id ? failed"),
            ("connection to 192.168.1.42 timed out", "connection to ? timed out"),
            ("failed to open /data/archive/frb-2024-01.hdf5", "failed to open ?"),
            ("buffer overflow at offset 4096 bytes", "buffer overflow at offset ? bytes"),
            ("error at 192.168.1.1:8080", "error at ?:?"),
            ("", ""),
            ("disk full on archive node", "disk full on archive node"),
            ("  beam 3 4  5 dead ", "beam ? dead"),
            ("beam2 dead", "beam2 dead"),
            // Upper-case hex is not a trace ID; digits inside words stay.
            ("ID DEADBEEFDEADBEEF0 x1", "ID DEADBEEFDEADBEEF0 x1"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input), want, "{input:?}");
        }
    }

    #[test]
    fn one_class_one_fingerprint_and_every_input_part_counts() {
        let a = fingerprint("CHIME", "helix.error", "disk full on node 3", "hdf5_archiver");
        let b = fingerprint("CHIME", "helix.error", "disk full on node 7", "hdf5_archiver");
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let base = fingerprint("CHIME", "helix.error", "disk full", "");
        assert_ne!(base, fingerprint("VLA", "helix.error", "disk full", ""));
        assert_ne!(base, fingerprint("CHIME", "helix.warning", "disk full", ""));
        assert_ne!(
            fingerprint("CHIME", "helix.error", "disk full", "a"),
            fingerprint("CHIME", "helix.error", "disk full", "b")
        );
    }

    #[test]
    fn the_hash_is_sha256_of_the_joined_fields() {
        // echo -n 'CHIME|helix.error|disk full on node ?|hdf5_archiver' | sha256sum | cut -c1-16
        assert_eq!(fingerprint("CHIME", "helix.error", "disk full on node 3", "hdf5_archiver"), EXPECTED);
    }

    const EXPECTED: &str = "fad2a3e8995c2bfe";

    /// Every pattern applied, none skipped: what `normalise` must equal.
    fn normalise_unfiltered(message: &str) -> String {
        let mut text = message.to_owned();
        for p in patterns() {
            text = p.replace_all(&text, "?").into_owned();
        }
        runs().replace_all(&text, "?").trim_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']).to_owned()
    }

    #[test]
    fn skipping_the_patterns_a_message_cannot_match_changes_no_result() {
        let cases = [
            "beam 12 failed: ab",
            "no digits, no path",
            "0af7651916cd43dd8448eb211c80319c",
            "0af7651916cd43d",
            "x-0af7651916cd43dd-y",
            "uuid 123e4567-e89b-12d3-a456-426614174000.",
            "1.2.3.4 and 1.2.3 and v1.2",
            "path /a/b?c and ? ? and ?? and ?\t?",
            "a?b",
            "10/20/30 at 12:30:45.123",
            "?",
            " ? 7 ? ",
            "deadbeefdeadbeefdeadbeef-1",
            "résumé 42 ünïcödé/päth",
        ];
        for input in cases {
            assert_eq!(normalise(input), normalise_unfiltered(input), "{input:?}");
        }
        assert_eq!(
            fingerprint("CHIME", "helix.error", "beam 12 failed: ab", "search"),
            {
                let joined = format!("CHIME|helix.error|{}|search", normalise_unfiltered("beam 12 failed: ab"));
                crate::ids::to_hex(&Sha256::digest(joined.as_bytes())[..8])
            },
            "hashing the parts is hashing the joined input"
        );
    }
}
