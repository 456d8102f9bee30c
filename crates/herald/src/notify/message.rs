//! What a notification says, as pure functions of the outbox row: the plain text (a
//! `message_template` or the default), the Slack Block Kit payload and digest, the GitHub
//! issue title and body, and the webhook document. No I/O.

use std::collections::BTreeMap;

use helix_store::notify::{message_of, IssueRecord, OutboxItem};
use serde_json::{json, Value};

use crate::inspector::url_component;

/// Where a notification's links point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The Inspector, e.g. `http://localhost:8081` (no trailing `/`).
    pub ui_base: String,
    /// Grafana, for the Error Entities dashboard; `None`: no such button.
    pub grafana: Option<String>,
}

impl Links {
    pub fn entity(&self, entity_id: &str) -> String {
        format!("{}/entity/{}", self.ui_base, url_component(entity_id))
    }

    pub fn errors_dashboard(&self) -> Option<String> {
        self.grafana.as_ref().map(|g| format!("{g}/d/helix-error-entities"))
    }

    pub fn silences(&self, instrument_id: &str, fingerprint: &str) -> String {
        format!(
            "{}/notifications?instrument_id={}&fingerprint={}",
            self.ui_base,
            url_component(instrument_id),
            url_component(fingerprint)
        )
    }
}

/// Keep at most `max` bytes: `max - 1` (on a character boundary) and `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The text of a notification: the template's rendering (over the event's metadata) or, when
/// there is none or it fails, the default text.
pub fn text(item: &OutboxItem, template: Option<&str>, links: &Links) -> String {
    let inspect = links.entity(&item.entity_id);
    if let Some(template) = template {
        let data: std::collections::HashMap<String, gtmpl::Value> =
            item.metadata.iter().map(|(k, v)| (k.clone(), gtmpl::Value::from(v.as_str()))).collect();
        if let Ok(rendered) = gtmpl::template(template, gtmpl::Value::from(data)) {
            return format!("[{}] {rendered}\nEntity: {}\n🔍 Inspect: {inspect}", item.instrument_id, item.entity_id);
        }
    }
    let mut out = format!("[{}] {}", item.instrument_id, item.event_name);
    let message = message_of_item(item);
    if !message.is_empty() {
        out.push('\n');
        out.push_str(message);
    }
    if !item.stage.is_empty() {
        out.push_str(&format!("  (stage: {})", item.stage));
    }
    let extras = extras(item);
    if !extras.is_empty() {
        out.push('\n');
        out.push_str(&extras.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(" · "));
    }
    out.push_str(&format!("\nEntity: {}\n🔍 Inspect: {inspect}", item.entity_id));
    if let Some(d) = links.errors_dashboard() {
        out.push_str(&format!("\n📊 Error Entities: {d}"));
    }
    out
}

fn message_of_item(item: &OutboxItem) -> &str {
    item.metadata.get("message").or_else(|| item.metadata.get("exception.message")).map_or("", String::as_str)
}

/// The metadata shown beside the message, sorted by key.
fn extras(item: &OutboxItem) -> BTreeMap<&str, &str> {
    item.metadata
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "message" | "stage" | "exception.message"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Slack mrkdwn escaping.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Block Kit payload of one notification.
pub fn slack_message(item: &OutboxItem, text: &str, issue_urls: &[String], links: &Links) -> Value {
    let message = message_of_item(item);
    let mut body = format!("*{}*", escape(if message.is_empty() { &item.event_name } else { message }));
    if !item.stage.is_empty() {
        body.push_str(&format!("\n:label: Stage: `{}`", escape(&item.stage)));
    }
    for (k, v) in extras(item) {
        body.push_str(&format!("\n:gear: {}: {}", escape(k), escape(v)));
    }
    let mut buttons = vec![json!({"type": "button", "style": "primary",
        "text": {"type": "plain_text", "text": "Inspect Entity"}, "url": links.entity(&item.entity_id)})];
    if let Some(d) = links.errors_dashboard() {
        buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Error Dashboard"}, "url": d}));
    }
    buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Manage Silences"},
        "url": links.silences(&item.instrument_id, &item.fingerprint)}));
    let mut context: Vec<Value> =
        issue_urls.iter().map(|u| json!({"type": "mrkdwn", "text": format!(":link: <{u}|GitHub Issue>")})).collect();
    context.push(json!({"type": "mrkdwn", "text": format!("Fingerprint: `{}`", &item.fingerprint)}));
    context.push(json!({"type": "mrkdwn", "text": "HelixObs"}));
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                "text": truncate(&format!(":rotating_light:  [{}] {}", item.instrument_id, item.event_name), 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&body, 3000)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Entity*\n<{}|{}>", links.entity(&item.entity_id), escape(&item.entity_id))},
                {"type": "mrkdwn", "text": format!("*Instrument*\n{}", escape(&item.instrument_id))},
            ]},
            {"type": "actions", "elements": buttons},
            {"type": "context", "elements": context},
        ]
    })
}

