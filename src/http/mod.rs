//! HTTP on each shard: the OTLP/HTTP receiver and the query API, both hyper 1.x (HTTP/1.1 with
//! keep-alive, and HTTP/2 cleartext, detected per connection) on the shard's executor.
//!
//! - [`io`]: glommio ↔ hyper glue.
//! - [`body`]: request bodies read against the shard's byte budget, frame by frame.
//! - [`export`]: the export path both receivers take once a body is read: decompress, hold,
//!   decode, ingest.
//! - [`otlp`]: `POST /v1/traces`, `POST /v1/logs`.
//! - [`grpc`]: OTLP/gRPC `TraceService/Export`, `LogsService/Export` (HTTP/2 only).
//! - [`api`]: the query API, `/healthz`, `/readyz`.
//! - [`reply`]: answers, status codes and `google.rpc.Status` bodies, for every receiver.

pub mod api;
pub mod body;
pub mod export;
pub mod grpc;
pub mod io;
pub mod jaeger;
pub mod otlp;
pub mod reply;
pub mod tempo;

use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::server::conn::auto;

use crate::limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, ACCEPT_LOG_PERIOD, EVICTION_GRACE, H1_HEADER_BYTES_MAX,
    H2_CONCURRENT_STREAMS_MAX, H2_CONNECTION_WINDOW_BYTES, H2_FRAME_BYTES_MAX,
    H2_KEEP_ALIVE_INTERVAL, H2_KEEP_ALIVE_TIMEOUT, H2_STREAM_WINDOW_BYTES,
};
use crate::shard::conns::{Admit, ConnState, Conns};
use crate::shard::Shard;
use io::{FirstByte, GlommioIo, LocalExec, LocalTimer};

pub type Body = Full<Bytes>;

/// Which service a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    OtlpHttp,
    OtlpGrpc,
    Query,
}

/// Accepts connections until the shard stops; each connection is served by its own task and
/// shut down gracefully (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`) when the shard stops or
/// `conns` makes room for a newer one.
pub async fn serve(
    listener: glommio::net::TcpListener,
    shard: Rc<Shard>,
    endpoint: Endpoint,
    conns: Rc<Conns>,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shard.stopping.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // Out of file descriptors and the like: close an idle connection if there is
                // one (of this port's class, else an OTLP one: they are the many), and back
                // off instead of spinning.
                if !conns.evict_one() {
                    shard.evict_idle_otlp();
                }
                let delay = backoff.failed(&shard, endpoint, &e);
                glommio::timer::sleep(delay).await;
                continue;
            }
        };
        backoff.succeeded();
        let guard = match conns.admit() {
            Admit::Serve(guard) => guard,
            Admit::Refuse => continue, // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            match endpoint {
                Endpoint::OtlpGrpc => serve_grpc_connection(stream, shard, guard.state()).await,
                _ => serve_connection(stream, shard, endpoint, guard.state()).await,
            }
            drop(guard);
        })
        .detach();
    }
}

/// How long an accept loop waits after a failed `accept`: doubling from
/// [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], back to none on the next success. Said in
/// the log at most once per [`ACCEPT_LOG_PERIOD`], with how many failures went unsaid.
#[derive(Default)]
struct AcceptBackoff {
    delay: Duration,
    said_at: Option<Instant>,
    unsaid: u64,
}

