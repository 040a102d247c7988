//! The shard runtime: one pinned glommio executor per shard, owning its listeners, its
//! storage, its index and its end of the mesh. Shard state lives in `Rc`/`RefCell`: it cannot
//! leak to another thread, and nothing in it is locked.
//!
//! Start-up, per shard: recover storage and rebuild the index (in parallel across shards),
//! connect the mesh, wait for every shard (a start-up barrier), bind listeners with
//! SO_REUSEPORT, serve. Shutdown: stop accepting, let in-flight requests finish, wait for every
//! shard (peers may still be appending for us), fsync, exit.

pub mod admission;
pub mod append;
pub mod durability;
pub mod group_write;
pub mod ingest;
pub mod latch;
pub mod mesh;
pub mod ports;
pub mod trim;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, FsyncPolicy};
use crate::http::conns::Conns;
use crate::index::Index;
use crate::limits::QUERY_CONNECTIONS_MAX;
use crate::limits::{
    BLOCKING_THREADS, DRAIN_TIMEOUT, EXECUTOR_IO_MEMORY_BYTES, FINAL_DUMP_TIMEOUT, QUERY_SHARES,
    STOP_POLL,
};
use crate::metrics::{IntervalDumper, ShardMetrics};
use crate::route::ShardId;
use crate::storage::{RecoveryReport, Store, StoreConfig, StoreError};
use durability::GroupCommit;
use group_write::GroupWrite;
use latch::Latch;
use mesh::{Inbound, Mesh, MeshEnds, Request, Response};

/// One shard's state, shared by its tasks through `Rc`.
pub struct Shard {
    pub id: ShardId,
    pub count: u32,
    pub config: Config,
    pub store: RefCell<Store>,
    pub index: RefCell<Index>,
    pub commit: GroupCommit,
    pub group_write: GroupWrite,
    pub mesh: Mesh,
    /// Shards (by index) holding segments written under another shard count: trace lookups
    /// ask them too. Fixed at start-up; read only afterwards.
    pub foreign: Arc<Vec<bool>>,
    /// Set when shutdown starts: listeners close, `/readyz` answers 503.
    pub stopping: Latch,
    /// Requests being worked on: OTLP requests, and appends other shards sent.
    pub in_flight: Cell<usize>,
    /// Bytes of ingest request bodies held by requests in flight.
    pub in_flight_bytes: Cell<usize>,
    /// The most `in_flight_bytes` held since `trim` last looked.
    pub in_flight_bytes_peak: Cell<usize>,
    /// Set (and replaced) each time a prepared segment is installed.
    pub segment_ready: RefCell<Latch>,
    pub metrics: ShardMetrics,
    /// The task queue searches scan in: [`QUERY_SHARES`] against the default queue's 1000,
    /// so ingest keeps the thread when both have work.
    pub query_queue: glommio::TaskQueueHandle,
    /// Searches running on this shard (at most `query::exec::SEARCHES_MAX`).
    pub searches: Cell<usize>,
    /// Open connections of the OTLP ports and of the query port, for `/metrics`; set once the
    /// listeners start.
    pub conns: RefCell<Option<(Rc<Conns>, Rc<Conns>)>>,
}

