//! The HTTP/2 response body of one Delta ADS stream: the gRPC frames its stream task produces,
//! each passed to the connection as is, then the gRPC status as trailers.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::Status;

/// Frames from the stream task (`Err`: end the stream with that status).
pub type FrameSender = mpsc::Sender<Result<Bytes, Status>>;

/// The body: frames until the stream task ends, then trailers (`grpc-status: 0` unless the
/// task sent an error).
#[derive(Debug)]
pub struct FrameBody {
    frames: mpsc::Receiver<Result<Bytes, Status>>,
    ended: bool,
}

impl FrameBody {
    /// A body and the sender its stream task writes to, buffering up to `buffer` frames.
    pub fn channel(buffer: usize) -> (FrameSender, FrameBody) {
        let (tx, frames) = mpsc::channel(buffer);
        let body = FrameBody {
            frames,
            ended: false,
        };
        (tx, body)
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let frame = match ready!(self.frames.poll_recv(cx)) {
            Some(Ok(data)) => Frame::data(data),
            Some(Err(status)) => {
                self.ended = true;
                Frame::trailers(trailers(&status))
            }
            None => {
                self.ended = true;
                Frame::trailers(trailers(&Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Only custom metadata can fail to convert, and these statuses carry none.
        let fallback = Status::internal("cannot encode the stream's status");
        let _ = fallback.add_header(&mut trailers);
    }
    trailers
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn frames_then_ok_trailers() {
        let (tx, mut body) = FrameBody::channel(4);
        tx.send(Ok(Bytes::from_static(b"one"))).await.unwrap();
        drop(tx);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "one");
        let last = body.frame().await.unwrap().unwrap();
        let trailers = last.into_trailers().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert!(body.frame().await.is_none());
        assert!(http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_with_its_status() {
        let (tx, mut body) = FrameBody::channel(4);
        tx.send(Err(Status::invalid_argument("no node")))
            .await
            .unwrap();
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        let status = Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "no node");
        assert!(body.frame().await.is_none());
    }
}
