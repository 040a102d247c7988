//! The process among others, on the real binary: pinned cores, open-file limits and idle
//! connections, an immediate restart after a kill, SIGHUP.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// `Cpus_allowed_list` of each shard's executor thread, by shard. glommio names an executor's
/// thread and its blocking pool's `glust-shard-<i>-<executor id>`; the executor's is the first
/// of them (the pool's threads are started from it, with higher thread ids).
fn shard_affinities(pid: u32) -> Vec<(u32, String)> {
    let mut first: std::collections::BTreeMap<u32, (u32, String)> = Default::default();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: u32 = task.file_name().to_string_lossy().parse().unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(Ok(shard)) = comm
            .trim()
            .strip_prefix("glust-shard-")
            .and_then(|rest| rest.split('-').next())
            .map(|n| n.parse::<u32>())
        else {
            continue;
        };
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        let entry = first.entry(shard).or_insert((tid, cpus.clone()));
        if tid < entry.0 {
            *entry = (tid, cpus);
        }
    }
    first
        .into_iter()
        .map(|(shard, (_, cpus))| (shard, cpus))
        .collect()
}

fn cores_available() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

#[test]
fn cores_pin_shard_i_to_the_ith_listed_core() {
    if cores_available() < 2 {
        eprintln!("skipped: needs two cores");
        return;
    }
    let server = Server::start_with(2, &["--cores", "1,0"]);
    assert_eq!(
        shard_affinities(server.pid()),
        [(0, "1".to_owned()), (1, "0".to_owned())]
    );
    assert_eq!(
        server
            .post_traces(&traces_request("pinned", 1, 4, 2))
            .status,
        200
    );
    drop(server);
    // A range sets the shard count.
    let mut one = Server::unstarted(1, &[], &[]);
    one.extra = vec!["--cores".into(), "1-1".into()];
    one.spawn();
    assert_eq!(shard_affinities(one.pid()), [(0, "1".to_owned())]);
}

/// Runs `glust serve` with `args` until it exits (it must, at once); its stderr.
fn failed_start(args: &[&str], affinity: Option<Vec<usize>>) -> String {
    let mut server = Server::unstarted(1, args, &[]);
    server.affinity = affinity;
    let mut cmd = server.command();
    // `--cores` sets the shard count; the harness's --shards 1 agrees with one core.
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("glust {args:?} started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{args:?}: {stderr}");
    stderr
}

#[test]
fn cores_that_cannot_be_used_are_start_up_errors() {
    let err = failed_start(&["--cores", "4000"], None);
    assert!(
        err.contains("--cores: core 4000 does not exist on this machine"),
        "{err}"
    );
    if cores_available() >= 2 {
        let err = failed_start(&["--cores", "1"], Some(vec![0]));
        assert!(
            err.contains("--cores: core 1 is not in this process's CPU affinity")
                && err.contains("this process may run on: 0"),
            "{err}"
        );
    }
    let err = failed_start(&["--cores", "0-1,1"], None);
    assert!(err.contains("core 1 is listed twice"), "{err}");
    let err = failed_start(&["--cores", "0-1"], None);
    assert!(
        err.contains("--shards 1 and --cores with 2 cores disagree"),
        "{err}"
    );
}

/// The soft and hard open-file limits of a process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut nums = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (nums.next().unwrap(), nums.next().unwrap())
}

/// Raises this test process's own soft open-file limit to its hard one; the limit in force.
fn raise_own_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let hard = open_files_limit(std::process::id()).1.min(1 << 16);
    if hard <= 1024 {
        eprintln!("skipped: the hard limit ({hard}) leaves nothing to raise");
        return;
    }
    let mut server = Server::unstarted(1, &[], &[]);
    server.nofile = Some((1024, hard));
    server.spawn();
    assert_eq!(open_files_limit(server.pid()), (hard, hard));
}

