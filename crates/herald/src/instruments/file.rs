//! One instrument file (`INSTRUMENTS_DIR/*.yml`, `*.yaml`): its YAML parsed into the one model
//! of an instrument's configuration, every error found reported with the key it is under.
//! Each top-level block has its own check (`auth` here, `notifications` in [`super::notifications`]);
//! keys this herald does not know are left alone, so files shared with other tools stay valid.

use std::fmt;

use serde::Deserialize;

use super::notifications::{self, Notifications};

/// What one instrument file configures.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentConfig {
    pub instrument_id: String,
    /// How the instrument signs in at `POST /auth/token`; `None`: it cannot.
    pub auth: Option<AuthBackend>,
    /// The events that notify; its errors do not make the file unusable.
    pub notifications: Notifications,
}

/// How a credential presented for an instrument is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthBackend {
    /// `type: secret`: SHA-256 of the credential, compared in constant time with this.
    Secret { api_key_hash: [u8; 32] },
    /// `type: token_introspection`: `GET verify_url` with `Authorization: Bearer <credential>`;
    /// 200 means valid.
    TokenIntrospection { verify_url: String },
}

/// Neither the hash nor the URL (which may carry a key in its query) is ever shown.
impl fmt::Debug for AuthBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl AuthBackend {
    /// The `type` as the file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthBackend::Secret { .. } => "secret",
            AuthBackend::TokenIntrospection { .. } => "token_introspection",
        }
    }
}

/// One error in a file: the key it is under (`auth.api_key_hash`; empty for the whole file)
/// and what is wrong. Never quotes a value that may be secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue { key: key.to_owned(), message: message.into() }
}

/// The file as YAML gives it; unknown keys are ignored.
#[derive(Deserialize)]
struct RawFile {
    instrument_id: Option<String>,
    auth: Option<RawAuth>,
    /// Checked on its own, so that its errors leave the rest of the file usable.
    notifications: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(rename = "type")]
    kind: Option<String>,
    api_key_hash: Option<String>,
    verify_url: Option<String>,
}

/// Longest instrument ID accepted (IDs are labels and path segments).
pub const MAX_INSTRUMENT_ID_BYTES: usize = 256;

/// Parse and check one file's text, with secrets from the process environment; on any error
/// outside `notifications`, every error found.
pub fn parse(text: &str) -> Result<InstrumentConfig, Vec<ConfigIssue>> {
    parse_with_env(text, &|name| std::env::var(name).ok())
}

/// [`parse`] with `env` reading the environment variables the file names.
pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<InstrumentConfig, Vec<ConfigIssue>> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    let raw: RawFile = match serde_path_to_error::deserialize(deserializer) {
        Ok(raw) => raw,
        Err(e) => {
            let key = e.path().to_string();
            // serde_path_to_error says "." for the document and "?" where YAML gave no key.
            let key = if key == "." || key == "?" { String::new() } else { key };
            return Err(vec![issue(&key, yaml_message(e.inner()))]);
        }
    };
    let mut issues = Vec::new();
    let instrument_id = match raw.instrument_id.map(|s| s.trim().to_owned()) {
        None => {
            issues.push(issue("instrument_id", "missing; every instrument file names its instrument"));
            String::new()
        }
        Some(id) if id.is_empty() => {
            issues.push(issue("instrument_id", "empty"));
            id
        }
        Some(id) if id.len() > MAX_INSTRUMENT_ID_BYTES || id.chars().any(char::is_control) => {
            issues.push(issue(
                "instrument_id",
                format!("must be at most {MAX_INSTRUMENT_ID_BYTES} bytes without control characters"),
            ));
            id
        }
        Some(id) => id,
    };
    let auth = raw.auth.and_then(|a| auth_block(a, &mut issues));
    let notifications = match raw.notifications {
        None | Some(serde_norway::Value::Null) => Notifications::default(),
        Some(value) => match serde_norway::from_value(value) {
            Ok(block) => notifications::check(block, env),
            Err(e) => {
                Notifications { issues: vec![issue("notifications", yaml_message(&e))], ..Notifications::default() }
            }
        },
    };
    if issues.is_empty() {
        Ok(InstrumentConfig { instrument_id, auth, notifications })
    } else {
        Err(issues)
    }
}

/// A serde/YAML error without the offending value's text where YAML would quote it (a
/// mistyped hash or URL could be a secret); the position stays.
pub(super) fn yaml_message(e: &serde_norway::Error) -> String {
    let mut message = e.to_string();
    // serde names the value it could not use as `invalid type: string "…"`; keep the kind.
    if let Some(start) = message.find(" \"") {
        if let Some(len) = message[start + 2..].find('"') {
            message.replace_range(start..start + 3 + len, "");
        }
    }
    message
}

