//! `switchyard.v1.Quota` → [`QuotaSpec`]: a fleet-wide request budget per consumer, enforced
//! by the quota policy with grants from the control plane ([`crate::quota`]).

use switchyard_proto::v1;

/// A fleet-wide request budget per consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSpec {
    pub name: String,
    pub limit: u64,
    pub window: v1::QuotaWindow,
    /// Let requests through (`true`, the default) or refuse them once the grant is spent and
    /// the control plane cannot be reached.
    pub allow_when_unavailable: bool,
}

impl QuotaSpec {
    /// The window's length in seconds (windows are calendar-aligned, UTC).
    pub fn window_seconds(&self) -> u64 {
        match self.window {
            v1::QuotaWindow::Minute => 60,
            v1::QuotaWindow::Hour => 3_600,
            v1::QuotaWindow::Day => 86_400,
        }
    }
}

/// Why a quota was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error("name is empty")]
    EmptyName,
    #[error("window value {0} is unknown")]
    BadWindow(i32),
    #[error("on_unavailable value {0} is unknown")]
    BadOnUnavailable(i32),
    #[error("limit is 0")]
    ZeroLimit,
}

impl TryFrom<&v1::Quota> for QuotaSpec {
    type Error = QuotaError;

    fn try_from(proto: &v1::Quota) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(QuotaError::EmptyName);
        }
        let window = v1::QuotaWindow::try_from(proto.window)
            .map_err(|_| QuotaError::BadWindow(proto.window))?;
        let on_unavailable = v1::QuotaUnavailable::try_from(proto.on_unavailable)
            .map_err(|_| QuotaError::BadOnUnavailable(proto.on_unavailable))?;
        if proto.limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        Ok(Self {
            name: proto.name.clone(),
            limit: proto.limit,
            window,
            allow_when_unavailable: on_unavailable == v1::QuotaUnavailable::Allow,
        })
    }
}
