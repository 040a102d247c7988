//! Group commit: the fsync side of the shard's storage.
//!
//! Appends are numbered (`appended`). A task that needs its append durable calls
//! [`GroupCommit::wait_durable`] with its number. If no sync is running it becomes the
//! *leader*: it takes every dirty file, fsyncs them on glommio's blocking pool (never on the
//! reactor), publishes the number covered, wakes every waiter at or below it, and goes round
//! again while later appends wait. Requests arriving during a sync share the next one.
//!
//! After a failed fsync the page cache can no longer be trusted (the kernel may have dropped
//! the dirty pages): the store refuses further appends and every waiter gets the error.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::oneshot;

use crate::storage::{segment, Store};

/// Told the outcome of the sync that covers its append.
type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Default)]
pub struct GroupCommit {
    /// Number of the last append.
    appended: Cell<u64>,
    /// Every append numbered at or below this is durable.
    synced: Cell<u64>,
    syncing: Cell<bool>,
    waiters: RefCell<Vec<(u64, Waiter)>>,
    /// Syncs run and their total time, for the metrics.
    pub syncs: Cell<u64>,
    pub sync_nanos: Cell<u64>,
}

impl GroupCommit {
    /// Numbers one append; returns its number.
    pub fn note_append(&self) -> u64 {
        let n = self.appended.get() + 1;
        self.appended.set(n);
        n
    }

    pub fn appended(&self) -> u64 {
        self.appended.get()
    }

    /// Completes once append `seq` is durable, sharing fsyncs with concurrent callers.
    pub async fn wait_durable(&self, store: &RefCell<Store>, seq: u64) -> Result<(), String> {
        debug_assert!(seq <= self.appended.get());
        if self.synced.get() >= seq {
            return Ok(());
        }
        if self.syncing.get() {
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push((seq, tx));
            return rx
                .await
                .unwrap_or_else(|_| Err("sync leader vanished".into()));
        }
        self.lead(store).await;
        if let Some(why) = store.borrow().failed() {
            if self.synced.get() < seq {
                return Err(why.to_owned());
            }
        }
        debug_assert!(self.synced.get() >= seq);
        Ok(())
    }

    /// Syncs everything appended so far (the interval policy and shutdown).
    pub async fn sync_all(&self, store: &RefCell<Store>) -> Result<(), String> {
        let seq = self.appended.get();
        if seq == 0 {
            return Ok(());
        }
        self.wait_durable(store, seq).await
    }

    async fn lead(&self, store: &RefCell<Store>) {
        self.syncing.set(true);
        loop {
            let target = self.appended.get();
            let files = store.borrow_mut().take_dirty();
            let started = Instant::now();
            let outcome = sync_files(files).await;
            self.syncs.set(self.syncs.get() + 1);
            self.sync_nanos
                .set(self.sync_nanos.get() + started.elapsed().as_nanos() as u64);
            match outcome {
                Ok(()) => self.synced.set(self.synced.get().max(target)),
                Err(e) => store.borrow_mut().sync_failed(e),
            }
            let failed = store.borrow().failed().map(str::to_owned);
            let synced = self.synced.get();
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            let mut later = Vec::new();
            for (seq, tx) in waiters {
                if seq <= synced {
                    let _ = tx.send(Ok(()));
                } else if let Some(why) = &failed {
                    let _ = tx.send(Err(why.clone()));
                } else {
                    later.push((seq, tx));
                }
            }
            let more = !later.is_empty();
            self.waiters.borrow_mut().extend(later);
            if !more || failed.is_some() {
                break;
            }
        }
        self.syncing.set(false);
    }
}

/// fsyncs `files` on glommio's blocking thread pool.
async fn sync_files(files: Vec<Arc<File>>) -> Result<(), String> {
    if files.is_empty() {
        return Ok(());
    }
    glommio::executor()
        .spawn_blocking(move || {
            for f in &files {
                segment::sync_file(f).map_err(|e| format!("fsync failed: {e}"))?;
            }
            Ok(())
        })
        .await
}
