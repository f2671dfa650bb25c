//! The reference for the gateway load benchmark (scripts/bench-gateway.sh): the least a proxy
//! built on the gateway's own HTTP stack (axum server, hyper's pooled client, one runtime per
//! core) can do. It copies each request body to the upstream and the upstream's body back,
//! with no parsing, routing, metrics or logging, so its CPU per request is the floor of two
//! HTTP hops on this machine.
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

/// Like `promptops serve`: one single-threaded runtime per core accepting from the shared
/// socket, each with its own upstream connection pool.
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".to_owned());
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18090".to_owned());
    let listener = std::net::TcpListener::bind(&listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("reference proxy on http://{listen}");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::new();
    for _ in 0..workers {
        let socket = listener.try_clone()?;
        let base = base.clone();
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
                let app = axum::Router::new()
                    .route("/v1/chat/completions", axum::routing::post(forward))
                    .with_state(Upstream { client, base });
                // TCP_NODELAY as the gateway (and most production servers) set it.
                let listener = tokio::net::TcpListener::from_std(socket)?.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app).await
            })
        }));
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}
