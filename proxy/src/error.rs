//! Request-path failures: which HTTP status each one gets, who failed, and whether a retry is
//! allowed, as data (for metrics; the retry rules themselves are in [`crate::upstream::retry`]).
//!
//! Config and startup errors live with their own modules; this is only what a client can see.

use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// Set on responses the circuit breaker refused.
pub static X_OVERLOADED: HeaderName = HeaderName::from_static("x-switchyard-overloaded");

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client's request cannot be served as sent (e.g. no route).
    Downstream,
    /// The upstream refused, reset or timed out.
    Upstream,
    /// The proxy's own config or limits.
    Internal,
}

/// A request the proxy answers itself with `{"error": …, "request_id": …}`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no route matched")]
    NoRoute,
    #[error("cluster not found")]
    ClusterNotFound,
    #[error("no healthy endpoint")]
    NoEndpoint,
    #[error("circuit open")]
    CircuitOpen,
    #[error("request body could not be read")]
    ClientBody,
    #[error("{0}")]
    BadPath(&'static str),
    #[error("upstream connect failed")]
    UpstreamConnect,
    #[error("upstream connection failed")]
    UpstreamReset,
    #[error("upstream timed out")]
    Timeout,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("missing scope {0:?}")]
    MissingScope(String),
    #[error("JWT provider {0:?} is not available")]
    JwtProviderUnavailable(String),
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("missing required header {0:?}")]
    MissingHeader(String),
    #[error("CORS preflight rejected: {0}")]
    CorsRejected(&'static str),
    #[error("aggregate part {part:?} failed: {reason}")]
    AggregatePart {
        part: String,
        reason: String,
        timed_out: bool,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::ClientBody | ProxyError::MissingHeader(_) | ProxyError::BadPath(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::MissingScope(_) | ProxyError::CorsRejected(_) => StatusCode::FORBIDDEN,
            ProxyError::JwtProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited | ProxyError::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::AggregatePart {
                timed_out: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::AggregatePart { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ClusterNotFound | ProxyError::NoEndpoint | ProxyError::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpstreamConnect | ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute
            | ProxyError::ClientBody
            | ProxyError::BadPath(_)
            | ProxyError::Unauthorized(_)
            | ProxyError::MissingScope(_)
            | ProxyError::RateLimited
            | ProxyError::QuotaExceeded
            | ProxyError::BodyTooLarge(_)
            | ProxyError::MissingHeader(_)
            | ProxyError::CorsRejected(_) => Blame::Downstream,
            ProxyError::ClusterNotFound
            | ProxyError::NoEndpoint
            | ProxyError::CircuitOpen
            | ProxyError::JwtProviderUnavailable(_) => Blame::Internal,
            ProxyError::UpstreamConnect
            | ProxyError::UpstreamReset
            | ProxyError::Timeout
            | ProxyError::AggregatePart { .. } => Blame::Upstream,
        }
    }

    /// The JSON error response.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": self.to_string(),
            "request_id": request_id.to_str().unwrap_or_default(),
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(self, ProxyError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, ApiKey header=\"x-api-key\""),
            );
        }
        if *self == ProxyError::CircuitOpen {
            response
                .headers_mut()
                .insert(X_OVERLOADED.clone(), HeaderValue::from_static("true"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_json_error() {
        let response = ProxyError::ClusterNotFound.to_response(&HeaderValue::from_static("abc"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "cluster not found");
        assert_eq!(json["request_id"], "abc");
        assert_eq!(ProxyError::Timeout.blame(), Blame::Upstream);
        let open = ProxyError::CircuitOpen.to_response(&HeaderValue::from_static("abc"));
        assert_eq!(open.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(open.headers()[&X_OVERLOADED], "true");
    }
}
