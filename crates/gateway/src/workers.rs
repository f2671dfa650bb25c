//! One single-threaded runtime per core, fed connections by one acceptor.
//!
//! A connection, its requests, their upstream calls (one connection pool per thread) and the
//! tasks they spawn all stay on one core: against tokio's work-stealing pool this saves the
//! cross-thread wake-ups of every request (a standalone proxy: ~30% less CPU per request, ~30%
//! more throughput on two cores).
//!
//! Why an acceptor instead of every worker accepting from the shared socket: the kernel wakes
//! whichever waiter it likes, and under load one worker ended up with most keep-alive
//! connections (a 37/63 CPU split on two workers), capping throughput at one busy core while
//! the other idled. `SO_REUSEPORT` spreads by a hash of the address pair, which is only even on
//! average. The acceptor hands each new connection to the worker with the fewest open ones; the
//! hand-off costs one cross-thread wake-up per connection, not per request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

/// How long a stopping worker waits for the tasks requests spawned (charging keys, filling
/// caches, alert webhooks) once its connections have drained.
pub const TASK_DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `workers` threads, each running its own current-thread runtime, until
/// `shutdown` resolves. The acceptor runs on the caller's runtime. On `shutdown` the acceptor
/// stops, every worker drains its connections and then waits (up to [`TASK_DRAIN`]) for the
/// tasks tracked by `tasks`. A worker that fails stops the others and its error is returned.
pub async fn serve_on_workers(
    listener: std::net::TcpListener,
    workers: NonZeroUsize,
    app: axum::Router,
    tasks: TaskTracker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stop, stopped) = watch::channel(false);
    let (finished_sender, mut finished) = mpsc::unbounded_channel();
    let mut queues = Vec::with_capacity(workers.get());
    for index in 0..workers.get() {
        let (sender, connections) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        queues.push(WorkerQueue {
            sender,
            open: Arc::clone(&open),
        });
        let listener = WorkerListener {
            connections,
            open,
            local,
        };
        let app = app.clone();
        let tasks = tasks.clone();
        let mut stopped = stopped.clone();
        let finished = finished_sender.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("promptops-worker-{index}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            axum::serve(listener, app)
                                .with_graceful_shutdown(async move {
                                    let _ = stopped.wait_for(|stop| *stop).await;
                                })
                                .await?;
                            // Tasks spawned here run only while this runtime does.
                            let _ = tokio::time::timeout(TASK_DRAIN, tasks.wait()).await;
                            Ok(())
                        })
                    });
                let _ = finished.send(result);
            });
        if let Err(error) = spawned {
            // The workers already started stop too (their connection queues are closed).
            let _ = stop.send(true);
            return Err(error);
        }
    }
    drop(finished_sender);
    // Until shutdown, or until a worker ends on its own (an error: they only end when told).
    let mut outcome = tokio::select! {
        () = shutdown => Ok(()),
        () = accept(&listener, &queues) => Err(io::Error::other("the acceptor stopped")),
        Some(result) = finished.recv() => {
            result.and(Err(io::Error::other("a server worker stopped")))
        }
    };
    drop(listener);
    drop(queues);
    tasks.close();
    let _ = stop.send(true);
    while let Some(result) = finished.recv().await {
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

/// The acceptor's end of one worker: where its connections go and how many it has open.
struct WorkerQueue {
    sender: mpsc::UnboundedSender<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
}

/// Accepts forever, handing each connection to the least-loaded worker (returns only when no
/// worker takes connections any more).
async fn accept(listener: &tokio::net::TcpListener, queues: &[WorkerQueue]) {
    let mut next = 0;
    'accepting: loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                if !is_connection_error(&error) {
                    // Out of file descriptors and the like: accepting again at once would spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        // Small responses and SSE events go out as soon as they are written: without
        // TCP_NODELAY a write that follows an unacknowledged one waits for the peer's delayed
        // ACK (up to 40 ms).
        let _ = stream.set_nodelay(true);
        let Ok(mut stream) = stream.into_std() else {
            continue;
        };
        // Ties go round-robin, so equal loads still alternate.
        let counts: Vec<usize> = queues
            .iter()
            .map(|queue| queue.open.load(Ordering::Relaxed))
            .collect();
        let order = least_loaded_first(&counts, next);
        next = (next + 1) % queues.len();
        for index in order {
            let queue = &queues[index];
            queue.open.fetch_add(1, Ordering::Relaxed);
            match queue.sender.send(stream) {
                Ok(()) => continue 'accepting,
                Err(mpsc::error::SendError(back)) => {
                    queue.open.fetch_sub(1, Ordering::Relaxed);
                    stream = back;
                }
            }
        }
        return;
    }
}

/// Worker indices, fewest open connections first; ties in round-robin order from `start`.
fn least_loaded_first(counts: &[usize], start: usize) -> Vec<usize> {
    let len = counts.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by_key(|&index| (counts[index], (index + len - start % len) % len));
    order
}

/// Errors that concern one connection only (the peer gave up before it was accepted).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A worker's listener: the connections the acceptor hands it.
struct WorkerListener {
    connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
    local: SocketAddr,
}

impl axum::serve::Listener for WorkerListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let Some(stream) = self.connections.recv().await else {
                // The acceptor is gone: only shutdown ends this worker now.
                return std::future::pending().await;
            };
            let peer = stream.peer_addr();
            match (tokio::net::TcpStream::from_std(stream), peer) {
                (Ok(stream), Ok(peer)) => {
                    let open = Arc::clone(&self.open);
                    return (Counted { stream, open }, peer);
                }
                // Closed already, or cannot join this runtime: dropped, and counted out.
                _ => {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A connection that counts itself out of its worker's open connections when dropped.
pub struct Counted {
    stream: tokio::net::TcpStream,
    open: Arc<AtomicUsize>,
}

impl Counted {
    fn stream(self: Pin<&mut Self>) -> Pin<&mut tokio::net::TcpStream> {
        Pin::new(&mut self.get_mut().stream)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::least_loaded_first;

    #[test]
    fn the_least_loaded_worker_comes_first() {
        assert_eq!(least_loaded_first(&[3, 1, 2], 0), vec![1, 2, 0]);
        assert_eq!(least_loaded_first(&[0, 5], 1), vec![0, 1]);
    }

    #[test]
    fn ties_rotate_from_the_start() {
        assert_eq!(least_loaded_first(&[2, 2, 2], 0), vec![0, 1, 2]);
        assert_eq!(least_loaded_first(&[2, 2, 2], 1), vec![1, 2, 0]);
        assert_eq!(least_loaded_first(&[2, 2, 2], 2), vec![2, 0, 1]);
        assert_eq!(least_loaded_first(&[1, 4, 1], 2), vec![2, 0, 1]);
    }
}