/// 2,000 idle connections against a process that may open 1,024 files: the cap closes idle
/// ones for new ones, and an export, a trace lookup and `/healthz` still succeed.
#[test]
fn two_thousand_idle_connections_starve_nothing_under_a_1024_file_limit() {
    let idle_count = 2000;
    if raise_own_open_files() < idle_count as u64 + 200 {
        eprintln!("skipped: this test process cannot open {idle_count} connections");
        return;
    }
    let mut server = Server::unstarted(1, &[], &[]);
    server.nofile = Some((1024, 1024));
    server.spawn();
    assert_eq!(open_files_limit(server.pid()), (1024, 1024));
    let cap = glust::config::max_connections_default(1024, 1);

    // Idle connections to each port: they never send a byte.
    let mut idle = Vec::new();
    for i in 0..idle_count {
        let addr = match i % 4 {
            0 => server.query,
            1 => server.grpc,
            _ => server.otlp,
        };
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            idle.push(c);
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let r = server.post_traces(&traces_request("through", 42, 1, 3));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.get("/healthz").status, 200);
    let t = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(42))));
    assert_eq!(t.status, 200);
    let metrics = server.get("/metrics").text();
    let open = metric(&metrics, "glust_connections_otlp");
    assert!(
        open <= cap as f64 + 2.0,
        "{open} OTLP connections open, cap {cap}"
    );
    assert!(metric(&metrics, "glust_connections_query") <= 64.0 + 2.0);
    assert!(
        metric(&metrics, "glust_connections_evicted_total") >= (idle_count - cap - 64) as f64,
        "{metrics}"
    );
    // No flood of accept errors: the cap keeps the process off its descriptor limit.
    let accept_failures = server.log().matches("accept failed").count();
    assert!(accept_failures <= 5, "{}", server.log());
    drop(idle);
}

/// A supervisor restarts Glust the moment the killed process is reaped, on the same ports, while
/// clients keep sending: every start comes up, and every acknowledged export is there.
#[test]
fn an_immediate_restart_after_kill_comes_up_on_the_same_ports() {
    let mut server = Server::unstarted(2, &[], &[]);
    server.spawn();
    server.same_ports = true;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::Mutex::new(Vec::new());
    let (otlp, cycles) = (server.otlp, 8);
    std::thread::scope(|s| {
        for client in 0..4u64 {
            let (stop, acked) = (&stop, &acked);
            s.spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let first = 1 + client * 1_000_000 + n * 10;
                    n += 1;
                    let body = prost::Message::encode_to_vec(&traces_request("loop", first, 10, 5));
                    let sent = http
                        .post(format!("http://{otlp}/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send();
                    match sent {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(first),
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        // The clients stop however this ends, so that a failed start fails the test.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..cycles {
            std::thread::sleep(Duration::from_millis(700));
            server.kill();
            server.spawn(); // asserts that it comes up
            assert_eq!(server.otlp, otlp);
        }
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() > cycles * 4,
        "{} exports acknowledged",
        acked.len()
    );
    for first in acked.iter().step_by(acked.len() / 50 + 1) {
        for t in [*first, first + 9] {
            let r = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
            assert_eq!(r.status, 200, "acknowledged trace {t} lost");
        }
    }
}

#[test]
fn sighup_is_logged_and_ignored() {
    let mut server = Server::start(1);
    // SAFETY: a signal to the child this test started.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.is_running(), "SIGHUP ended glust");
    assert_eq!(
        server.post_traces(&traces_request("hup", 5, 1, 1)).status,
        200
    );
    assert_eq!(server.get("/readyz").status, 200);
    assert!(
        server
            .log()
            .contains("SIGHUP received: nothing to reload, ignored"),
        "{}",
        server.log()
    );
    // SIGTERM still stops it cleanly.
    assert_eq!(server.stop(), 0);
}

/// The head of a gRPC `TraceService/Export` call.
fn export_call() -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri("http://glust/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

/// Calls a client resets while they wait (a gRPC deadline, a cancelled request) end the
/// connection's requests all the same: at the connection cap, the connection is idle again
/// and makes room for a new one.
#[test]
fn reset_streams_leave_their_connection_idle_for_the_cap() {
    let server = Server::start_with(1, &["--max-connections", "1", "--fsync", "always"]);
    let msg = prost::Message::encode_to_vec(&traces_request("reset", 1, 1, 3));
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    let framed = bytes::Bytes::from(framed);
    let status = runtime().block_on(async {
        let first = h2_connect(server.grpc).await;
        // Fewer than h2's allowance of streams reset before they are served (20), past which
        // the server would close the connection itself.
        for _ in 0..10 {
            let req = export_call();
            let mut c = first.clone().ready().await.unwrap();
            let (_resp, mut send) = c.send_request(req, false).unwrap();
            let _ = send.send_data(framed.clone(), true);
            send.send_reset(h2::Reason::CANCEL);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A second connection: the cap is one, so the first must make room.
        let second = h2_connect(server.grpc).await;
        let req = export_call();
        let mut c = second.ready().await.unwrap();
        let (resp, mut send) = c.send_request(req, false).unwrap();
        let _ = send.send_data(framed.clone(), true);
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("answered")
            .expect("served, not reset");
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.unwrap().len());
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        trailers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    });
    assert_eq!(status.as_deref(), Some("0"));
    let metrics = server.get("/metrics").text();
    assert!(metric(&metrics, "glust_connections_evicted_total") >= 1.0);
    assert_eq!(metric(&metrics, "glust_connections_refused_total"), 0.0);
}
