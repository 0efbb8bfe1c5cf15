//! `/api/v1/quotas`: fleet-wide request budgets per consumer.

use crate::model::{Kind, Quota};

super::resources::resource_handlers!(
    Kind::Quota,
    Quota,
    "quotas",
    "/api/v1/quotas",
    "/api/v1/quotas/{name}"
);
