//! `jwks_uri` behaviour against a real HTTP server on 127.0.0.1:0 that counts its hits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use switchyard_proto::v1;
use tokio::net::TcpListener;

use crate::jwt::test_support::{AUDIENCE, ISSUER, TestKey, claims, now, sign};
use crate::jwt::{JwksOptions, JwtError, JwtProviderSpec, JwtVerifier};

/// What the fake identity provider answers, changeable while it runs.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    body: Bytes,
    delay: Duration,
}

struct JwksServer {
    uri: String,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(Answer {
            status: StatusCode::OK,
            body: jwks(keys),
            delay: Duration::ZERO,
        }));
        let (task_hits, task_answer) = (Arc::clone(&hits), Arc::clone(&answer));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (hits, answer) = (Arc::clone(&task_hits), Arc::clone(&task_answer));
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let (hits, answer) = (Arc::clone(&hits), Arc::clone(&answer));
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let answer = answer.lock().unwrap().clone();
                            tokio::time::sleep(answer.delay).await;
                            let response = Response::builder()
                                .status(answer.status)
                                .header("content-type", "application/json")
                                .body(Full::new(answer.body))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            uri,
            hits,
            answer,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, status: StatusCode, body: Bytes, delay: Duration) {
        *self.answer.lock().unwrap() = Answer {
            status,
            body,
            delay,
        };
    }

    fn serve_keys(&self, keys: Vec<Value>) {
        self.serve(StatusCode::OK, jwks(keys), Duration::ZERO);
    }
}

fn jwks(keys: Vec<Value>) -> Bytes {
    Bytes::from(json!({ "keys": keys }).to_string())
}

fn verifier(uri: &str, options: JwksOptions) -> JwtVerifier {
    let proto = v1::JwtProvider {
        name: "remote".into(),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks_json: String::new(),
        jwks_uri: uri.into(),
        algorithms: vec!["RS256".into()],
    };
    JwtVerifier::with_options(JwtProviderSpec::try_from(&proto).unwrap(), options)
}

fn options(min_refetch_ms: u64) -> JwksOptions {
    JwksOptions {
        min_refetch_interval: Duration::from_millis(min_refetch_ms),
        refresh_interval: Duration::from_secs(600),
        fetch_timeout: Duration::from_secs(2),
        unknown_kid_wait: Duration::from_secs(2),
    }
}

fn token(key: TestKey, kid: &str) -> String {
    sign(Algorithm::RS256, key, Some(kid), &claims())
}

