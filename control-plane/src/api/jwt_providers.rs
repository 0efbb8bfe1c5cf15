//! `/api/v1/jwt-providers`: JWT issuers that routes' `auth.jwt` name.

use crate::model::{JwtProvider, Kind};

super::resources::resource_handlers!(
    Kind::JwtProvider,
    JwtProvider,
    "jwt-providers",
    "/api/v1/jwt-providers",
    "/api/v1/jwt-providers/{name}"
);
