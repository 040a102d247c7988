//! Test helpers: a tiny HTTP/1.1 server on loopback whose answers (and stalls) a test scripts.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct Req {
    /// 0 for the first request the server saw.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a stall).
    pub delay: Duration,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A 200 held back for `delay` (a stall; an hour is "never").
    pub fn ok_after(delay: Duration) -> Reply {
        Reply {
            delay,
            ..Reply::ok()
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<AtomicU64>,
}

/// Starts the server on its own thread (it lives as long as the test process).
pub fn spawn(handler: Handler) -> Server {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (h, seen) = (handler.clone(), seen2.clone());
                tokio::spawn(async move {
                    let _ = serve_conn(sock, h, seen).await;
                });
            }
        });
    });
    Server { addr, seen }
}

async fn serve_conn(mut sock: TcpStream, h: Handler, seen: Arc<AtomicU64>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Headers.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 65536];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let path = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let req = Req {
            seq: seen.fetch_add(1, Ordering::SeqCst),
            method,
            path,
            headers,
            body,
        };
        let reply = h(&req);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        sock.write_all(&bytes).await?;
    }
}

use loadgen::payload::{Compression, PayloadConfig, Signal};
use loadgen::run::{Mode, RunConfig};
use loadgen::transport::{Target, Transport};

/// A small run against `addr`: one unpinned worker, one HTTP/1.1 connection, 10 spans/request.
pub fn config(addr: SocketAddr, mode: Mode) -> RunConfig {
    RunConfig {
        target: Target {
            addr,
            authority: addr.to_string(),
            transport: Transport::HttpProtobuf,
            signal: Signal::Traces,
            compression: Compression::None,
            http2: false,
            timeout: Duration::from_secs(5),
        },
        payload: PayloadConfig {
            items_per_request: 10,
            ..PayloadConfig::default()
        },
        seed: 7,
        mode,
        duration: Some(Duration::from_secs(5)),
        max_requests: None,
        cores: Vec::new(),
        worker_count: 1,
        connections: 1,
        inflight: 1,
        fixed: None,
        retry: None,
        keep_samples: false,
    }
}

/// Runs quietly.
pub fn run_quiet(cfg: RunConfig) -> loadgen::run::RunResult {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loadgen::run::run(
        cfg,
        stop,
        loadgen::run::Outputs {
            progress: None,
            hdr_log: None,
        },
    )
    .unwrap()
}
