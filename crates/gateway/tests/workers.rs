#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `serve_on_workers`: connections spread evenly over the worker threads, and shutdown drains
//! in-flight requests and the tasks they spawned before returning.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use promptops_gateway::workers::serve_on_workers;
use tokio_util::task::TaskTracker;

fn listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

#[tokio::test]
async fn connections_go_to_the_least_loaded_worker() {
    let app = axum::Router::new().route(
        "/thread",
        axum::routing::get(|| async {
            std::thread::current().name().unwrap_or_default().to_owned()
        }),
    );
    let (listener, base) = listener();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on_workers(
        listener,
        NonZeroUsize::new(2).unwrap(),
        app,
        TaskTracker::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    // Six clients, each keeping its one connection open: three per worker.
    let mut clients = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..6 {
        let client = reqwest::Client::new();
        let thread = client
            .get(format!("{base}/thread"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        threads.push(thread);
        clients.push(client);
    }
    threads.sort();
    assert_eq!(
        threads,
        [
            "promptops-worker-0",
            "promptops-worker-0",
            "promptops-worker-0",
            "promptops-worker-1",
            "promptops-worker-1",
            "promptops-worker-1"
        ]
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_drains_requests_and_the_tasks_they_spawned() {
    let tasks = TaskTracker::new();
    let charged = Arc::new(AtomicBool::new(false));
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let app = {
        let tasks = tasks.clone();
        let charged = Arc::clone(&charged);
        axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let tasks = tasks.clone();
                let charged = Arc::clone(&charged);
                let arrived = arrived.clone();
                async move {
                    arrived.send(()).unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    // Like charging a key after answering: finishes after the response.
                    tasks.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        charged.store(true, Ordering::SeqCst);
                    });
                    "done"
                }
            }),
        )
    };
    let (listener, base) = listener();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on_workers(
        listener,
        NonZeroUsize::new(2).unwrap(),
        app,
        tasks,
        async move {
            let _ = stopped.await;
        },
    ));
    let request = tokio::spawn(reqwest::get(format!("{base}/slow")));
    arrivals.recv().await.unwrap();
    stop.send(()).unwrap();
    let answer = request.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "done");
    server.await.unwrap().unwrap();
    assert!(
        charged.load(Ordering::SeqCst),
        "serving returned before the spawned task ran"
    );
    // Stopped: the port no longer accepts.
    assert!(reqwest::get(format!("{base}/slow")).await.is_err());
}
