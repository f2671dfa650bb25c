//! The reference for the gateway load benchmark (scripts/bench-gateway.sh): the least a proxy
//! built on the gateway's own HTTP stack (axum server, hyper's pooled client) can do. It copies
//! each request body to the upstream and the upstream's body back, with no parsing, routing,
//! metrics or logging, so its CPU per request is the floor of two HTTP hops on this machine.
//! Usage: `reference_proxy LISTEN UPSTREAM_BASE_URL`, e.g.
//! `reference_proxy 127.0.0.1:18091 http://127.0.0.1:18090`.
#![allow(clippy::print_stderr)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

async fn forward(State(upstream): State<Upstream>, uri: Uri, body: Bytes) -> Response {
    let target = format!("{}{}", upstream.base, uri.path());
    let request = match Request::post(target)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
    {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let answer = match upstream.client.request(request).await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    match answer.into_body().collect().await {
        Ok(collected) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            collected.to_bytes(),
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
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
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
