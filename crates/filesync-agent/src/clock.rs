//! The engine's clock, injected: the real one reads the system's wall clock, a simulation
//! hands in its own (`tests/sim.rs` uses each simulated disk's clock), so that a seeded run
//! names conflict copies and judges racy timestamps the same way every time.
//!
//! Decision code (the engine, the scanner, the planner's context) reads time only through a
//! [`Clock`]; the workspace's clippy configuration forbids direct clock reads elsewhere
//! without a stated reason.

/// A source of wall-clock time, as file times count it.
pub trait Clock: Send + Sync {
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
    #[allow(clippy::disallowed_methods)] // the one place the engine's real clock is read
    fn now_ns(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
