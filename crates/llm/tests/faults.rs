#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fault tests: the router against scripted upstreams (real HTTP on loopback) that delay,
//! answer 429/500/503, close connections, send malformed JSON, or stall or break mid-stream.
//! No request outlives its deadline, attempts are bounded, breakers open and recover.

#[path = "common/scripted.rs"]
mod scripted;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use promptops_core::message::Message;
use promptops_llm::{
    BreakerConfig, BreakerState, ChatRequest, LlmConfig, LlmError, ProviderSet, RetryPolicy,
    Router, RouterOptions, StreamDelta, check_reachable,
};
use scripted::{Scripted, Step, ok_completion, status};

/// Far longer than any test should take: reaching it means something hung.
const HANG: Duration = Duration::from_secs(10);

fn options() -> RouterOptions {
    RouterOptions {
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        },
        breaker: BreakerConfig {
            failure_threshold: 100,
            open_for: Duration::from_secs(60),
            half_open_probes: 1,
        },
        ..RouterOptions::default()
    }
}

/// A router with providers `a` and `b` (OpenAI wire) at the given base URLs and one route
/// `r`, whose settings are `route` (TOML lines).
fn router(a: &str, b: &str, route: &str, options: RouterOptions) -> Router {
    let toml = format!(
        "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"{a}\"\napi_key_env = \"FAULT_KEY\"\n\
         [[providers]]\nname = \"b\"\nkind = \"openai\"\nbase_url = \"{b}\"\napi_key_env = \"FAULT_KEY\"\n\
         [[routes]]\nname = \"r\"\n{route}\n"
    );
    let config = LlmConfig::from_toml(&toml).unwrap();
    let env = |_: &str| Some("sk-fault-test-key-000000".to_owned());
    let providers = ProviderSet::from_config(&config, &env, None).unwrap();
    Router::new(providers, &config, options).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "ignored",
        vec![Message::user("What is the capital of France?")],
    )
}

fn attempts_of(error: LlmError) -> Vec<promptops_llm::AttemptRecord> {
    match error {
        LlmError::AllModelsFailed { attempts } => attempts,
        other => panic!("expected AllModelsFailed, got {other}"),
    }
}

