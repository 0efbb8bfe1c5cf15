//! `/api/v1/consumers`: API callers (scopes, quota). Key management is not here.

use crate::model::{Consumer, Kind};

super::resources::resource_handlers!(
    Kind::Consumer,
    Consumer,
    "consumers",
    "/api/v1/consumers",
    "/api/v1/consumers/{name}"
);
