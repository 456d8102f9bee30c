//! The herald's Prometheus metrics: one registry, names compatible with the older herald.

use prometheus::{Encoder, Registry, TextEncoder};

/// Owns the registry and every metric handle; shared by receivers, writer, forwarder and API.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics { registry: Registry::new() }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
