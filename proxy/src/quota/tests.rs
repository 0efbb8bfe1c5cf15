//! Leases without a control plane: grants applied by hand, waits bounded, windows rolled by
//! passing times.

use super::*;

fn book(limit: u64, allow_when_unavailable: bool) -> (QuotaBook, Arc<QuotaLink>) {
    let link = Arc::new(QuotaLink::default());
    let spec = QuotaSpec {
        name: "q".into(),
        limit,
        window: v1::QuotaWindow::Minute,
        allow_when_unavailable,
    };
    (QuotaBook::new(spec, Arc::clone(&link)), link)
}

fn grant(consumer: &str, window_start: u64, granted: u64, exhausted: bool) -> v1::QuotaGrant {
    v1::QuotaGrant {
        quota: "q".into(),
        consumer: consumer.into(),
        granted,
        window_start_unix_s: window_start,
        window_end_unix_ms: (window_start + 60) * 1000,
        exhausted,
        limit: 1000,
        window_granted: granted,
    }
}

#[test]
fn tokens_are_spent_locally_and_more_are_asked_for_before_they_run_out() {
    let (book, _link) = book(1000, true);
    let now = 120_000;
    assert_eq!(book.try_take("alice", now), Take::Empty);
    let wants = book.wants();
    assert_eq!(wants.len(), 1);
    assert_eq!((wants[0].consumer.as_str(), wants[0].want), ("alice", 10));
    assert!(book.wants().is_empty(), "asked once until answered");

    book.grant(&grant("alice", 120, 10, false));
    for _ in 0..5 {
        assert_eq!(book.try_take("alice", now), Take::Taken);
    }
    assert!(book.wants().is_empty(), "5 of 10 left: not low yet");
    assert_eq!(book.try_take("alice", now), Take::Taken);
    assert_eq!(book.wants()[0].want, 20, "below half: asks again, for more");
    let used = book.take_used();
    assert_eq!(
        (used[0].used, used[0].unleased, used[0].window_start_unix_s),
        (6, 0, 120)
    );
    assert!(book.take_used().is_empty(), "reported once");
}

#[test]
fn an_exhausted_window_refuses_until_it_ends() {
    let (book, _link) = book(1000, true);
    let now = 120_000 + 45_000;
    assert_eq!(book.try_take("alice", now), Take::Empty);
    book.grant(&grant("alice", 120, 0, true));
    let Take::Refused(refusal) = book.try_take("alice", now) else {
        panic!("exhausted");
    };
    assert_eq!(refusal.retry_after_s, 15, "seconds to the window's end");
    // The next window starts fresh.
    assert_eq!(book.try_take("alice", 180_000), Take::Empty);
}

#[test]
fn counts_of_a_window_that_ended_are_still_reported() {
    let (book, _link) = book(1000, true);
    assert_eq!(book.try_take("alice", 120_000), Take::Empty);
    book.grant(&grant("alice", 120, 10, false));
    assert_eq!(book.try_take("alice", 121_000), Take::Taken);
    assert_eq!(book.try_take("alice", 181_000), Take::Empty, "a new window");
    let used = book.take_used();
    assert_eq!(used.len(), 1);
    assert_eq!((used[0].used, used[0].window_start_unix_s), (1, 120));
}

#[tokio::test]
async fn without_a_control_plane_on_unavailable_decides() {
    let (allowing, _) = book(1000, true);
    assert_eq!(allowing.acquire("bob").await, Ok(()), "allow: let through");
    let used = allowing.take_used();
    assert_eq!(
        (used[0].used, used[0].unleased),
        (1, 1),
        "counted as unleased"
    );

    let (denying, _) = book(1000, false);
    assert!(denying.acquire("bob").await.is_err(), "deny: 429");
}

#[tokio::test]
async fn an_empty_lease_waits_for_its_grant_but_not_forever() {
    let (book, link) = book(1000, false);
    let book = Arc::new(book);
    link.set_connected(true);
    let waiter = tokio::spawn({
        let book = Arc::clone(&book);
        async move { book.acquire("carol").await }
    });
    tokio::time::timeout(Duration::from_secs(1), link.wanted())
        .await
        .expect("the reporter is woken");
    let wants = book.wants();
    assert_eq!(wants.len(), 1);
    let window = book.window_start(unix_millis());
    book.grant(&grant("carol", window, 3, false));
    assert_eq!(waiter.await.unwrap(), Ok(()), "the grant lets it through");

    let started = tokio::time::Instant::now();
    assert!(book.acquire("dave").await.is_err(), "no grant: deny");
    let waited = started.elapsed();
    assert!(
        waited >= GRANT_WAIT && waited < GRANT_WAIT * 4,
        "{waited:?}"
    );
}
