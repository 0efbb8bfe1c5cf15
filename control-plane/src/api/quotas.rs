//! `/api/v1/quotas`: fleet-wide request budgets per consumer (their use per consumer is served
//! by [`super::quota_usage`]).

use crate::model::{Kind, Quota};

super::resources::resource_handlers!(
    Kind::Quota,
    Quota,
    "quotas",
    "/api/v1/quotas",
    "/api/v1/quotas/{name}"
);
