//! The `notifications` block of an instrument file: which `helix.*` events notify, through
//! which backends (Slack, GitHub, a generic webhook), with the secrets read from the
//! environment variables the file names. An error drops only the event it is in, so auth and
//! the other events of the file keep working; every error names its key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::file::ConfigIssue;

/// A value read from the environment that must never be shown (a webhook URL, a token).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// What to do with a closed GitHub issue when its error class recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    Reopen,
    NewIssue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackRule {
    /// A label only: the webhook decides where messages land.
    pub channel: String,
    /// The environment variable the webhook came from: the key of rate-limit windows and digests.
    pub webhook_env: String,
    pub webhook: Secret,
    /// As configured; the dispatcher raises it to its minimum window.
    pub sample_window: Duration,
    pub max_per_window: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GithubRule {
    /// `owner/repo`.
    pub repo: String,
    pub labels: Vec<String>,
    pub token: Secret,
    /// Close an issue after this long without a recurrence; `None`: never.
    pub auto_close_after: Option<Duration>,
    pub on_recurrence_after_close: Recurrence,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRule {
    pub url_env: String,
    pub url: Secret,
    /// HMAC-SHA256 key of the signature header; `None`: unsigned.
    pub secret: Option<Secret>,
}

/// How one event name notifies.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRule {
    /// Go `text/template` over the event's metadata.
    pub message_template: Option<String>,
    pub slack: Option<SlackRule>,
    pub github: Option<GithubRule>,
    pub webhook: Option<WebhookRule>,
}

/// The usable part of a file's `notifications` block and the errors of the rest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notifications {
    /// By event name (`helix.error`, `helix.event.…`).
    pub events: BTreeMap<String, EventRule>,
    /// Errors; each names the key under `notifications` it is about.
    pub issues: Vec<ConfigIssue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifications {
    slack_webhook_env: Option<String>,
    github_token_env: Option<String>,
    #[serde(default)]
    events: BTreeMap<String, serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    message_template: Option<String>,
    slack: Option<RawSlack>,
    github: Option<RawGithub>,
    webhook: Option<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    channel: Option<String>,
    webhook_env: Option<String>,
    sample_window_seconds: Option<f64>,
    max_per_window: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    repo: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    auto_close_after_days: Option<f64>,
    on_recurrence_after_close: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url_env: Option<String>,
    secret_env: Option<String>,
}

/// Default Slack window when the file gives none (the older herald's documented example).
pub const DEFAULT_SAMPLE_WINDOW: Duration = Duration::from_secs(600);
/// Events of one file at most (each is a rule the dispatcher consults).
pub const MAX_EVENTS: usize = 1000;

/// Check a parsed block; `env` reads an environment variable.
pub(super) fn check(mut raw: RawNotifications, env: &dyn Fn(&str) -> Option<String>) -> Notifications {
    let mut out = Notifications::default();
    if raw.events.len() > MAX_EVENTS {
        out.issues.push(issue("notifications.events", format!("{} events; at most {MAX_EVENTS}", raw.events.len())));
        return out;
    }
    for (name, value) in std::mem::take(&mut raw.events) {
        let key = format!("notifications.events.{name}");
        let mut issues = Vec::new();
        if !name.starts_with("helix.") {
            issues.push(issue(&key, "an event name starts with \"helix.\" (helix.error, helix.event.<name>)"));
        }
        let raw_event: RawEvent = match serde_norway::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                issues.push(issue(&key, super::file::yaml_message(&e)));
                out.issues.extend(issues);
                continue;
            }
        };
        let rule = event(&key, raw_event, &raw, env, &mut issues);
        if issues.is_empty() {
            out.events.insert(name, rule);
        } else {
            out.issues.extend(issues);
        }
    }
    out
}

fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue { key: key.to_owned(), message: message.into() }
}

/// The value of the variable named under `key`, or an issue.
fn secret_from(
    key: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Secret> {
    match env(var).map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Some(Secret(v)),
        _ => {
            issues
                .push(issue(key, format!("the environment variable {var} is not set or empty; set it to the secret")));
            None
        }
    }
}

