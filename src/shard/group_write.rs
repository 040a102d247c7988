//! Group write: the `pwrite` side of the shard's storage.
//!
//! An append stages its records in the store ([`Store::stage`]: copied into the active
//! segment's staging buffer, not yet in the file) and joins the open batch
//! ([`GroupWrite::join`]). The shard's one *writer* task ([`GroupWrite::run`]) lets every task
//! that is ready in this turn of the executor stage and join too, then writes the whole batch
//! with one [`Store::flush`] and tells every member the outcome. One ~48 KB write per request
//! cost the kernel more per byte than one write per batch (see `storage::segment`).
//!
//! A member learns its records are in the page cache (and so survive a crash of the process)
//! together with the append number the durability policy needs ([`GroupCommit`]): numbers are
//! handed out only once the records are written, and the segment goes on the dirty list by
//! that write, so a sync never covers a number whose records were still staged.
//!
//! Like the committer, the writer is its own task: a request whose client went away is
//! dropped, and the batch it staged into is written for everybody else (the request's
//! records are still indexed once written: `shard::append::index_when_written` runs as a task too).

use std::cell::RefCell;

use futures_channel::oneshot;

use crate::metrics::{add, ShardMetrics};
use crate::shard::append::AppendError;
use crate::shard::group_commit::GroupCommit;
use crate::shard::latch::Doorbell;
use crate::storage::Store;

/// The outcome of the write of a batch: the append number that covers it, or why it failed.
pub type Outcome = Result<u64, AppendError>;

#[derive(Default)]
pub struct GroupWrite {
    /// Members of the open batch: they staged records since the last write.
    members: RefCell<Vec<oneshot::Sender<Outcome>>>,
    /// Wakes the writer: rung when a member joins.
    work: Doorbell,
}

impl GroupWrite {
    /// Joins the open batch. Call it right after staging, with no `.await` in between, so
    /// the records belong to the batch whose outcome the receiver reports.
    pub fn join(&self) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.members.borrow_mut().push(tx);
        self.work.ring();
        rx
    }

    /// The writer: runs for the life of the shard.
    pub async fn run(&self, store: &RefCell<Store>, commit: &GroupCommit, metrics: &ShardMetrics) {
        loop {
            self.work.wait().await;
            // To the back of the run queue: every task already woken (requests whose bodies
            // are in) stages and joins before the batch is written.
            futures_lite::future::yield_now().await;
            let members = std::mem::take(&mut *self.members.borrow_mut());
            if members.is_empty() {
                continue; // they joined the last batch, during its yield
            }
            let outcome = self.write(store, commit, metrics);
            for member in members {
                let _ = member.send(outcome.clone());
            }
        }
    }

    /// Writes everything staged; the batch's append number once it is in the file.
    fn write(
        &self,
        store: &RefCell<Store>,
        commit: &GroupCommit,
        metrics: &ShardMetrics,
    ) -> Outcome {
        store.borrow_mut().flush()?;
        add(&metrics.group_writes, 1);
        Ok(commit.note_append())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{RecordKind, StoreConfig};
    use std::rc::Rc;

    fn on_executor(
        test: impl FnOnce(Rc<RefCell<Store>>) -> futures_lite::future::BoxedLocal<()> + Send + 'static,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::single_shard(dir.path(), 1 << 20, None);
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(move || async move {
                let (store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
                test(Rc::new(RefCell::new(store))).await
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A group write for `store`, its writer started on the current executor.
    fn start_writer(store: &Rc<RefCell<Store>>) -> (Rc<GroupWrite>, Rc<ShardMetrics>) {
        let group = Rc::new(GroupWrite::default());
        let metrics = Rc::new(ShardMetrics::default());
        let (g, s, m) = (group.clone(), store.clone(), metrics.clone());
        glommio::spawn_local(async move { g.run(&s, &GroupCommit::default(), &m).await }).detach();
        (group, metrics)
    }

    /// What an append does: stages `payload` and joins the open batch, with no await between.
    fn stage_and_join(
        store: &RefCell<Store>,
        group: &GroupWrite,
        payload: &[u8],
    ) -> oneshot::Receiver<Outcome> {
        store.borrow_mut().stage(RecordKind::Logs, payload).unwrap();
        group.join()
    }

    #[test]
    fn requests_staged_in_one_turn_share_one_write_and_one_append_number() {
        on_executor(|store| {
            Box::pin(async move {
                let (group, metrics) = start_writer(&store);
                // Three members stage and join before the writer runs; one goes away.
                let mut members = Vec::new();
                let mut locs = Vec::new();
                for i in 0..3u8 {
                    locs.push(
                        store
                            .borrow_mut()
                            .stage(RecordKind::Logs, &[i + 1; 300])
                            .unwrap(),
                    );
                    members.push(group.join());
                    assert!(store.borrow().read(locs[i as usize]).is_none());
                }
                drop(members.remove(1));
                for m in members {
                    assert_eq!(m.await.unwrap(), Ok(1));
                }
                assert_eq!(metrics.group_writes.get(), 1);
                for (i, loc) in locs.iter().enumerate() {
                    assert_eq!(
                        store.borrow().read(*loc).unwrap().1,
                        &[i as u8 + 1; 300][..]
                    );
                }
                // The next turn's member gets the next write and number.
                let later = stage_and_join(&store, &group, b"later");
                assert_eq!(later.await.unwrap(), Ok(2));
                assert_eq!(metrics.group_writes.get(), 2);
            })
        });
    }

    /// The writer yields before writing: tasks woken after it in the same turn (as requests
    /// whose bodies came in together are) still join its batch.
    #[test]
    fn tasks_woken_after_the_writer_join_its_batch() {
        on_executor(|store| {
            Box::pin(async move {
                let (group, metrics) = start_writer(&store);
                let go = crate::shard::latch::Latch::default();
                let later: Vec<_> = (0..2)
                    .map(|_| {
                        let (s, g, go) = (store.clone(), group.clone(), go.clone());
                        glommio::spawn_local(async move {
                            go.wait().await;
                            stage_and_join(&s, &g, b"b").await.unwrap()
                        })
                    })
                    .collect();
                // The writer and both tasks are waiting now.
                glommio::executor().yield_now().await;
                let first = stage_and_join(&store, &group, b"a"); // wakes the writer first ...
                go.set(); // ... then the two tasks
                assert_eq!(first.await.unwrap(), Ok(1));
                for task in later {
                    assert_eq!(task.await, Ok(1));
                }
                assert_eq!(metrics.group_writes.get(), 1);
            })
        });
    }

    #[test]
    fn every_member_of_a_batch_whose_write_fails_is_told() {
        on_executor(|store| {
            Box::pin(async move {
                let (group, metrics) = start_writer(&store);
                store.borrow_mut().fail_writes();
                let members: Vec<_> = (0..2)
                    .map(|_| stage_and_join(&store, &group, b"doomed"))
                    .collect();
                for m in members {
                    let why = m.await.unwrap().unwrap_err();
                    assert!(matches!(why, AppendError::Write(_)), "{why:?}");
                    assert!(why.to_string().contains("cannot append"), "{why}");
                }
                assert_eq!(metrics.group_writes.get(), 0);
                assert!(store.borrow().failed().is_some());
            })
        });
    }
}
