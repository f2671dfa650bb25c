//! End-to-end tests of the gateway over loopback against a scripted fake OpenAI upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{error_of, sse_events, start};
use serde_json::{Value, json};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn non_streaming_chat_has_openai_shape_and_headers() {
    let gw = start("", false).await;
    let response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "req-123")
        .json(&json!({"model": "up/gpt-4o-mini", "messages": user("Capital of France?"), "seed": 3, "stop": ["\n"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-promptops-provider"], "up/gpt-4o-mini");
    let cost: f64 = headers["x-promptops-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cost > 0.0);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Paris is the capital of France."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 24);
    assert_eq!(body["usage"]["total_tokens"], 32);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 16);
    // The body's cost member carries the header's figure, as a stream's usage chunk does.
    let body_cost = body["usage"]["promptops_cost_usd"].as_f64().unwrap();
    assert!((body_cost - cost).abs() < 1e-8, "{body_cost} vs {cost}");
    assert_eq!(body["system_fingerprint"], "fp_0ba0d124f1");
    let sent = gw.upstream.last_body();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["seed"], 3);
    assert_eq!(sent["stop"], json!(["\n"]));
}

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let gw = start("", false).await;
    let response = gw.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn streamed_chat_reassembles_with_done_and_usage() {
    let gw = start("", false).await;
    let whole: Value = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "up/gpt-4o-mini", "messages": user("hi")}),
        )
        .await
        .json()
        .await
        .unwrap();
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "up/gpt-4o-mini", "messages": user("hi"), "stream": true,
                   "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let assembled: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        assembled,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    // Without include_usage there is no usage chunk.
    let text = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "up/gpt-4o-mini", "messages": user("hi"), "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
}

#[tokio::test]
async fn tool_calls_stream_with_indexes_and_assemble() {
    let gw = start("", false).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let whole: Value = gw
        .post("/v1/chat/completions", json!({"model": "up/gpt-4o-mini-tools", "messages": user("weather?"), "tools": tools, "tool_choice": "auto"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
    let calls = whole["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(calls.len(), 2);
    let sent = gw.upstream.last_body();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "auto");
    let text = gw
        .post("/v1/chat/completions", json!({"model": "up/gpt-4o-mini-tools", "messages": user("weather?"), "tools": tools, "stream": true}))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut assembled: Vec<(String, String, String)> = Vec::new();
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        if let Some(deltas) = chunk["choices"][0]["delta"]["tool_calls"].as_array() {
            for delta in deltas {
                let index = delta["index"].as_u64().unwrap() as usize;
                if assembled.len() <= index {
                    assembled.resize(index + 1, Default::default());
                }
                if let Some(id) = delta["id"].as_str() {
                    assembled[index].0 = id.to_owned();
                    assert_eq!(delta["type"], "function");
                }
                if let Some(name) = delta["function"]["name"].as_str() {
                    assembled[index].1.push_str(name);
                }
                assembled[index]
                    .2
                    .push_str(delta["function"]["arguments"].as_str().unwrap());
            }
        }
    }
    let expected: Vec<(String, String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["function"]["name"].as_str().unwrap().to_owned(),
                c["function"]["arguments"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(assembled, expected);
}

#[tokio::test]
async fn bad_requests_name_the_param() {
    let gw = start("", false).await;
    let error = error_of(
        gw.post("/v1/chat/completions", json!({"messages": user("x")}))
            .await,
        400,
    )
    .await;
    assert_eq!(error["param"], "model");
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "up/m", "messages": [{"role": "wizard", "content": "x"}]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["param"], "messages[0].role");
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "up/m", "messages": user("x"), "temperature": 7}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["param"], "temperature");
    assert_eq!(error["type"], "invalid_request_error");
    let response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    error_of(response, 400).await;
    let response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    error_of(response, 415).await;
    assert_eq!(gw.upstream.hits(), 0);
}

#[tokio::test]
async fn too_large_unknown_route_and_method_use_the_envelope() {
    let gw = start("", false).await;
    let big = "x".repeat(10_000);
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "up/m", "messages": user(&big)}),
        )
        .await,
        413,
    )
    .await;
    assert_eq!(error["code"], "request_too_large");
    error_of(gw.get("/v1/nothing").await, 404).await;
    error_of(gw.get("/v1/chat/completions").await, 405).await;
}

#[tokio::test]
async fn unknown_model_is_404() {
    let gw = start("", false).await;
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "nosuch", "messages": user("x")}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "ghost/m", "messages": user("x")}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(error["param"], "model");
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "prompt:p", "messages": user("x")}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "prompt_registry_disabled");
}

