//! Throttling of failed sign-ins (`POST /auth/token`): after `max_failures` failures within
//! one window for an instrument, or from one peer address, further attempts for it are
//! refused (429 with `Retry-After`) without checking the credential, until the window ends.
//! Memory is bounded: at most `MAX_TRACKED` instruments and peers are remembered.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

/// Instruments (and, separately, peers) whose failures are remembered; the least recently
/// seen is forgotten first.
pub const MAX_TRACKED: usize = 10_000;

/// Throttle settings, from flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures allowed per window before attempts are refused.
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig { max_failures: 10, window: Duration::from_secs(60) }
    }
}

/// Failures counted in the window that opened with the first of them.
#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

/// Owns the failure counts of sign-ins, per instrument and per peer address.
pub struct Throttle {
    config: ThrottleConfig,
    instruments: Mutex<LruCache<String, Window>>,
    peers: Mutex<LruCache<IpAddr, Window>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        let size = NonZeroUsize::new(MAX_TRACKED).unwrap_or(NonZeroUsize::MIN);
        Throttle { config, instruments: Mutex::new(LruCache::new(size)), peers: Mutex::new(LruCache::new(size)) }
    }

    /// `Err(wait)` when either the instrument or the peer has used up its failures.
    pub fn check(&self, instrument: &str, peer: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let by_instrument = self.instruments.lock().unwrap_or_else(|p| p.into_inner()).peek(instrument).copied();
        let by_peer = peer.and_then(|p| self.peers.lock().unwrap_or_else(|e| e.into_inner()).peek(&p).copied());
        match self.wait(by_instrument, now).max(self.wait(by_peer, now)) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Count one failed attempt for the instrument and the peer.
    pub fn failed(&self, instrument: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        self.count(&self.instruments, instrument.to_owned(), now);
        if let Some(p) = peer {
            self.count(&self.peers, p, now);
        }
    }

    /// A success clears the instrument's and the peer's failures.
    pub fn succeeded(&self, instrument: &str, peer: Option<IpAddr>) {
        self.instruments.lock().unwrap_or_else(|p| p.into_inner()).pop(instrument);
        if let Some(p) = peer {
            self.peers.lock().unwrap_or_else(|p| p.into_inner()).pop(&p);
        }
    }

    /// How long a key with these failures must still wait, if it must.
    fn wait(&self, window: Option<Window>, now: Instant) -> Option<Duration> {
        let w = window?;
        let ends = w.opened + self.config.window;
        (w.failures >= self.config.max_failures && now < ends).then(|| ends - now)
    }

    fn count<K: Hash + Eq>(&self, map: &Mutex<LruCache<K, Window>>, key: K, now: Instant) {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.config.window;
        let w = map.get_or_insert_mut(key, || Window { opened: now, failures: 0 });
        if now >= w.opened + window {
            *w = Window { opened: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

/// Whole seconds for `Retry-After`, rounded up (never 0).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig { max_failures: 3, window: Duration::from_secs(60) })
    }

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test(start_paused = true)]
    async fn failures_for_one_instrument_throttle_it_until_the_window_ends() {
        let t = throttle();
        for _ in 0..3 {
            assert!(t.check("CHIME", None).is_ok());
            t.failed("CHIME", None);
        }
        assert_eq!(t.check("CHIME", None), Err(Duration::from_secs(60)));
        assert!(t.check("OTHER", None).is_ok(), "other instruments are not affected");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(t.check("CHIME", None), Err(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.check("CHIME", None).is_ok(), "the window is over");
        t.failed("CHIME", None);
        assert!(t.check("CHIME", None).is_ok(), "a new window starts counting from one");
    }

    #[tokio::test(start_paused = true)]
    async fn one_peer_spraying_instruments_is_throttled_and_a_success_clears_the_counts() {
        let t = throttle();
        for name in ["A", "B", "C"] {
            t.failed(name, PEER);
        }
        assert!(t.check("D", PEER).is_err(), "the peer used up its failures");
        assert!(t.check("D", None).is_ok());
        t.succeeded("D", PEER);
        assert!(t.check("D", PEER).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
