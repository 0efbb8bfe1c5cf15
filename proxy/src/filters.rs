//! Gateway policies as a per-route filter chain, in the order of SPEC §4: CORS preflight →
//! auth → rate limit → quota → validation → request transforms → cache lookup → (the route's
//! action: balance + upstream, aggregate or direct response) → response transforms → cache
//! store.
//!
//! Every policy implements [`Policy`], one method per phase with a no-op default (Pingora's
//! `ProxyHttp` shape), and is registered once, in the [`chain!`] list at the bottom of this
//! file; the list's order is the order of every phase. For one request:
//!
//! 1. **request**: each policy sees the request head; it may change it, refuse the request
//!    (an error response) or answer it (a preflight, a cache hit), which ends the chain;
//! 2. **upstream request**: each sees the request as the action will send it, body included
//!    (e.g. to put a size limit on the upload);
//! 3. the action runs;
//! 4. **response**: each gets what the action produced — a response or an error — and passes
//!    on its own (a response transform, a 413 for an upload cut at the limit);
//! 5. **decorate**: on whatever the client gets, proxy errors and answers from step 1
//!    included, each adds the headers every answer carries (CORS origin, rate-limit headers,
//!    `x-cache`);
//! 6. **logging**: each sees the final status.
//!
//! [`RouteFilters::build`] compiles a route's policies once per snapshot; a route without
//! policies gets no chain at all (the router holds `None` and the handler goes straight to the
//! action), so it runs no filter code. A policy's build gets its counterpart from the previous
//! snapshot's chain of the same route, to keep state that must outlive a config (rate-limit
//! buckets, cached responses) while its spec is unchanged. What one request keeps between a
//! policy's phases is that policy's `State`, held in the chain's [`FilterState`].
//!
//! Adding a policy: its own file with a `Policy` impl, plus one line in the [`chain!`] list.

pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod cors;
pub mod quota;
pub mod rate_limit;
pub mod response_fields;
pub mod transform;
pub mod validate;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::forwarding::ClientInfo;
use crate::jwt::JwtProviders;
use crate::model::RouteSpec;
use crate::quota::QuotaBook;
use auth::{Auth, ConsumerIndex, Identity};
use cache::ResponseCache;
use cors::Cors;
use quota::Quotas;
use rate_limit::RateLimiter;
use response_fields::FieldRemover;
use transform::{RequestTransform, ResponseHeaders};
use validate::{RequestBody, Validate};

/// What a chain is built from, besides the route: the snapshot's identities and verifiers.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub consumers: &'a Arc<ConsumerIndex>,
    pub verifiers: &'a JwtProviders,
    pub quotas: &'a Arc<HashMap<String, Arc<QuotaBook>>>,
}

/// What the policies of one request share: who is calling, and who they proved to be.
#[derive(Debug)]
pub struct RequestContext<'a> {
    pub client: &'a ClientInfo,
    /// Set by the auth policy; read by the policies after it (rate limit, cache) and the
    /// access log.
    pub identity: Option<Arc<Identity>>,
}

impl<'a> RequestContext<'a> {
    pub fn new(client: &'a ClientInfo) -> Self {
        Self {
            client,
            identity: None,
        }
    }
}

/// A response, or why there is none (rendered by the handler).
pub type Outcome = Result<Response<ProxyBody>, ProxyError>;

/// One gateway policy: built once per config for a route, then called per request in each
/// phase (see the module doc for their order and meaning). Every phase but `build` has a
/// default that does nothing.
pub trait Policy: Sized + Send + Sync + std::fmt::Debug {
    /// What one request keeps between this policy's phases.
    type State: Default + Send;

