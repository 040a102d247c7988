//! Cross-shard messaging: one bounded lock-free SPSC queue per ordered pair of shards for
//! requests, and one for replies (glommio's shared channels, woken through eventfds).
//!
//! Flow control is by credits: shard A may have at most [`CROSS_SHARD_INFLIGHT_MAX`] requests
//! outstanding at shard B, and both queues of the pair hold that many. So a request send never
//! finds its queue full, a reply send never does either, and a shard that runs out of credits
//! for an owner answers its client "retry later" *before* writing anything.
//!
//! These are the only types of Glust that cross cores ([`Envelope`] and what it carries).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use futures_channel::oneshot;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use crate::limits::CROSS_SHARD_INFLIGHT_MAX;
use crate::query::{QueryRequest, QueryResponse};
use crate::route::ShardId;
use crate::shard::append::AppendError;
use crate::storage::RecordKind;

/// A record ready to append: encoded once on the receiving shard, moved (not copied) to its
/// owner. The bytes are an rkyv archive of the kind's batch type.
pub struct OwnedRecord {
    pub kind: RecordKind,
    pub bytes: rkyv::util::AlignedVec,
}

/// What one shard asks another.
pub enum Request {
    /// Append these records and index them; reply once durable under the fsync policy.
    Append(Vec<OwnedRecord>),
    Query(QueryRequest),
}

/// The answer to a [`Request`].
pub enum Response {
    Appended(Result<(), AppendError>),
    Query(QueryResponse),
}

/// A message on a queue: who sent it and which of its calls it answers.
pub struct Envelope<T> {
    pub from: ShardId,
    pub call: u64,
    /// When it was sent: the receiver records the queue wait.
    pub sent: std::time::Instant,
    pub body: T,
}

/// One shard's unconnected ends of the mesh, built on the main thread and moved to the shard.
pub struct MeshEnds {
    requests_to: Vec<Option<SharedSender<Envelope<Request>>>>,
    requests_from: Vec<Option<SharedReceiver<Envelope<Request>>>>,
    replies_to: Vec<Option<SharedSender<Envelope<Response>>>>,
    replies_from: Vec<Option<SharedReceiver<Envelope<Response>>>>,
}

/// Builds the full mesh for `n` shards: element `i` goes to shard `i`.
pub fn build(n: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..n)
        .map(|_| MeshEnds {
            requests_to: (0..n).map(|_| None).collect(),
            requests_from: (0..n).map(|_| None).collect(),
            replies_to: (0..n).map(|_| None).collect(),
            replies_from: (0..n).map(|_| None).collect(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue; // the local case is a direct call, never a self-send
            }
            let (tx, rx) = shared_channel::new_bounded(CROSS_SHARD_INFLIGHT_MAX);
            ends[from].requests_to[to] = Some(tx);
            ends[to].requests_from[from] = Some(rx);
            let (tx, rx) = shared_channel::new_bounded(CROSS_SHARD_INFLIGHT_MAX);
            ends[to].replies_to[from] = Some(tx);
            ends[from].replies_from[to] = Some(rx);
        }
    }
    ends
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0} has too many requests in flight from this shard")]
    NoCredit(ShardId),
    #[error("{0} is gone (shutting down)")]
    Gone(ShardId),
}

type Connecting<T> = Vec<Option<glommio::task::JoinHandle<T>>>;

fn connect_senders<T: Send + 'static>(
    v: Vec<Option<SharedSender<T>>>,
) -> Connecting<ConnectedSender<T>> {
    v.into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect()).detach()))
        .collect()
}

fn connect_receivers<T: Send + 'static>(
    v: Vec<Option<SharedReceiver<T>>>,
) -> Connecting<ConnectedReceiver<T>> {
    v.into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect()).detach()))
        .collect()
}

/// A shard's connected end of the mesh.
pub struct Mesh {
    me: ShardId,
    requests_to: Vec<Option<ConnectedSender<Envelope<Request>>>>,
    replies_to: Vec<Option<ConnectedSender<Envelope<Response>>>>,
    /// Requests this shard may still send to each peer.
    credits: Vec<Cell<usize>>,
    /// Calls awaiting their reply, each with who waits for it.
    pending: RefCell<HashMap<u64, Waiter>>,
    /// Of the calls pending, the appends: the queue depth of cross-shard ingest. Queries,
    /// `/metrics` among them, are left out.
    appends_pending: Cell<usize>,
    next_call: Cell<u64>,
}

/// Who waits for a call's reply, with the reply's type: so [`Mesh::append`] and
/// [`Mesh::query`] hand their callers the answer they asked for, and nothing else.
enum Waiter {
    Append(oneshot::Sender<Result<(), AppendError>>),
    Query(oneshot::Sender<QueryResponse>),
}

