//! Shard-local signals. [`Latch`]: a one-shot signal, set once, awaited by any number of tasks
//! of the same shard (shutdown); `Rc` inside, so it cannot cross to another core.
//! [`Doorbell`]: wakes the one long-running task that serves a queue (the group write's
//! writer, the group commit's committer).
//!
//! A waiter that is dropped before the latch is set (a connection that closed normally)
//! removes its waker, so a long-running shard does not accumulate one per connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes one waiting task: [`Doorbell::ring`] any number of times, and the next
/// [`Doorbell::wait`] completes once (at once if it was rung since the last wait).
#[derive(Default)]
pub struct Doorbell {
    rung: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Doorbell {
    pub fn ring(&self) {
        self.rung.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.rung.replace(false) {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

#[derive(Clone, Default)]
pub struct Latch {
    inner: Rc<RefCell<LatchState>>,
}

#[derive(Default)]
struct LatchState {
    set: bool,
    next_id: u64,
    waiters: HashMap<u64, Waker>,
}

impl Latch {
    pub fn set(&self) {
        let waiters = {
            let mut s = self.inner.borrow_mut();
            s.set = true;
            std::mem::take(&mut s.waiters)
        };
        for (_, w) in waiters {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.inner.borrow().set
    }

    /// Completes once the latch is set.
    pub fn wait(&self) -> LatchWait {
        LatchWait {
            latch: self.clone(),
            id: None,
        }
    }

    #[cfg(test)]
    fn waiters(&self) -> usize {
        self.inner.borrow().waiters.len()
    }
}

pub struct LatchWait {
    latch: Latch,
    /// Our entry in the latch's waiters, once registered.
    id: Option<u64>,
}

impl Future for LatchWait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.latch.inner.clone();
        let mut s = inner.borrow_mut();
        if s.set {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = s.next_id;
                s.next_id += 1;
                self.id = Some(id);
                id
            }
        };
        match s.waiters.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => {
                s.waiters.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for LatchWait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.latch.inner.borrow_mut().waiters.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_waiters_leave_nothing_behind_and_set_wakes_the_rest() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(|| async {
                let latch = Latch::default();
                for _ in 0..100 {
                    let w = latch.wait();
                    // Poll once so it registers, then drop it unset.
                    let _ = futures_lite::future::poll_once(w).await;
                }
                assert_eq!(latch.waiters(), 0);
                let l2 = latch.clone();
                let t = glommio::spawn_local(async move { l2.wait().await });
                glommio::yield_if_needed().await;
                glommio::executor().yield_task_queue_now().await;
                latch.set();
                t.await;
                assert!(latch.is_set());
                assert_eq!(latch.waiters(), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