/// Addresses a running Glust listens on, resolved (port 0 becomes the real port).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub otlp_http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub query: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the executor of shard {shard}: {detail}\n{hint}")]
    Executor {
        shard: u32,
        detail: String,
        hint: &'static str,
    },
    #[error("this machine cannot run glust as configured: {detail}\n{hint}")]
    Environment { detail: String, hint: &'static str },
    #[error("--cores: {0}")]
    Cores(String),
    #[error("shard {shard}: {source}")]
    Storage { shard: u32, source: StoreError },
    #[error("shard {shard} failed: {detail}")]
    Shard { shard: u32, detail: String },
    #[error("cannot write HDR interval logs into --hdr-dump-dir {dir}: {source}")]
    HdrDumpDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Set by the signal handler (or a test) to stop every shard.
pub type StopFlag = Arc<AtomicBool>;

/// Runs Glust until `stop` is set; returns after a clean shutdown. `on_ready` is called once
/// every shard serves, with the bound addresses.
pub fn run(
    config: Config,
    stop: StopFlag,
    on_ready: impl FnOnce(BoundAddrs) + Send + 'static,
) -> Result<(), StartError> {
    let n = config.shards as usize;
    assert!(n > 0, "at least one shard");
    let placements = placements(&config)?;
    preflight(n)?;
    let otlp_http = ports::reserve(config.otlp_http)?;
    let otlp_grpc = ports::reserve(config.otlp_grpc)?;
    let query = ports::reserve(config.query)?;
    let addrs = BoundAddrs {
        otlp_http: otlp_http.addr,
        otlp_grpc: otlp_grpc.addr,
        query: query.addr,
    };
    // Before any shard starts: a dump directory that cannot be written is a start-up error,
    // not a silent absence of dumps.
    let mut hdr_dumper = match &config.hdr_dump_dir {
        Some(dir) => {
            Some(
                IntervalDumper::new(dir.clone()).map_err(|source| StartError::HdrDumpDir {
                    dir: dir.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let meshes = mesh::build(n);
    let startup = Rendezvous::new(n);
    let serving = Rendezvous::new(n);
    let shutdown = Rendezvous::new(n);
    let synced = Rendezvous::new(n);
    let dumped = Rendezvous::new(n);
    let foreign_slots: Arc<Vec<AtomicBool>> =
        Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let on_ready: ReadyHook = Arc::new(std::sync::Mutex::new(Some(Box::new(on_ready))));

    let mut handles = Vec::with_capacity(n);
    for (i, ends) in meshes.into_iter().enumerate() {
        let placement = placements[i].clone();
        let ctx = ShardStart {
            id: ShardId(i as u32),
            config: config.clone(),
            addrs,
            ends: RefCell::new(Some(ends)),
            // Shard 0 writes the dumps.
            hdr_dumper: RefCell::new(hdr_dumper.take()),
            startup: startup.clone(),
            serving: serving.clone(),
            shutdown: shutdown.clone(),
            synced: synced.clone(),
            dumped: dumped.clone(),
            foreign_slots: foreign_slots.clone(),
            stop: stop.clone(),
            on_ready: on_ready.clone(),
        };
        // No `spin_before_park`: with the patched glommio's COOP_TASKRUN main ring, a spin
        // that never enters the kernel would not see socket completions (vendor/glommio/
        // GLUST-PATCH.md).
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("glust-shard-{i}"))
            .io_memory(EXECUTOR_IO_MEMORY_BYTES)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(BLOCKING_THREADS))
            .spawn(move || shard_main(ctx))
            .map_err(|e| executor_error(i as u32, e))?;
        handles.push(handle);
    }
    drop((otlp_http, otlp_grpc, query)); // every shard bound its own listener by now or failed

    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = match h.join() {
            Ok(r) => r,
            Err(e) => Err(executor_error(i as u32, e)),
        };
        if let Err(e) = outcome {
            tracing::error!(shard = i, "{e}");
            // A failed shard must not leave the others waiting at a barrier forever.
            stop.store(true, Ordering::SeqCst);
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

struct ShardStart {
    id: ShardId,
    config: Config,
    addrs: BoundAddrs,
    ends: RefCell<Option<MeshEnds>>,
    /// `--hdr-dump-dir`'s writer, created (and checked) before the shards start; shard 0's.
    hdr_dumper: RefCell<Option<IntervalDumper>>,
    startup: Rendezvous,
    serving: Rendezvous,
    shutdown: Rendezvous,
    /// With `--hdr-dump-dir`: every shard made its final sync (shard 0 then takes the last
    /// interval) ...
    synced: Rendezvous,
    /// ... and every shard answers the mesh until shard 0 wrote it.
    dumped: Rendezvous,
    foreign_slots: Arc<Vec<AtomicBool>>,
    stop: StopFlag,
    on_ready: ReadyHook,
}

type ReadyHook = Arc<std::sync::Mutex<Option<Box<dyn FnOnce(BoundAddrs) + Send>>>>;

/// A start-up / shutdown meeting point of all shards that a failed shard can call off, so no
/// shard waits forever for one that died. Polled: it is used a few times per process lifetime.
#[derive(Clone)]
struct Rendezvous {
    arrived: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    n: usize,
}

impl Rendezvous {
    fn new(n: usize) -> Rendezvous {
        Rendezvous {
            arrived: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(AtomicBool::new(false)),
            n,
        }
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Waits for every shard; `false` if one failed instead.
    async fn wait(&self) -> bool {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        loop {
            if self.failed.load(Ordering::SeqCst) {
                return false;
            }
            if self.arrived.load(Ordering::SeqCst) >= self.n {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Checks, before any executor starts, what glommio would otherwise panic on: io_uring
/// available to this process, and enough locked memory for every shard's io_uring buffers.
fn preflight(shards: usize) -> Result<(), StartError> {
    let fail = |detail: String, hint: &'static str| StartError::Environment { detail, hint };
    // io_uring_setup with one entry: the cheapest way to ask the kernel whether it will serve.
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: io_uring_setup(2) writes into `params` (120 bytes, the kernel's struct size) and
                                 // returns a file descriptor, which is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::ENOSYS) => "glust needs io_uring: Linux 5.8 or newer.",
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "io_uring is disabled for this process: set the sysctl \
                 `kernel.io_uring_disabled=0` (or 1 and run as a member of \
                 `kernel.io_uring_group`), or allow io_uring in the container's seccomp profile."
            }
            Some(libc::ENOMEM) => "io_uring needs locked memory: raise `ulimit -l` (e.g. `ulimit -l unlimited`, or `LimitMEMLOCK=infinity` in a systemd unit).",
            _ => "check that io_uring is available to this process.",
        };
        return Err(fail(format!("io_uring_setup failed: {err}"), hint));
    }
    // SAFETY: `fd` is the descriptor io_uring_setup just returned.
    unsafe { libc::close(fd as i32) };

    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        // Registered buffers plus the rings of each executor (a generous allowance for the rings).
        let needed = shards as u64 * (EXECUTOR_IO_MEMORY_BYTES as u64 + (1 << 20));
        if lim.rlim_cur < needed {
            return Err(fail(
                format!(
                    "locked-memory limit is {} KiB, {} shards need about {} KiB",
                    lim.rlim_cur >> 10,
                    shards,
                    needed >> 10
                ),
                "raise it: `ulimit -l unlimited` in the shell that starts glust, or \
                 `LimitMEMLOCK=infinity` in its systemd unit (or lower --shards).",
            ));
        }
    }
    Ok(())
}

/// Where each shard's executor runs: on its `--cores` entry, each checked against the cores
/// this process may run on; else shard i on the i-th core of the process's CPU affinity
/// (wrapping around when there are more shards than cores), unbound if that is unknown.
fn placements(config: &Config) -> Result<Vec<Placement>, StartError> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let n = config.shards as usize;
    let Some(cores) = &config.cores else {
        return Ok((0..n)
            .map(|i| match allowed.is_empty() {
                false => Placement::Fixed(allowed[i % allowed.len()]),
                true => Placement::Unbound,
            })
            .collect());
    };
    debug_assert_eq!(cores.len(), n, "--cores sets the shard count");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    for &core in cores {
        if !allowed.contains(&core) {
            let why =
                if std::path::Path::new(&format!("/sys/devices/system/cpu/cpu{core}")).exists() {
                    "is not in this process's CPU affinity"
                } else {
                    "does not exist on this machine"
                };
            return Err(StartError::Cores(format!(
                "core {core} {why} (online: {}; this process may run on: {})",
                online.trim(),
                compress(&allowed)
            )));
        }
    }
    Ok(cores.iter().map(|&c| Placement::Fixed(c)).collect())
}

/// `0-3,6` for [0, 1, 2, 3, 6].
fn compress(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(match j > i {
            true => format!("{}-{}", sorted[i], sorted[j]),
            false => sorted[i].to_string(),
        });
        i = j + 1;
    }
    out.join(",")
}

fn executor_error(shard: u32, e: glommio::GlommioError<()>) -> StartError {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    let hint = if lower.contains("memory") || lower.contains("enomem") || lower.contains("locked") {
        "io_uring needs locked memory: raise the limit, e.g. `ulimit -l unlimited` in the shell \
         that starts glust, or `LimitMEMLOCK=infinity` in its systemd unit."
    } else if lower.contains("not implemented")
        || lower.contains("enosys")
        || lower.contains("permission")
        || lower.contains("eperm")
    {
        "glust needs io_uring (Linux 5.8 or newer, not disabled by `kernel.io_uring_disabled` \
         or a seccomp profile; in Docker run with a profile that allows io_uring)."
    } else {
        "check that io_uring is available and `ulimit -l` allows locked memory."
    };
    StartError::Executor {
        shard,
        detail,
        hint,
    }
}

async fn shard_main(ctx: ShardStart) -> Result<(), StartError> {
    let id = ctx.id;
    // Calls off every rendezvous if this shard fails or panics, so no peer waits for it.
    let mut guard = CallOff {
        ctx: &ctx,
        armed: true,
    };
    let outcome = shard_lifecycle(&ctx).await;
    guard.armed = outcome.is_err();
    drop(guard);
    tracing::debug!(shard = %id, "stopped");
    outcome
}

/// Stops the whole process's start-up or shutdown when dropped armed: on error and on panic
/// (unwinding drops it), so a dead shard never leaves the others at a barrier.
struct CallOff<'a> {
    ctx: &'a ShardStart,
    armed: bool,
}

impl Drop for CallOff<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.ctx.startup.fail();
            self.ctx.serving.fail();
            self.ctx.shutdown.fail();
            self.ctx.synced.fail();
            self.ctx.dumped.fail();
            self.ctx.stop.store(true, Ordering::SeqCst);
        }
    }
}

async fn shard_lifecycle(ctx: &ShardStart) -> Result<(), StartError> {
    let id = ctx.id;
    let (store, index, report) = recover(id, &ctx.config).await?;
    ctx.foreign_slots[id.index()].store(report.foreign_generation, Ordering::SeqCst);

    let ends = ctx.ends.borrow_mut().take().expect("mesh ends taken once");
    let (mesh, inbound) = ends.connect(id).await;
    if !ctx.startup.wait().await {
        return Err(StartError::Shard {
            shard: id.0,
            detail: "another shard failed to start".into(),
        });
    }
    let foreign = Arc::new(
        ctx.foreign_slots
            .iter()
            .map(|f| f.load(Ordering::SeqCst))
            .collect(),
    );
    let shard = Rc::new(Shard {
        id,
        count: ctx.config.shards,
        config: ctx.config.clone(),
        store: RefCell::new(store),
        index: RefCell::new(index),
        commit: GroupCommit::default(),
        group_write: GroupWrite::default(),
        mesh,
        foreign,
        stopping: Latch::default(),
        in_flight: Cell::new(0),
        in_flight_bytes: Cell::new(0),
        in_flight_bytes_peak: Cell::new(0),
        segment_ready: RefCell::new(Latch::default()),
        metrics: ShardMetrics::default(),
        query_queue: glommio::executor().create_task_queue(
            glommio::Shares::Static(QUERY_SHARES),
            glommio::Latency::NotImportant,
            "query",
        ),
        searches: Cell::new(0),
        conns: RefCell::new(None),
    });
    spawn_receivers(&shard, inbound);
    let committer = shard.clone();
    glommio::spawn_local(async move {
        committer
            .commit
            .run(&committer.store, &committer.metrics)
            .await
    })
    .detach();
    let writer = shard.clone();
    glommio::spawn_local(async move {
        writer
            .group_write
            .run(&writer.store, &writer.commit, &writer.metrics)
            .await
    })
    .detach();

    let http = bind(ctx.addrs.otlp_http)?;
    let grpc = bind(ctx.addrs.otlp_grpc)?;
    let query = bind(ctx.addrs.query)?;
    // The OTLP ports share one connection cap; the query port has its own, so that ingest
    // clients cannot take the descriptors health checks and queries need.
    let otlp_conns = Rc::new(Conns::new(ctx.config.max_connections));
    let query_conns = Rc::new(Conns::new(QUERY_CONNECTIONS_MAX));
    let http_task = glommio::spawn_local(crate::http::serve(
        http,
        shard.clone(),
        crate::http::Endpoint::OtlpHttp,
        otlp_conns.clone(),
    ))
    .detach();
    let grpc_task = glommio::spawn_local(crate::http::serve(
        grpc,
        shard.clone(),
        crate::http::Endpoint::OtlpGrpc,
        otlp_conns.clone(),
    ))
    .detach();
    let query_task = glommio::spawn_local(crate::http::serve(
        query,
        shard.clone(),
        crate::http::Endpoint::Query,
        query_conns.clone(),
    ))
    .detach();
    *shard.conns.borrow_mut() = Some((otlp_conns.clone(), query_conns.clone()));
    if !ctx.serving.wait().await {
        shard.stopping.set();
    } else if id.0 == 0 {
        if let Some(hook) = ctx.on_ready.lock().expect("ready hook").take() {
            hook(ctx.addrs);
        }
    }
    let hdr_dumps = ctx.hdr_dumper.borrow_mut().take().map(|dumper| {
        glommio::spawn_local(dump_hdr_every(
            shard.clone(),
            dumper,
            ctx.config.hdr_dump_interval,
        ))
    });
    glommio::spawn_local(trim::trim_after_bursts(shard.clone())).detach();
    if ctx.config.fsync == FsyncPolicy::Interval {
        glommio::spawn_local(sync_every(shard.clone(), ctx.config.fsync_interval)).detach();
    }

    // Serve until asked to stop.
    while !ctx.stop.load(Ordering::SeqCst) && !shard.stopping.is_set() {
        glommio::timer::sleep(STOP_POLL).await;
    }
    shard.stopping.set();
    tracing::info!(shard = %id, "shutting down: no new connections, finishing in-flight requests");
    let _ = http_task.await;
    let _ = grpc_task.await;
    let _ = query_task.await;
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    while (!otlp_conns.is_empty() || !query_conns.is_empty() || shard.in_flight.get() > 0)
        && std::time::Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Peers may still be appending records we own for requests they are finishing.
    let all_drained = ctx.shutdown.wait().await;
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    while shard.in_flight.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Every policy syncs on a clean shutdown.
    if let Err(e) = shard.commit.sync_all(&shard.store).await {
        tracing::error!(shard = %id, "final sync failed: {e}");
    }
    if ctx.config.hdr_dump_dir.is_some() {
        // The last interval, once every shard drained and synced (so its final appends and
        // sync are in it): shard 0 asks every shard, so all of them keep answering the mesh
        // until it is written. Skipped if a shard failed, and bounded: a peer that does not
        // answer must not keep the process from exiting.
        let all_synced = ctx.synced.wait().await;
        if let Some(dumps) = hdr_dumps {
            let written = futures_lite::future::or(
                async {
                    let dumper = dumps.await;
                    if all_drained && all_synced {
                        dump_hdr_once(&shard, dumper).await;
                    } else {
                        tracing::warn!("a shard failed: the last HDR interval is not written");
                    }
                    true
                },
                async {
                    glommio::timer::sleep(FINAL_DUMP_TIMEOUT).await;
                    false
                },
            )
            .await;
            if !written {
                tracing::warn!(
                    "the last HDR interval was not written within {FINAL_DUMP_TIMEOUT:?}"
                );
            }
        }
        ctx.dumped.wait().await;
    }
    Ok(())
}

/// Opens the shard's storage and rebuilds its index from every intact record. Runs on the
/// blocking pool: recovery reads whole segments.
async fn recover(
    id: ShardId,
    config: &Config,
) -> Result<(Store, Index, RecoveryReport), StartError> {
    let store_config = StoreConfig {
        data_dir: config.data_dir.clone(),
        shard: id,
        shard_count: config.shards,
        segment_bytes: config.segment_bytes,
        page_cache_keep: config.page_cache_keep,
    };
    let started = std::time::Instant::now();
    let outcome = glommio::executor()
        .spawn_blocking(move || {
            let mut index = Index::default();
            let mut undecodable = 0u64;
            let mut last_progress = std::time::Instant::now();
            let opened = Store::open(
                store_config,
                |loc, kind, payload| {
                    if !append::index_stored(&mut index, loc, kind, payload) {
                        undecodable += 1;
                    }
                },
                |report, total| {
                    if last_progress.elapsed() >= Duration::from_secs(2) {
                        last_progress = std::time::Instant::now();
                        tracing::info!(shard = %id, "recovering: {}/{} segments, {} records", report.segments, total, report.records);
                    }
                },
            );
            opened.map(|(store, mut report)| {
                report.corrupt_records += undecodable;
                (store, index, report)
            })
        })
        .await;
    let (store, index, report) = outcome.map_err(|source| StartError::Storage {
        shard: id.0,
        source,
    })?;
    for (path, why) in &report.unreadable_segments {
        tracing::error!(shard = %id, segment = %path.display(), "segment not readable, left in place and not served: {why}");
    }
    if report.corrupt_records > 0 || report.truncated_bytes > 0 {
        tracing::warn!(
            shard = %id,
            corrupt_records = report.corrupt_records,
            truncated_bytes = report.truncated_bytes,
            "recovery found damage: corrupt records are skipped (never served), torn tails cut"
        );
    }
    let stats = index.stats();
    tracing::info!(
        shard = %id,
        segments = report.segments,
        records = report.records,
        spans = stats.spans,
        logs = stats.logs,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage recovered"
    );
    Ok((store, index, report))
}

fn bind(addr: SocketAddr) -> Result<glommio::net::TcpListener, StartError> {
    glommio::net::TcpListener::bind(addr).map_err(|e| StartError::Bind {
        addr,
        source: std::io::Error::other(e.to_string()),
    })
}

/// Starts the tasks that drain the mesh: one per peer for requests (each request handled in
/// its own task, so a slow fsync does not stall the queue) and one per peer for replies.
fn spawn_receivers(shard: &Rc<Shard>, inbound: Inbound) {
    for (peer, rx) in inbound.requests {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(env) = rx.recv().await {
                debug_assert_eq!(env.from, peer);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    // Appends count as in flight: they wait for the write and the fsync
                    // policy, and shutdown waits for them. Queries do not: a search may run for
                    // seconds, and counting it would show every cross-shard query, `/metrics`
                    // included, as a request in flight; shutdown does not wait for searches
                    // other shards sent (their coordinator answers 503).
                    let _counted = match &env.body {
                        Request::Append(_) => {
                            shard
                                .metrics
                                .record(crate::metrics::Hist::QueueWait, env.sent.elapsed());
                            Some(admission::InFlight::enter(&shard))
                        }
                        Request::Query(_) => None,
                    };
                    let body = handle_request(&shard, env.body).await;
                    shard.mesh.reply_to(env.from, env.call, body);
                })
                .detach();
            }
        })
        .detach();
    }
    for (_peer, rx) in inbound.replies {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(env) = rx.recv().await {
                shard.mesh.complete(env);
            }
        })
        .detach();
    }
}

