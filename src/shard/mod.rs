//! A shard's state: one pinned glommio executor per shard owns its listeners, its storage,
//! its index and its end of the mesh. Shard state lives in `Rc`/`RefCell`: it cannot leak to
//! another thread, and nothing in it is locked. Start-up and the shard's lifecycle are in
//! [`crate::server`].

pub mod admission;
pub mod append;
pub mod conns;
pub mod durability;
pub mod group_write;
pub mod ingest;
pub mod latch;
pub mod mesh;
pub mod query;
pub mod trim;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::index::Index;
use crate::metrics::ShardMetrics;
use crate::route::ShardId;
use crate::storage::Store;
use conns::Conns;
use durability::GroupCommit;
use group_write::GroupWrite;
use latch::Latch;
use mesh::Mesh;

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
    /// The task queue searches scan in: [`crate::limits::QUERY_SHARES`] against the default queue's 1000,
    /// so ingest keeps the thread when both have work.
    pub query_queue: glommio::TaskQueueHandle,
    /// Searches running on this shard (at most `shard::query::SEARCHES_MAX`).
    pub searches: Cell<usize>,
    /// Open connections of the OTLP ports and of the query port, for `/metrics`; set once the
    /// listeners start.
    pub conns: RefCell<Option<(Rc<Conns>, Rc<Conns>)>>,
}

impl Shard {
    /// A shard's state at start-up: its recovered storage and index, its end of the mesh, and
    /// the shards holding foreign segments; nothing in flight yet.
    pub fn new(
        id: ShardId,
        config: Config,
        store: Store,
        index: Index,
        mesh: Mesh,
        foreign: Arc<Vec<bool>>,
        query_queue: glommio::TaskQueueHandle,
    ) -> Shard {
        Shard {
            id,
            count: config.shards,
            config,
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
            query_queue,
            searches: Cell::new(0),
            conns: RefCell::new(None),
        }
    }
}
