//! A hostile client against the shard's memory budgets, on the real binary: bodies that announce no
//! size and never end (on every transport), memory given back after a burst.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use glust::limits::SHARD_INGEST_BYTES_MAX;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const TRACES_GRPC: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Resident memory of a process, in bytes (`VmRSS`).
fn rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory a process has had, in bytes (`VmHWM`).
fn peak_rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size field of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib << 10
}

fn gauge(server: &Server, name: &str) -> f64 {
    metric(&server.get("/metrics").text(), name)
}

/// Waits until `cond` holds, for at most `within`; whether it did.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const MIB: u64 = 1 << 20;

/// What every transport's test checks once its bodies are held: the budget holds them (the
/// gauge shows it, memory stays within it) and a new export is refused as retryable. Then,
/// with the bodies gone, memory comes back down.
struct Held {
    baseline_rss: u64,
}

impl Held {
    fn before(server: &Server) -> Held {
        // A warm server: one export served, so its first-use allocations are in the baseline.
        assert_eq!(
            server.post_traces(&traces_request("warm", 1, 1, 2)).status,
            200
        );
        Held {
            baseline_rss: rss_bytes(server.pid()),
        }
    }

    /// The held bodies count against the shard's budget, and memory stays within it.
    fn check_bounded(&self, server: &Server) {
        // Nearly all of the budget: what is left is less than one more body's next frames.
        let held = eventually(Duration::from_secs(20), || {
            gauge(server, "glust_request_bytes_in_flight")
                > (SHARD_INGEST_BYTES_MAX - (8 << 20)) as f64
        });
        // Settled: the bodies refused at the budget's edge have given their bytes back.
        let mut last = -1.0;
        let settled = eventually(Duration::from_secs(20), || {
            let now = gauge(server, "glust_request_bytes_in_flight");
            std::mem::replace(&mut last, now) == now
        });
        let in_flight = gauge(server, "glust_request_bytes_in_flight");
        assert!(held, "held bodies are counted: {in_flight} bytes in flight");
        assert!(settled, "the bytes in flight keep changing: {in_flight}");
        assert!(
            in_flight <= SHARD_INGEST_BYTES_MAX as f64,
            "{in_flight} bytes in flight"
        );
        let rss = rss_bytes(server.pid());
        eprintln!(
            "held: {} MiB in flight, resident {} MiB (baseline {} MiB)",
            in_flight as u64 / MIB,
            rss / MIB,
            self.baseline_rss / MIB
        );
        // The budget, plus what connections buffer besides (hyper's read buffers), plus the
        // freed memory glibc may keep in its heaps before trimming (Glust sets 64 MiB).
        let bound = self.baseline_rss + SHARD_INGEST_BYTES_MAX as u64 + 128 * MIB;
        assert!(
            rss <= bound,
            "resident {} MiB with bodies held (baseline {} MiB)",
            rss / MIB,
            self.baseline_rss / MIB
        );
    }

    /// Once the bodies are gone, resident memory returns within 128 MiB of its baseline, plus
    /// what the index grew by (`index_growth`).
    fn check_given_back(&self, server: &Server, index_growth: u64) {
        let bound = self.baseline_rss + 128 * MIB + index_growth;
        let mut rss = 0;
        let back = eventually(Duration::from_secs(10), || {
            rss = rss_bytes(server.pid());
            rss <= bound
        });
        eprintln!("given back: resident {} MiB", rss / MIB);
        assert!(
            back,
            "resident {} MiB 10 s after the bodies went (baseline {} MiB, index +{} MiB)",
            rss / MIB,
            self.baseline_rss / MIB,
            index_growth / MIB
        );
        // The server lets a body go when it sees its stream or connection end, which may come
        // after resident memory is back (a held gRPC prefix allocates nothing).
        eventually(Duration::from_secs(10), || {
            gauge(server, "glust_request_bytes_in_flight") == 0.0
        });
        assert_eq!(gauge(server, "glust_request_bytes_in_flight"), 0.0);
    }
}