fn auth_block(raw: RawAuth, issues: &mut Vec<ConfigIssue>) -> Option<AuthBackend> {
    match raw.kind.as_deref().map(str::trim) {
        Some("secret") => {
            if raw.verify_url.is_some() {
                issues.push(issue("auth.verify_url", "only for type token_introspection"));
            }
            let Some(hash) = raw.api_key_hash else {
                issues.push(issue(
                    "auth.api_key_hash",
                    "missing; type secret needs \"sha256:<64 hex>\" (echo -n SECRET | sha256sum)",
                ));
                return None;
            };
            match parse_hash(&hash) {
                Ok(api_key_hash) => Some(AuthBackend::Secret { api_key_hash }),
                Err(why) => {
                    issues.push(issue("auth.api_key_hash", why));
                    None
                }
            }
        }
        Some("token_introspection") => {
            if raw.api_key_hash.is_some() {
                issues.push(issue("auth.api_key_hash", "only for type secret"));
            }
            let Some(url) = raw.verify_url.map(|u| u.trim().to_owned()) else {
                issues.push(issue("auth.verify_url", "missing; type token_introspection needs an http(s) URL"));
                return None;
            };
            match reqwest::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    Some(AuthBackend::TokenIntrospection { verify_url: url })
                }
                _ => {
                    issues.push(issue("auth.verify_url", "not an http:// or https:// URL"));
                    None
                }
            }
        }
        Some(other) if !other.is_empty() => {
            issues.push(issue("auth.type", format!("unknown type {other:?}; use secret or token_introspection")));
            None
        }
        _ => {
            issues.push(issue("auth.type", "missing; use secret or token_introspection"));
            None
        }
    }
}

/// `sha256:<64 hex>` → the 32 bytes.
fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let Some(hex) = text.trim().strip_prefix("sha256:") else {
        return Err("must start with \"sha256:\" followed by 64 hex digits".into());
    };
    if hex.len() != 64 {
        return Err(format!("must be 64 hex digits after \"sha256:\" (a SHA-256), not {}", hex.len()));
    }
    helix_model::ids::from_hex_array::<32>(hex).ok_or_else(|| "is not hexadecimal after \"sha256:\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn a_secret_and_an_introspection_instrument_and_one_without_auth() {
        let secret = parse(&format!("instrument_id: CHIME\nauth:\n  type: secret\n  api_key_hash: \"{HASH}\"\n"))
            .expect("valid");
        assert_eq!(secret.instrument_id, "CHIME");
        assert!(matches!(secret.auth, Some(AuthBackend::Secret { api_key_hash }) if api_key_hash[0] == 0x2b));
        let introspection =
            parse("instrument_id: FRB\nauth: {type: token_introspection, verify_url: https://sso.example/verify}\n")
                .expect("valid");
        assert_eq!(
            introspection.auth,
            Some(AuthBackend::TokenIntrospection { verify_url: "https://sso.example/verify".into() })
        );
        let plain = parse("instrument_id: PLAIN\n").expect("valid");
        assert_eq!(plain.auth, None);
    }

    #[test]
    fn unknown_top_level_keys_are_left_to_other_readers() {
        let with_notifications = "instrument_id: CHIME\nnotifications:\n  events: {}\nteam: frb\n";
        assert_eq!(parse(with_notifications).expect("valid").instrument_id, "CHIME");
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let issues =
            parse("auth:\n  type: secret\n  api_key_hash: \"md5:abc\"\n  verify_url: http://x\n").expect_err("broken");
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["instrument_id", "auth.verify_url", "auth.api_key_hash"]);
        let cases = [
            ("instrument_id: X\nauth: {type: secret}\n", "auth.api_key_hash", "missing"),
            ("instrument_id: X\nauth: {type: secret, api_key_hash: \"sha256:12\"}\n", "auth.api_key_hash", "64 hex"),
            ("instrument_id: X\nauth: {type: password}\n", "auth.type", "unknown type"),
            ("instrument_id: X\nauth: {verify_url: http://x}\n", "auth.type", "missing"),
            ("instrument_id: X\nauth: {type: token_introspection, verify_url: ftp://x}\n", "auth.verify_url", "http"),
            ("instrument_id: X\nauth: {type: secret, api_key: y}\n", "auth.api_key", "unknown field"),
            ("instrument_id: [1, 2]\n", "instrument_id", "invalid type"),
            ("instrument_id: \"\"\n", "instrument_id", "empty"),
            ("instrument_id: X\n  auth: [\n", "", "line"),
        ];
        for (text, key, says) in cases {
            let issues = parse(text).expect_err(text);
            assert!(
                issues.iter().any(|i| i.key == key && i.message.contains(says)),
                "{text:?}: expected {key}: …{says}…, got {issues:?}"
            );
        }
        let bad_hex =
            format!("instrument_id: X\nauth: {{type: secret, api_key_hash: \"sha256:{}\"}}\n", "zz".repeat(32));
        assert!(parse(&bad_hex).expect_err("hex")[0].message.contains("hexadecimal"));
    }

    #[test]
    fn errors_and_debug_output_never_show_the_hash_or_url() {
        let secretish = "s3cr3t-value-0123456789";
        let issues =
            parse(&format!("instrument_id: X\nauth: {{type: secret, api_key_hash: [\"{secretish}\"]}}\n")).unwrap_err();
        assert!(!format!("{issues:?}").contains(secretish), "{issues:?}");
        let issues = parse(&format!("instrument_id: {{k: \"{secretish}\"}}\n")).unwrap_err();
        assert!(!format!("{issues:?}").contains(secretish), "{issues:?}");
        let config = parse(&format!("instrument_id: X\nauth: {{type: secret, api_key_hash: \"{HASH}\"}}\n")).unwrap();
        assert!(!format!("{config:?}").contains("2bb80d"), "{config:?}");
        let config =
            parse("instrument_id: X\nauth: {type: token_introspection, verify_url: \"https://h/v?key=K1\"}\n").unwrap();
        assert!(!format!("{config:?}").contains("key=K1"), "{config:?}");
    }
}