#[tokio::test]
async fn upstream_500_falls_back_and_all_failed_is_502() {
    let gw = start("", false).await;
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "fallback", "messages": user("x")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-promptops-provider"], "up/gpt-4o-mini");
    assert_eq!(gw.failing.hits(), 1);
    assert_eq!(gw.upstream.hits(), 1);
    // Streams that fail before the first byte fall back too.
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "fallback", "messages": user("x"), "stream": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "allbad", "messages": user("x")}),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(error["code"], "all_models_failed");
    assert!(
        error["message"].as_str().unwrap().contains("bad/gpt-4o"),
        "{error}"
    );
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("promptops_upstream_errors_total{name=\"bad\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("promptops_fallbacks_total{name=\"fallback\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    use base64::Engine;
    let gw = start("", false).await;
    let body: Value = gw
        .post(
            "/v1/embeddings",
            json!({"model": "up/text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["embedding"], json!([1.0, 0.5, -0.25]));
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    let body: Value = gw
        .post("/v1/embeddings", json!({"model": "up/text-embedding-3-small", "input": "a", "encoding_format": "base64"}))
        .await
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vec![0.0, 0.5, -0.25]);
    let error = error_of(
        gw.post(
            "/v1/embeddings",
            json!({"model": "up/e", "input": [[1, 2]]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["param"], "input[0]");
}

#[tokio::test]
async fn models_lists_provider_models_and_routes() {
    let gw = start("", false).await;
    let body: Value = gw.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"up/gpt-4o-mini"), "{ids:?}");
    assert!(ids.contains(&"fallback"), "{ids:?}");
    assert!(ids.contains(&"allbad"), "{ids:?}");
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let gw = start("", true).await;
    assert_eq!(gw.get("/healthz").await.status(), 200);
    assert_eq!(gw.get("/readyz").await.status(), 200);
    gw.post(
        "/v1/chat/completions",
        json!({"model": "up/gpt-4o-mini", "messages": user("x")}),
    )
    .await;
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "promptops_http_requests_total{route=\"/v1/chat/completions\",provider=\"up\",model=\"gpt-4o-mini\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("promptops_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "promptops_tokens_total{provider=\"up\",model=\"gpt-4o-mini\",kind=\"input\"} 24"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("promptops_cost_usd_total{provider=\"up\",model=\"gpt-4o-mini\"}"),
        "{metrics}"
    );
    let doc: Value = gw.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    for path in [
        "/admin/v1/prompts",
        "/admin/v1/prompts/{name}/deploy",
        "/admin/v1/audit",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("DeployBody").is_some());
}

#[tokio::test]
async fn stream_failing_after_first_byte_ends_with_an_error_event() {
    let gw = start("", false).await;
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "up/break", "messages": user("x"), "stream": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream"),
        "{last}"
    );
    assert_eq!(last["error"]["type"], "upstream_error");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
}

#[tokio::test]
async fn exact_cache_serves_deterministic_requests_and_replays_streams() {
    let gw = start("[cache]\nbackend = \"memory\"\nttl_seconds = 60\n", false).await;
    let body = json!({"model": "up/gpt-4o-mini", "messages": user("Capital of France?"), "temperature": 0});
    let first = gw.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(first.headers()["x-promptops-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    // The entry is written in the background; wait until it is served.
    let mut hit = None;
    for _ in 0..50 {
        let response = gw.post("/v1/chat/completions", body.clone()).await;
        if response
            .headers()
            .get("x-promptops-cache")
            .is_some_and(|v| v == "hit")
        {
            hit = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let hit = hit.expect("the second identical request is a cache hit");
    assert_eq!(hit.headers()["x-promptops-provider"], "up/gpt-4o-mini");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit["choices"], first["choices"]);
    assert!(first["usage"]["promptops_cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(
        hit["usage"]["promptops_cost_usd"], 0.0,
        "a replay costs nothing"
    );
    let upstream_hits = gw.upstream.hits();
    // The same request streamed is replayed from the cache as SSE.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = gw.post("/v1/chat/completions", streamed).await;
    assert_eq!(response.headers()["x-promptops-cache"], "hit");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        gw.upstream.hits(),
        upstream_hits,
        "served without the upstream"
    );
    // Sampling requests are not cached.
    let sampled = gw
        .post("/v1/chat/completions", json!({"model": "up/gpt-4o-mini", "messages": user("Capital of France?"), "temperature": 0.7}))
        .await;
    assert!(sampled.headers().get("x-promptops-cache").is_none());
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("promptops_cache_lookups_total{name=\"hit\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn streamed_misses_fill_the_cache() {
    let gw = start("[cache]\nbackend = \"memory\"\nttl_seconds = 60\n", false).await;
    let body = json!({
        "model": "up/gpt-4o-mini",
        "messages": user("Streamed once, served twice?"),
        "seed": 7,
        "stream": true,
    });
    let response = gw.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(response.headers()["x-promptops-cache"], "miss");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let streamed: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!streamed.is_empty());
    let upstream_hits = gw.upstream.hits();
    // The entry is written in the background once the stream ends: wait for it in the cache
    // itself (asking through HTTP would fill it on a miss and prove nothing).
    let mut key_body = body.clone();
    key_body.as_object_mut().unwrap().remove("stream");
    let key = promptops_cache::CacheKey::of(&key_body);
    let (cache, _) = gw.state.cache().unwrap();
    for attempt in 0.. {
        if cache.get(&key).await.unwrap().is_some() {
            break;
        }
        assert!(attempt < 250, "the streamed answer was never cached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The same request, not streamed, is answered from what the stream stored.
    let response = gw.post("/v1/chat/completions", key_body).await;
    assert_eq!(response.headers()["x-promptops-cache"], "hit");
    let hit: Value = response.json().await.unwrap();
    assert_eq!(hit["choices"][0]["message"]["content"], streamed.as_str());
    assert_eq!(hit["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        gw.upstream.hits(),
        upstream_hits,
        "served without the upstream"
    );

    // A stream cut off by an upstream error is never cached.
    let broken = json!({"model": "up/break", "messages": user("x"), "seed": 7, "stream": true});
    let response = gw.post("/v1/chat/completions", broken.clone()).await;
    let _ = response.text().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = gw.post("/v1/chat/completions", broken).await;
    assert_eq!(again.headers()["x-promptops-cache"], "miss");
}

/// A route with `cache = true` has its sampled answers cached; the same sampled request to a
/// route without it always goes upstream.
#[tokio::test]
async fn a_route_opted_into_caching_caches_sampled_requests() {
    let gw = start(
        "[[routes]]\nname = \"cached\"\ntargets = [\"up/gpt-4o-mini\"]\ncache = true\n\
         [[routes]]\nname = \"plain\"\ntargets = [\"up/gpt-4o-mini\"]\n\
         [cache]\nbackend = \"memory\"\nttl_seconds = 60\n",
        false,
    )
    .await;
    let sampled = |model: &str| json!({"model": model, "messages": user("Name a colour."), "temperature": 0.9});
    let first = gw.post("/v1/chat/completions", sampled("cached")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-promptops-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    // Wait for the background write in the cache itself (asking through HTTP would refill it).
    let mut key_body = sampled("cached");
    key_body.as_object_mut().unwrap().remove("stream");
    let key = promptops_cache::CacheKey::of(&key_body);
    let (cache, _) = gw.state.cache().unwrap();
    for attempt in 0.. {
        if cache.get(&key).await.unwrap().is_some() {
            break;
        }
        assert!(attempt < 250, "the sampled answer was never cached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = gw.post("/v1/chat/completions", sampled("cached")).await;
    assert_eq!(second.headers()["x-promptops-cache"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["choices"], first["choices"]);
    assert_eq!(
        gw.upstream.hits(),
        1,
        "the second answer came from the cache"
    );

    for _ in 0..2 {
        let response = gw.post("/v1/chat/completions", sampled("plain")).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-promptops-cache").is_none());
    }
    assert_eq!(
        gw.upstream.hits(),
        3,
        "sampled requests to `plain` are never cached"
    );
}

/// `/readyz` turns 503, naming the problem, once every provider's circuit breaker is open (one
/// open breaker with another provider still usable stays ready).
#[tokio::test]
async fn readyz_fails_when_every_provider_breaker_is_open() {
    use common::{FakeUpstream, Mode};
    use promptops_llm::BreakerState;
    let one = FakeUpstream::start(Mode::Fail).await;
    let two = FakeUpstream::start(Mode::Fail).await;
    let config = promptops_gateway::GatewayConfig::from_toml(&format!(
        "[[providers]]\nname = \"one\"\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [[providers]]\nname = \"two\"\nkind = \"openai\"\nbase_url = \"{}\"\n",
        one.base_url, two.base_url
    ))
    .unwrap();
    let providers = promptops_llm::ProviderSet::from_config(&config.llm, &|_| None, None).unwrap();
    let state = promptops_gateway::AppState::from_config(&config, providers)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    tokio::spawn(async move {
        promptops_gateway::serve(listener, serving, std::future::pending())
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    let ready = || client.get(format!("{base}/readyz")).send();
    assert_eq!(ready().await.unwrap().status(), 200);
    let router = state.runtime().router();
    for provider in ["one", "two"] {
        if provider == "two" {
            assert_eq!(
                ready().await.unwrap().status(),
                200,
                "provider `two` is still usable"
            );
        }
        for attempt in 0.. {
            if router.breaker_state(provider) == BreakerState::Open {
                break;
            }
            assert!(attempt < 20, "`{provider}`'s breaker never opened");
            let response = client
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"model": format!("{provider}/m"), "messages": user("x")}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_server_error());
        }
    }
    let response = ready().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("circuit breaker is open (one, two)"),
        "{body}"
    );
}
