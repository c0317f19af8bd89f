//! The wall clock, injected: the agent's engine and the server read the time only through a
//! [`Clock`]. The real one, [`SystemClock`], is the single place that reads the system's
//! clock, and only the runtimes (the agent, the server) create it; a simulation hands in its
//! own (the agent's `tests/sim.rs` uses each simulated disk's clock), so that a seeded run
//! names conflict copies, judges racy timestamps and stamps versions the same way every
//! time. The workspace's clippy configuration (`clippy.toml`) forbids reading the clock
//! directly anywhere else without a stated reason.

use std::fmt;

/// A source of wall-clock time, as file times count it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_ns().div_euclid(1_000_000_000)
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the real wall clock is read
    fn now_ns(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(i64);
    impl Clock for Fixed {
        fn now_ns(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn seconds_round_down_also_before_the_epoch() {
        assert_eq!(Fixed(1_999_999_999).now_unix(), 1);
        assert_eq!(Fixed(-1).now_unix(), -1);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_unix() > 1_577_836_800);
    }
}