/// An export larger than what the shard's budget has left (whatever the held bodies left of
/// it), so it must be refused while they are held.
fn export_beyond_budget(server: &Server) -> ExportTraceServiceRequest {
    // The held bodies count as the server reads them, which may trail the clients' writes:
    // their total is taken once it holds still.
    let mut held = -1.0;
    eventually(Duration::from_secs(10), || {
        let now = gauge(server, "glust_request_bytes_in_flight");
        std::mem::replace(&mut held, now) == now
    });
    let left = SHARD_INGEST_BYTES_MAX as f64 - held;
    assert!(
        left < (32 << 20) as f64,
        "the held bodies leave {left} bytes"
    );
    // Spans with two 60 KiB values each, enough to pass what is left by a few.
    let spans = (left / (120 << 10) as f64) as u64 + 4;
    let mut req = traces_request("refused", 7, 1, spans);
    let pad = "x".repeat(60 << 10);
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        span.attributes = vec![kv("pad.a", s(&pad)), kv("pad.b", s(&pad))];
    }
    assert!(
        req.encoded_len() as f64 > left,
        "the held bodies leave {left} bytes"
    );
    req
}

/// POSTs an export as a careful client does with a large body (curl past 1 MiB):
/// `Expect: 100-continue`, so a refusal from the headers alone reaches it intact instead of
/// as a broken pipe. Returns the final status line and headers.
fn post_expecting_continue(server: &Server, req: &ExportTraceServiceRequest) -> String {
    use std::io::{BufRead, BufReader};
    let body = req.encode_to_vec();
    let mut c = TcpStream::connect(server.otlp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "POST /v1/traces HTTP/1.1\r\nHost: glust\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            if head.starts_with("HTTP/1.1 100") {
                c.write_all(&body).unwrap();
                head.clear();
                continue;
            }
            return head;
        }
        head.push_str(&line);
    }
}

