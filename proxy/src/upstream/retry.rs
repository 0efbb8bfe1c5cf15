//! Retry rules: which failed attempts may be sent again. The per-cluster retry budget that
//! keeps retries from multiplying load is [`crate::cluster::retry_budget`].
//!
//! **Safety**: a connect failure never reached the upstream, so it is retried for any method;
//! a 5xx, a per-try timeout or a reset may have been processed, so those are retried only for
//! idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE). A request body must be
//! replayable: empty, or small with a known length (≤ [`MAX_REPLAY_BODY`], buffered before the
//! first attempt); a streamed body is sent once and never retried.

use http::Method;

use crate::model::RetryOn;

/// Largest request body buffered so it can be replayed on a retry.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// What an attempt came back with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response.
    Status5xx,
    /// No connection could be made: nothing was sent.
    ConnectFailure,
    /// The connection broke before response headers.
    Reset,
    /// The per-try timeout fired.
    PerTryTimeout,
}

impl Outcome {
    /// Whether outlier detection counts it as a failure.
    pub fn is_failure(self) -> bool {
        self != Outcome::Success
    }
}

/// Idempotent per RFC 9110 §9.2.2.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether `outcome` may be retried under `on` for a request with `method`.
pub fn should_retry(on: RetryOn, outcome: Outcome, method: &Method) -> bool {
    match outcome {
        Outcome::Success => false,
        Outcome::ConnectFailure => on.connect_failure,
        Outcome::Status5xx | Outcome::PerTryTimeout => on.status_5xx && is_idempotent(method),
        Outcome::Reset => on.reset && is_idempotent(method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_retries() {
        let on = RetryOn {
            status_5xx: true,
            connect_failure: true,
            reset: false,
        };
        assert!(should_retry(on, Outcome::Status5xx, &Method::GET));
        assert!(should_retry(on, Outcome::PerTryTimeout, &Method::PUT));
        assert!(!should_retry(on, Outcome::Status5xx, &Method::POST));
        assert!(should_retry(on, Outcome::ConnectFailure, &Method::POST));
        assert!(
            !should_retry(on, Outcome::Reset, &Method::GET),
            "reset not in on"
        );
        assert!(!should_retry(on, Outcome::Success, &Method::GET));
        assert!(Outcome::Reset.is_failure() && !Outcome::Success.is_failure());
    }
}
