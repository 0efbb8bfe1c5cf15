//! `/api/v1/clusters`: upstream services (endpoints, balancing, health checks). A cluster that a
//! route uses cannot be deleted (409).

use crate::model::{Cluster, Kind};

super::resources::resource_handlers!(
    Kind::Cluster,
    Cluster,
    "clusters",
    "/api/v1/clusters",
    "/api/v1/clusters/{name}"
);
