//! A one-shot, shard-local signal: set once, awaited by any number of tasks of the same shard.
//! Used for shutdown. `Rc` inside, so it cannot cross to another core.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub struct Latch {
    inner: Rc<RefCell<LatchState>>,
}

#[derive(Default)]
struct LatchState {
    set: bool,
    waiters: Vec<Waker>,
}

impl Latch {
    pub fn set(&self) {
        let waiters = {
            let mut s = self.inner.borrow_mut();
            s.set = true;
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
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
        }
    }
}

pub struct LatchWait {
    latch: Latch,
}

impl Future for LatchWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.latch.inner.borrow_mut();
        if s.set {
            Poll::Ready(())
        } else {
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }
}
