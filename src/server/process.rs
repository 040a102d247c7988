//! What the process sets up before any shard starts: its resource limits (open files, locked
//! memory), glibc's allocator (thresholds, and a once-only re-exec for its per-thread cache),
//! and its signals (SIGINT and SIGTERM stop it cleanly, SIGHUP is logged and ignored).
//! Called from `main`, before any thread starts.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::limits::{
    MALLOC_MMAP_THRESHOLD_BYTES, MALLOC_TCACHE_COUNT, MALLOC_TRIM_THRESHOLD_BYTES,
    RETENTION_AUTO_PERCENT,
};

/// `--retention-bytes auto`: [`RETENTION_AUTO_PERCENT`] of what the file system holding
/// `data_dir` has free plus what `data_dir` already holds (its files' allocated blocks).
pub fn auto_retention_bytes(data_dir: &std::path::Path) -> std::io::Result<u64> {
    // The directory may not exist yet: its nearest existing ancestor is on the same file
    // system.
    let mut probe = data_dir;
    while !probe.exists() {
        probe = match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
    }
    let path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct; `path` is a valid C string.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut fs) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let free = fs.f_bavail as u64 * fs.f_frsize as u64;
    let held = allocated_bytes(data_dir);
    Ok((free + held) / 100 * RETENTION_AUTO_PERCENT)
}

/// Bytes allocated on disk to the files below `dir` (0 where it cannot be read).
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The flag SIGINT and SIGTERM set (a clean stop); SIGHUP logged and ignored.
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    ignore_sighup()?;
    Ok(stop)
}

/// Every connection and segment file takes a descriptor, and the common soft limit (1024) is
/// far below what a busy ingestor holds: raise the soft limit to the hard one (always
/// allowed). Returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        // An unlimited hard limit still stops at the kernel's `fs.nr_open`.
        let want = match lim.rlim_max {
            libc::RLIM_INFINITY => std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1 << 20),
            max => max,
        };
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            } else {
                tracing::warn!(
                    "cannot raise the open-file limit from {} to {}: {}",
                    lim.rlim_cur,
                    want,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    lim.rlim_cur
}

/// SIGHUP's default action ends the process without its clean shutdown; operators and
/// terminals send it expecting a reload. Glust has nothing to reload yet: it logs the signal
/// and goes on serving.
fn ignore_sighup() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("glust-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::warn!("SIGHUP received: nothing to reload, ignored (SIGTERM stops Glust)");
            }
        })?;
    Ok(())
}

/// io_uring registers memory that counts against `RLIMIT_MEMLOCK`. Raise the soft limit to
/// the hard one (always allowed); as root, the hard one too. If it is still too low, glommio
/// fails to start and the error says what to change.
pub fn raise_memlock_limit() {
    // SAFETY: plain get/setrlimit calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return;
        }
        let want = libc::RLIM_INFINITY;
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
}

/// The glibc tunable that sets it. glibc reads tunables from `GLIBC_TUNABLES` at start only.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const GLIBC_TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";
/// The first glibc whose cache counts go past 127 (they were a `char` before 2.30).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const GLIBC_TCACHE_MIN_VERSION: (u32, u32) = (2, 30);
/// Set in the environment of the restarted process, so that it never restarts again; present
/// with any value, it also stops the restart.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const RESTARTED_ENV: &str = "GLUST_MALLOC_TUNED";

/// Restarts this process (same pid, arguments and environment; `exec` of this binary) with
/// `glibc.malloc.tcache_count=1024` added to `GLIBC_TUNABLES`, unless the environment already
/// sets that tunable (which is how an operator overrides it). Called before any thread starts.
///
/// Hot path: decoding a request allocates small lists per span (its attributes, ~400-600 bytes
/// for 7-10 attributes) and frees them all together when the request's records are written.
/// glibc's per-thread cache holds 7 freed blocks of a size; the rest of a request's blocks went
/// through the arena's bins (`malloc`, `_int_malloc`, `_int_free`, `unlink_chunk`: ~9% of a
/// profile of the server). With room for 1024 they stay in the per-thread cache: +10%
/// requests/s (median of 8 alternating pairs, `scripts/ab-wrk.sh`). The cost is freed memory
/// held per thread: at most 1024 blocks of each of glibc's 64 cached sizes (16 to 1,032 bytes),
/// about 34 MiB in the worst case, in practice the small blocks of the last few requests.
///
/// Not done on glibc before 2.30, whose counts cannot go past 127, nor when `GLIBC_TUNABLES`
/// is not UTF-8 (the operator's tunables are left as they are). If the restart fails, Glust
/// goes on with glibc's default and says so.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_tcache_tunable() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(RESTARTED_ENV).is_some() || glibc_version() < GLIBC_TCACHE_MIN_VERSION {
        return;
    }
    let current = match std::env::var_os("GLIBC_TUNABLES").map(|v| v.into_string()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return,
    };
    let Some(tunables) = tunables_with_tcache(current.as_deref()) else {
        return;
    };
    // This binary by its path, so that the process keeps its name (`ps`, `pgrep -x glust`).
    // Not when started through the dynamic loader (`ld.so ./glust`): that path is the loader.
    let exe = match std::env::current_exe() {
        Ok(exe) if !is_dynamic_loader(&exe) => exe,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("cannot find this binary to restart with {GLIBC_TCACHE_TUNABLE} ({e})");
            return;
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "glust".into());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(RESTARTED_ENV, "1")
        .exec();
    // Still here: the exec failed. `Command::exec` set SIGPIPE back to its default before
    // trying; Rust ignores it, so that a write to a closed socket is an `EPIPE` error and not
    // the end of the process. Restore that.
    // SAFETY: setting a signal's disposition to SIG_IGN; no thread runs yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    tracing::warn!(
        "cannot restart {} with {GLIBC_TCACHE_TUNABLE}={MALLOC_TCACHE_COUNT} ({err}); \
         running with glibc's default",
        exe.display()
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_tcache_tunable() {}

