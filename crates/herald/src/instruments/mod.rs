//! The instrument files of `INSTRUMENTS_DIR` (`*.yml`, `*.yaml`, one instrument each): read at
//! start, re-read every reload interval and on SIGHUP, and swapped in atomically. A file that
//! stops parsing is reported with every error and its instrument keeps the last configuration
//! that did parse. The parsed model of a file lives in [`file`]; this module owns the set.

pub mod file;
pub mod notifications;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use file::{AuthBackend, ConfigIssue, InstrumentConfig};
pub use notifications::{EventRule, GithubRule, Notifications, Recurrence, Secret, SlackRule, WebhookRule};

use crate::metrics::Metrics;

/// Files larger than this are refused (an instrument file is a few lines).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// At most this many files are read from the directory; the rest are reported.
pub const MAX_FILES: usize = 10_000;

/// One file's verdict in a reading of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub path: PathBuf,
    pub result: Result<InstrumentConfig, Vec<ConfigIssue>>,
}

/// One reading of the directory: every instrument file in name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirReport {
    pub files: Vec<FileReport>,
    /// The directory itself could not be read (missing, not a directory, no permission).
    pub unreadable: Option<String>,
}

impl DirReport {
    pub fn errors(&self) -> usize {
        self.files.iter().filter(|f| f.result.is_err()).count() + usize::from(self.unreadable.is_some())
    }
}

fn is_instrument_file(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
    !hidden && matches!(path.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// Read and check every instrument file of `dir` (blocking file I/O). Two files naming the
/// same instrument: the first by name wins, the other is an error.
pub fn read_dir(dir: &Path) -> DirReport {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return DirReport { files: Vec::new(), unreadable: Some(format!("{}: {e}", dir.display())) },
    };
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| is_instrument_file(p) && p.is_file()).collect();
    paths.sort();
    let mut report = DirReport::default();
    if paths.len() > MAX_FILES {
        report.unreadable =
            Some(format!("{}: {} instrument files; only the first {MAX_FILES} are read", dir.display(), paths.len()));
        paths.truncate(MAX_FILES);
    }
    let mut claimed: HashMap<String, PathBuf> = HashMap::new();
    for path in paths {
        let mut result = read_file(&path);
        if let Ok(config) = &result {
            if let Some(first) = claimed.get(&config.instrument_id) {
                result = Err(vec![ConfigIssue {
                    key: "instrument_id".into(),
                    message: format!(
                        "{} is also configured by {}; this file is ignored",
                        config.instrument_id,
                        first.display()
                    ),
                }]);
            } else {
                claimed.insert(config.instrument_id.clone(), path.clone());
            }
        }
        report.files.push(FileReport { path, result });
    }
    report
}