/// The receiving ends, consumed by the shard's receiver tasks.
pub struct Inbound {
    pub requests: Vec<(ShardId, ConnectedReceiver<Envelope<Request>>)>,
    pub replies: Vec<(ShardId, ConnectedReceiver<Envelope<Response>>)>,
}

impl MeshEnds {
    /// Connects every end. All shards must call this concurrently: a connect waits for its
    /// peer, so the connects run as separate tasks.
    pub async fn connect(self, me: ShardId) -> (Mesh, Inbound) {
        let n = self.requests_to.len();
        let req_tx = connect_senders(self.requests_to);
        let rep_tx = connect_senders(self.replies_to);
        let req_rx = connect_receivers(self.requests_from);
        let rep_rx = connect_receivers(self.replies_from);
        let mut requests_to = Vec::with_capacity(n);
        for h in req_tx {
            requests_to.push(match h {
                Some(h) => Some(h.await.expect("mesh connect task")),
                None => None,
            });
        }
        let mut replies_to = Vec::with_capacity(n);
        for h in rep_tx {
            replies_to.push(match h {
                Some(h) => Some(h.await.expect("mesh connect task")),
                None => None,
            });
        }
        let mut inbound = Inbound {
            requests: Vec::new(),
            replies: Vec::new(),
        };
        for (i, h) in req_rx.into_iter().enumerate() {
            if let Some(h) = h {
                inbound
                    .requests
                    .push((ShardId(i as u32), h.await.expect("mesh connect task")));
            }
        }
        for (i, h) in rep_rx.into_iter().enumerate() {
            if let Some(h) = h {
                inbound
                    .replies
                    .push((ShardId(i as u32), h.await.expect("mesh connect task")));
            }
        }
        let mesh = Mesh {
            me,
            requests_to,
            replies_to,
            credits: (0..n)
                .map(|_| Cell::new(CROSS_SHARD_INFLIGHT_MAX))
                .collect(),
            pending: RefCell::new(HashMap::new()),
            appends_pending: Cell::new(0),
            next_call: Cell::new(0),
        };
        (mesh, inbound)
    }
}

impl Mesh {
    /// Whether a request to `to` can be sent now. Checked for every owner of a request before
    /// any part of it is sent (admission).
    pub fn has_credit(&self, to: ShardId) -> bool {
        debug_assert_ne!(to, self.me, "the local case is not a mesh call");
        self.credits[to.index()].get() > 0
    }

