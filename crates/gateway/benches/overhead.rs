//! Gateway request-path overhead: the same non-streaming chat request sent over loopback
//! directly to a fake OpenAI upstream, and through the gateway to that upstream. The difference
//! of the two is what the gateway adds (parsing, routing, pricing, metrics, response building
//! and one extra HTTP hop). Run: `cargo bench -p promptops-gateway --bench overhead`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use axum::http::header;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use promptops_gateway::{AppState, GatewayConfig};
use promptops_llm::ProviderSet;
use serde_json::json;
use tokio::net::TcpListener;

const CHAT_JSON: &str = include_str!("../tests/fixtures/chat.json");

async fn start_upstream() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], CHAT_JSON) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn start_gateway(upstream: &str) -> String {
    let config = GatewayConfig::from_toml(&format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{upstream}\"\n"
    ))
    .unwrap();
    let providers = ProviderSet::from_config(&config.llm, &|_| None, None).unwrap();
    let state = AppState::from_config(&config, providers).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        promptops_gateway::serve(listener, state, std::future::pending())
            .await
            .unwrap()
    });
    url
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, gateway) = runtime.block_on(async {
        let upstream = start_upstream().await;
        let gateway = start_gateway(&upstream).await;
        (upstream, gateway)
    });
    let client = reqwest::Client::new();
    let body = json!({"model": "up/gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    let mut group = c.benchmark_group("chat_non_streaming");
    for (name, base) in [("direct", &upstream), ("via_gateway", &gateway)] {
        let url = format!("{base}/chat/completions");
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = client.post(&url).json(&body).send().await.unwrap();
                assert!(response.status().is_success());
                response.bytes().await.unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = overhead
}
criterion_main!(benches);
