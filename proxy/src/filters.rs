//! Gateway policies as a per-route filter chain, in the order of SPEC §4: CORS preflight →
//! auth → rate limit → validation → request transforms → cache lookup → (the route's action:
//! balance + upstream, aggregate or direct response) → response transforms → cache store.
//! (Quota comes between rate limit and validation in a later issue.)
//!
//! [`RouteFilters::build`] compiles a route's policies once per snapshot into one
//! `Option<…>` per phase; a route without policies gets no chain at all (the router holds
//! `None` and the handler goes straight to the action), so it runs no filter code. State that
//! must outlive a config — rate-limit buckets, cached responses — is taken over from the
//! previous snapshot's chain of the same route when that policy is unchanged.
//!
//! One file per filter; this module only sequences them and carries the per-request results
//! ([`Decorations`]) that go on the response whatever produced it (an upstream, the cache, or
//! an error).

pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod cors;
pub mod rate_limit;
pub mod response_fields;
pub mod transform;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::forwarding::ClientInfo;
use crate::jwt::JwtProviders;
use crate::model::{RateLimitBy, RouteSpec};
use auth::{Auth, ConsumerIndex};
use cache::{Lookup, ResponseCache, X_CACHE};
use cors::Cors;
use rate_limit::{BucketKey, Decision, RateLimiter};
use response_fields::FieldRemover;
use transform::{HeaderOps, RequestTransform};
use validate::{RequestBody, Validate};

/// What a chain is built from, besides the route: the snapshot's identities and verifiers,
/// and the previous snapshot's chain of the same route (for long-lived state).
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub consumers: &'a Arc<ConsumerIndex>,
    pub verifiers: &'a JwtProviders,
    pub previous: Option<&'a RouteFilters>,
}

/// The compiled filter chain of one route: one optional filter per phase.
#[derive(Debug, Default)]
pub struct RouteFilters {
    cors: Option<Cors>,
    auth: Option<Auth>,
    rate_limit: Option<Arc<RateLimiter>>,
    validate: Option<Validate>,
    request: Option<RequestTransform>,
    cache: Option<Arc<ResponseCache>>,
    response_headers: Option<HeaderOps>,
    response_fields: Option<FieldRemover>,
}

impl RouteFilters {
    /// The chain of `route`, or `None` when the route sets no policy.
    pub fn build(route: &RouteSpec, ctx: BuildContext<'_>) -> Option<Arc<Self>> {
        let policies = &route.policies;
        if policies.is_empty() {
            return None;
        }
        let previous = ctx.previous;
        let rate_limit =
            policies
                .rate_limit
                .map(|spec| match previous.and_then(|p| p.rate_limit.as_ref()) {
                    Some(kept) if kept.spec() == spec => Arc::clone(kept),
                    _ => Arc::new(RateLimiter::new(spec)),
                });
        let cache = policies
            .cache
            .map(|spec| match previous.and_then(|p| p.cache.as_ref()) {
                Some(kept) if kept.spec() == spec => Arc::clone(kept),
                _ => Arc::new(ResponseCache::new(spec)),
            });
        Some(Arc::new(Self {
            cors: policies.cors.as_ref().map(Cors::new),
            auth: policies
                .auth
                .as_ref()
                .map(|spec| Auth::new(spec, ctx.consumers, ctx.verifiers)),
            rate_limit,
            validate: Validate::new(policies.max_body_bytes, &policies.required_headers),
            request: RequestTransform::new(
                policies.rewrite.as_ref(),
                policies.request_headers.as_ref(),
            ),
            cache,
            response_headers: policies.response_headers.as_ref().map(HeaderOps::new),
            response_fields: FieldRemover::new(&policies.remove_response_fields),
        }))
    }

    /// Whether this chain answers CORS preflights.
    pub fn has_cors(&self) -> bool {
        self.cors.is_some()
    }

