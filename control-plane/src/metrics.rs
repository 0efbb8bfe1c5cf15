//! Control-plane metrics in the Prometheus text format: config streams, responses pushed
//! (count, resources, bytes), ACKs and NACKs, and connected proxies from the fleet registry.
//! Plain atomics: recorded from every stream task without a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prost::Message;

use crate::fleet::Fleet;

/// Counters of the xDS server.
#[derive(Debug, Default)]
pub struct Metrics {
    streams_opened: AtomicU64,
    streams_open: AtomicU64,
    responses: AtomicU64,
    resources: AtomicU64,
    bytes: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
}

impl Metrics {
    /// A config stream opened.
    pub fn stream_opened(&self) {
        self.streams_opened.fetch_add(1, Relaxed);
        self.streams_open.fetch_add(1, Relaxed);
    }

    /// A config stream closed.
    pub fn stream_closed(&self) {
        self.streams_open.fetch_sub(1, Relaxed);
    }

    /// A response carrying `resources` resources was pushed.
    pub fn response_sent(&self, resources: usize, response: &impl Message) {
        self.responses.fetch_add(1, Relaxed);
        self.resources.fetch_add(resources as u64, Relaxed);
        self.bytes.fetch_add(response.encoded_len() as u64, Relaxed);
    }

    /// A proxy request arrived; `nack` when it refused a response.
    pub fn answer_received(&self, nack: bool) {
        if nack {
            self.nacks.fetch_add(1, Relaxed);
        } else {
            self.acks.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, fleet: &Fleet) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "switchyard_connected_proxies",
            "gauge",
            "Proxies with an open config stream.",
            fleet.connected_count() as u64,
        );
        metric(
            "switchyard_xds_streams_open",
            "gauge",
            "Open Delta ADS streams.",
            self.streams_open.load(Relaxed),
        );
        metric(
            "switchyard_xds_streams_total",
            "counter",
            "Delta ADS streams opened.",
            self.streams_opened.load(Relaxed),
        );
        metric(
            "switchyard_xds_responses_total",
            "counter",
            "Delta ADS responses pushed.",
            self.responses.load(Relaxed),
        );
        metric(
            "switchyard_xds_resources_sent_total",
            "counter",
            "Resources pushed in Delta ADS responses.",
            self.resources.load(Relaxed),
        );
        metric(
            "switchyard_xds_bytes_sent_total",
            "counter",
            "Encoded bytes of Delta ADS responses pushed.",
            self.bytes.load(Relaxed),
        );
        metric(
            "switchyard_xds_acks_total",
            "counter",
            "Requests from proxies that were not NACKs (subscriptions and ACKs).",
            self.acks.load(Relaxed),
        );
        metric(
            "switchyard_xds_nacks_total",
            "counter",
            "Responses refused by proxies.",
            self.nacks.load(Relaxed),
        );
        out
    }
}
