//! Control-plane metrics in the Prometheus text format: config streams, responses pushed
//! (count, resources, bytes), ACKs and NACKs, connected proxies from the fleet registry, and
//! report streams (messages, health states received and dropped) and the usage they carry
//! (batches stored and resent, counters stored and refused, requests the proxies dropped),
//! quota grants (answered, tokens, exhausted, failed) and the quota consumption reported.
//! Plain atomics: recorded from every stream task without a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::fleet::Fleet;
use crate::store::{QuotaGrant, UsageRecorded};

/// Counters of the xDS and report servers.
#[derive(Debug, Default)]
pub struct Metrics {
    streams_opened: AtomicU64,
    streams_open: AtomicU64,
    responses: AtomicU64,
    resources: AtomicU64,
    bytes: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    report_streams_opened: AtomicU64,
    report_streams_open: AtomicU64,
    report_messages: AtomicU64,
    report_health_snapshots: AtomicU64,
    report_health_states: AtomicU64,
    report_health_dropped: AtomicU64,
    usage_batches: AtomicU64,
    usage_batches_duplicate: AtomicU64,
    usage_counters: AtomicU64,
    usage_counters_invalid: AtomicU64,
    usage_dropped_requests: AtomicU64,
    usage_write_failures: AtomicU64,
    usage_writes: AtomicU64,
    quota_grants: AtomicU64,
    quota_tokens_granted: AtomicU64,
    quota_exhausted: AtomicU64,
    quota_unknown: AtomicU64,
    quota_grant_failures: AtomicU64,
    quota_grants_dropped: AtomicU64,
    quota_used: AtomicU64,
    quota_unleased: AtomicU64,
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