fn chat_stream_events() -> Vec<String> {
    include_str!("fixtures/openai/chat.sse")
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn retries_server_errors_then_succeeds() {
    let a = Scripted::start(vec![status(500), status(503), ok_completion()]).await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/gpt-4o-mini\"]\nretries = 2\ntimeout_ms = 2000",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    assert_eq!(routed.value.text(), "Paris is the capital of France.");
    let statuses: Vec<Option<u16>> = routed.attempts.iter().map(|record| record.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(503), None]);
    assert_eq!(
        routed
            .attempts
            .iter()
            .map(|r| r.attempt)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(routed.fallback_used());
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn honours_retry_after() {
    let limited = Step::Reply(
        429,
        vec![("retry-after", "1".to_owned())],
        r#"{"error":{"message":"slow down"}}"#.to_owned(),
    );
    let a = Scripted::start(vec![limited, ok_completion()]).await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/gpt-4o-mini\"]\nretries = 1\ntimeout_ms = 2000",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    assert_eq!(routed.attempts[0].status, Some(429));
    let arrivals = a.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_secs(1),
        "the retry came {:?} after the 429 that asked for 1 s",
        arrivals[1] - arrivals[0]
    );
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_moves_to_the_next_target() {
    let limited = Step::Reply(429, vec![("retry-after", "30".to_owned())], "{}".to_owned());
    let a = Scripted::start(vec![limited]).await;
    let b = Scripted::start(vec![ok_completion()]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 3\ntimeout_ms = 1000",
        options(),
    );
    let started = Instant::now();
    let routed = router.chat("r", &request()).await.unwrap();
    assert!(started.elapsed() < HANG);
    assert_eq!(routed.target.provider, "b");
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_but_fall_back() {
    let a = Scripted::start(vec![status(400)]).await;
    let b = Scripted::start(vec![ok_completion()]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 3",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    assert_eq!(routed.target.to_string(), "b/m");
    assert_eq!(a.hits(), 1, "a 400 is not retried");
    assert!(!routed.attempts[0].retryable);
    assert_eq!(routed.attempts.len(), 2);
}

#[tokio::test]
async fn attempts_are_bounded_and_all_listed() {
    let a = Scripted::start(vec![status(503)]).await;
    let b = Scripted::start(vec![status(502)]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m1\", \"b/m2\"]\nretries = 2\ntimeout_ms = 1000",
        options(),
    );
    let error = router.chat("r", &request()).await.unwrap_err();
    let message = error.to_string();
    let attempts = attempts_of(error);
    assert_eq!(attempts.len(), 6);
    assert_eq!(a.hits(), 3);
    assert_eq!(b.hits(), 3);
    let targets: Vec<&str> = attempts
        .iter()
        .map(|record| record.target.as_str())
        .collect();
    assert_eq!(targets, ["a/m1", "a/m1", "a/m1", "b/m2", "b/m2", "b/m2"]);
    assert!(
        attempts
            .iter()
            .all(|record| record.cause.is_some() && record.retryable)
    );
    assert!(
        message.starts_with("all 6 attempt(s) failed: a/m1 #1 after "),
        "{message}"
    );
    assert!(message.contains("HTTP 502"), "{message}");
}

#[tokio::test]
async fn per_attempt_timeout_cuts_slow_answers() {
    let a = Scripted::start(vec![Step::Delay(
        Duration::from_secs(30),
        Box::new(ok_completion()),
    )])
    .await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/m\"]\nretries = 1\ntimeout_ms = 150",
        options(),
    );
    let started = Instant::now();
    let error = router.chat("r", &request()).await.unwrap_err();
    assert!(started.elapsed() < HANG);
    assert_eq!(error.status_hint(), 504);
    let attempts = attempts_of(error);
    assert_eq!(attempts.len(), 2);
    for record in &attempts {
        assert!(
            record
                .cause
                .as_deref()
                .unwrap()
                .contains("no answer within"),
            "{record:?}"
        );
    }
}

#[tokio::test]
async fn overall_deadline_bounds_every_attempt_and_wait() {
    let slow = Step::Delay(Duration::from_secs(30), Box::new(ok_completion()));
    let a = Scripted::start(vec![slow.clone()]).await;
    let b = Scripted::start(vec![slow]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 5\ntimeout_ms = 300\ndeadline_ms = 500",
        options(),
    );
    let started = Instant::now();
    let error = router.chat("r", &request()).await.unwrap_err();
    assert!(started.elapsed() < HANG);
    let attempts = attempts_of(error);
    let last = attempts.last().unwrap();
    assert!(
        last.cause.as_deref().unwrap().contains("deadline"),
        "{attempts:?}"
    );
    assert!(
        a.hits() + b.hits() <= 3,
        "the deadline stops the retries: {} + {}",
        a.hits(),
        b.hits()
    );
    let spent: Duration = attempts.iter().map(|record| record.duration).sum();
    assert!(
        spent <= Duration::from_millis(500) + Duration::from_millis(200),
        "{spent:?}"
    );
}

#[tokio::test]
async fn closed_connections_are_retried() {
    let a = Scripted::start(vec![Step::Close, ok_completion()]).await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/m\"]\nretries = 1",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    let first = &routed.attempts[0];
    assert!(first.retryable);
    assert!(
        first.cause.as_deref().unwrap().contains("connection"),
        "{first:?}"
    );
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn malformed_json_falls_back_without_retrying() {
    let a = Scripted::start(vec![Step::Reply(
        200,
        Vec::new(),
        r#"{"id":"chatcmpl-1","choices":["#.to_owned(),
    )])
    .await;
    let b = Scripted::start(vec![ok_completion()]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 2",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    assert_eq!(routed.target.provider, "b");
    assert_eq!(a.hits(), 1);
    assert!(
        routed.attempts[0]
            .cause
            .as_deref()
            .unwrap()
            .contains("not JSON"),
        "{:?}",
        routed.attempts[0]
    );
}

#[tokio::test]
async fn a_stream_that_stalls_ends_with_a_timeout() {
    let events = chat_stream_events();
    let head = events[..3].concat();
    let a = Scripted::start(vec![Step::StallStream(head, Duration::from_secs(30))]).await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/m\"]\nretries = 0\ntimeout_ms = 200",
        options(),
    );
    let started = Instant::now();
    let routed = router.stream("r", &request()).await.unwrap();
    let items: Vec<_> = routed.value.collect().await;
    assert!(started.elapsed() < HANG);
    let (last, delivered) = items.split_last().unwrap();
    assert!(matches!(last, Err(LlmError::Timeout { .. })), "{last:?}");
    assert_eq!(
        delivered
            .iter()
            .map(|item| item.as_ref().unwrap().clone())
            .collect::<Vec<_>>(),
        vec![
            StreamDelta::Text {
                choice: 0,
                text: "Paris".into()
            },
            StreamDelta::Text {
                choice: 0,
                text: " is the capital".into()
            },
        ]
    );
}

#[tokio::test]
async fn a_stream_cut_off_ends_with_a_transient_error() {
    let events = chat_stream_events();
    let a = Scripted::start(vec![Step::BreakStream(events[..2].concat())]).await;
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/m\"]\nretries = 0",
        options(),
    );
    let routed = router.stream("r", &request()).await.unwrap();
    let items: Vec<_> = routed.value.collect().await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(
            last,
            LlmError::Stream {
                transient: true,
                ..
            }
        ),
        "{last:?}"
    );
    assert!(last.is_retryable());
}

#[tokio::test]
async fn streams_fall_back_until_one_opens() {
    let a = Scripted::start(vec![status(503)]).await;
    let b = Scripted::start(vec![Step::Stream(chat_stream_events().concat())]).await;
    let router = router(
        &a.base_url,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 0",
        options(),
    );
    let routed = router.stream("r", &request()).await.unwrap();
    assert_eq!(routed.target.provider, "b");
    let mut text = String::new();
    let mut stream = routed.value;
    while let Some(item) = stream.next().await {
        if let StreamDelta::Text { text: piece, .. } = item.unwrap() {
            text.push_str(&piece);
        }
    }
    assert_eq!(text, "Paris is the capital of France.");
}

#[tokio::test]
async fn streams_that_fail_before_their_first_event_fall_back() {
    let events = chat_stream_events();
    // Each opens with 200 but yields no delta: the role-only event then a cut, a stream that
    // ends at once without `[DONE]`, and one that stalls past the per-attempt timeout.
    let cases = [
        (Step::BreakStream(events[0].clone()), "stream failed"),
        (Step::Stream(String::new()), "stream failed"),
        (
            Step::StallStream(events[0].clone(), Duration::from_secs(30)),
            "no answer within",
        ),
    ];
    for (step, cause) in cases {
        let a = Scripted::start(vec![step]).await;
        let b = Scripted::start(vec![Step::Stream(events.concat())]).await;
        let router = router(
            &a.base_url,
            &b.base_url,
            "targets = [\"a/m\", \"b/m\"]\nretries = 0\ntimeout_ms = 300",
            options(),
        );
        let started = Instant::now();
        let routed = router.stream("r", &request()).await.unwrap();
        assert!(started.elapsed() < HANG);
        assert_eq!(routed.target.provider, "b", "{cause}");
        let first = &routed.attempts[0];
        assert_eq!(first.target, "a/m");
        assert!(
            first.cause.as_deref().unwrap().contains(cause),
            "{cause}: {first:?}"
        );
        let mut text = String::new();
        let mut stream = routed.value;
        while let Some(item) = stream.next().await {
            if let StreamDelta::Text { text: piece, .. } = item.unwrap() {
                text.push_str(&piece);
            }
        }
        assert_eq!(text, "Paris is the capital of France.", "{cause}");
    }
}

#[tokio::test]
async fn breaker_opens_then_recovers_through_a_probe() {
    let a = Scripted::start(vec![status(503), status(503), ok_completion()]).await;
    let options = RouterOptions {
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_millis(300),
            half_open_probes: 1,
        },
        ..options()
    };
    let router = router(
        &a.base_url,
        &a.base_url,
        "targets = [\"a/m\"]\nretries = 0",
        options,
    );
    assert!(router.chat("r", &request()).await.is_err());
    assert_eq!(router.breaker_state("a"), BreakerState::Closed);
    assert!(router.chat("r", &request()).await.is_err());
    assert_eq!(router.breaker_state("a"), BreakerState::Open);
    let refused = attempts_of(router.chat("r", &request()).await.unwrap_err());
    assert!(
        refused[0]
            .cause
            .as_deref()
            .unwrap()
            .contains("circuit open"),
        "{refused:?}"
    );
    assert_eq!(a.hits(), 2, "an open breaker sends nothing upstream");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(router.breaker_state("a"), BreakerState::HalfOpen);
    router.chat("r", &request()).await.unwrap();
    assert_eq!(router.breaker_state("a"), BreakerState::Closed);
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn unreachable_upstreams_are_named_at_start_and_skipped_at_run_time() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    };
    let b = Scripted::start(vec![ok_completion()]).await;
    let toml = format!(
        "[[providers]]\nname = \"down\"\nkind = \"openai\"\nbase_url = \"{closed}\"\n\
         [[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}\"\n",
        b.base_url
    );
    let config = LlmConfig::from_toml(&toml).unwrap();
    let error = check_reachable(&config, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Connect { provider, .. } if provider == "down"),
        "{error}"
    );
    assert!(error.to_string().contains(&closed));

    let router = router(
        &closed,
        &b.base_url,
        "targets = [\"a/m\", \"b/m\"]\nretries = 1",
        options(),
    );
    let routed = router.chat("r", &request()).await.unwrap();
    assert_eq!(routed.target.provider, "b");
    assert_eq!(
        routed.attempts.len(),
        3,
        "two connection failures, then b: {:?}",
        routed.attempts
    );
    assert!(routed.attempts[0].retryable);
}

