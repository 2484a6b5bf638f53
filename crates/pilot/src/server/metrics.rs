//! Pilot's Prometheus metrics, named as istiod names them: `pilot_xds_pushes`,
//! `pilot_xds_push_time`, `pilot_xds` (connected proxies), `pilot_total_xds_rejects`.

use std::sync::Mutex;
use std::time::Duration;

use mizzen_xds::{StatusRegistry, TypeSet};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `type` label: `cds`, `eds`, `lds`, `rds`, `sds`, as istiod writes it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

/// The metrics and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    pushes: Family<TypeLabel, Counter>,
    push_time: Histogram,
    connected: Gauge,
    rejects: Family<TypeLabel, Counter>,
    /// Serialises scrapes, which bring `rejects` up to date before encoding.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let pushes = Family::<TypeLabel, Counter>::default();
        let push_time = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let connected = Gauge::default();
        let rejects = Family::<TypeLabel, Counter>::default();
        registry.register(
            "pilot_xds_pushes",
            "Pushes sent to proxies, by type",
            pushes.clone(),
        );
        registry.register(
            "pilot_xds_push_time",
            "Seconds to rebuild the push context and start a push",
            push_time.clone(),
        );
        registry.register("pilot_xds", "Proxies connected over ADS", connected.clone());
        registry.register(
            "pilot_total_xds_rejects",
            "Responses rejected (NACKed) by proxies, by type",
            rejects.clone(),
        );
        Metrics {
            registry,
            pushes,
            push_time,
            connected,
            rejects,
            scrape: Mutex::new(()),
        }
    }
}

fn label(short_name: &str) -> TypeLabel {
    TypeLabel {
        r#type: short_name.to_ascii_lowercase(),
    }
}

impl Metrics {
    /// Counts a push of `types` to `proxies` connections that took `elapsed`.
    pub fn record_push(&self, types: &TypeSet, proxies: usize, elapsed: Duration) {
        for ty in types.iter() {
            self.pushes
                .get_or_create(&label(ty.short_name()))
                .inc_by(proxies as u64);
        }
        self.push_time.observe(elapsed.as_secs_f64());
    }

    /// The metrics in Prometheus' text format, with connection and rejection counts
    /// read from `status`.
    pub fn encode(&self, status: &StatusRegistry) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.connected.set(status.connected() as i64);
        for (ty, total) in status.totals().nacked {
            let counter = self.rejects.get_or_create(&label(ty.short_name()));
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
