//! `quota`: fleet-wide budgets per consumer ([`crate::quota`] holds the leases). A request on a
//! route with `quota: "name"` is charged to that quota, per consumer (`""` when the route
//! authenticates nobody); a request by a consumer whose spec names a quota is charged to it as
//! well, on every route that authenticates it. Refused: 429 `{"error": "quota exceeded"}` with
//! `Retry-After` (seconds to the window's end), `RateLimit-Policy: "<quota>";q=<limit>;w=<window
//! seconds>` and `RateLimit: "<quota>";r=<remaining>;t=<seconds to reset>` (IETF
//! draft-ietf-httpapi-ratelimit-headers).

use std::collections::HashMap;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, header};

use super::{BuildContext, Policy, RequestContext};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::model::RouteSpec;
use crate::quota::{QuotaBook, Refusal};

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The quotas of one route.
#[derive(Debug)]
pub struct Quotas {
    /// The route's own quota.
    route: Option<Arc<QuotaBook>>,
    /// Every quota of the config, for the consumers' own (`None` on a route without auth).
    consumers: Option<Arc<HashMap<String, Arc<QuotaBook>>>>,
}

/// A refused request: which quota, and why.
#[derive(Debug)]
pub struct Refused {
    book: Arc<QuotaBook>,
    refusal: Refusal,
}

impl Quotas {
    async fn charge(
        book: &Arc<QuotaBook>,
        consumer: &str,
        refused: &mut Option<Refused>,
    ) -> Result<(), ProxyError> {
        book.acquire(consumer).await.map_err(|refusal| {
            *refused = Some(Refused {
                book: Arc::clone(book),
                refusal,
            });
            ProxyError::QuotaExceeded
        })
    }
}

impl Policy for Quotas {
    type State = Option<Refused>;

    fn build(route: &RouteSpec, ctx: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        let own = route.policies.quota.as_ref().and_then(|name| {
            let book = ctx.quotas.get(name).cloned();
            if book.is_none() {
                tracing::warn!(route = %route.name, quota = %name, "route names a quota the config does not hold; not charged");
            }
            book
        });
        let consumers = (route.policies.auth.is_some() && !ctx.quotas.is_empty())
            .then(|| Arc::clone(ctx.quotas));
        (own.is_some() || consumers.is_some()).then_some(Self {
            route: own,
            consumers,
        })
    }

    async fn request(
        &self,
        _: &mut Parts,
        ctx: &mut RequestContext<'_>,
        refused: &mut Option<Refused>,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        let consumer = ctx.identity.as_ref().map_or("", |identity| &*identity.name);
        if let Some(book) = &self.route {
            Self::charge(book, consumer, refused).await?;
        }
        let own_quota = ctx
            .identity
            .as_ref()
            .and_then(|identity| identity.quota.as_deref());
        if let (Some(books), Some(name)) = (&self.consumers, own_quota)
            && let Some(book) = books.get(name)
            && !self
                .route
                .as_ref()
                .is_some_and(|route| Arc::ptr_eq(route, book))
        {
            Self::charge(book, consumer, refused).await?;
        }
        Ok(None)
    }

    fn decorate(&self, headers: &mut HeaderMap, refused: &Option<Refused>) {
        let Some(Refused { book, refusal }) = refused else {
            return;
        };
        let spec = book.spec();
        let policy = format!(
            "\"{}\";q={};w={}",
            spec.name,
            spec.limit,
            spec.window_seconds()
        );
        let state = format!(
            "\"{}\";r={};t={}",
            spec.name, refusal.remaining, refusal.retry_after_s
        );
        if let (Ok(policy), Ok(state)) = (
            HeaderValue::from_str(&policy),
            HeaderValue::from_str(&state),
        ) {
            headers.append(RATELIMIT_POLICY.clone(), policy);
            headers.append(RATELIMIT.clone(), state);
        }
        headers.insert(header::RETRY_AFTER, refusal.retry_after_s.into());
    }
}