    /// A response carrying `resources` resources, `bytes` long once encoded, was pushed.
    pub fn response_sent(&self, resources: usize, bytes: usize) {
        self.responses.fetch_add(1, Relaxed);
        self.resources.fetch_add(resources as u64, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A proxy request arrived; `nack` when it refused a response.
    pub fn answer_received(&self, nack: bool) {
        if nack {
            self.nacks.fetch_add(1, Relaxed);
        } else {
            self.acks.fetch_add(1, Relaxed);
        }
    }

    /// A report stream opened.
    pub fn report_stream_opened(&self) {
        self.report_streams_opened.fetch_add(1, Relaxed);
        self.report_streams_open.fetch_add(1, Relaxed);
    }

    /// A report stream closed.
    pub fn report_stream_closed(&self) {
        self.report_streams_open.fetch_sub(1, Relaxed);
    }

    /// A report message arrived with `health_states` endpoint states, a full snapshot when
    /// `snapshot`.
    pub fn report_received(&self, health_states: usize, snapshot: bool) {
        self.report_messages.fetch_add(1, Relaxed);
        self.report_health_states
            .fetch_add(health_states as u64, Relaxed);
        if snapshot {
            self.report_health_snapshots.fetch_add(1, Relaxed);
        }
    }

    /// `count` reported endpoint states were dropped (per-node cap, oversized names).
    pub fn report_health_dropped(&self, count: usize) {
        self.report_health_dropped.fetch_add(count as u64, Relaxed);
    }

    /// A report's usage was committed.
    pub fn usage_recorded(&self, recorded: &UsageRecorded) {
        self.usage_batches.fetch_add(recorded.batches, Relaxed);
        self.usage_batches_duplicate
            .fetch_add(recorded.duplicates, Relaxed);
        self.usage_counters.fetch_add(recorded.counters, Relaxed);
        self.usage_counters_invalid
            .fetch_add(recorded.invalid, Relaxed);
        self.usage_dropped_requests
            .fetch_add(recorded.dropped_requests, Relaxed);
        self.quota_used.fetch_add(recorded.quota_used, Relaxed);
        self.quota_unleased
            .fetch_add(recorded.quota_unleased, Relaxed);
    }

    /// Quota grants were committed (and are about to be answered).
    pub fn quota_granted(&self, grants: &[QuotaGrant]) {
        self.quota_grants.fetch_add(grants.len() as u64, Relaxed);
        for grant in grants {
            self.quota_tokens_granted.fetch_add(grant.granted, Relaxed);
            if grant.exhausted {
                self.quota_exhausted.fetch_add(1, Relaxed);
            }
            if grant.limit == 0 {
                self.quota_unknown.fetch_add(1, Relaxed);
            }
        }
    }

    /// A report's quota requests could not be granted (database error).
    pub fn quota_grant_failed(&self) {
        self.quota_grant_failures.fetch_add(1, Relaxed);
    }

    /// An answer carrying grants could not be delivered (the proxy was not reading).
    pub fn quota_grants_dropped(&self) {
        self.quota_grants_dropped.fetch_add(1, Relaxed);
    }

    /// A usage transaction was started (for one or many report messages).
    pub fn usage_write(&self) {
        self.usage_writes.fetch_add(1, Relaxed);
    }

    /// A report's usage could not be written (the proxy resends it).
    pub fn usage_write_failed(&self) {
        self.usage_write_failures.fetch_add(1, Relaxed);
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
        metric(
            "switchyard_report_streams_open",
            "gauge",
            "Open report streams.",
            self.report_streams_open.load(Relaxed),
        );
        metric(
            "switchyard_report_streams_total",
            "counter",
            "Report streams opened.",
            self.report_streams_opened.load(Relaxed),
        );
        metric(
            "switchyard_report_messages_total",
            "counter",
            "Report messages received from proxies.",
            self.report_messages.load(Relaxed),
        );
        metric(
            "switchyard_report_health_snapshots_total",
            "counter",
            "Report messages carrying a full health snapshot.",
            self.report_health_snapshots.load(Relaxed),
        );
        metric(
            "switchyard_report_health_transitions_total",
            "counter",
            "Endpoint health states received (snapshot entries and transitions).",
            self.report_health_states.load(Relaxed),
        );
        metric(
            "switchyard_report_health_dropped_total",
            "counter",
            "Endpoint health states dropped: over the per-node cap or with oversized names.",
            self.report_health_dropped.load(Relaxed),
        );
        metric(
            "switchyard_usage_batches_total",
            "counter",
            "Usage batches stored.",
            self.usage_batches.load(Relaxed),
        );
        metric(
            "switchyard_usage_batches_duplicate_total",
            "counter",
            "Usage batches skipped as already stored (resent after a lost acknowledgement).",
            self.usage_batches_duplicate.load(Relaxed),
        );
        metric(
            "switchyard_usage_counters_total",
            "counter",
            "Usage counters stored.",
            self.usage_counters.load(Relaxed),
        );
        metric(
            "switchyard_usage_counters_invalid_total",
            "counter",
            "Usage counters skipped as invalid (status class, minute, name length, histogram).",
            self.usage_counters_invalid.load(Relaxed),
        );
        metric(
            "switchyard_usage_dropped_requests_total",
            "counter",
            "Requests proxies could not count: their usage buffer was full while the control plane was away.",
            self.usage_dropped_requests.load(Relaxed),
        );
        metric(
            "switchyard_usage_write_failures_total",
            "counter",
            "Report messages whose usage could not be written (the proxy resends it).",
            self.usage_write_failures.load(Relaxed),
        );
        metric(
            "switchyard_usage_writes_total",
            "counter",
            "Usage transactions started, each storing the report messages waiting then.",
            self.usage_writes.load(Relaxed),
        );
        metric(
            "switchyard_quota_grants_total",
            "counter",
            "Quota grant requests answered.",
            self.quota_grants.load(Relaxed),
        );
        metric(
            "switchyard_quota_tokens_granted_total",
            "counter",
            "Quota tokens granted to proxies' leases.",
            self.quota_tokens_granted.load(Relaxed),
        );
        metric(
            "switchyard_quota_exhausted_total",
            "counter",
            "Quota grant requests answered with nothing left in the window.",
            self.quota_exhausted.load(Relaxed),
        );
        metric(
            "switchyard_quota_unknown_total",
            "counter",
            "Quota grant requests naming a quota the config does not hold.",
            self.quota_unknown.load(Relaxed),
        );
        metric(
            "switchyard_quota_grant_failures_total",
            "counter",
            "Report messages whose quota requests could not be granted (database error).",
            self.quota_grant_failures.load(Relaxed),
        );
        metric(
            "switchyard_quota_grants_dropped_total",
            "counter",
            "Answers carrying quota grants that could not be delivered to the proxy.",
            self.quota_grants_dropped.load(Relaxed),
        );
        metric(
            "switchyard_quota_used_total",
            "counter",
            "Requests proxies let through against quotas, as reported with usage batches.",
            self.quota_used.load(Relaxed),
        );
        metric(
            "switchyard_quota_unleased_total",
            "counter",
            "Requests proxies let through against quotas without a lease (control plane unreachable).",
            self.quota_unleased.load(Relaxed),
        );
        out
    }
}
