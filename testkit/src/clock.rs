//! Clocks: the real monotonic clock, or a simulated one that only moves when told.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of `Instant`s: real, tokio's (which a paused test runtime advances on its own), or
/// simulated ([`Clock::simulated`]) and advanced by hand. Clones share the same simulated time.
#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    Real,
    Tokio,
    Simulated(Arc<Mutex<Instant>>),
}

impl Clock {
    /// The machine's monotonic clock.
    pub fn real() -> Clock {
        Clock(Source::Real)
    }

    /// tokio's clock: under `#[tokio::test(start_paused = true)]` it jumps to the next timer
    /// whenever every task waits, so a store on this clock runs on simulated time together
    /// with the listener's loops (which read time through tokio too).
    pub fn tokio() -> Clock {
        Clock(Source::Tokio)
    }

    /// A simulated clock, starting now and standing still until [`Clock::advance`].
    pub fn simulated() -> Clock {
        Clock(Source::Simulated(Arc::new(Mutex::new(Instant::now()))))
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        match &self.0 {
            Source::Real => Instant::now(),
            Source::Tokio => tokio::time::Instant::now().into_std(),
            Source::Simulated(t) => *t.lock().unwrap(),
        }
    }

    /// Moves a simulated clock forward (no effect on the others).
    pub fn advance(&self, by: Duration) {
        if let Source::Simulated(t) = &self.0 {
            *t.lock().unwrap() += by;
        }
    }
}