/// Whether `exe` is glibc's dynamic loader (`ld-linux-x86-64.so.2`, `ld.so`, ...).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn is_dynamic_loader(exe: &std::path::Path) -> bool {
    exe.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with("ld-") || n.starts_with("ld.so"))
}

/// The running glibc's (major, minor) version; (0, 0) if it cannot be read.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> (u32, u32) {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    parse_glibc_version(&version.to_string_lossy()).unwrap_or((0, 0))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn parse_glibc_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit());
    Some((major, minor.parse().ok()?))
}

/// `GLIBC_TUNABLES` with Glust's tcache count added, or `None` if it sets one already.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tunables_with_tcache(current: Option<&str>) -> Option<String> {
    let ours = format!("{GLIBC_TCACHE_TUNABLE}={MALLOC_TCACHE_COUNT}");
    match current {
        None | Some("") => Some(ours),
        Some(t)
            if t.split(':')
                .any(|kv| kv.split('=').next() == Some(GLIBC_TCACHE_TUNABLE)) =>
        {
            None
        }
        Some(t) => Some(format!("{t}:{ours}")),
    }
}

/// Sets glibc's allocator thresholds; called before any thread starts.
///
/// glibc malloc gives freed memory at the top of a heap back to the kernel once more than
/// `M_TRIM_THRESHOLD` of it is free there, and serves blocks over `M_MMAP_THRESHOLD` with a
/// fresh `mmap` each. Both thresholds adapt, but stay near 128 KiB to a few MiB, and a shard's
/// working set comes and goes by about a megabyte per group write (request bodies and encoded
/// records of a batch, all freed together after it): with the defaults, every batch faulted
/// its memory in anew, a sixth of the shard's time on the VM of BENCHMARKS.md. Fixed
/// thresholds keep that memory in the heap, at the price of up to
/// [`MALLOC_TRIM_THRESHOLD_BYTES`] of freed memory held per arena.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the shards start.
    unsafe {
        if libc::mallopt(
            libc::M_TRIM_THRESHOLD,
            MALLOC_TRIM_THRESHOLD_BYTES as libc::c_int,
        ) != 1
            || libc::mallopt(
                libc::M_MMAP_THRESHOLD,
                MALLOC_MMAP_THRESHOLD_BYTES as libc::c_int,
            ) != 1
        {
            tracing::warn!("mallopt refused Glust's allocator thresholds; running with glibc's");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse() {
        assert_eq!(parse_glibc_version("2.36"), Some((2, 36)));
        assert_eq!(parse_glibc_version("2.29.9000"), Some((2, 29)));
        assert_eq!(parse_glibc_version("2.40+"), Some((2, 40)));
        assert_eq!(parse_glibc_version("junk"), None);
        assert!(glibc_version() >= (2, 17), "{:?}", glibc_version());
    }

    #[test]
    fn the_loader_is_told_from_glust() {
        use std::path::Path;
        assert!(is_dynamic_loader(Path::new(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        )));
        assert!(is_dynamic_loader(Path::new("/usr/bin/ld.so")));
        assert!(!is_dynamic_loader(Path::new("/home/ld-builds/glust")));
        assert!(!is_dynamic_loader(Path::new("/work/target/release/glust")));
    }

    #[test]
    fn the_tcache_tunable_is_added_unless_set() {
        let ours = "glibc.malloc.tcache_count=1024";
        assert_eq!(tunables_with_tcache(None).as_deref(), Some(ours));
        assert_eq!(tunables_with_tcache(Some("")).as_deref(), Some(ours));
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=1024")
        );
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.tcache_count=7")),
            None
        );
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")),
            None
        );
        // A longer name that starts like ours is not ours.
        assert_eq!(
            tunables_with_tcache(Some("glibc.malloc.tcache_count_x=1")).as_deref(),
            Some("glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=1024")
        );
    }
}
