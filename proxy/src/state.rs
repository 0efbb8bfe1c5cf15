//! What the control side of one proxy shares (the xDS client, the reporter, the admin server
//! and the supervisor, all on the control runtime): the snapshot cell, the config stream's
//! metrics, and the identity and connection status shown on the admin endpoints. Traffic
//! workers never see it: they get a [`crate::handler::WorkerHandle`].
//!
//! Only the xDS client writes the snapshot and status; everything else reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic::metadata::{Ascii, MetadataValue};

use crate::metrics::{ControlMetrics, ReportUsage, RouteUsage, TrafficMetrics};
use crate::snapshot::{BuildOptions, SnapshotCell};

/// Shared by the control-side tasks of one proxy.
#[derive(Debug)]
pub struct ControlState {
    pub snapshot: Arc<SnapshotCell>,
    /// What every snapshot of this proxy is built with (zone label, worker count).
    pub build: BuildOptions,
    pub metrics: ControlMetrics,
    /// Each traffic worker's counters (read here for `/metrics`; written by the worker).
    pub traffic: Box<[Arc<TrafficMetrics>]>,
    /// Per-route counters from the workers' usage flushes.
    pub route_usage: RouteUsage,
    /// The usage report queue's state.
    pub report_usage: ReportUsage,
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
    pub control_planes: Vec<String>,
    /// `authorization` metadata for the control-plane streams, when a token is configured.
    pub control_plane_authorization: Option<MetadataValue<Ascii>>,
    /// Admin-path only (never touched by requests), so a mutex is fine.
    pub xds: Mutex<XdsStatus>,
}

/// What the xDS client reports about itself.
#[derive(Debug, Default, Clone)]
pub struct XdsStatus {
    /// The control-plane address of the current (or last) stream.
    pub address: Option<String>,
    pub last_nack: Option<Nack>,
}

/// The last response the proxy NACKed.
#[derive(Debug, Clone)]
pub struct Nack {
    pub type_url: String,
    pub nonce: String,
    pub revision: String,
    pub message: String,
}

impl ControlState {
    /// The state of proxy `node_id`, whose traffic runs on `workers` workers.
    pub fn new(
        snapshot: Arc<SnapshotCell>,
        node_id: String,
        labels: BTreeMap<String, String>,
        control_planes: Vec<String>,
        workers: usize,
    ) -> Self {
        Self {
            snapshot,
            build: BuildOptions {
                zone: labels.get("zone").cloned(),
                workers,
                quota_link: Arc::default(),
            },
            metrics: ControlMetrics::default(),
            traffic: (0..workers.max(1)).map(|_| Arc::default()).collect(),
            route_usage: RouteUsage::default(),
            report_usage: ReportUsage::default(),
            node_id,
            labels,
            control_planes,
            control_plane_authorization: None,
            xds: Mutex::new(XdsStatus::default()),
        }
    }

    /// Sets the `authorization` metadata sent on the control-plane streams.
    pub fn with_control_plane_authorization(
        mut self,
        authorization: Option<MetadataValue<Ascii>>,
    ) -> Self {
        self.control_plane_authorization = authorization;
        self
    }

    /// Wraps a control-plane stream's messages in a request carrying the token, if any.
    pub fn control_plane_request<T>(&self, messages: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(messages);
        if let Some(authorization) = &self.control_plane_authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }

    /// A copy of the xDS status (a poisoned lock still yields the data).
    pub fn xds_status(&self) -> XdsStatus {
        self.xds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn update_xds_status(&self, update: impl FnOnce(&mut XdsStatus)) {
        let mut status = self
            .xds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut status);
    }
}