fn event(
    key: &str,
    raw: RawEvent,
    block: &RawNotifications,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> EventRule {
    let slack = raw.slack.and_then(|s| slack(&format!("{key}.slack"), s, block, env, issues));
    let github = raw.github.and_then(|g| github(&format!("{key}.github"), g, block, env, issues));
    let webhook = raw.webhook.and_then(|w| webhook(&format!("{key}.webhook"), w, env, issues));
    if slack.is_none() && github.is_none() && webhook.is_none() && issues.is_empty() {
        issues.push(issue(key, "no backend: give slack, github or webhook"));
    }
    EventRule { message_template: raw.message_template, slack, github, webhook }
}

fn slack(
    key: &str,
    raw: RawSlack,
    block: &RawNotifications,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SlackRule> {
    let before = issues.len();
    let channel = raw.channel.map(|c| c.trim().to_owned()).unwrap_or_default();
    if !channel.starts_with('#') || channel.len() < 2 {
        issues.push(issue(&format!("{key}.channel"), "must be a channel name starting with '#', e.g. \"#alerts\""));
    }
    let max_per_window = match raw.max_per_window {
        Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
        Some(_) => {
            issues.push(issue(&format!("{key}.max_per_window"), "must be at least 1"));
            1
        }
        None => {
            issues.push(issue(&format!("{key}.max_per_window"), "missing; how many messages per window (>= 1)"));
            1
        }
    };
    let sample_window = match raw.sample_window_seconds {
        None => DEFAULT_SAMPLE_WINDOW,
        Some(s) if s.is_finite() && s > 0.0 && s <= 31.0 * 86_400.0 => Duration::from_secs_f64(s),
        Some(_) => {
            issues.push(issue(
                &format!("{key}.sample_window_seconds"),
                "must be a number of seconds above 0, at most 31 days",
            ));
            DEFAULT_SAMPLE_WINDOW
        }
    };
    let (env_key, var) = match (&raw.webhook_env, &block.slack_webhook_env) {
        (Some(v), _) => (format!("{key}.webhook_env"), v.trim().to_owned()),
        (None, Some(v)) => ("notifications.slack_webhook_env".to_owned(), v.trim().to_owned()),
        (None, None) => {
            issues.push(issue(
                &format!("{key}.webhook_env"),
                "no webhook: set notifications.slack_webhook_env or this event's webhook_env",
            ));
            return None;
        }
    };
    let webhook = secret_from(&env_key, &var, env, issues)?;
    (issues.len() == before).then_some(SlackRule { channel, webhook_env: var, webhook, sample_window, max_per_window })
}

fn github(
    key: &str,
    raw: RawGithub,
    block: &RawNotifications,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<GithubRule> {
    let before = issues.len();
    let repo = raw.repo.map(|r| r.trim().to_owned()).unwrap_or_default();
    let valid_part = |p: &str| {
        !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => {}
        _ => issues.push(issue(&format!("{key}.repo"), "must be \"owner/repo\"")),
    }
    if raw.labels.iter().any(|l| l.trim().is_empty() || l.len() > 50) {
        issues.push(issue(&format!("{key}.labels"), "each label is 1 to 50 characters"));
    }
    let auto_close_after = match raw.auto_close_after_days {
        None => None,
        Some(d) if (0.0..=36_500.0).contains(&d) => Some(Duration::from_secs_f64(d * 86_400.0)),
        Some(_) => {
            issues.push(issue(&format!("{key}.auto_close_after_days"), "must be a number of days >= 0"));
            None
        }
    };
    let on_recurrence_after_close = match raw.on_recurrence_after_close.as_deref().map(str::trim) {
        None | Some("reopen") => Recurrence::Reopen,
        Some("new_issue") => Recurrence::NewIssue,
        Some(_) => {
            issues.push(issue(&format!("{key}.on_recurrence_after_close"), "must be reopen or new_issue"));
            Recurrence::Reopen
        }
    };
    let Some(var) = block.github_token_env.as_deref().map(str::trim) else {
        issues.push(issue("notifications.github_token_env", "missing; a github backend needs the token's variable"));
        return None;
    };
    let token = secret_from("notifications.github_token_env", var, env, issues)?;
    (issues.len() == before).then_some(GithubRule {
        repo,
        labels: raw.labels.into_iter().map(|l| l.trim().to_owned()).collect(),
        token,
        auto_close_after,
        on_recurrence_after_close,
    })
}

fn webhook(
    key: &str,
    raw: RawWebhook,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<WebhookRule> {
    let Some(url_env) = raw.url_env.map(|v| v.trim().to_owned()) else {
        issues.push(issue(&format!("{key}.url_env"), "missing; the variable holding the URL to POST to"));
        return None;
    };
    let url = secret_from(&format!("{key}.url_env"), &url_env, env, issues)?;
    match reqwest::Url::parse(url.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            issues.push(issue(&format!("{key}.url_env"), format!("{url_env} does not hold an http(s) URL")));
            return None;
        }
    }
    let secret = match raw.secret_env {
        None => None,
        Some(var) => Some(secret_from(&format!("{key}.secret_env"), var.trim(), env, issues)?),
    };
    Some(WebhookRule { url_env, url, secret })
}

#[cfg(test)]
mod tests {
    use super::super::file::parse_with_env;
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOK" => Some("http://127.0.0.1:9/hook".into()),
            "OTHER_HOOK" => Some("http://127.0.0.1:9/other".into()),
            "TOKEN" => Some("ghp_secret".into()),
            _ => None,
        }
    }

    const GOOD: &str = "instrument_id: CHIME
notifications:
  slack_webhook_env: HOOK
  github_token_env: TOKEN
  events:
    helix.error:
      message_template: \"{{.stage}}: {{.message}}\"
      slack: {channel: \"#alerts\", sample_window_seconds: 60, max_per_window: 2}
      github: {repo: org/repo, labels: [helixobs, bug], auto_close_after_days: 7, on_recurrence_after_close: new_issue}
    helix.event.rfi:
      slack: {channel: \"#rfi\", webhook_env: OTHER_HOOK, max_per_window: 1}
      webhook: {url_env: HOOK, secret_env: TOKEN}
";

    #[test]
    fn a_full_block_parses_with_its_secrets_from_the_environment() {
        let config = parse_with_env(GOOD, &env).expect("valid");
        let n = &config.notifications;
        assert!(n.issues.is_empty(), "{:?}", n.issues);
        let error = &n.events["helix.error"];
        let slack = error.slack.as_ref().unwrap();
        assert_eq!((slack.channel.as_str(), slack.max_per_window), ("#alerts", 2));
        assert_eq!(slack.webhook.expose(), "http://127.0.0.1:9/hook");
        assert_eq!(slack.sample_window, Duration::from_secs(60));
        let github = error.github.as_ref().unwrap();
        assert_eq!(github.repo, "org/repo");
        assert_eq!(github.labels, ["helixobs", "bug"]);
        assert_eq!(github.on_recurrence_after_close, Recurrence::NewIssue);
        assert_eq!(github.auto_close_after, Some(Duration::from_secs(7 * 86_400)));
        let rfi = &n.events["helix.event.rfi"];
        assert_eq!(rfi.slack.as_ref().unwrap().webhook_env, "OTHER_HOOK");
        assert!(rfi.webhook.as_ref().unwrap().secret.is_some());
        assert!(!format!("{config:?}").contains("ghp_secret") && !format!("{config:?}").contains("9/hook"));
    }

    #[test]
    fn each_error_names_its_key_and_drops_only_its_event() {
        let text = "instrument_id: CHIME
auth: {type: token_introspection, verify_url: https://sso.example/verify}
notifications:
  slack_webhook_env: HOOK
  events:
    helix.error:
      slack: {channel: alerts, max_per_window: 1}
    helix.event.a:
      github: {repo: just-a-name}
    helix.event.b:
      slack: {channel: \"#b\", webhook_env: UNSET_HOOK, max_per_window: 1}
    helix.event.ok:
      slack: {channel: \"#ok\", max_per_window: 0}
    helix.event.fine:
      slack: {channel: \"#fine\", max_per_window: 3}
    error:
      slack: {channel: \"#x\", max_per_window: 1}
";
        let config = parse_with_env(text, &env).expect("the file itself is usable");
        assert!(config.auth.is_some(), "auth keeps working");
        let n = &config.notifications;
        assert_eq!(n.events.keys().collect::<Vec<_>>(), ["helix.event.fine"]);
        let says = |key: &str, text: &str| n.issues.iter().any(|i| i.key == key && i.message.contains(text));
        assert!(says("notifications.events.helix.error.slack.channel", "'#'"), "{:?}", n.issues);
        assert!(says("notifications.events.helix.event.a.github.repo", "owner/repo"), "{:?}", n.issues);
        assert!(says("notifications.github_token_env", "missing"), "{:?}", n.issues);
        assert!(
            says("notifications.events.helix.event.b.slack.webhook_env", "UNSET_HOOK is not set"),
            "{:?}",
            n.issues
        );
        assert!(says("notifications.events.helix.event.ok.slack.max_per_window", "at least 1"), "{:?}", n.issues);
        assert!(says("notifications.events.error", "helix."), "{:?}", n.issues);
    }

    #[test]
    fn a_missing_token_variable_and_an_unknown_key_are_reported() {
        let text = "instrument_id: X
notifications:
  github_token_env: NO_SUCH_TOKEN
  events:
    helix.error:
      github: {repo: o/r}
      slack: {chanel: \"#x\"}
";
        let n = parse_with_env(text, &env).unwrap().notifications;
        assert!(n.events.is_empty());
        assert!(
            n.issues.iter().any(|i| i.key == "notifications.events.helix.error" && i.message.contains("unknown field")),
            "{:?}",
            n.issues
        );
        let text = "instrument_id: X\nnotifications:\n  github_token_env: NO_SUCH_TOKEN\n  events:\n    helix.error:\n      github: {repo: o/r}\n";
        let n = parse_with_env(text, &env).unwrap().notifications;
        assert!(
            n.issues
                .iter()
                .any(|i| i.key == "notifications.github_token_env" && i.message.contains("NO_SUCH_TOKEN is not set")),
            "{:?}",
            n.issues
        );
    }
}