    /// The rate limiter, kept across configs while the limit is unchanged.
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.rate_limit.as_ref()
    }

    /// Runs the request phases, then `act` (the route's action) on the filtered request, then
    /// the response phases. `decorations` collects what goes on the response in any case
    /// (apply it with [`Decorations::apply`] after rendering an error).
    pub async fn run<F, Fut>(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        decorations: &mut Decorations,
        act: F,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        F: FnOnce(Request<RequestBody>) -> Fut,
        Fut: Future<Output = Result<Response<ProxyBody>, ProxyError>>,
    {
        let (mut parts, body) = request.into_parts();
        if let Some(cors) = &self.cors {
            if Cors::is_preflight(&parts.method, &parts.headers) {
                return cors.preflight(&parts.headers);
            }
            decorations.allow_origin = parts
                .headers
                .get(header::ORIGIN)
                .and_then(|origin| cors.allowed_origin(origin));
        }
        let identity = match &self.auth {
            Some(auth) => Some(auth.apply(&mut parts.headers).await?),
            None => None,
        };
        if let Some(identity) = &identity {
            decorations.consumer = Some(Arc::clone(&identity.name));
        }
        if let Some(limiter) = &self.rate_limit {
            let key = match limiter.spec().by {
                RateLimitBy::Route => None,
                RateLimitBy::Ip => Some(BucketKey::client(client.ip)),
                RateLimitBy::Consumer => Some(match &identity {
                    Some(identity) => BucketKey::Consumer(Arc::clone(&identity.name)),
                    None => BucketKey::client(client.ip),
                }),
            };
            let decision = limiter.check(key);
            decorations.rate = Some((Arc::clone(limiter), decision));
            if !decision.allowed {
                return Err(ProxyError::RateLimited);
            }
        }
        let limit = match &self.validate {
            Some(validate) => validate.check(&parts.headers)?,
            None => None,
        };
        if let Some(transform) = &self.request {
            transform.apply(&mut parts);
        }
        let mut miss = None;
        if let Some(cache) = &self.cache {
            let identity = identity.as_ref().map(|identity| &*identity.name);
            match cache.lookup(&parts, identity) {
                Lookup::Hit(response) => {
                    decorations.cache = Some(HeaderValue::from_static("HIT"));
                    return Ok(response);
                }
                Lookup::Miss(lookup) => {
                    decorations.cache = Some(HeaderValue::from_static("MISS"));
                    miss = Some(lookup);
                }
                Lookup::Bypass => {}
            }
        }
        let (body, limit_hit) = RequestBody::new(body, limit);
        let result = act(Request::from_parts(parts, body)).await;
        if let (Some(hit), Some(limit)) = (&limit_hit, limit)
            && hit.is_hit()
        {
            // The upload was cut at the limit; whatever the upstream said, the answer is 413.
            return Err(ProxyError::BodyTooLarge(limit));
        }
        let mut response = result?;
        if let Some(headers) = &self.response_headers {
            headers.apply(response.headers_mut());
        }
        if let Some(remover) = &self.response_fields {
            response = remover.apply(response).await;
        }
        if let (Some(cache), Some(miss)) = (&self.cache, miss) {
            response = cache.store_on_end(miss, response);
        }
        Ok(response)
    }
}

/// Per-request results of the filters that go on the response, whatever produced it.
#[derive(Debug, Default)]
pub struct Decorations {
    /// `access-control-allow-origin` for an allowed CORS request.
    allow_origin: Option<HeaderValue>,
    rate: Option<(Arc<RateLimiter>, Decision)>,
    cache: Option<HeaderValue>,
    /// Who called (for the access log).
    pub consumer: Option<Arc<str>>,
}

impl Decorations {
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(origin) = &self.allow_origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if origin != "*" {
                headers.append(header::VARY, HeaderValue::from_static("origin"));
            }
        }
        if let Some((limiter, decision)) = &self.rate {
            limiter.write_headers(decision, headers);
        }
        if let Some(cache) = &self.cache {
            headers.insert(X_CACHE.clone(), cache.clone());
        }
    }
}