/// A digest (a window's suppressed messages) or an overflow row (events that found the outbox
/// full), as one Slack message.
pub fn slack_digest(item: &OutboxItem, links: &Links) -> Value {
    let seconds = item.digest_window_ns / 1_000_000_000;
    let message = message_of_item(item);
    // An overflow row counts events that found the outbox full rather than a window's.
    let n = item.digest_count;
    let (headline, why) = if item.kind == helix_store::notify::OutboxKind::Overflow {
        let why = "not notified one by one (the notification outbox was full)".to_owned();
        (format!(":warning: *{n} more occurrence(s) not notified one by one* (the notification outbox was full)"), why)
    } else {
        (
            format!(":zzz: *{n} more occurrence(s) suppressed* in the last {seconds}s"),
            format!("suppressed in the last {seconds}s"),
        )
    };
    let headline = format!("{headline} — [{}] {}", item.instrument_id, item.event_name);
    let last = format!(
        "Last: {}{}\nEntity: <{}|{}>",
        escape(message),
        if item.stage.is_empty() { String::new() } else { format!(" (stage: {})", escape(&item.stage)) },
        links.entity(&item.entity_id),
        escape(&item.entity_id)
    );
    json!({
        "text": format!("{n} more occurrence(s) {why}: [{}] {}", item.instrument_id, message),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&last, 3000)}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("Fingerprint: `{}`", item.fingerprint)},
                {"type": "mrkdwn", "text": format!("<{}|Manage Silences>", links.silences(&item.instrument_id, &item.fingerprint))},
            ]},
        ]
    })
}

/// `[INST] message` (80 bytes), or with the stage (60 bytes of message).
pub fn issue_title(item: &OutboxItem) -> String {
    let message = message_of(&helix_model::EntityEvent {
        entity_id: String::new(),
        instrument_id: String::new(),
        event_name: String::new(),
        timestamp_ns: 0,
        metadata: item.metadata.clone(),
        trace_id: String::new(),
        span_id: String::new(),
        ordinal: 0,
    })
    .to_owned();
    let message = if message.is_empty() { item.event_name.clone() } else { message };
    if item.stage.is_empty() {
        format!("[{}] {}", item.instrument_id, truncate(&message, 80))
    } else {
        format!("[{}] {} (stage: {})", item.instrument_id, truncate(&message, 60), item.stage)
    }
}

/// The marker that finds an issue again (after a crash between its creation and its record).
pub fn issue_marker(instrument_id: &str, fingerprint: &str) -> String {
    format!("<!-- helixobs-fingerprint: {instrument_id}/{fingerprint} -->")
}

fn iso(ns: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0).unsigned_abs()))
        .to_string()
}

/// The issue body for the record's statistics (after this occurrence).
pub fn issue_body(item: &OutboxItem, record: &IssueRecord, links: &Links) -> String {
    let message = message_of_item(item);
    let mut body = String::new();
    body.push_str("## Error summary\n\n");
    body.push_str(&format!("- **Message:** {}\n", if message.is_empty() { "(none)" } else { message }));
    body.push_str(&format!("- **Normalised:** `{}`\n", helix_model::fingerprint::normalise(message)));
    body.push_str(&format!("- **Stage:** {}\n", if item.stage.is_empty() { "(none)" } else { &item.stage }));
    body.push_str(&format!("- **Instrument:** {}\n", item.instrument_id));
    body.push_str(&format!("- **Event type:** {}\n\n", item.event_name));
    body.push_str("## Occurrence statistics\n\n");
    body.push_str(&format!("- **First seen:** {}\n", iso(record.first_seen_ns)));
    body.push_str(&format!("- **Last seen:** {}\n", iso(record.last_updated_ns)));
    body.push_str(&format!("- **Total occurrences:** {}\n\n", record.entity_count));
    body.push_str("## Recent affected entities\n\n");
    for id in &record.recent_entity_ids {
        body.push_str(&format!("- [{id}]({})\n", links.entity(id)));
    }
    if let Some(d) = links.errors_dashboard() {
        body.push_str(&format!("\n[Error Entities dashboard]({d})\n"));
    }
    body.push_str(&format!(
        "\n---\nTracked automatically by HelixObs (fingerprint `{}`). [Manage silences]({}). Do not close \
         manually — use the silence API to suppress.\n{}\n",
        item.fingerprint,
        links.silences(&item.instrument_id, &item.fingerprint),
        issue_marker(&item.instrument_id, &item.fingerprint)
    ));
    body
}

