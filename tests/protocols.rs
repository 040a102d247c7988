//! HTTP protocol behaviour: HTTP/1.1 keep-alive, HTTP/2 cleartext (prior knowledge), many
//! concurrent streams on one connection, and graceful shutdown with requests in flight.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;

#[test]
fn h2c_prior_knowledge_with_many_concurrent_streams() {
    let server = Server::start(2);
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // One client, one connection, requests from many threads: multiplexed HTTP/2 streams.
    std::thread::scope(|s| {
        for th in 0..16u64 {
            let client = &client;
            let server = &server;
            s.spawn(move || {
                for i in 0..10u64 {
                    let req = traces_request("h2", th * 100 + i * 5 + 1, 5, 2);
                    let r = client
                        .post(server.otlp_url("/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .body(req.encode_to_vec())
                        .send()
                        .unwrap();
                    assert_eq!(r.version(), reqwest::Version::HTTP_2);
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    let r = client
        .get(server.query_url("/api/v1/traces?service=h2&limit=1000"))
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 800);
}

#[test]
fn http1_keep_alive_reuses_the_connection() {
    let server = Server::start(1);
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .unwrap();
    for i in 0..50 {
        let r = client
            .post(server.otlp_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(traces_request("ka", i + 1, 1, 1).encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers().get("connection").is_none_or(|v| v != "close"));
    }
}

#[test]
fn sigterm_finishes_requests_in_flight() {
    let mut server = Server::start(2);
    let url = server.otlp_url("/v1/traces");
    let pid = server.pid();
    // Requests in flight while SIGTERM arrives: each either completes 200 (and its data is
    // kept) or is refused/cut off before being acknowledged. None is acknowledged and lost.
    let acked: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|th| {
                let url = url.clone();
                s.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    let mut acked = Vec::new();
                    for i in 0..200u64 {
                        let t = th * 1000 + i + 1;
                        let r = client
                            .post(&url)
                            .header("content-type", "application/x-protobuf")
                            .body(traces_request("term", t, 1, 3).encode_to_vec())
                            .timeout(Duration::from_secs(10))
                            .send();
                        match r {
                            Ok(r) if r.status().as_u16() == 200 => acked.push(t),
                            _ => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(server.wait_exit(), 0, "log:\n{}", server.log());
    assert!(!acked.is_empty());
    server.spawn();
    let stored = server.get_json("/api/v1/traces?service=term&limit=1000");
    let n = stored["traces"].as_array().unwrap().len();
    assert!(
        n >= acked.len().min(1000),
        "{} acknowledged, {n} stored",
        acked.len()
    );
    for t in acked.iter().step_by(11) {
        assert_eq!(
            server
                .get(&format!("/api/v1/traces/{}", hex(&trace_id(*t))))
                .status,
            200,
            "trace {t}"
        );
    }
}