fn read_file(path: &Path) -> Result<InstrumentConfig, Vec<ConfigIssue>> {
    let whole = |message: String| vec![ConfigIssue { key: String::new(), message }];
    let size = std::fs::metadata(path).map_err(|e| whole(format!("cannot read: {e}")))?.len();
    if size > MAX_FILE_BYTES {
        return Err(whole(format!("{size} bytes; an instrument file may have at most {MAX_FILE_BYTES}")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    file::parse(&text)
}

/// `herald check-config`: every file of `dir` with its verdict, and JWT_SECRET's shape (never
/// a key). Returns the report and the number of errors.
pub fn check_config(dir: &Path, jwt_secret: Option<&str>) -> (String, usize) {
    use std::fmt::Write;
    let report = read_dir(dir);
    let mut out = String::new();
    let mut errors = report.errors();
    if let Some(why) = &report.unreadable {
        let _ = writeln!(out, "error: INSTRUMENTS_DIR {why}");
    }
    for f in &report.files {
        match &f.result {
            Ok(c) => {
                let auth = c.auth.as_ref().map(AuthBackend::kind).unwrap_or("none (cannot sign in)");
                let events = c.notifications.events.len();
                let _ = writeln!(
                    out,
                    "ok: {}: instrument {}, auth {auth}, {events} notifying event(s)",
                    f.path.display(),
                    c.instrument_id
                );
                errors += c.notifications.issues.len();
                for issue in &c.notifications.issues {
                    let _ = writeln!(
                        out,
                        "error: {}: {issue} (this event does not notify; the rest of the file applies)",
                        f.path.display()
                    );
                }
            }
            Err(issues) => {
                for issue in issues {
                    let _ = writeln!(out, "error: {}: {issue}", f.path.display());
                }
            }
        }
    }
    if report.files.is_empty() && report.unreadable.is_none() {
        let _ = writeln!(out, "note: {} has no *.yml or *.yaml files", dir.display());
    }
    match jwt_secret.and_then(crate::auth::KeySet::parse) {
        None => {
            let _ = writeln!(out, "note: JWT_SECRET is not set: auth is off");
        }
        Some(keys) => {
            let _ = writeln!(out, "ok: JWT_SECRET: {} key(s), the first signs", keys.len());
            for position in keys.short_keys() {
                let _ = writeln!(out, "warning: JWT_SECRET key {position} is shorter than 32 bytes");
            }
            let signable = report.files.iter().filter(|f| f.result.as_ref().is_ok_and(|c| c.auth.is_some())).count();
            if signable == 0 {
                errors += 1;
                let _ = writeln!(out, "error: auth is on but no instrument file has an auth block: nobody can sign in");
            }
        }
    }
    (out, errors)
}

/// What the herald currently serves from the files.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_id: HashMap<String, Arc<InstrumentConfig>>,
    /// Every (instrument, event name) that notifies, for the writer's outbox.
    notify: helix_store::notify::NotifySet,
}

impl Snapshot {
    /// The (instrument, event name) pairs whose events notify.
    pub fn notify_set(&self) -> helix_store::notify::NotifySet {
        self.notify.clone()
    }

    pub fn get(&self, instrument_id: &str) -> Option<&Arc<InstrumentConfig>> {
        self.by_id.get(instrument_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A file as last read: its last good configuration and the errors last reported for it.
#[derive(Debug, Default)]
struct FileState {
    good: Option<InstrumentConfig>,
    issues: Vec<ConfigIssue>,
}

/// Owns the set of instrument configurations. Readers take the current [`Snapshot`]; the
/// reload task replaces it whole.
pub struct Instruments {
    dir: Option<PathBuf>,
    current: RwLock<Arc<Snapshot>>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    unreadable: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Instruments {
    /// No directory: no instrument can sign in.
    pub fn none(metrics: Arc<Metrics>) -> Instruments {
        Instruments {
            dir: None,
            current: RwLock::default(),
            files: Mutex::default(),
            unreadable: Mutex::default(),
            metrics,
        }
    }

    /// The files of `dir`, read now (blocking).
    pub fn load(dir: PathBuf, metrics: Arc<Metrics>) -> Instruments {
        let instruments = Instruments { dir: Some(dir), ..Instruments::none(metrics) };
        instruments.reload_now();
        instruments
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The configurations in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-read the directory (blocking) and swap in the result; logs what changed.
    pub fn reload_now(&self) {
        let Some(dir) = &self.dir else { return };
        let report = read_dir(dir);
        self.apply(dir, report);
    }

    fn apply(&self, dir: &Path, report: DirReport) {
        {
            let mut unreadable = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
            if *unreadable != report.unreadable {
                match &report.unreadable {
                    Some(why) => tracing::warn!(dir = %dir.display(), error = %why,
                        "INSTRUMENTS_DIR cannot be read; the instruments already loaded stay as they are"),
                    None => tracing::info!(dir = %dir.display(), "INSTRUMENTS_DIR readable again"),
                }
                unreadable.clone_from(&report.unreadable);
            }
        }
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if report.files.is_empty() && report.unreadable.is_some() {
            // A directory that vanished (an unmounted volume) is not "every instrument removed".
            return;
        }
        let seen: Vec<&PathBuf> = report.files.iter().map(|f| &f.path).collect();
        files.retain(|path, state| {
            let keep = seen.contains(&path);
            if !keep {
                let instrument = state.good.as_ref().map(|c| c.instrument_id.as_str()).unwrap_or("");
                tracing::info!(file = %path.display(), instrument, "instrument file removed");
            }
            keep
        });
        for FileReport { path, result } in report.files {
            let state = files.entry(path.clone()).or_default();
            match result {
                Ok(config) => {
                    let previous = state.good.as_ref().map(|c| &c.notifications.issues);
                    if previous != Some(&config.notifications.issues) && !config.notifications.issues.is_empty() {
                        self.metrics
                            .notify
                            .config_reload_errors
                            .with_label_values(&[config.instrument_id.as_str()])
                            .inc();
                        for issue in &config.notifications.issues {
                            tracing::warn!(
                                file = %path.display(),
                                instrument = %config.instrument_id,
                                key = %issue.key,
                                error = %issue.message,
                                "notification setting has an error; that event does not notify (the rest \
                                 of the file applies)"
                            );
                        }
                    }
                    if state.good.as_ref() != Some(&config) || !state.issues.is_empty() {
                        tracing::info!(
                            file = %path.display(),
                            instrument = %config.instrument_id,
                            auth = config.auth.as_ref().map(AuthBackend::kind).unwrap_or("none"),
                            "instrument file loaded"
                        );
                    }
                    state.good = Some(config);
                    state.issues.clear();
                }
                Err(issues) => {
                    if state.issues != issues {
                        let kept = state.good.as_ref().map(|c| c.instrument_id.clone());
                        for issue in &issues {
                            tracing::warn!(
                                file = %path.display(),
                                key = %issue.key,
                                error = %issue.message,
                                kept_previous = kept.as_deref().unwrap_or(""),
                                "instrument file has an error; it is not applied (the instrument keeps \
                                 its last good configuration, if it had one)"
                            );
                        }
                        state.issues = issues;
                    }
                }
            }
        }
        let invalid = files.values().filter(|s| !s.issues.is_empty()).count();
        self.metrics.instrument_files_invalid.set(invalid as i64);
        // First file by name wins an instrument ID (read_dir reports the later ones).
        let mut by_id = HashMap::new();
        for state in files.values() {
            if let Some(config) = &state.good {
                by_id.entry(config.instrument_id.clone()).or_insert_with(|| Arc::new(config.clone()));
            }
        }
        let pairs = by_id
            .values()
            .flat_map(|c| c.notifications.events.keys().map(|e| (c.instrument_id.clone(), e.clone())))
            .collect();
        let notify = helix_store::notify::NotifySet::new(pairs);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot { by_id, notify });
    }

    /// Reload every `interval` and on each signal of `hangup` (SIGHUP, installed by the
    /// caller before the herald announces itself ready) until `shutdown`.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut hangup: Hangup, shutdown: CancellationToken) {
        if self.dir.is_none() {
            return;
        }
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = hangup.recv() => tracing::info!("SIGHUP: reloading the instrument files"),
                () = shutdown.cancelled() => return,
            }
            let this = self.clone();
            if tokio::task::spawn_blocking(move || this.reload_now()).await.is_err() {
                tracing::error!("reloading the instrument files failed unexpectedly; the previous ones stay");
            }
        }
    }
}

/// SIGHUP, as a stream of reload requests. Installed before the herald is ready, so that a
/// SIGHUP never finds the default action (which ends the process).
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Must be called inside the tokio runtime.
    pub fn install() -> Hangup {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(
                    |e| tracing::warn!(error = %e, "no SIGHUP handler: instrument files reload on the interval only"),
                )
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    fn secret_file(id: &str) -> String {
        format!("instrument_id: {id}\nauth:\n  type: secret\n  api_key_hash: \"{HASH_A}\"\n")
    }

    #[test]
    fn both_extensions_are_read_others_and_hidden_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), secret_file("A")).unwrap();
        std::fs::write(dir.path().join("b-context.yaml"), secret_file("B")).unwrap();
        std::fs::write(dir.path().join("c.txt"), secret_file("C")).unwrap();
        std::fs::write(dir.path().join(".d.yml"), secret_file("D")).unwrap();
        let report = read_dir(dir.path());
        let ids: Vec<String> = report.files.iter().map(|f| f.result.as_ref().unwrap().instrument_id.clone()).collect();
        assert_eq!(ids, ["A", "B"]);
        assert_eq!(report.errors(), 0);
    }

    #[test]
    fn a_second_file_for_the_same_instrument_is_an_error_and_a_missing_dir_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), secret_file("A")).unwrap();
        std::fs::write(dir.path().join("b.yml"), secret_file("A")).unwrap();
        let report = read_dir(dir.path());
        let issues = report.files[1].result.as_ref().unwrap_err();
        assert!(issues[0].message.contains("also configured by"), "{issues:?}");
        assert_eq!(report.errors(), 1);
        let missing = read_dir(&dir.path().join("nope"));
        assert!(missing.unreadable.is_some() && missing.errors() == 1);
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_configuration_and_a_fix_or_removal_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, secret_file("A")).unwrap();
        let instruments = Instruments::load(dir.path().to_owned(), Arc::new(Metrics::new()));
        assert!(instruments.snapshot().get("A").is_some_and(|c| c.auth.is_some()));

        std::fs::write(&path, "instrument_id: A\nauth: {type: secret, api_key_hash: broken}\n").unwrap();
        instruments.reload_now();
        assert!(instruments.snapshot().get("A").is_some_and(|c| c.auth.is_some()), "last good kept");
        assert_eq!(instruments.metrics.instrument_files_invalid.get(), 1);

        std::fs::write(&path, "instrument_id: A\n").unwrap();
        instruments.reload_now();
        assert!(instruments.snapshot().get("A").is_some_and(|c| c.auth.is_none()), "the fix applies");
        assert_eq!(instruments.metrics.instrument_files_invalid.get(), 0);

        std::fs::remove_file(&path).unwrap();
        instruments.reload_now();
        assert!(instruments.snapshot().is_empty(), "a removed file removes its instrument");
    }

    #[test]
    fn a_directory_that_vanishes_keeps_what_was_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("instruments");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.yml"), secret_file("A")).unwrap();
        let instruments = Instruments::load(sub.clone(), Arc::new(Metrics::new()));
        std::fs::remove_dir_all(&sub).unwrap();
        instruments.reload_now();
        assert_eq!(instruments.snapshot().len(), 1);
    }
}
