//! A scripted upstream: a raw HTTP/1.1 server on 127.0.0.1 that answers the n-th request with
//! the n-th step of a script (the last step repeats): a status with a body, a delay, a closed
//! connection, malformed JSON, or an event stream that stalls or breaks part-way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer `status` with `headers` and a JSON `body`.
    Reply(u16, Vec<(&'static str, String)>, String),
    /// Wait, then do the inner step.
    Delay(Duration, Box<Step>),
    /// Read the request and close the connection without answering.
    Close,
    /// Answer 200 with an event stream, completely.
    Stream(String),
    /// Send the start of an event stream, then go silent for the duration.
    StallStream(String, Duration),
    /// Send the start of an event stream, then close the connection.
    BreakStream(String),
}

/// A recorded OpenAI chat completion, the usual happy answer.
pub fn ok_completion() -> Step {
    Step::Reply(
        200,
        Vec::new(),
        include_str!("../fixtures/openai/chat.json").to_owned(),
    )
}

/// A bare status with an OpenAI error body.
pub fn status(code: u16) -> Step {
    Step::Reply(
        code,
        Vec::new(),
        format!(
            r#"{{"error":{{"message":"scripted {code}","type":"server_error","param":null,"code":null}}}}"#
        ),
    )
}

/// A running scripted server.
pub struct Scripted {
    /// The OpenAI-style base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    /// Starts serving `script`.
    pub async fn start(script: Vec<Step>) -> Scripted {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&arrivals);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(socket) = read_request(socket).await else {
                        return;
                    };
                    let index = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Instant::now());
                        seen.len() - 1
                    };
                    let step = script[index.min(script.len() - 1)].clone();
                    perform(socket, step).await;
                });
            }
        });
        Scripted { base_url, arrivals }
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// When each request arrived.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// Reads one request (head and `Content-Length` body); `None` when the client went away.
async fn read_request(mut socket: TcpStream) -> Option<TcpStream> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = socket.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return Some(socket);
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn perform(mut socket: TcpStream, step: Step) {
    let mut step = step;
    while let Step::Delay(wait, inner) = step {
        tokio::time::sleep(wait).await;
        step = *inner;
    }
    let stream_head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    match step {
        Step::Reply(code, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                reason(code),
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        Step::Close => drop(socket),
        Step::Stream(events) => {
            let _ = socket.write_all(stream_head.as_bytes()).await;
            let _ = socket.write_all(events.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        Step::StallStream(events, stall) => {
            let _ = socket.write_all(stream_head.as_bytes()).await;
            let _ = socket.write_all(events.as_bytes()).await;
            let _ = socket.flush().await;
            tokio::time::sleep(stall).await;
        }
        Step::BreakStream(events) => {
            let _ = socket.write_all(stream_head.as_bytes()).await;
            let _ = socket.write_all(events.as_bytes()).await;
            let _ = socket.flush().await;
            drop(socket);
        }
        Step::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}