#[tokio::test]
async fn first_verify_fetches_once_then_keys_are_cached() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(&server.uri, options(60_000));
    for _ in 0..5 {
        let verified = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
        assert_eq!(verified.unwrap().subject, "user-1");
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unknown_kids_share_one_refetch() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(&server.uri, options(100));
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    // The new key appears, served slowly so that all 20 requests queue behind one fetch.
    let keys = vec![
        TestKey::Rsa.jwk(Some("k1")),
        TestKey::RsaOther.jwk(Some("k2")),
    ];
    server.serve(StatusCode::OK, jwks(keys), Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new_token = token(TestKey::RsaOther, "k2");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, new_token) = (verifier.clone(), new_token.clone());
            tokio::spawn(async move { verifier.verify(&new_token, now()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().subject, "user-1");
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unknown_kid_within_the_minimum_interval_does_not_fetch() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(&server.uri, options(400));
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;

    let first = verifier
        .verify(&token(TestKey::Rsa, "ghost-1"), now())
        .await;
    assert_eq!(first.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(
        server.hits(),
        2,
        "the first unknown kid after the interval refetches"
    );
    let second = verifier
        .verify(&token(TestKey::Rsa, "ghost-2"), now())
        .await;
    assert_eq!(second.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(
        server.hits(),
        2,
        "a second unknown kid within the interval does not"
    );
}

#[tokio::test]
async fn rotated_key_is_picked_up_after_the_interval() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(&server.uri, options(200));
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();

    server.serve_keys(vec![TestKey::RsaOther.jwk(Some("k2"))]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rotated = verifier
        .verify(&token(TestKey::RsaOther, "k2"), now())
        .await;
    assert_eq!(rotated.unwrap().subject, "user-1");
    assert_eq!(server.hits(), 2);
    // The retired key is gone with the old set.
    let retired = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
    assert_eq!(retired.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn failed_fetches_keep_the_previous_keys() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(&server.uri, options(100));
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();

    let failures = [
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"oops"),
        ),
        (StatusCode::OK, Bytes::from_static(b"<html>not json</html>")),
        (StatusCode::OK, Bytes::from_static(br#"{"keys": []}"#)),
        (StatusCode::OK, Bytes::from(vec![b' '; (1 << 20) + 1])),
    ];
    for (round, (status, body)) in failures.into_iter().enumerate() {
        server.serve(status, body, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let unknown = verifier.verify(&token(TestKey::Rsa, "k9"), now()).await;
        assert_eq!(unknown.unwrap_err(), JwtError::UnknownKey);
        assert_eq!(server.hits(), round + 2);
        let known = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
        assert_eq!(known.unwrap().subject, "user-1", "round {round}");
    }
}

#[tokio::test]
async fn keys_unavailable_until_a_fetch_succeeds() {
    let server = JwksServer::start(vec![]).await;
    server.serve(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::new(),
        Duration::ZERO,
    );
    let verifier = verifier(&server.uri, options(100));
    let error = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
    assert_eq!(error.unwrap_err(), JwtError::KeysUnavailable);

    server.serve_keys(vec![TestKey::Rsa.jwk(Some("k1"))]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let verified = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
    assert_eq!(verified.unwrap().subject, "user-1");
}

#[tokio::test]
async fn slow_fetches_time_out() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let keys = jwks(vec![TestKey::Rsa.jwk(Some("k1"))]);
    server.serve(StatusCode::OK, keys, Duration::from_secs(5));
    let verifier = verifier(
        &server.uri,
        JwksOptions {
            fetch_timeout: Duration::from_millis(200),
            ..options(60_000)
        },
    );
    let started = std::time::Instant::now();
    let error = verifier.verify(&token(TestKey::Rsa, "k1"), now()).await;
    assert_eq!(error.unwrap_err(), JwtError::KeysUnavailable);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unknown_kid_waits_a_bounded_time_and_the_fetch_goes_on() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(
        &server.uri,
        JwksOptions {
            unknown_kid_wait: Duration::from_millis(200),
            ..options(50)
        },
    );
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;

    // The identity provider now takes 1 s to answer: requests naming its new key give up
    // after the 200 ms bound, each of them, while one fetch goes on in the background.
    let keys = vec![
        TestKey::Rsa.jwk(Some("k1")),
        TestKey::RsaOther.jwk(Some("k2")),
    ];
    server.serve(StatusCode::OK, jwks(keys), Duration::from_millis(1000));
    let new_token = token(TestKey::RsaOther, "k2");
    for attempt in 0..3 {
        let started = std::time::Instant::now();
        let early = verifier.verify(&new_token, now()).await;
        assert_eq!(
            early.unwrap_err(),
            JwtError::UnknownKey,
            "attempt {attempt}"
        );
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(600),
            "attempt {attempt} waited {waited:?}"
        );
    }
    // Known keys never wait on the fetch.
    let started = std::time::Instant::now();
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    // The fetch completes without anyone waiting for it; the key is then known.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        verifier.verify(&new_token, now()).await.unwrap().subject,
        "user-1"
    );
    assert_eq!(server.hits(), 2, "one fetch for all the misses");
}

#[tokio::test]
async fn timer_refreshes_and_stops_with_the_verifier() {
    let server = JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]).await;
    let verifier = verifier(
        &server.uri,
        JwksOptions {
            min_refetch_interval: Duration::from_millis(50),
            refresh_interval: Duration::from_millis(100),
            ..options(50)
        },
    );
    let refresher = tokio::spawn(verifier.refresher().expect("a jwks_uri provider refreshes"));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let refreshed = server.hits();
    assert!(refreshed >= 3, "timer fetched {refreshed} times");
    // Verification never fetched: the timer had loaded the keys.
    verifier
        .verify(&token(TestKey::Rsa, "k1"), now())
        .await
        .unwrap();

    drop(verifier);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let at_drop = server.hits();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.hits(),
        at_drop,
        "the refresh task outlived its verifier"
    );
    assert!(
        refresher.is_finished(),
        "the refresh ends with its verifier"
    );
}

#[test]
fn verifier_outside_a_runtime_fetches_lazily() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(JwksServer::start(vec![TestKey::Rsa.jwk(Some("k1"))]));
    // Built with no runtime entered: no background task, the first verify fetches.
    let verifier = verifier(&server.uri, options(60_000));
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.hits(), 0);
        verifier
            .verify(&token(TestKey::Rsa, "k1"), now())
            .await
            .unwrap();
        assert_eq!(server.hits(), 1);
    });
}
