//! `remove_response_fields`: strips dotted paths (`user.password`) from JSON response bodies.
//! A path walks objects by key and applies to every element of an array it meets
//! (`items.secret` strips `secret` from each item); a missing path is not an error.
//!
//! Only JSON bodies (`content-type` `application/json` or `…+json`, no `content-encoding`)
//! are buffered, up to [`MAX_BUFFERED`]; a larger body, or one that does not parse, goes
//! through untouched (what was read is replayed in front of the rest of the stream). Every
//! other body streams through without being looked at.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;

use super::{BuildContext, Outcome, Policy};
use crate::body::{BodyError, ProxyBody, full};
use crate::model::RouteSpec;

/// Largest body buffered to remove fields from.
pub const MAX_BUFFERED: usize = 8 << 20;

impl Policy for FieldRemover {
    type State = ();

    fn build(route: &RouteSpec, _: &BuildContext<'_>, _: Option<&Self>) -> Option<Self> {
        FieldRemover::new(&route.policies.remove_response_fields)
    }

    async fn response(&self, outcome: Outcome, (): &mut ()) -> Outcome {
        match outcome {
            Ok(response) => Ok(self.apply(response).await),
            Err(error) => Err(error),
        }
    }
}

/// The compiled `remove_response_fields` of one route.
#[derive(Debug)]
pub struct FieldRemover {
    paths: Box<[Vec<String>]>,
}

impl FieldRemover {
    /// `None` when there is nothing to remove.
    pub fn new(paths: &[Vec<String>]) -> Option<Self> {
        (!paths.is_empty()).then(|| Self {
            paths: paths.into(),
        })
    }

    /// Rewrites `response`'s body when it is JSON and small enough.
    pub async fn apply(&self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        if !is_plain_json(response.headers()) {
            return response;
        }
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_BUFFERED as u64) {
            return response;
        }
        let (mut parts, mut body) = response.into_parts();
        let mut buffered = BytesMut::new();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        buffered.extend_from_slice(&data);
                        if buffered.len() > MAX_BUFFERED {
                            let body = Prefixed {
                                prefix: Some(buffered.freeze()),
                                rest: body,
                            };
                            return Response::from_parts(parts, body.boxed());
                        }
                    }
                    // Trailers: give up on the rewrite, keep what was read (trailers dropped).
                    Err(_) => return Response::from_parts(parts, full(buffered.freeze())),
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, "response body failed while buffering for field removal");
                    let body = Prefixed {
                        prefix: Some(buffered.freeze()),
                        rest: failed(error),
                    };
                    return Response::from_parts(parts, body.boxed());
                }
                None => break,
            }
        }
        let bytes = match serde_json::from_slice::<Value>(&buffered) {
            Ok(mut value) => {
                for path in &self.paths {
                    remove_path(&mut value, path);
                }
                Bytes::from(serde_json::to_vec(&value).expect("a Value serializes"))
            }
            Err(_) => buffered.freeze(),
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, bytes.len().into());
        parts.headers.remove(header::ETAG);
        Response::from_parts(parts, full(bytes))
    }
}

fn is_plain_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false);
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    json && !encoded
}

/// Removes `path` from `value` (see the module doc for arrays).
pub fn remove_path(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => {
            for item in items {
                remove_path(item, path);
            }
        }
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(first) {
                    remove_path(child, rest);
                }
            }
        },
        _ => {}
    }
}

/// A body that fails with `error` when first polled (to replay an error after a prefix).
fn failed(error: BodyError) -> ProxyBody {
    Failed(Some(error)).boxed()
}

struct Failed(Option<BodyError>);

impl Body for Failed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

/// `prefix`, then the rest of the stream.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(prefix) = &self.prefix {
            let len = prefix.len() as u64;
            hint.set_lower(hint.lower() + len);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + len);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn paths(list: &[&str]) -> Vec<Vec<String>> {
        list.iter()
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn removes_nested_array_and_missing_paths() {
        let mut value = json!({
            "user": {"name": "a", "password": "x", "profile": {"ssn": 1, "city": "b"}},
            "items": [{"id": 1, "secret": 2}, {"id": 2}, 3],
            "token": "t",
        });
        for path in paths(&[
            "user.password",
            "user.profile.ssn",
            "items.secret",
            "token",
            "nope.deeper",
            "user.name.x",
        ]) {
            remove_path(&mut value, &path);
        }
        assert_eq!(
            value,
            json!({
                "user": {"name": "a", "profile": {"city": "b"}},
                "items": [{"id": 1}, {"id": 2}, 3],
            })
        );
        let mut top = json!([{"a": 1, "b": 2}]);
        remove_path(&mut top, &paths(&["a"])[0]);
        assert_eq!(top, json!([{"b": 2}]));
    }

    fn response(content_type: &str, body: &'static str) -> Response<ProxyBody> {
        let mut response = Response::new(full(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, body.len().into());
        response
    }

    #[tokio::test]
    async fn only_json_bodies_are_rewritten() {
        let remover = FieldRemover::new(&paths(&["secret"])).unwrap();
        let json = remover
            .apply(response(
                "application/json; charset=utf-8",
                r#"{"a":1,"secret":2}"#,
            ))
            .await;
        assert_eq!(json.headers()[header::CONTENT_LENGTH], "7");
        let body = json.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"a":1}"#);

        let text = remover
            .apply(response("text/plain", r#"{"secret":2}"#))
            .await;
        let body = text.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"secret":2}"#);

        let broken = remover
            .apply(response("application/problem+json", "{oops"))
            .await;
        let body = broken.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{oops");
    }
}
