//! The response body that counts itself: it wraps whatever answers a client request (an
//! upstream's body, a cached or generated one), adds up the bytes it hands to the client, and
//! records the request in the worker's usage table when it is dropped — after its end, or
//! early when the client went away. Stored inline in the response (no extra allocation).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::Finished;
use crate::body::{BodyError, ProxyBody};
use crate::model::RouteSpec;

/// A response body metered for usage.
#[derive(Debug)]
pub struct Metered {
    inner: ProxyBody,
    /// `None` when no route took the request (counted under route `""`).
    route: Option<Arc<RouteSpec>>,
    consumer: Option<Arc<str>>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    latency_us: u64,
}

/// Who a request was for, as known when its response head is ready.
#[derive(Debug, Default)]
pub struct Attribution {
    pub route: Option<Arc<RouteSpec>>,
    pub consumer: Option<Arc<str>>,
    /// The request's declared body length.
    pub bytes_in: u64,
}

impl Metered {
    /// Meters `inner`, the body of a `status` response sent `latency_us` after the request
    /// arrived.
    pub fn new(inner: ProxyBody, attribution: Attribution, status: u16, latency_us: u64) -> Self {
        Self {
            inner,
            route: attribution.route,
            consumer: attribution.consumer,
            status,
            bytes_in: attribution.bytes_in,
            bytes_out: 0,
            latency_us,
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.bytes_out += data.len() as u64;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        super::record(&Finished {
            route: self
                .route
                .as_deref()
                .map_or("", |route| route.name.as_str()),
            consumer: self.consumer.as_deref().unwrap_or(""),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_us: self.latency_us,
        });
    }
}
