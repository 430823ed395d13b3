//! How the two endpoints of a pair share their RC engine: the only thing
//! that differs between the deterministic and the thread-safe mode.

use std::cell::{RefCell, RefMut};
use std::ops::DerefMut;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::engine::{Engine, Side};

/// The sharing strategy of a [`LoopbackEndpoint`](crate::LoopbackEndpoint):
/// [`Local`] or [`Threaded`]. Sealed.
pub trait Link: sealed::Link {}

/// Single-threaded sharing (`Rc<RefCell<_>>`): endpoints are not `Send`,
/// nothing ever blocks, and a run is a pure function of the call sequence.
pub struct Local {
    engine: Rc<RefCell<Engine>>,
}

/// Thread-safe sharing (`Arc<Mutex<_>>` plus one condition variable per
/// endpoint for [`Transport::wait`](rdio_transport::Transport::wait)).
pub struct Threaded {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Mutex<Engine>,
    /// Indexed by [`Side::index`].
    wakers: [Condvar; 2],
}

impl Link for Local {}
impl Link for Threaded {}

pub(crate) mod sealed {
    use super::{DerefMut, Duration, Engine, Side};

    pub trait Link: Sized {
        type Guard<'a>: DerefMut<Target = Engine>
        where
            Self: 'a;

        /// Whether another thread can ever wake a [`Link::sleep`]. A
        /// single-threaded link must never block (nor read the clock).
        const CAN_BLOCK: bool;

        /// Both endpoints' handles on a new engine.
        fn pair(engine: Engine) -> (Self, Self);

        fn lock(&self) -> Self::Guard<'_>;

        /// Block `side` until it is woken or `timeout` passes (`None`: no
        /// limit), releasing the engine meanwhile. Spurious wake-ups happen.
        /// Only called if [`Link::CAN_BLOCK`].
        fn sleep<'a>(
            &'a self,
            guard: Self::Guard<'a>,
            side: Side,
            timeout: Option<Duration>,
        ) -> Self::Guard<'a>;

        /// Wake `side` if it is blocked in [`Link::sleep`].
        fn wake(&self, side: Side);
    }
}

impl sealed::Link for Local {
    type Guard<'a> = RefMut<'a, Engine>;

    const CAN_BLOCK: bool = false;

    fn pair(engine: Engine) -> (Self, Self) {
        let engine = Rc::new(RefCell::new(engine));
        (
            Self {
                engine: Rc::clone(&engine),
            },
            Self { engine },
        )
    }

    #[inline]
    fn lock(&self) -> Self::Guard<'_> {
        // Never re-entered: endpoint methods do not call each other while
        // holding the engine.
        self.engine.borrow_mut()
    }

    fn sleep<'a>(
        &'a self,
        guard: Self::Guard<'a>,
        _side: Side,
        _timeout: Option<Duration>,
    ) -> Self::Guard<'a> {
        guard
    }

    fn wake(&self, _side: Side) {}
}

impl sealed::Link for Threaded {
    type Guard<'a> = MutexGuard<'a, Engine>;

    const CAN_BLOCK: bool = true;

    fn pair(engine: Engine) -> (Self, Self) {
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            wakers: [Condvar::new(), Condvar::new()],
        });
        (
            Self {
                shared: Arc::clone(&shared),
            },
            Self { shared },
        )
    }

    fn lock(&self) -> Self::Guard<'_> {
        // A panic while holding the lock can only come from an internal
        // assertion, after which the engine is still consistent enough to
        // flush and report errors; keep going rather than panic in the peer.
        self.shared
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep<'a>(
        &'a self,
        mut guard: Self::Guard<'a>,
        side: Side,
        timeout: Option<Duration>,
    ) -> Self::Guard<'a> {
        guard.set_sleeping(side, true);
        let waker = &self.shared.wakers[side.index()];
        let mut guard = match timeout {
            None => waker.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                waker
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        guard.set_sleeping(side, false);
        guard
    }

    fn wake(&self, side: Side) {
        self.shared.wakers[side.index()].notify_one();
    }
}
