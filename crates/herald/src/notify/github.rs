//! The GitHub backend (REST v3 at `GITHUB_API_URL`): one issue per (instrument, fingerprint,
//! repository), recorded in `notification_issues` before and after its creation so that a
//! crash in between finds the issue again (by the marker in its body) instead of opening a
//! second; recurrences update the body, reopen or replace a closed issue; auto-close.

use std::time::Duration;

use helix_store::notify::{IssueRecord, NotifyStore, OutboxItem};
use serde_json::{json, Value};

use super::message::{self, Links};
use super::{classify, Failure};
use crate::instruments::{GithubRule, Recurrence};

/// Recent entities kept in a record and its issue body.
const RECENT_ENTITIES: usize = 10;
/// Pages of issues looked through for a marker (100 each).
const MARKER_PAGES: u32 = 10;

/// A GitHub API client on one base URL.
#[derive(Clone)]
pub struct GitHub {
    pub client: reqwest::Client,
    /// e.g. `https://api.github.com` (no trailing `/`).
    pub api: String,
}

impl GitHub {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "helixobs-herald");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| Failure::Retry(super::describe(&e)))?;
        let status = response.status();
        classify(status)?;
        // 204 and friends have no JSON body.
        Ok(response.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn get_issue(&self, repo: &str, number: i64, token: &str) -> Result<Option<Value>, Failure> {
        match self.call(reqwest::Method::GET, &format!("/repos/{repo}/issues/{number}"), token, None).await {
            Ok(v) => Ok(Some(v)),
            Err(Failure::Permanent(why)) if why.starts_with("HTTP 404") || why.starts_with("HTTP 410") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(
        &self,
        repo: &str,
        token: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<i64, Failure> {
        let created = self
            .call(
                reqwest::Method::POST,
                &format!("/repos/{repo}/issues"),
                token,
                Some(json!({"title": title, "body": body, "labels": labels})),
            )
            .await?;
        created
            .get("number")
            .and_then(Value::as_i64)
            .ok_or_else(|| Failure::Retry("no issue number in the answer".into()))
    }

    async fn patch(&self, repo: &str, number: i64, token: &str, body: Value) -> Result<(), Failure> {
        self.call(reqwest::Method::PATCH, &format!("/repos/{repo}/issues/{number}"), token, Some(body))
            .await
            .map(|_| ())
    }

    async fn comment(&self, repo: &str, number: i64, token: &str, text: &str) -> Result<(), Failure> {
        self.call(
            reqwest::Method::POST,
            &format!("/repos/{repo}/issues/{number}/comments"),
            token,
            Some(json!({"body": text})),
        )
        .await
        .map(|_| ())
    }

    /// An issue updated since `since_ns` whose body holds `marker`.
    async fn find_marked(&self, repo: &str, token: &str, marker: &str, since_ns: i64) -> Result<Option<i64>, Failure> {
        let since = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_nanos(since_ns.saturating_sub(60_000_000_000).max(0).unsigned_abs()),
        );
        for page in 1..=MARKER_PAGES {
            let path = format!("/repos/{repo}/issues?state=all&since={since}&per_page=100&page={page}");
            let issues = self.call(reqwest::Method::GET, &path, token, None).await?;
            let Some(list) = issues.as_array() else { return Ok(None) };
            if let Some(found) = list
                .iter()
                .find(|i| i.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(marker)))
                .and_then(|i| i.get("number").and_then(Value::as_i64))
            {
                return Ok(Some(found));
            }
            if list.len() < 100 {
                break;
            }
        }
        Ok(None)
    }
}

/// The URL people open for an issue.
pub fn html_url(repo: &str, number: i64) -> String {
    format!("https://github.com/{repo}/issues/{number}")
}

/// Record this occurrence on the class's issue (creating, updating, reopening or replacing it);
/// returns the issue's URL. `Failure::Retry` when another replica is creating it right now.
pub async fn dispatch(
    gh: &GitHub,
    store: &dyn NotifyStore,
    rule: &GithubRule,
    item: &OutboxItem,
    links: &Links,
    now_ns: i64,
    lease_ns: i64,
) -> Result<String, Failure> {
    let token = rule.token.expose();
    let db = |e: helix_store::StoreError| Failure::Retry(format!("store: {e}"));
    let mut record = store.issue(&item.instrument_id, &item.fingerprint, &rule.repo).await.map_err(db)?;
    if let Some(r) = &record {
        if r.issue_number > 0 {
            match gh.get_issue(&rule.repo, r.issue_number, token).await? {
                None => {
                    store.delete_issue(&r.instrument_id, &r.fingerprint, &r.repo).await.map_err(db)?;
                    record = None;
                }
                Some(issue) => {
                    let closed = issue.get("state").and_then(Value::as_str) == Some("closed");
                    if closed && rule.on_recurrence_after_close == Recurrence::NewIssue {
                        store.delete_issue(&r.instrument_id, &r.fingerprint, &r.repo).await.map_err(db)?;
                        record = None;
                    } else {
                        let mut r = r.clone();
                        if closed {
                            gh.patch(&rule.repo, r.issue_number, token, json!({"state": "open"})).await?;
                            gh.comment(
                                &rule.repo,
                                r.issue_number,
                                token,
                                &message::reopen_comment(item, links, now_ns),
                            )
                            .await?;
                        }
                        r.entity_count += 1;
                        r.last_updated_ns = now_ns;
                        r.closed = false;
                        push_recent(&mut r.recent_entity_ids, &item.entity_id);
                        gh.patch(
                            &rule.repo,
                            r.issue_number,
                            token,
                            json!({"body": message::issue_body(item, &r, links)}),
                        )
                        .await?;
                        store.put_issue(&r).await.map_err(db)?;
                        return Ok(html_url(&rule.repo, r.issue_number));
                    }
                }
            }
        }
    }
    // Create: first the intent (so a crash after GitHub's answer is found again), then the issue.
    let mut fresh = IssueRecord {
        instrument_id: item.instrument_id.clone(),
        fingerprint: item.fingerprint.clone(),
        repo: rule.repo.clone(),
        issue_number: 0,
        entity_count: 1,
        first_seen_ns: now_ns,
        last_updated_ns: now_ns,
        recent_entity_ids: vec![item.entity_id.clone()],
        closed: false,
        intent_ns: now_ns,
    };
    let marker = message::issue_marker(&item.instrument_id, &item.fingerprint);
    match record {
        Some(pending) if pending.issue_number == 0 => {
            // A creation started before: the issue may exist (its creator died before recording
            // it), or a live replica may be creating it now.
            fresh.first_seen_ns = pending.first_seen_ns;
            if let Some(number) = gh.find_marked(&rule.repo, token, &marker, pending.intent_ns).await? {
                fresh.issue_number = number;
                fresh.intent_ns = pending.intent_ns;
                gh.patch(&rule.repo, number, token, json!({"body": message::issue_body(item, &fresh, links)})).await?;
                store.put_issue(&fresh).await.map_err(db)?;
                return Ok(html_url(&rule.repo, number));
            }
            if now_ns.saturating_sub(pending.intent_ns) < lease_ns {
                return Err(Failure::Retry("another replica is creating this issue".into()));
            }
            store.put_issue(&fresh).await.map_err(db)?;
        }
        _ => {
            if !store.begin_issue(&fresh).await.map_err(db)? {
                return Err(Failure::Retry("another replica is creating this issue".into()));
            }
        }
    }
    let title = message::issue_title(item);
    let number = gh.create(&rule.repo, token, &title, &message::issue_body(item, &fresh, links), &rule.labels).await?;
    fresh.issue_number = number;
    store.put_issue(&fresh).await.map_err(db)?;
    Ok(html_url(&rule.repo, number))
}

fn push_recent(recent: &mut Vec<String>, entity_id: &str) {
    recent.retain(|e| e != entity_id);
    recent.insert(0, entity_id.to_owned());
    recent.truncate(RECENT_ENTITIES);
}

/// Close `record`'s issue with a comment; the record is marked closed first, so one replica does it.
pub async fn auto_close(
    gh: &GitHub,
    store: &dyn NotifyStore,
    rule: &GithubRule,
    record: &IssueRecord,
    after: Duration,
) -> Result<bool, Failure> {
    let db = |e: helix_store::StoreError| Failure::Retry(format!("store: {e}"));
    if !store.mark_issue_closed(&record.instrument_id, &record.fingerprint, &record.repo, true).await.map_err(db)? {
        return Ok(false);
    }
    let token = rule.token.expose();
    let result = async {
        gh.comment(&record.repo, record.issue_number, token, &message::auto_close_comment(record, after)).await?;
        gh.patch(&record.repo, record.issue_number, token, json!({"state": "closed", "state_reason": "completed"}))
            .await
    }
    .await;
    if let Err(e) = result {
        // Try again at the next pass.
        let _ = store.mark_issue_closed(&record.instrument_id, &record.fingerprint, &record.repo, false).await;
        return Err(e);
    }
    Ok(true)
}
