//! The one clock the listener's loops read (the core reads none).
//!
//! [`now`] is tokio's monotonic clock (so tests can run the loops on paused, simulated time)
//! plus the time the system spent suspended: on Linux the lease gate counts suspend
//! (`CLOCK_BOOTTIME`), so a leader whose machine slept past its renew deadline finds its
//! lease over the moment it wakes, instead of dispatching on a lease that a standby may have
//! taken meanwhile (the monotonic clock stops during suspend).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The time now, on a clock that counts system suspend.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std() + suspended()
}

/// Time spent in system suspend since the first call (zero where the platform cannot tell).
fn suspended() -> Duration {
    static BASE: OnceLock<Duration> = OnceLock::new();
    let gap = boot_minus_mono();
    let base = *BASE.get_or_init(|| gap);
    gap.saturating_sub(base)
}

#[cfg(target_os = "linux")]
fn boot_minus_mono() -> Duration {
    use rustix::time::{ClockId, clock_gettime};
    let boot = clock_gettime(ClockId::Boottime);
    let mono = clock_gettime(ClockId::Monotonic);
    let as_duration = |t: rustix::time::Timespec| Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
    as_duration(boot).saturating_sub(as_duration(mono))
}

#[cfg(not(target_os = "linux"))]
fn boot_minus_mono() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_moves_forward_and_counts_no_suspend_here() {
        let a = super::now();
        let b = super::now();
        assert!(b >= a);
        // Nothing suspended this machine between two reads.
        assert!(super::suspended() < std::time::Duration::from_secs(1));
    }
}
