//! `/api/v1/routes`: request routing rules. Every cluster, JWT provider and quota a route names
//! must exist (400 naming the field otherwise).

use crate::model::{Kind, Route};

super::resources::resource_handlers!(
    Kind::Route,
    Route,
    "routes",
    "/api/v1/routes",
    "/api/v1/routes/{name}"
);
