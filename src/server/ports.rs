//! Port reservation at start-up: a concrete port for each listener (port 0 resolved), and the
//! refusal to share a port with another live listener.
//!
//! Every shard binds each port with SO_REUSEPORT, which lets any process of the same user bind
//! a port already listened on, and the kernel would then split the connections between the
//! two. So before that, a probe binds without SO_REUSEPORT, which fails on a port in use. A
//! port can also be "in use" by a listener of a process that is already gone: after a kill,
//! the kernel keeps the dead process's sockets for some milliseconds while it tears down its
//! io_uring rings, and a supervisor restarting Glust at once meets them; and the dead process's
//! connections linger after it (closing, or still open at their clients), which make the probe
//! fail without any listener left. So when the probe fails, `/proc/net/tcp` tells which case it
//! is: a port with a socket a live process holds (one whose descriptors this process can read:
//! a listener, or a socket bound and not yet listening) is refused at once; a port whose
//! sockets no process holds and none of which listens is taken (SO_REUSEPORT binds beside the
//! old connections); a listener nobody visible holds is waited for, up to
//! [`PORT_RELEASE_WAIT`], saying so in the log.

use std::net::SocketAddr;
use std::time::Instant;

use socket2::{Domain, Socket, Type};

use super::StartError;
use crate::limits::{PORT_RELEASE_WAIT, PORT_RETRY_PERIOD};

/// A port bound once on the main thread, without listening, so that port 0 becomes a
/// concrete port that every shard then binds with SO_REUSEPORT. Dropped once the shards have
/// bound.
pub struct ReservedPort {
    pub addr: SocketAddr,
    _socket: Socket,
}

/// Reserves `addr`, refusing a port another live listener holds.
pub fn reserve(addr: SocketAddr) -> Result<ReservedPort, StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    if addr.port() != 0 {
        probe_until_free(addr).map_err(bind_err)?;
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(bind_err)?;
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    let local = socket
        .local_addr()
        .map_err(bind_err)?
        .as_socket()
        .expect("inet address");
    Ok(ReservedPort {
        addr: local,
        _socket: socket,
    })
}

/// Binds `addr` without SO_REUSEPORT (then closes it): fails on a port in use, whatever its
/// listener's options. Then tells a live listener (an error) from what a dead process left
/// behind (see the module's doc).
fn probe_until_free(addr: SocketAddr) -> std::io::Result<()> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let err = match probe(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => e,
        };
        let sockets = port_sockets(addr.port());
        if held_by_live_process(&sockets.inodes(false)) {
            return Err(err);
        }
        if sockets.inodes(true).is_empty() {
            tracing::info!(
                %addr,
                "port still has connections of a process that is gone, and no listener: taking it"
            );
            return Ok(());
        }
        if started.elapsed() >= PORT_RELEASE_WAIT {
            return Err(err);
        }
        if !said {
            said = true;
            tracing::warn!(
                %addr,
                "port listened on by no process this one can see (a killed Glust's sockets \
                 being released, or another user's listener): waiting up to \
                 {PORT_RELEASE_WAIT:?} for it to be released"
            );
        }
        std::thread::sleep(PORT_RETRY_PERIOD);
    }
}

fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Whether a process this one can see holds one of the sockets `inodes`, looked for among
/// every process's descriptors. `false` when they cannot be read (another user's process):
/// the caller then waits its bounded time.
fn held_by_live_process(inodes: &[u64]) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for proc in procs.flatten() {
        if !proc
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy();
                let inode = target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok());
                if inode.is_some_and(|i| inodes.contains(&i)) {
                    return true;
                }
            }
        }
    }
    false
}

/// The sockets bound to a port: (inode, listening) for each row of `/proc/net/tcp{,6}` whose
/// local port it is. Orphaned sockets (a dead process's closing connections) have inode 0.
struct PortSockets(Vec<(u64, bool)>);

impl PortSockets {
    /// Their inodes (not 0), the listening ones only if `listening`.
    fn inodes(&self, listening: bool) -> Vec<u64> {
        self.0
            .iter()
            .filter(|(inode, l)| *inode != 0 && (*l || !listening))
            .map(|(inode, _)| *inode)
            .collect()
    }
}

fn port_sockets(port: u16) -> PortSockets {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            out.extend(parse_sockets(&text, port));
        }
    }
    PortSockets(out)
}

/// (inode, listening) of the rows on `port` in the text of `/proc/net/tcp{,6}` (columns:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`, addresses
/// as hex `IP:PORT`, state `0A` for listening).
fn parse_sockets(table: &str, port: u16) -> impl Iterator<Item = (u64, bool)> + '_ {
    const LISTEN: &str = "0A";
    table.lines().skip(1).filter_map(move |line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local_port = cols.get(1)?.rsplit(':').next()?;
        if u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        Some((cols.get(9)?.parse().ok()?, *cols.get(3)? == LISTEN))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:10EE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:10EE 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0CE4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        let on = |port| PortSockets(parse_sockets(table, port).collect());
        assert_eq!(on(4334).inodes(true), [4242]);
        assert_eq!(on(4334).inodes(false), [4242, 4343]);
        assert_eq!(on(3300).inodes(true), [4444]);
        assert!(on(80).inodes(false).is_empty());
    }

    #[test]
    fn this_process_is_seen_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inodes = port_sockets(port).inodes(true);
        assert_eq!(inodes.len(), 1);
        assert!(held_by_live_process(&inodes));
        drop(listener);
        assert!(port_sockets(port).inodes(true).is_empty());
        assert!(!held_by_live_process(&inodes));
    }

    #[test]
    fn a_live_listener_is_refused_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let err = reserve(addr).err().expect("refused");
        assert!(started.elapsed() < PORT_RELEASE_WAIT / 2);
        assert!(err.to_string().contains("Address already in use"), "{err}");
    }
}