    /// The policy of `route`, or `None` when the route does not set it. `previous` is this
    /// policy in the previous config's chain of the same route.
    fn build(route: &RouteSpec, ctx: &BuildContext<'_>, previous: Option<&Self>) -> Option<Self>;

    /// Request phase: `Ok(Some(response))` answers the request (the action does not run),
    /// `Err` refuses it.
    fn request(
        &self,
        parts: &mut Parts,
        ctx: &mut RequestContext<'_>,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<Option<Response<ProxyBody>>, ProxyError>> + Send {
        let _ = (parts, ctx, state);
        async { Ok(None) }
    }

    /// Upstream-request phase: the request the action is about to send.
    fn upstream_request(&self, request: &mut Request<RequestBody>, state: &mut Self::State) {
        let _ = (request, state);
    }

    /// Response phase: what the action produced, for this policy to pass on or replace.
    fn response(
        &self,
        outcome: Outcome,
        state: &mut Self::State,
    ) -> impl Future<Output = Outcome> + Send {
        let _ = state;
        async { outcome }
    }

    /// Headers on whatever answers the request, errors included.
    fn decorate(&self, headers: &mut HeaderMap, state: &Self::State) {
        let _ = (headers, state);
    }

    /// Logging phase: the request is answered with `status`.
    fn logging(&self, status: StatusCode, ctx: &RequestContext<'_>, state: &Self::State) {
        let _ = (status, ctx, state);
    }
}

/// `previous` when it was built from `spec` (its state survives the config change), else a
/// new one built from `spec`.
pub(crate) fn keep_if_unchanged<T, S: PartialEq + Copy>(
    previous: Option<&Arc<T>>,
    spec: S,
    spec_of: impl Fn(&T) -> S,
    new: impl FnOnce(S) -> T,
) -> Arc<T> {
    match previous {
        Some(kept) if spec_of(kept) == spec => Arc::clone(kept),
        _ => Arc::new(new(spec)),
    }
}

/// Declares the chain: one optional policy per registered entry, the per-request state of
/// each, and the phase runners that call them in list order.
macro_rules! chain {
    ($($field:ident: $policy:ty),* $(,)?) => {
        /// The compiled filter chain of one route: the registered policies it sets.
        #[derive(Debug, Default)]
        pub struct RouteFilters {
            $($field: Option<$policy>,)*
        }

        /// What one request keeps while it runs through a chain, per policy.
        #[derive(Default)]
        pub struct FilterState {
            $($field: <$policy as Policy>::State,)*
        }

        impl RouteFilters {
            fn compile(
                route: &RouteSpec,
                ctx: &BuildContext<'_>,
                previous: Option<&RouteFilters>,
            ) -> Self {
                Self {
                    $($field: <$policy as Policy>::build(
                        route,
                        ctx,
                        previous.and_then(|p| p.$field.as_ref()),
                    ),)*
                }
            }

            fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }

            async fn request_phase(
                &self,
                parts: &mut Parts,
                ctx: &mut RequestContext<'_>,
                state: &mut FilterState,
            ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
                $(
                    if let Some(policy) = &self.$field
                        && let Some(answer) = policy.request(parts, ctx, &mut state.$field).await?
                    {
                        return Ok(Some(answer));
                    }
                )*
                Ok(None)
            }

            fn upstream_request_phase(
                &self,
                request: &mut Request<RequestBody>,
                state: &mut FilterState,
            ) {
                $(
                    if let Some(policy) = &self.$field {
                        policy.upstream_request(request, &mut state.$field);
                    }
                )*
            }

            async fn response_phase(&self, mut outcome: Outcome, state: &mut FilterState) -> Outcome {
                $(
                    if let Some(policy) = &self.$field {
                        outcome = policy.response(outcome, &mut state.$field).await;
                    }
                )*
                outcome
            }

            /// The decorate phase: headers on whatever answered, errors included.
            pub fn decorate(&self, headers: &mut HeaderMap, state: &FilterState) {
                $(
                    if let Some(policy) = &self.$field {
                        policy.decorate(headers, &state.$field);
                    }
                )*
            }

            /// The logging phase.
            pub fn log(&self, status: StatusCode, ctx: &RequestContext<'_>, state: &FilterState) {
                $(
                    if let Some(policy) = &self.$field {
                        policy.logging(status, ctx, &state.$field);
                    }
                )*
            }
        }
    };
}

impl RouteFilters {
    /// The chain of `route`, or `None` when the route sets no policy.
    pub fn build(
        route: &RouteSpec,
        ctx: BuildContext<'_>,
        previous: Option<&RouteFilters>,
    ) -> Option<Arc<Self>> {
        if route.policies.is_empty() {
            return None;
        }
        let chain = Self::compile(route, &ctx, previous);
        (!chain.is_empty()).then(|| Arc::new(chain))
    }

    /// Whether this chain answers CORS preflights.
    pub fn has_cors(&self) -> bool {
        self.cors.is_some()
    }

    /// The rate limiter, kept across configs while the limit is unchanged.
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.rate_limit.as_ref()
    }

    /// Runs the request phases, the upstream-request phase and `act` (the route's action),
    /// then the response phases. Apply [`RouteFilters::decorate`] and [`RouteFilters::log`]
    /// with the same `state` to whatever the client gets.
    pub async fn run<F, Fut>(
        &self,
        request: Request<Incoming>,
        ctx: &mut RequestContext<'_>,
        state: &mut FilterState,
        act: F,
    ) -> Outcome
    where
        F: FnOnce(Request<RequestBody>) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let (mut parts, body) = request.into_parts();
        if let Some(answer) = self.request_phase(&mut parts, ctx, state).await? {
            return Ok(answer);
        }
        let mut request = Request::from_parts(parts, RequestBody::new(body));
        self.upstream_request_phase(&mut request, state);
        let outcome = act(request).await;
        self.response_phase(outcome, state).await
    }
}

chain! {
    cors: Cors,
    auth: Auth,
    rate_limit: Arc<RateLimiter>,
    quota: Quotas,
    validate: Validate,
    request_transform: RequestTransform,
    response_headers: ResponseHeaders,
    response_fields: FieldRemover,
    cache: Arc<ResponseCache>,
}
