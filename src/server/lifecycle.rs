//! One shard's life, on its executor: recover its storage, connect the mesh, meet the other
//! shards, serve (listeners, the mesh's receivers, group write and commit, the interval sync,
//! the trim, the HDR dumps), then drain and sync at shutdown.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{ShardStart, StartError};
use crate::config::{Config, FsyncPolicy};
use crate::http::Endpoint;
use crate::index::Indexes;
use crate::limits::{
    DRAIN_POLL, DRAIN_TIMEOUT, FINAL_DUMP_TIMEOUT, QUERY_CONNECTIONS_MAX, QUERY_SHARES,
    RECOVERY_PROGRESS_PERIOD, STOP_POLL,
};
use crate::metrics::{add, IntervalDumper};
use crate::route::ShardId;
use crate::seal::SealedSet;
use crate::shard::conns::Conns;
use crate::shard::mesh::{Inbound, Request, Response};
use crate::shard::{admission, append, retention, sealing, trim, Shard, ShardData};
use crate::storage::{RecoveryReport, Store, StoreConfig};

pub(super) async fn shard_main(ctx: ShardStart) -> Result<(), StartError> {
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
    let (store, index, sealed, report) = recover(id, &ctx.config).await?;
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
    let query_queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(QUERY_SHARES),
        glommio::Latency::NotImportant,
        "query",
    );
    let shard = Rc::new(Shard::new(
        id,
        ctx.config.clone(),
        ShardData {
            store,
            index,
            sealed,
        },
        mesh,
        foreign,
        query_queue,
    ));
    shard
        .metrics
        .sealed_segments_damaged
        .set(report.sealed_damaged);
    add(
        &shard.metrics.sealed_blocks_damaged,
        report.sealed_blocks_lost,
    );
    spawn_receivers(&shard, inbound);
    shard.start_writers();
    let listeners = Listeners::start(ctx, &shard)?;
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
    glommio::spawn_local(retention::retain(shard.clone())).detach();
    glommio::spawn_local(sealing::seal_full_segments(shard.clone())).detach();
    if ctx.config.fsync == FsyncPolicy::Interval {
        glommio::spawn_local(sync_every(shard.clone(), ctx.config.fsync_interval)).detach();
    }

    // Serve until asked to stop.
    while !ctx.stop.load(Ordering::SeqCst) && !shard.stopping.is_set() {
        glommio::timer::sleep(STOP_POLL).await;
    }
    shard.stopping.set();
    tracing::info!(shard = %id, "shutting down: no new connections, finishing in-flight requests");
    // One deadline for the whole drain, this shard's connections and its peers' appends.
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    listeners.stop_and_drain(&shard, deadline).await;
    // Peers may still be appending records we own for requests they are finishing.
    let all_drained = ctx.shutdown.wait().await;
    while shard.in_flight() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    // Every policy syncs on a clean shutdown.
    if let Err(e) = shard.sync_all().await {
        tracing::error!(shard = %id, "final sync failed: {e}");
    }
    if ctx.config.hdr_dump_dir.is_some() {
        last_hdr_interval(ctx, &shard, hdr_dumps, all_drained).await;
    }
    Ok(())
}

/// A shard's three accept loops and their connections.
struct Listeners {
    tasks: Vec<glommio::task::JoinHandle<()>>,
    otlp_conns: Rc<Conns>,
    query_conns: Rc<Conns>,
}

impl Listeners {
    /// Binds the shard's listeners (SO_REUSEPORT) and starts accepting. The OTLP ports share
    /// one connection cap; the query port has its own, so that ingest clients cannot take the
    /// descriptors health checks and queries need.
    fn start(ctx: &ShardStart, shard: &Rc<Shard>) -> Result<Listeners, StartError> {
        let otlp_conns = Rc::new(Conns::new(ctx.config.max_connections));
        let query_conns = Rc::new(Conns::new(QUERY_CONNECTIONS_MAX));
        let mut tasks = Vec::with_capacity(3);
        for (addr, endpoint, conns) in [
            (ctx.addrs.otlp_http, Endpoint::OtlpHttp, &otlp_conns),
            (ctx.addrs.otlp_grpc, Endpoint::OtlpGrpc, &otlp_conns),
            (ctx.addrs.query, Endpoint::Query, &query_conns),
        ] {
            let listener = bind(addr)?;
            let serve = crate::http::serve(listener, shard.clone(), endpoint, conns.clone());
            tasks.push(glommio::spawn_local(serve).detach());
        }
        shard.set_conns(otlp_conns.clone(), query_conns.clone());
        Ok(Listeners {
            tasks,
            otlp_conns,
            query_conns,
        })
    }

