//! Process start-up and shutdown, above every other module: the process's limits, allocator
//! and signals ([`process`]), preflight checks, port reservation ([`ports`]), one pinned
//! executor per shard, and the rendezvous that start and
//! stop the shards together; each shard's lifecycle is in [`lifecycle`].
//!
//! Start-up, per shard: recover storage and rebuild the index (in parallel across shards),
//! connect the mesh, wait for every shard (a start-up barrier), bind listeners with
//! SO_REUSEPORT, serve. Shutdown: stop accepting, let in-flight requests finish, wait for every
//! shard (peers may still be appending for us), fsync, exit.

pub mod lifecycle;
pub mod ports;
pub mod process;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::limits::{
    BLOCKING_THREADS, EXECUTOR_IO_MEMORY_BYTES, EXECUTOR_RING_MEMORY_BYTES, RENDEZVOUS_POLL,
};
use crate::metrics::IntervalDumper;
use crate::route::ShardId;
use crate::shard::mesh::{self, MeshEnds};
use crate::storage::StoreError;
use lifecycle::shard_main;

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
    #[error("the data directory {dir} is in use by another glust{holder}; one process per data directory")]
    DataDirInUse {
        dir: std::path::PathBuf,
        holder: String,
    },
    #[error("cannot lock the data directory {dir}: {source}")]
    DataDirLock {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
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
    let _data_dir_lock = lock_data_dir(&config.data_dir)?;
    let otlp_http = ports::reserve(config.otlp_http)?;
    let otlp_grpc = ports::reserve(config.otlp_grpc)?;
    let query = ports::reserve(config.query)?;
    let addrs = BoundAddrs {
        otlp_http: otlp_http.addr,
        otlp_grpc: otlp_grpc.addr,
        query: query.addr,
    };
    let mut hdr_dumper = hdr_dumper(&config)?;
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

    join(handles, &stop)
}

/// The file in the data directory whose lock says a process serves from it.
pub const DATA_DIR_LOCK_FILE: &str = "glust.lock";

/// Takes the data directory for this process: an exclusive `flock` on
/// [`DATA_DIR_LOCK_FILE`], held until the returned file is dropped (or the process dies, kill -9
/// included: the kernel releases it). Two processes on one directory would append to the same
/// segments and delete each other's files. The file holds the holder's pid, for the message.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    let failed = |source| StartError::DataDirLock {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let path = dir.join(DATA_DIR_LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(failed(e));
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let holder = match pid.trim() {
            "" => String::new(),
            pid => format!(" (pid {pid})"),
        };
        return Err(StartError::DataDirInUse {
            dir: dir.to_path_buf(),
            holder,
        });
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(failed)?;
    Ok(file)
}

/// `--hdr-dump-dir`'s writer, made before any shard starts: a dump directory that cannot be
/// written is a start-up error, not a silent absence of dumps.
fn hdr_dumper(config: &Config) -> Result<Option<IntervalDumper>, StartError> {
    let Some(dir) = &config.hdr_dump_dir else {
        return Ok(None);
    };
    IntervalDumper::new(dir.clone())
        .map(Some)
        .map_err(|source| StartError::HdrDumpDir {
            dir: dir.clone(),
            source,
        })
}

/// Waits for every shard's executor to end; the first shard's error, if any. A failed shard
/// sets `stop`, so that the others do not wait at a barrier forever.
fn join(
    handles: Vec<glommio::ExecutorJoinHandle<Result<(), StartError>>>,
    stop: &StopFlag,
) -> Result<(), StartError> {
    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = match h.join() {
            Ok(r) => r,
            Err(e) => Err(executor_error(i as u32, e)),
        };
        if let Err(e) = outcome {
            tracing::error!(shard = i, "{e}");
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
            glommio::timer::sleep(RENDEZVOUS_POLL).await;
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
        // Registered buffers plus the rings of each executor.
        let needed = shards as u64 * (EXECUTOR_IO_MEMORY_BYTES + EXECUTOR_RING_MEMORY_BYTES) as u64;
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
