//! The connections a shard holds open on one class of listener, within a cap.
//!
//! Every open connection costs a file descriptor, and a process has a fixed number of them:
//! without a cap, a few thousand idle connections take them all, and then nothing (an export,
//! a trace lookup, `/healthz`) can be accepted. So each shard caps its OTLP connections
//! (`--max-connections`, shared by the HTTP and gRPC ports) and, apart from them, its query
//! connections ([`crate::limits::QUERY_CONNECTIONS_MAX`]), so that ingest clients can never take
//! the descriptors the query port and health checks need.
//!
//! At the cap, a new connection is still accepted, and the connection idle the longest (no
//! request in progress) is closed to make room: an idle client reconnects when it has
//! something to send, while the new one has. Only when every connection is busy is the new
//! one closed at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use crate::shard::latch::Latch;

/// One open connection, as the registry and the connection's task both see it.
pub struct ConnState {
    /// Requests (HTTP/2 streams) being answered on it now.
    active: Cell<u32>,
    /// When it last finished a request, or opened.
    idle_since: Cell<Instant>,
    /// Requests it has started, ever: one that never started any (an HTTP/2 client that
    /// never sent its preface, a client that never spoke) may be dropped without ceremony.
    started: Cell<u64>,
    /// Set to ask the connection to close (gracefully: requests in progress finish).
    close: Latch,
}

impl ConnState {
    /// A request starts on this connection; it ends when the guard is dropped: with its
    /// answer, or when hyper drops the request's future (an HTTP/2 stream the client reset).
    pub fn request_started(self: &Rc<Self>) -> RequestGuard {
        self.active.set(self.active.get() + 1);
        self.started.set(self.started.get() + 1);
        RequestGuard(self.clone())
    }

    /// No request was ever started on it.
    pub fn never_used(&self) -> bool {
        self.started.get() == 0
    }

    /// No request in progress.
    pub fn is_idle(&self) -> bool {
        self.active.get() == 0
    }

    /// Resolves when the registry asks this connection to close.
    pub fn close_requested(&self) -> crate::shard::latch::LatchWait {
        self.close.wait()
    }
}

/// A request in progress on a connection (see [`ConnState::request_started`]).
pub struct RequestGuard(Rc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.0;
        debug_assert!(state.active.get() > 0);
        state.active.set(state.active.get() - 1);
        if state.active.get() == 0 {
            state.idle_since.set(Instant::now());
        }
    }
}

/// The open connections of one class of listener on one shard.
pub struct Conns {
    max: usize,
    open: RefCell<Vec<Rc<ConnState>>>,
    /// Idle connections closed to make room for new ones.
    pub evicted: Cell<u64>,
    /// New connections closed at once because every open one was busy.
    pub refused: Cell<u64>,
}

/// What to do with a connection just accepted.
pub enum Admit {
    /// Serve it; the guard takes it out of the registry when dropped.
    Serve(ConnGuard),
    /// Close it: the cap is reached and no connection is idle.
    Refuse,
}

impl Conns {
    pub fn new(max: usize) -> Conns {
        assert!(max > 0, "a connection cap of at least one");
        Conns {
            max,
            open: RefCell::new(Vec::new()),
            evicted: Cell::new(0),
            refused: Cell::new(0),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a connection just accepted, closing the longest-idle one if at the cap.
    pub fn admit(self: &Rc<Self>) -> Admit {
        if self.len() >= self.max && !self.evict_one() {
            self.refused.set(self.refused.get() + 1);
            return Admit::Refuse;
        }
        let state = Rc::new(ConnState {
            active: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            started: Cell::new(0),
            close: Latch::default(),
        });
        self.open.borrow_mut().push(state.clone());
        Admit::Serve(ConnGuard {
            conns: self.clone(),
            state,
        })
    }

    /// Asks the connection idle the longest (not already asked) to close; `false` if none is
    /// idle. A scan of the open connections: it runs only at the cap, or when the process is
    /// out of descriptors.
    pub fn evict_one(&self) -> bool {
        let open = self.open.borrow();
        let idle = open
            .iter()
            .filter(|c| c.active.get() == 0 && !c.close.is_set())
            .min_by_key(|c| c.idle_since.get());
        match idle {
            Some(c) => {
                c.close.set();
                self.evicted.set(self.evicted.get() + 1);
                true
            }
            None => false,
        }
    }
}

/// A registered connection; dropping it (the connection ended) unregisters it.
pub struct ConnGuard {
    conns: Rc<Conns>,
    state: Rc<ConnState>,
}

impl ConnGuard {
    pub fn state(&self) -> &Rc<ConnState> {
        &self.state
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.conns.open.borrow_mut();
        if let Some(at) = open.iter().position(|c| Rc::ptr_eq(c, &self.state)) {
            open.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(a: Admit) -> ConnGuard {
        match a {
            Admit::Serve(g) => g,
            Admit::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let conns = Rc::new(Conns::new(2));
        let a = served(conns.admit());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = served(conns.admit());
        // `a` idles longest, but is busy: `b` is asked to close.
        let a_busy = a.state().request_started();
        let c = served(conns.admit());
        assert!(!a.state().close.is_set());
        assert!(b.state().close.is_set());
        assert_eq!(conns.evicted.get(), 1);
        // Every connection busy (or already closing): a new one is refused.
        let _c_busy = c.state().request_started();
        assert!(matches!(conns.admit(), Admit::Refuse));
        assert_eq!(conns.refused.get(), 1);
        // `b` is gone, `a` finished its request: `a` makes room next.
        drop(b);
        assert_eq!(conns.len(), 2);
        drop(a_busy);
        assert!(a.state().is_idle() && !a.state().never_used());
        let d = served(conns.admit());
        assert!(a.state().close.is_set());
        assert_eq!(
            conns.len(),
            3,
            "one over the cap while the evicted one closes"
        );
        drop((a, c, d));
        assert!(conns.is_empty());
    }
}
