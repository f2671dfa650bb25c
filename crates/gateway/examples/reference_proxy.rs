//! The reference for the gateway load benchmark (scripts/bench-gateway.sh): the least a proxy
//! built on the gateway's own HTTP stack (axum server, reqwest pooled client) can do. It copies
//! each request body to the upstream and the upstream's body back, with no parsing, routing,
//! metrics or logging, so its CPU per request is the floor of two HTTP hops on this machine.
//! Usage: `reference_proxy LISTEN UPSTREAM_BASE_URL`, e.g.
//! `reference_proxy 127.0.0.1:18091 http://127.0.0.1:18090`.
#![allow(clippy::print_stderr)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
}

async fn forward(State(upstream): State<Upstream>, uri: Uri, body: Bytes) -> Response {
    let url = format!("{}{}", upstream.base, uri.path());
    let sent = upstream
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    match answer.bytes().await {
        Ok(bytes) => (
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".to_owned());
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18090".to_owned());
    let client = reqwest::Client::builder()
        .build()
        .map_err(std::io::Error::other)?;
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(forward))
        .with_state(Upstream { client, base });
    // TCP_NODELAY as the gateway (and most production servers) set it.
    let listener = tokio::net::TcpListener::bind(&listen).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("reference proxy on http://{listen}");
    axum::serve(listener, app).await
}