/// Sends `bytes` of a chunked body that never ends on a new connection; the connection is
/// returned open. Write errors (the server refusing the body and closing) end the sending.
fn chunked_upload(server: &Server, bytes: usize) -> TcpStream {
    let mut c = TcpStream::connect(server.otlp).unwrap();
    write!(
        c,
        "POST /v1/traces HTTP/1.1\r\nHost: glust\r\nContent-Type: application/x-protobuf\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![0x0au8; 64 << 10];
    let mut sent = 0;
    while sent < bytes {
        let head = format!("{:x}\r\n", chunk.len());
        if c.write_all(head.as_bytes()).is_err()
            || c.write_all(&chunk).is_err()
            || c.write_all(b"\r\n").is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    c
}

#[test]
fn chunked_bodies_that_never_end_are_held_within_the_budget() {
    let server = Server::start(1);
    let held = Held::before(&server);
    // 48 uploads of 8 MiB: 384 MiB, half again the budget.
    let uploads: Vec<TcpStream> = std::thread::scope(|s| {
        let tasks: Vec<_> = (0..48)
            .map(|_| s.spawn(|| chunked_upload(&server, 8 << 20)))
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    held.check_bounded(&server);
    let head = post_expecting_continue(&server, &export_beyond_budget(&server));
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{head}"
    );
    drop(uploads);
    held.check_given_back(&server, 0);
    assert_eq!(
        server.post_traces(&traces_request("after", 8, 1, 1)).status,
        200
    );
}

type Stream = (h2::client::ResponseFuture, h2::SendStream<Bytes>);

/// Opens a POST stream to `path` and sends `data` on it, without ending it.
async fn open_stream(
    client: &h2::client::SendRequest<Bytes>,
    path: &str,
    content_type: &str,
    data: Bytes,
) -> Stream {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://glust{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut c = client.clone().ready().await.unwrap();
    let (resp, mut send) = c.send_request(req, false).unwrap();
    let _ = send.send_data(data, false);
    (resp, send)
}

#[test]
fn http2_bodies_without_a_length_are_held_within_the_budget() {
    let server = Server::start(1);
    let held = Held::before(&server);
    let rt = runtime();
    let streams: Vec<Stream> = rt.block_on(async {
        let mut streams = Vec::new();
        // 4 connections of 16 streams, 6 MiB each: 384 MiB, half again the budget.
        for _ in 0..4 {
            let client = h2_connect(server.otlp).await;
            for _ in 0..16 {
                let data = Bytes::from(vec![0x0au8; 6 << 20]);
                streams
                    .push(open_stream(&client, "/v1/traces", "application/x-protobuf", data).await);
            }
        }
        streams
    });
    held.check_bounded(&server);
    let head = post_expecting_continue(&server, &export_beyond_budget(&server));
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    drop(streams);
    drop(rt);
    held.check_given_back(&server, 0);
}

#[test]
fn grpc_length_prefixes_are_held_before_their_bytes_arrive() {
    let server = Server::start(1);
    let held = Held::before(&server);
    let rt = runtime();
    // Each stream announces 15 MiB and sends 1 MiB of it: the budget holds 17, and whichever
    // stream's prefix comes in last is refused as soon as it is in. (The server's metrics are
    // read between the async parts: a blocking client must not run inside the runtime.)
    let announced = 15usize << 20;
    let fits = SHARD_INGEST_BYTES_MAX / (announced + 5);
    let (client, sends, holding) = rt.block_on(async {
        let client = h2_connect(server.grpc).await;
        let mut sends = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..=fits {
            let mut data = vec![0u8];
            data.extend_from_slice(&(announced as u32).to_be_bytes());
            data.resize(1 << 20, 0x0a);
            let (resp, send) =
                open_stream(&client, TRACES_GRPC, "application/grpc", data.into()).await;
            sends.push(send);
            answers.push(tokio::spawn(async move {
                let resp = resp.await.unwrap();
                let h = resp.headers();
                (
                    h["grpc-status"].clone(),
                    h.contains_key("grpc-status-details-bin"),
                )
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !answers.iter().any(|a| a.is_finished()) {
            assert!(Instant::now() < deadline, "no stream refused");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (refused, holding): (Vec<_>, Vec<_>) =
            answers.into_iter().partition(|a| a.is_finished());
        assert_eq!(refused.len(), 1, "one stream refused, the others held");
        let (status, retry_info) = refused.into_iter().next().unwrap().await.unwrap();
        assert_eq!(status, "14");
        assert!(retry_info, "UNAVAILABLE with RetryInfo");
        (client, sends, holding)
    });
    let in_flight = gauge(&server, "glust_request_bytes_in_flight");
    assert!(
        in_flight >= (fits * announced) as f64 && in_flight <= SHARD_INGEST_BYTES_MAX as f64,
        "{in_flight}"
    );
    let msg = export_beyond_budget(&server).encode_to_vec();
    rt.block_on(async {
        // A new export is refused too, retryably.
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        let mut c = client.clone().ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://glust{TRACES_GRPC}"))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (resp, mut send) = c.send_request(req, false).unwrap();
        let _ = send.send_data(framed.into(), true);
        let resp = resp.await.unwrap();
        assert_eq!(resp.headers()["grpc-status"], "14", "{:?}", resp.headers());
        // Over the limit a message may have at all: RESOURCE_EXHAUSTED, not retryable.
        let mut data = vec![0u8];
        data.extend_from_slice(&u32::MAX.to_be_bytes());
        let (resp, _send) =
            open_stream(&client, TRACES_GRPC, "application/grpc", data.into()).await;
        let resp = resp.await.unwrap();
        assert_eq!(resp.headers()["grpc-status"], "8", "{:?}", resp.headers());
        drop(sends);
        for h in holding {
            h.abort();
        }
    });
    drop(rt);
    held.check_given_back(&server, 0);
}

/// A burst of large exports, decoded and stored, leaves no memory behind but the index's: what
/// it guards against is memory that grows with what was stored (each full segment kept its
/// staging buffer: 201-220 MiB resident after this burst). Giving freed memory back (the trim)
/// is what the held-bodies tests above need, whose bodies peak near the budget.
#[test]
fn memory_is_given_back_after_a_burst_of_large_exports() {
    let server = Server::start(1);
    let held = Held::before(&server);
    let index_before = gauge(&server, "glust_index_memory_bytes");
    // 32 clients at once, each sending 4 exports of 2,000 spans (~2.7 MiB each): ~350 MiB of
    // bodies, decoded and stored.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let tasks: Vec<_> = (0..32u64)
            .map(|c| {
                let server = &server;
                s.spawn(move || {
                    (0..4u64)
                        .map(|r| {
                            let first = 1_000 + (c * 4 + r) * 100;
                            server
                                .post_traces(&traces_request("burst", first, 100, 20))
                                .status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        tasks.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let stored = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(stored > 0, "{statuses:?}");
    let index_growth = gauge(&server, "glust_index_memory_bytes") - index_before;
    let peak = peak_rss_bytes(server.pid());
    eprintln!(
        "burst: {stored} of {} exports stored, resident {} MiB at most, {} MiB at the end, \
         index +{} MiB",
        statuses.len(),
        peak / MIB,
        rss_bytes(server.pid()) / MIB,
        index_growth as u64 / MIB
    );
    held.check_given_back(&server, index_growth as u64);
}