impl AcceptBackoff {
    fn failed(&mut self, shard: &Shard, endpoint: Endpoint, e: &dyn std::fmt::Display) -> Duration {
        self.delay = (self.delay * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
        if self
            .said_at
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_PERIOD)
        {
            tracing::warn!(
                shard = %shard.id,
                ?endpoint,
                unsaid = self.unsaid,
                "accept failed: {e}; retrying in {:?} (failures since the last such line: {})",
                self.delay,
                self.unsaid
            );
            self.said_at = Some(Instant::now());
            self.unsaid = 0;
        } else {
            self.unsaid += 1;
        }
        self.delay
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

async fn serve_connection(
    stream: glommio::net::TcpStream,
    shard: Rc<Shard>,
    endpoint: Endpoint,
    state: &Rc<ConnState>,
) {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(LocalTimer)
        .header_read_timeout(shard.config.header_read_timeout)
        .keep_alive(true)
        // hyper panics on a buffer below 8 KiB, its own floor.
        .max_buf_size(H1_HEADER_BYTES_MAX.max(8192));
    builder
        .http2()
        .timer(LocalTimer)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_CONCURRENT_STREAMS_MAX)
        .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
        .max_frame_size(H2_FRAME_BYTES_MAX);
    let svc_shard = shard.clone();
    let first_byte = FirstByte::default();
    let svc_first_byte = first_byte.clone();
    let svc_state = state.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let shard = svc_shard.clone();
        let first_byte = svc_first_byte.clone();
        let state = svc_state.clone();
        async move {
            let started = first_byte.take_for(req.version());
            let _request = state.request_started();
            let resp = route(&shard, endpoint, req, started).await;
            first_byte.rearm();
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(GlommioIo::new(stream, Some(first_byte)), service);
    until_stopped(conn, &shard, state, |c| c.graceful_shutdown()).await;
}

/// One OTLP/gRPC connection: HTTP/2 only (gRPC needs no HTTP/1.1), the same flow-control
/// settings as the HTTP port, GOAWAY on shutdown with in-flight streams finishing.
async fn serve_grpc_connection(
    stream: glommio::net::TcpStream,
    shard: Rc<Shard>,
    state: &Rc<ConnState>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(LocalTimer)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_CONCURRENT_STREAMS_MAX)
        .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
        .max_frame_size(H2_FRAME_BYTES_MAX)
        .max_header_list_size(H1_HEADER_BYTES_MAX as u32);
    let svc_shard = shard.clone();
    let svc_state = state.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let shard = svc_shard.clone();
        let state = svc_state.clone();
        // HTTP/2 only: a call starts when hyper hands its stream over (see FirstByte).
        let started = Instant::now();
        async move {
            let _request = state.request_started();
            let resp = grpc::handle(&shard, req, started).await;
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(GlommioIo::new(stream, None), service);
    until_stopped(conn, &shard, state, |c| c.graceful_shutdown()).await;
}

/// Drives a connection until it ends, or until the shard stops or the connection cap needs
/// its room. When the shard stops, `shutdown` starts a graceful shutdown (HTTP/2 GOAWAY,
/// HTTP/1.1 `Connection: close`; an idle HTTP/1.1 connection closes at once) and requests in
/// flight finish. A connection closed for room was idle when chosen. One that never started a
/// request is dropped at once (a graceful shutdown would wait for an HTTP/2 client that never
/// sent its preface); one that did gets the graceful shutdown, so an HTTP/2 client learns from
/// GOAWAY which streams were not served, bounded by [`EVICTION_GRACE`] once idle again.
async fn until_stopped<C: std::future::Future>(
    conn: C,
    shard: &Shard,
    state: &ConnState,
    shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) {
    enum Ended {
        Itself,
        ShardStopping,
        ForRoom,
    }
    let mut conn = std::pin::pin!(conn);
    let ended = future::or(
        async {
            let _ = conn.as_mut().await;
            Ended::Itself
        },
        future::or(
            async {
                shard.stopping.wait().await;
                Ended::ShardStopping
            },
            async {
                state.close_requested().await;
                Ended::ForRoom
            },
        ),
    )
    .await;
    match ended {
        Ended::Itself => {}
        Ended::ForRoom if state.is_idle() && state.never_used() => {}
        Ended::ShardStopping => {
            shutdown(conn.as_mut());
            let _ = conn.await;
        }
        Ended::ForRoom => {
            shutdown(conn.as_mut());
            loop {
                let grace = async {
                    glommio::timer::sleep(EVICTION_GRACE).await;
                    None
                };
                let done = future::or(async { Some(conn.as_mut().await) }, grace).await;
                // Past the grace with no request in progress: drop it.
                if done.is_some() || state.is_idle() {
                    return;
                }
            }
        }
    }
}

async fn route(
    shard: &Rc<Shard>,
    endpoint: Endpoint,
    req: Request<Incoming>,
    started: Instant,
) -> Response<Body> {
    match endpoint {
        Endpoint::OtlpHttp => otlp::handle(shard, req, started).await,
        Endpoint::Query => api::handle(shard, req).await,
        Endpoint::OtlpGrpc => unreachable!("gRPC connections are served by serve_grpc_connection"),
    }
}
