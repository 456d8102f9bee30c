//! OTLP receivers: gRPC and HTTP front doors onto the one `Ingest` path, sharing one budget
//! of the memory the exports in flight may take.

pub mod grpc;
pub mod http;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Permits are KiB, so that any budget fits the semaphore's u32 requests.
const UNIT: u64 = 1024;

/// JSON bodies cannot be counted before they are parsed: they are priced at this many times
/// their size (a JSON attribute is about a tenth of its decoded size, measured).
pub const JSON_FACTOR: u64 = 10;

/// The estimated bytes of every export being received or processed (`--max-inflight-bytes`):
/// an export holds its share from before its body is decoded until it is answered.
#[derive(Clone)]
pub struct InflightBudget {
    permits: Arc<Semaphore>,
    total: u64,
    metrics: Arc<Metrics>,
}

/// An export's share of the budget; released when dropped.
#[derive(Debug)]
pub struct Admission {
    permit: OwnedSemaphorePermit,
}

/// Why an export was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It could never fit: not retryable (413 / OUT_OF_RANGE).
    #[error(
        "this export would take about {needed_mb} MB of memory to process, more than the {budget_mb} MB \
         this herald gives to exports in flight (--max-inflight-bytes / HELIX_MAX_INFLIGHT_BYTES); send \
         smaller batches"
    )]
    TooLarge { needed_mb: u64, budget_mb: u64 },
    /// Other exports hold the budget now: retryable (503 + Retry-After / UNAVAILABLE).
    #[error("the herald is processing {budget_mb} MB of exports already (--max-inflight-bytes); retry shortly")]
    Busy { budget_mb: u64 },
}

impl InflightBudget {
    pub fn new(bytes: usize, metrics: Arc<Metrics>) -> Self {
        let total = (bytes as u64).div_ceil(UNIT).clamp(1, u64::from(u32::MAX));
        // `total` fits u32, hence usize.
        InflightBudget { permits: Arc::new(Semaphore::new(total as usize)), total, metrics }
    }

    /// Take `bytes` of the budget now or refuse (exports never wait in memory for room).
    pub fn admit(&self, bytes: u64) -> Result<Admission, Refusal> {
        self.admit_more(None, bytes)
    }

    /// Grow an admission to `bytes` in all (an HTTP body first admitted by its length, once
    /// it is counted).
    pub fn grow(&self, admission: Admission, bytes: u64) -> Result<Admission, Refusal> {
        self.admit_more(Some(admission), bytes)
    }

    fn admit_more(&self, held: Option<Admission>, bytes: u64) -> Result<Admission, Refusal> {
        let wanted = bytes.div_ceil(UNIT).max(1);
        let budget_mb = self.total * UNIT / 1_000_000;
        if wanted > self.total {
            self.metrics.exports_refused.with_label_values(&["too_large"]).inc();
            return Err(Refusal::TooLarge { needed_mb: bytes / 1_000_000, budget_mb });
        }
        let have = held.as_ref().map_or(0, |a| a.permit.num_permits() as u64);
        let Some(more) = wanted.checked_sub(have).filter(|m| *m > 0) else {
            return held.ok_or(Refusal::Busy { budget_mb });
        };
        // `more` ≤ `total`, which fits u32.
        match self.permits.clone().try_acquire_many_owned(more as u32) {
            Ok(extra) => Ok(Admission {
                permit: match held {
                    Some(Admission { mut permit }) => {
                        permit.merge(extra);
                        permit
                    }
                    None => extra,
                },
            }),
            Err(_) => {
                self.metrics.exports_refused.with_label_values(&["inflight_full"]).inc();
                Err(Refusal::Busy { budget_mb })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_share_the_budget_and_give_it_back() {
        let budget = InflightBudget::new(10 * 1024, Arc::new(Metrics::new()));
        let a = budget.admit(6 * 1024).expect("fits");
        assert!(matches!(budget.admit(6 * 1024), Err(Refusal::Busy { .. })));
        let b = budget.admit(4 * 1024).expect("the rest fits");
        drop(a);
        let c = budget.grow(budget.admit(1024).expect("fits"), 6 * 1024).expect("grown");
        assert!(matches!(budget.admit(1), Err(Refusal::Busy { .. })));
        drop((b, c));
        assert!(matches!(budget.admit(11 * 1024), Err(Refusal::TooLarge { .. })));
        assert!(budget.admit(10 * 1024).is_ok());
    }
}
