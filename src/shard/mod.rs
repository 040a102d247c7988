//! A shard's state: one pinned glommio executor per shard owns its listeners, its storage,
//! its index and its end of the mesh. Shard state lives in `Rc`/`RefCell`: it cannot leak to
//! another thread, and nothing in it is locked. Start-up and the shard's lifecycle are in
//! [`crate::server`].

pub mod admission;
pub mod append;
pub mod conns;
pub mod group_commit;
pub mod group_write;
pub mod ingest;
pub mod latch;
pub mod mesh;
pub mod query;
pub mod retention;
pub mod sealing;
pub mod trim;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::index::Indexes;
use crate::metrics::ShardMetrics;
use crate::route::ShardId;
use crate::seal::SealedSet;
use crate::storage::Store;
use append::AppendError;
use conns::Conns;
use group_commit::GroupCommit;
use group_write::GroupWrite;
use latch::{Doorbell, Latch};
use mesh::Mesh;

/// What a shard holds, as start-up recovered it: its raw segments, their index, and its
/// sealed segments.
pub struct ShardData {
    pub store: Store,
    pub index: Indexes,
    pub sealed: SealedSet,
}

/// One shard's state, shared by its tasks through `Rc`. What the modules above `shard` read
/// is `pub` (its id, configuration, counters, mesh and stop latch); the rest is the shard's
/// own, reached from outside through its methods.
pub struct Shard {
    pub id: ShardId,
    pub(in crate::shard) count: u32,
    pub config: Config,
    pub(in crate::shard) store: RefCell<Store>,
    /// One part per raw segment holding records.
    pub(in crate::shard) index: RefCell<Indexes>,
    /// Sealed segments, with their sidecars.
    pub(in crate::shard) sealed: RefCell<SealedSet>,
    pub(in crate::shard) commit: GroupCommit,
    pub(in crate::shard) group_write: GroupWrite,
    pub mesh: Mesh,
    /// Shards (by index) holding segments written under another shard count: trace lookups
    /// ask them too. Fixed at start-up; read only afterwards.
    pub(in crate::shard) foreign: Arc<Vec<bool>>,
    /// Set when shutdown starts: listeners close, `/readyz` answers 503.
    pub stopping: Latch,
    /// Requests being worked on: OTLP requests, and appends other shards sent.
    pub(in crate::shard) in_flight: Cell<usize>,
    /// Bytes of ingest request bodies held by requests in flight.
    pub(in crate::shard) in_flight_bytes: Cell<usize>,
    /// The most `in_flight_bytes` held since `trim` last looked.
    pub(in crate::shard) in_flight_bytes_peak: Cell<usize>,
    /// Set (and replaced) each time a prepared segment is installed.
    pub(in crate::shard) segment_ready: RefCell<Latch>,
    pub metrics: ShardMetrics,
    /// The task queue searches scan in: [`crate::limits::QUERY_SHARES`] against the default queue's 1000,
    /// so ingest keeps the thread when both have work.
    pub(in crate::shard) query_queue: glommio::TaskQueueHandle,
    /// Searches running on this shard (at most [`crate::limits::SEARCHES_MAX`]).
    pub(in crate::shard) searches: Cell<usize>,
    /// Rung when the active segment nears its end: retention runs then (`retention`).
    pub(in crate::shard) retention_due: Doorbell,
    /// Open connections of the OTLP ports and of the query port, for `/metrics`; set once the
    /// listeners start.
    pub(in crate::shard) conns: RefCell<Option<(Rc<Conns>, Rc<Conns>)>>,
}

impl Shard {
    /// A shard's state at start-up: its recovered storage and index, its end of the mesh, and
    /// the shards holding foreign segments; nothing in flight yet.
    pub fn new(
        id: ShardId,
        config: Config,
        data: ShardData,
        mesh: Mesh,
        foreign: Arc<Vec<bool>>,
        query_queue: glommio::TaskQueueHandle,
    ) -> Shard {
        Shard {
            id,
            count: config.shards,
            config,
            store: RefCell::new(data.store),
            index: RefCell::new(data.index),
            sealed: RefCell::new(data.sealed),
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
            query_queue,
            searches: Cell::new(0),
            conns: RefCell::new(None),
            retention_due: Doorbell::default(),
        }
    }

    /// Starts the shard's group writer and committer, for the life of the shard.
    pub fn start_writers(self: &Rc<Self>) {
        let committer = self.clone();
        glommio::spawn_local(async move {
            committer
                .commit
                .run(&committer.store, &committer.metrics)
                .await
        })
        .detach();
        let writer = self.clone();
        glommio::spawn_local(async move {
            writer
                .group_write
                .run(&writer.store, &writer.commit, &writer.metrics)
                .await
        })
        .detach();
    }

    /// Requests being worked on: OTLP requests, and appends other shards sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Syncs everything appended so far, whatever the fsync policy (a clean shutdown, the
    /// interval sync).
    pub async fn sync_all(&self) -> Result<(), AppendError> {
        self.commit.sync_all(&self.store).await
    }

    /// The connection registries of the OTLP ports and of the query port, once the listeners
    /// start.
    pub fn set_conns(&self, otlp: Rc<Conns>, query: Rc<Conns>) {
        *self.conns.borrow_mut() = Some((otlp, query));
    }

    /// Closes the longest-idle OTLP connection, if there is one (out of descriptors, any
    /// port's accept loop frees one where the connections are many).
    pub fn evict_idle_otlp(&self) -> bool {
        self.conns
            .borrow()
            .as_ref()
            .is_some_and(|(otlp, _)| otlp.evict_one())
    }
}