    /// Asks `to` to append `records` it owns: resolves to its answer, `None` if it went away
    /// before answering. The cross-core hop of the ingest path.
    pub fn append(
        &self,
        to: ShardId,
        records: Vec<OwnedRecord>,
    ) -> Result<impl std::future::Future<Output = Option<Result<(), AppendError>>>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.send(to, Request::Append(records), Waiter::Append(tx))?;
        Ok(async move { rx.await.ok() })
    }

    /// Asks `to` to run a query: resolves to its answer, `None` if it went away before
    /// answering.
    pub fn query(
        &self,
        to: ShardId,
        q: QueryRequest,
    ) -> Result<impl std::future::Future<Output = Option<QueryResponse>>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.send(to, Request::Query(q), Waiter::Query(tx))?;
        Ok(async move { rx.await.ok() })
    }

    /// Sends `req` to `to` now, `waiter` to get the reply. Fails at once without credit. The
    /// credit comes back when the reply arrives, whether or not anybody still waits for it, so
    /// the queues' bounds hold even for abandoned requests.
    fn send(&self, to: ShardId, req: Request, waiter: Waiter) -> Result<(), CallError> {
        debug_assert_ne!(to, self.me, "the local case is not a mesh call");
        debug_assert_eq!(
            matches!(req, Request::Append(_)),
            matches!(waiter, Waiter::Append(_))
        );
        let credits = &self.credits[to.index()];
        if credits.get() == 0 {
            return Err(CallError::NoCredit(to));
        }
        let call = self.next_call.get();
        self.next_call.set(call + 1);
        let sender = self.requests_to[to.index()].as_ref().expect("peer sender");
        let env = Envelope {
            from: self.me,
            call,
            sent: std::time::Instant::now(),
            body: req,
        };
        if sender.try_send(env).is_err() {
            // With credits this only happens when the peer closed its end.
            return Err(CallError::Gone(to));
        }
        credits.set(credits.get() - 1);
        if matches!(waiter, Waiter::Append(_)) {
            self.appends_pending.set(self.appends_pending.get() + 1);
        }
        self.pending.borrow_mut().insert(call, waiter);
        Ok(())
    }

    /// Answers call `call` of shard `to`. Never waits: the reply queue has room for every
    /// request `to` may have outstanding here.
    pub fn reply_to(&self, to: ShardId, call: u64, body: Response) {
        let sender = self.replies_to[to.index()].as_ref().expect("peer sender");
        let sent = sender.try_send(Envelope {
            from: self.me,
            call,
            sent: std::time::Instant::now(),
            body,
        });
        if sent.is_err() {
            // Only when the peer is gone: nobody is left to read the answer.
            tracing::debug!(shard = %self.me, peer = %to, "reply dropped: peer gone");
        }
    }

    /// Delivers a reply to the task waiting for it.
    pub fn complete(&self, env: Envelope<Response>) {
        let credits = &self.credits[env.from.index()];
        credits.set(credits.get() + 1);
        debug_assert!(credits.get() <= CROSS_SHARD_INFLIGHT_MAX);
        let Some(waiter) = self.pending.borrow_mut().remove(&env.call) else {
            return;
        };
        if matches!(waiter, Waiter::Append(_)) {
            self.appends_pending.set(self.appends_pending.get() - 1);
        }
        match (waiter, env.body) {
            (Waiter::Append(tx), Response::Appended(outcome)) => drop(tx.send(outcome)),
            (Waiter::Query(tx), Response::Query(answer)) => drop(tx.send(answer)),
            // The peer answered with the other kind of reply: a bug in its dispatch. The
            // waiter is dropped, so the caller sees an unanswered call (retryable), never a
            // wrong answer.
            _ => {
                debug_assert!(
                    false,
                    "{} answered call {} with the wrong reply",
                    env.from, env.call
                );
                tracing::error!(shard = %self.me, peer = %env.from, "reply of the wrong kind dropped");
            }
        }
    }

    /// Appends sent from this shard to others and not yet answered (for the metrics).
    pub fn appends_in_flight(&self) -> usize {
        self.appends_pending.get()
    }
}

/// Keeps `Rc` out of the channel types: a compile-time check that envelopes are `Send`.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<Envelope<Request>>();
    is_send::<Envelope<Response>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::rc::Rc;
    use std::sync::mpsc;

    /// Shard 0 may have at most CROSS_SHARD_INFLIGHT_MAX requests outstanding at shard 1;
    /// the next send is refused without blocking, and credits come back with the replies.
    #[test]
    fn credits_bound_requests_in_flight_and_return_with_replies() {
        let mut ends = build(2).into_iter();
        let (a, b) = (ends.next().unwrap(), ends.next().unwrap());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let peer = LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(move || async move {
                let (mesh, inbound) = b.connect(ShardId(1)).await;
                let (_, requests) = &inbound.requests[0];
                // Hold every request until the test says so, then answer them all.
                let mut held = Vec::new();
                for _ in 0..CROSS_SHARD_INFLIGHT_MAX {
                    held.push(requests.recv().await.unwrap());
                }
                while release_rx.try_recv().is_err() {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                for env in held {
                    mesh.reply_to(env.from, env.call, Response::Appended(Ok(())));
                }
                // Keep the mesh alive until shard 0 has its replies.
                glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
            })
            .unwrap();
        let me = LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(move || async move {
                let (mesh, inbound) = a.connect(ShardId(0)).await;
                let mesh = Rc::new(mesh);
                let (_, replies) = inbound.replies.into_iter().next().unwrap();
                let m = mesh.clone();
                glommio::spawn_local(async move {
                    while let Some(env) = replies.recv().await {
                        m.complete(env);
                    }
                })
                .detach();
                let mut pending = Vec::new();
                for _ in 0..CROSS_SHARD_INFLIGHT_MAX {
                    assert!(mesh.has_credit(ShardId(1)));
                    pending.push(mesh.append(ShardId(1), Vec::new()).unwrap());
                }
                assert!(!mesh.has_credit(ShardId(1)));
                assert_eq!(mesh.appends_in_flight(), CROSS_SHARD_INFLIGHT_MAX);
                assert!(matches!(
                    mesh.append(ShardId(1), Vec::new()),
                    Err(CallError::NoCredit(ShardId(1)))
                ));
                release_tx.send(()).unwrap();
                for reply in pending {
                    assert_eq!(reply.await, Some(Ok(())));
                }
                assert!(mesh.has_credit(ShardId(1)));
                assert_eq!(mesh.appends_in_flight(), 0);
            })
            .unwrap();
        me.join().unwrap();
        peer.join().unwrap();
    }
}
