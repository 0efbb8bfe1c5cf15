//! `switchyard.v1.Quota` → [`QuotaSpec`]: held so the proxy is in sync on every type the
//! control plane streams; enforcing quotas (with grants from the control plane) is a later
//! issue and not done here.

use switchyard_proto::v1;

/// A fleet-wide request budget per consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSpec {
    pub name: String,
    pub limit: u64,
    pub window: v1::QuotaWindow,
}

/// Why a quota was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error("name is empty")]
    EmptyName,
    #[error("window value {0} is unknown")]
    BadWindow(i32),
}

impl TryFrom<&v1::Quota> for QuotaSpec {
    type Error = QuotaError;

    fn try_from(proto: &v1::Quota) -> Result<Self, Self::Error> {
        if proto.name.is_empty() {
            return Err(QuotaError::EmptyName);
        }
        let window = v1::QuotaWindow::try_from(proto.window)
            .map_err(|_| QuotaError::BadWindow(proto.window))?;
        Ok(Self {
            name: proto.name.clone(),
            limit: proto.limit,
            window,
        })
    }
}