/// Work another shard asked of this one.
async fn handle_request(shard: &Rc<Shard>, req: Request) -> Response {
    match req {
        Request::Append(records) => Response::Appended(append::append_owned(shard, records).await),
        Request::Query(q) => Response::Query(crate::query::exec::run_local(shard, &q).await),
    }
}

/// `--hdr-dump-dir`: every `period`, merges every shard's histograms and appends the interval
/// to one HdrHistogram log per metric (files written on the blocking pool). Returns the dumper
/// when the shard starts stopping, for the last interval ([`dump_hdr_once`] after the drain).
async fn dump_hdr_every(
    shard: Rc<Shard>,
    mut dumper: IntervalDumper,
    period: Duration,
) -> IntervalDumper {
    loop {
        let stopping = futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                shard.stopping.wait().await;
                true
            },
        )
        .await;
        if stopping {
            return dumper;
        }
        dumper = dump_hdr_once(&shard, dumper).await;
    }
}

/// Appends one interval of every shard's histograms to the dumps.
async fn dump_hdr_once(shard: &Rc<Shard>, dumper: IntervalDumper) -> IntervalDumper {
    let snapshot = match crate::query::exec::metrics(shard).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("HDR dump skipped: {e}");
            return dumper;
        }
    };
    let (dumper, written) = glommio::executor()
        .spawn_blocking(move || {
            let mut dumper = dumper;
            let r = dumper.dump(snapshot);
            (dumper, r)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!("HDR dump failed: {e}");
    }
    dumper
}

/// The `interval` fsync policy: sync whatever was written, every `period`.
async fn sync_every(shard: Rc<Shard>, period: Duration) {
    while !shard.stopping.is_set() {
        glommio::timer::sleep(period).await;
        if let Err(e) = shard.commit.sync_all(&shard.store).await {
            tracing::error!(shard = %shard.id, "interval sync failed: {e}");
            return;
        }
    }
}