    /// Once the shard is stopping: waits for the accept loops to end, then (until `deadline`)
    /// for the connections to close and the requests in flight to finish.
    async fn stop_and_drain(self, shard: &Shard, deadline: std::time::Instant) {
        for task in self.tasks {
            let _ = task.await;
        }
        while (!self.otlp_conns.is_empty() || !self.query_conns.is_empty() || shard.in_flight() > 0)
            && std::time::Instant::now() < deadline
        {
            glommio::timer::sleep(DRAIN_POLL).await;
        }
    }
}

/// `--hdr-dump-dir`: the last interval, once every shard drained and synced (so its final
/// appends and sync are in it). Shard 0 asks every shard, so all of them keep answering the
/// mesh until it is written. Skipped if a shard failed, and bounded: a peer that does not
/// answer must not keep the process from exiting.
async fn last_hdr_interval(
    ctx: &ShardStart,
    shard: &Rc<Shard>,
    hdr_dumps: Option<glommio::Task<IntervalDumper>>,
    all_drained: bool,
) {
    let all_synced = ctx.synced.wait().await;
    if let Some(dumps) = hdr_dumps {
        let written = futures_lite::future::or(
            async {
                let dumper = dumps.await;
                if all_drained && all_synced {
                    dump_hdr_once(shard, dumper).await;
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
            tracing::warn!("the last HDR interval was not written within {FINAL_DUMP_TIMEOUT:?}");
        }
    }
    ctx.dumped.wait().await;
}

/// Opens the shard's storage and rebuilds its index from every intact record. Runs on the
/// blocking pool: recovery reads whole segments.
async fn recover(
    id: ShardId,
    config: &Config,
) -> Result<(Store, Indexes, SealedSet, RecoveryReport), StartError> {
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
            // Sealed pairs first: what a crash during sealing left is put right before the
            // raw segments are replayed, so that no record is replayed that a sealed segment
            // also holds.
            let mut sealed = SealedSet::default();
            let mut foreign_sealed = false;
            let (mut sealed_damaged, mut sealed_blocks_lost) = (0u64, 0u64);
            let dirs = crate::storage::shard_dirs(&store_config)?;
            let own = store_config.own_dir();
            for dir in &dirs {
                let found = crate::seal::recover::recover_dir(dir);
                for (path, why) in &found.damaged {
                    tracing::error!(shard = %id, file = %path.display(), "sealed segment not readable, left in place and not served: {why}");
                }
                for (path, why, lost) in &found.rebuilt {
                    tracing::warn!(shard = %id, file = %path.display(), blocks_lost = lost, "sealed segment rebuilt from its data file ({why}); the damaged blocks are not served");
                    sealed_blocks_lost += *lost as u64;
                }
                sealed_damaged += found.damaged_pairs() as u64;
                for s in found.segments {
                    foreign_sealed |= *dir != own || s.sidecar.meta.shard_count != store_config.shard_count;
                    sealed.insert(std::sync::Arc::new(s));
                }
            }
            let mut index = Indexes::default();
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
                    if last_progress.elapsed() >= RECOVERY_PROGRESS_PERIOD {
                        last_progress = std::time::Instant::now();
                        tracing::info!(shard = %id, "recovering: {}/{} segments, {} records", report.segments, total, report.records);
                    }
                },
            );
            opened.map(|(store, mut report)| {
                report.corrupt_records += undecodable;
                report.foreign_generation |= foreign_sealed;
                report.sealed_damaged = sealed_damaged;
                report.sealed_blocks_lost = sealed_blocks_lost;
                (store, index, sealed, report)
            })
        })
        .await;
    let (store, index, sealed, report) = outcome.map_err(|source| StartError::Storage {
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
        sealed_segments = sealed.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage recovered"
    );
    Ok((store, index, sealed, report))
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
        Request::Query(q) => Response::Query(crate::shard::query::run_local(shard, &q).await),
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
    let snapshot = match crate::shard::query::metrics(shard).await {
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
        if let Err(e) = shard.sync_all().await {
            tracing::error!(shard = %shard.id, "interval sync failed: {e}");
            return;
        }
    }
}
