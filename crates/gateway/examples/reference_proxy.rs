//! The reference for the gateway load benchmark (scripts/bench-gateway.sh): the least a proxy
//! built on the gateway's own HTTP stack (axum server, hyper's pooled client, one runtime per
//! core fed by the gateway's acceptor) can do. It copies each request body to the upstream and
//! the upstream's body back, with no parsing, routing, metrics or logging, so its CPU per
//! request is the floor of two HTTP hops on this machine.
//! Usage: `reference_proxy LISTEN UPSTREAM_BASE_URL`, e.g.
//! `reference_proxy 127.0.0.1:18091 http://127.0.0.1:18090`.
#![allow(clippy::print_stderr)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use promptops_gateway::workers::serve_on_workers;
use tokio_util::task::TaskTracker;

std::thread_local! {
    /// One upstream connection pool per worker thread, as in the gateway.
    static CLIENT: Client<HttpConnector, Full<Bytes>> = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
    };
}

#[derive(Clone)]
struct Upstream {
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
    let answer = match CLIENT.with(|client| client.request(request)).await {
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

/// Like `promptops serve`: one single-threaded runtime per core, fed by the same acceptor
/// (`promptops_gateway::workers`), each with its own upstream connection pool.
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".to_owned());
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18090".to_owned());
    let listener = std::net::TcpListener::bind(&listen)?;
    eprintln!("reference proxy on http://{listen}");
    let workers = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(forward))
        .with_state(Upstream { base });
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve_on_workers(
            listener,
            workers,
            app,
            TaskTracker::new(),
            std::future::pending(),
        ))
}
