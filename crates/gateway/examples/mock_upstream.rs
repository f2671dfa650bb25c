//! A minimal OpenAI-compatible upstream for load benchmarks (scripts/bench-gateway.sh): answers
//! every chat completion with the same recorded response, as fast as axum can. Usage:
//! `mock_upstream 127.0.0.1:18090`.
#![allow(clippy::print_stderr)]

use axum::http::header;
use axum::routing::post;
use axum::serve::ListenerExt;

const CHAT_JSON: &str = include_str!("../tests/fixtures/chat.json");

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], CHAT_JSON) }),
    );
    // TCP_NODELAY as the gateway (and most production servers) set it.
    let listener = tokio::net::TcpListener::bind(&listen).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("mock upstream on http://{listen}/v1");
    axum::serve(listener, app).await
}