#[tokio::test]
async fn unknown_models_name_what_is_known() {
    let a = Scripted::start(vec![ok_completion()]).await;
    let router = router(&a.base_url, &a.base_url, "targets = [\"a/m\"]", options());
    let error = router.chat("nope", &request()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown model `nope`: not a route (routes: r) and not PROVIDER/MODEL"
    );
    let error = router.chat("zzz/m", &request()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown model `zzz/m`: no provider `zzz` (providers: a, b)"
    );
    let direct = router.chat("a/gpt-4o-mini", &request()).await.unwrap();
    assert_eq!(direct.target.model, "gpt-4o-mini");
    assert_eq!(a.hits(), 1);
}

/// Two deployments of one model in one priority group: traffic splits by weight, and when one
/// deployment fails every call still succeeds (the group's other member is the fallback) while
/// the failing one's share drains as its health score falls (its breaker is kept shut here, so
/// only health explains it).
#[tokio::test]
async fn weighted_deployments_share_traffic_and_drain_from_a_failing_one() {
    let a = Scripted::start(vec![ok_completion()]).await;
    let b = Scripted::start(vec![ok_completion()]).await;
    let weighted = "targets = [\
        { model = \"a/gpt-4o-mini\", order = 0, weight = 3 }, \
        { model = \"b/gpt-4o-mini\", order = 0, weight = 1 }]\n\
        retries = 0\ntimeout_ms = 2000";
    let balanced = router(&a.base_url, &b.base_url, weighted, options());
    let calls = 400;
    for _ in 0..calls {
        balanced.chat("r", &request()).await.unwrap();
    }
    assert_eq!(a.hits() + b.hits(), calls);
    // Binomial(400, 0.75): one standard deviation is 2.2 points; allow more than 3.
    let share = a.hits() as f64 / calls as f64;
    assert!(
        (share - 0.75).abs() < 0.08,
        "a got {share:.3} of the traffic"
    );

    let failing = Scripted::start(vec![status(500)]).await;
    let healthy = Scripted::start(vec![ok_completion()]).await;
    let even = "targets = [\
        { model = \"a/gpt-4o-mini\", order = 0 }, \
        { model = \"b/gpt-4o-mini\", order = 0 }]\n\
        retries = 0\ntimeout_ms = 2000";
    let router = router(&failing.base_url, &healthy.base_url, even, options());
    for _ in 0..calls {
        let routed = router.chat("r", &request()).await.unwrap();
        assert_eq!(routed.target.provider, "b");
    }
    assert_eq!(healthy.hits(), calls);
    // Without health, `a` would be tried first on half the calls (~200).
    assert!(
        failing.hits() < 120,
        "the failing deployment was still tried {} times",
        failing.hits()
    );
    assert!(router.health("a/gpt-4o-mini") < 0.1);
    assert!(router.health("b/gpt-4o-mini") > 0.99);
    assert_eq!(router.breaker_state("a"), BreakerState::Closed);
}
