//! Clocks: the real monotonic clock, or a simulated one that only moves when told.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of `Instant`s: real, or simulated ([`Clock::simulated`]) and advanced by hand.
/// Clones share the same simulated time.
#[derive(Debug, Clone)]
pub struct Clock(Option<Arc<Mutex<Instant>>>);

impl Clock {
    /// The machine's monotonic clock.
    pub fn real() -> Clock {
        Clock(None)
    }

    /// A simulated clock, starting now and standing still until [`Clock::advance`].
    pub fn simulated() -> Clock {
        Clock(Some(Arc::new(Mutex::new(Instant::now()))))
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(t) => *t.lock().unwrap(),
        }
    }

    /// Moves a simulated clock forward (no effect on the real one).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            *t.lock().unwrap() += by;
        }
    }
}