/// The comment on an issue reopened by a recurrence.
pub fn reopen_comment(item: &OutboxItem, links: &Links, now_ns: i64) -> String {
    format!(
        "**Recurred after close** ({})\n\n| Entity | Inspector |\n|---|---|\n| {} | [inspect]({}) |\n",
        iso(now_ns),
        item.entity_id,
        links.entity(&item.entity_id)
    )
}

/// The comment on an issue closed for lack of recurrence.
pub fn auto_close_comment(record: &IssueRecord, after: std::time::Duration) -> String {
    format!(
        "Closed automatically by HelixObs: no recurrence since {} ({}). A recurrence {} it.",
        iso(record.last_updated_ns),
        humantime::format_duration(std::time::Duration::from_secs(after.as_secs().max(1))),
        "reopens or replaces"
    )
}

/// The generic webhook document.
pub fn webhook_document(item: &OutboxItem, text: &str, issue_urls: &[String], links: &Links) -> Value {
    json!({
        "kind": item.kind.as_str(),
        "instrument_id": item.instrument_id,
        "event_name": item.event_name,
        "entity_id": item.entity_id,
        "stage": item.stage,
        "message": message_of_item(item),
        "fingerprint": item.fingerprint,
        "timestamp_ns": item.timestamp_ns,
        "metadata": item.metadata,
        "text": text,
        "issue_urls": issue_urls,
        "suppressed": item.digest_count,
        "links": {
            "entity": links.entity(&item.entity_id),
            "silences": links.silences(&item.instrument_id, &item.fingerprint),
            "errors_dashboard": links.errors_dashboard(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_store::notify::{OutboxKind, Progress};

    fn item(metadata: &[(&str, &str)]) -> OutboxItem {
        OutboxItem {
            id: 1,
            kind: OutboxKind::Event,
            instrument_id: "CHIME".into(),
            event_name: "helix.error".into(),
            entity_id: "blk 1".into(),
            stage: "beamform".into(),
            fingerprint: "0123456789abcdef".into(),
            timestamp_ns: 0,
            metadata: metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            destination: String::new(),
            digest_count: 0,
            digest_window_ns: 0,
            attempts: 0,
            progress: Progress::default(),
        }
    }

    fn links() -> Links {
        Links { ui_base: "http://ui".into(), grafana: Some("http://g".into()) }
    }

    #[test]
    fn a_template_renders_over_the_metadata_and_a_broken_one_falls_back_to_the_default() {
        let it = item(&[("message", "disk <full>"), ("stage", "archive"), ("node", "7")]);
        let t = text(&it, Some("{{.stage}}: {{.message}}"), &links());
        assert!(t.starts_with("[CHIME] archive: disk <full>\nEntity: blk 1\n"), "{t}");
        let fallback = text(&it, Some("{{.stage"), &links());
        assert!(fallback.starts_with("[CHIME] helix.error\ndisk <full>  (stage: beamform)\nnode: 7\n"), "{fallback}");
        assert!(fallback.contains("http://g/d/helix-error-entities"));
    }

    #[test]
    fn slack_blocks_escape_and_link_and_the_title_truncates() {
        let it = item(&[("message", "a < b & c")]);
        let m = slack_message(&it, "t", &["https://github.com/o/r/issues/3".into()], &links());
        let s = m.to_string();
        assert!(s.contains("a &lt; b &amp; c"), "{s}");
        assert!(s.contains("http://ui/notifications?instrument_id=CHIME&fingerprint=0123456789abcdef"));
        // A space in a path is %20: the Inspector reads `+` there as a plus (another entity).
        assert!(s.contains("http://ui/entity/blk%201"), "{s}");
        assert!(s.contains("<https://github.com/o/r/issues/3|GitHub Issue>"));
        let long = item(&[("message", &"x".repeat(100))]);
        let title = issue_title(&long);
        assert_eq!(title, format!("[CHIME] {}… (stage: beamform)", "x".repeat(59)));
        assert_eq!(truncate("héllo", 3), "h…");
    }
}
