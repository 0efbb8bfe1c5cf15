//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! model's `ToSchema` derives, so it cannot drift from the code.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{
    clusters, consumers, declarative, health, jwt_providers, keys, proxies, quota_usage, quotas,
    revisions, routes, system, usage,
};

/// The admin API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = "Config resources, fleet status and revision history of the Switchyard \
                       control plane. Errors are RFC 9457 problem+json with every invalid field \
                       named in `errors`."
    ),
    paths(
        clusters::list, clusters::create, clusters::read, clusters::put, clusters::delete,
        routes::list, routes::create, routes::read, routes::put, routes::delete,
        consumers::list, consumers::create, consumers::read, consumers::put, consumers::delete,
        keys::create, keys::list, keys::revoke,
        jwt_providers::list, jwt_providers::create, jwt_providers::read, jwt_providers::put,
        jwt_providers::delete,
        quotas::list, quotas::create, quotas::read, quotas::put, quotas::delete,
        quota_usage::get,
        proxies::list, health::get, usage::get,
        revisions::list, revisions::get, revisions::diff, revisions::rollback,
        declarative::apply, declarative::export,
        system::healthz, system::metrics, system::openapi,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "clusters", description = "Upstream services"),
        (name = "routes", description = "Routing rules"),
        (name = "consumers", description = "API callers"),
        (name = "jwt-providers", description = "JWT issuers"),
        (name = "quotas", description = "Fleet-wide budgets and their use"),
        (name = "fleet", description = "Connected proxies, endpoint health and usage"),
        (name = "revisions", description = "History, diff, rollback, declarative apply and export"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
