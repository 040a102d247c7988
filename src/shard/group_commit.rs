//! Group commit: the fsync side of the shard's storage.
//!
//! Appends are numbered (`appended`): each group write gets a number once its records are in
//! the file ([`super::group_write`]), and a segment goes on the store's dirty list at that
//! write, so an fsync started after the number was handed out covers it. A task that needs its append durable calls
//! [`GroupCommit::wait_durable`] with its number: it queues itself and wakes the shard's one
//! *committer* task ([`GroupCommit::run`]). The committer takes every dirty file, fsyncs them
//! on glommio's blocking pool (never on the reactor), publishes the number covered, answers
//! every waiter at or below it, and goes round again while later appends wait. Requests that
//! arrive during an fsync share the next one.
//!
//! The committer is its own task so that no request owns the loop: a request whose client
//! went away is dropped with its waiter, and the commits go on for everybody else.
//!
//! After a failed fsync the page cache can no longer be trusted (the kernel may have dropped
//! the dirty pages): the store refuses further appends and every waiter gets the error.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::oneshot;

use crate::metrics::{Hist, ShardMetrics};
use crate::shard::append::{AppendError, Stage};
use crate::shard::latch::Doorbell;
use crate::storage::{segment, IoFailure, Store, StoreFailure};

/// Told the outcome of the sync that covers its append.
type Waiter = oneshot::Sender<Result<(), AppendError>>;

#[derive(Default)]
pub struct GroupCommit {
    /// Number of the last append.
    appended: Cell<u64>,
    /// Every append numbered at or below this is durable.
    synced: Cell<u64>,
    /// Appends waiting to be durable, with who to tell.
    waiters: RefCell<Vec<(u64, Waiter)>>,
    /// Wakes the committer: rung when a waiter queues.
    work: Doorbell,
}

impl GroupCommit {
    /// Numbers one append; returns its number.
    pub fn note_append(&self) -> u64 {
        let n = self.appended.get() + 1;
        self.appended.set(n);
        n
    }

    /// Completes once append `seq` is durable. Cancel-safe: dropping the future only drops
    /// this caller's place in the queue.
    pub async fn wait_durable(&self, store: &RefCell<Store>, seq: u64) -> Result<(), AppendError> {
        debug_assert!(seq <= self.appended.get());
        if self.synced.get() >= seq {
            return Ok(());
        }
        if let Some(why) = store.borrow().failed() {
            return Err(AppendError::Stopped(why.clone()));
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push((seq, tx));
        self.work.ring();
        rx.await
            .unwrap_or(Err(AppendError::ShardStopped(Stage::Synced)))
    }

    /// Syncs everything appended so far (the interval policy and shutdown).
    pub async fn sync_all(&self, store: &RefCell<Store>) -> Result<(), AppendError> {
        self.wait_durable(store, self.appended.get()).await
    }

    /// The committer: runs for the life of the shard.
    pub async fn run(&self, store: &RefCell<Store>, metrics: &ShardMetrics) {
        loop {
            self.work.wait().await;
            while !self.waiters.borrow().is_empty() {
                self.commit_round(store, metrics).await;
            }
        }
    }

    async fn commit_round(&self, store: &RefCell<Store>, metrics: &ShardMetrics) {
        let target = self.appended.get();
        let files = store.borrow_mut().take_dirty();
        let started = Instant::now();
        let outcome = sync_files(files).await;
        metrics.record(Hist::Sync, started.elapsed());
        match outcome {
            Ok(()) => self.synced.set(self.synced.get().max(target)),
            Err(e) => store.borrow_mut().sync_failed(StoreFailure::Sync(e)),
        }
        let failed = store.borrow().failed().cloned();
        let synced = self.synced.get();
        let mut waiters = self.waiters.borrow_mut();
        let mut i = 0;
        while i < waiters.len() {
            // Durable, or never to be: a waiter past the synced mark is told why storage stopped.
            let answer = match (waiters[i].0 <= synced, &failed) {
                (true, _) => Ok(()),
                (false, Some(why)) => Err(AppendError::Stopped(why.clone())),
                (false, None) => {
                    i += 1;
                    continue;
                }
            };
            let (_, tx) = waiters.swap_remove(i);
            let _ = tx.send(answer);
        }
    }
}

/// fsyncs `files` on glommio's blocking thread pool.
async fn sync_files(files: Vec<Arc<File>>) -> Result<(), IoFailure> {
    if files.is_empty() {
        return Ok(());
    }
    glommio::executor()
        .spawn_blocking(move || {
            for f in &files {
                segment::sync_file(f)?;
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{RecordKind, StoreConfig};
    use std::rc::Rc;

    /// A waiter dropped mid-sync (its client went away) must not stop later commits.
    #[test]
    fn commits_continue_after_a_waiter_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::single_shard(dir.path(), 1 << 20, None);
        let (store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(move || async move {
                let store = Rc::new(RefCell::new(store));
                let commit = Rc::new(GroupCommit::default());
                let (c, s) = (commit.clone(), store.clone());
                glommio::spawn_local(async move { c.run(&s, &ShardMetrics::default()).await })
                    .detach();
                for round in 0..20u64 {
                    store
                        .borrow_mut()
                        .append(RecordKind::Logs, b"payload")
                        .unwrap();
                    let seq = commit.note_append();
                    // Start waiting, then give up before the sync completes.
                    let cancelled = commit.wait_durable(&store, seq);
                    let _ = futures_lite::future::poll_once(cancelled).await;
                    store
                        .borrow_mut()
                        .append(RecordKind::Logs, b"payload")
                        .unwrap();
                    let seq = commit.note_append();
                    commit.wait_durable(&store, seq).await.unwrap();
                    assert!(commit.synced.get() >= seq, "round {round}");
                }
                commit.sync_all(&store).await.unwrap();
                assert!(commit.waiters.borrow().is_empty());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
