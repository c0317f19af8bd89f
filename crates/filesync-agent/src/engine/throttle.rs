//! Bandwidth limits: a token bucket that paces the chunk bytes a folder sends or receives,
//! shared by all of that folder's requests in flight. The bucket is a pure state machine —
//! it takes the time and answers how long to wait — and [`Throttle`] is the thin async
//! driver around it that reads the clock and sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket of `rate` bytes per second holding at most a quarter second's worth.
/// Taking more than is there puts the bucket in debt, and the caller waits until the debt is
/// paid: large transfers are paced at `rate` however big each request is.
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    /// When the tokens were last topped up (time since an origin the caller chooses).
    last: Duration,
}

impl Bucket {
    /// A full bucket at time zero.
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        let capacity = rate / 4.0;
        Bucket { rate, capacity, tokens: capacity, last: Duration::ZERO }
    }

    /// Takes `n` bytes at time `now`; returns how long to wait before sending them.
    pub fn take(&mut self, n: u64, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }
}

/// A shared, optional limit: cloning shares the bucket. `Throttle::unlimited()` never waits.
#[derive(Clone, Debug, Default)]
pub struct Throttle(Option<Arc<(Instant, Mutex<Bucket>)>>);

impl Throttle {
    pub fn new(limit: Option<u64>) -> Throttle {
        Throttle(limit.map(|rate| Arc::new((Instant::now(), Mutex::new(Bucket::new(rate))))))
    }

    pub fn unlimited() -> Throttle {
        Throttle(None)
    }

    /// Waits until `n` more bytes may go.
    pub async fn acquire(&self, n: u64) {
        let Some(inner) = &self.0 else { return };
        let (origin, bucket) = &**inner;
        // A std mutex: held for a few arithmetic operations, never across an await.
        let wait = bucket.lock().expect("throttle lock").take(n, origin.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_full_bucket_lets_a_quarter_second_through_then_paces_at_the_rate() {
        let mut b = Bucket::new(1000);
        assert_eq!(b.take(250, Duration::ZERO), Duration::ZERO);
        // Empty now: 500 more bytes wait half a second.
        assert_eq!(b.take(500, Duration::ZERO), S / 2);
        // The debt is paid at 0.5 s; at 0.5 s another 100 bytes wait 0.1 s.
        assert_eq!(b.take(100, S / 2), S / 10);
    }

    #[test]
    fn a_transfer_takes_its_size_over_the_rate_minus_the_burst() {
        // 1 MiB in 64 KiB requests at 256 KiB/s, each sent when allowed.
        let mut b = Bucket::new(256 * 1024);
        let mut now = Duration::ZERO;
        for _ in 0..16 {
            now += b.take(64 * 1024, now);
        }
        // Everything but the initial quarter-second burst waited: the last request may go
        // at 4 s - 0.25 s.
        let want = Duration::from_secs_f64(3.75);
        assert!((now.as_secs_f64() - want.as_secs_f64()).abs() < 1e-6, "{now:?} vs {want:?}");
    }

    #[test]
    fn concurrent_takers_share_one_rate() {
        // Four requests asking at the same moment queue behind each other.
        let mut b = Bucket::new(1000);
        let waits: Vec<_> = (0..4).map(|_| b.take(500, Duration::ZERO)).collect();
        assert_eq!(waits, [S / 4, S * 3 / 4, S * 5 / 4, S * 7 / 4]);
    }

    #[test]
    fn idle_time_refills_only_up_to_the_capacity() {
        let mut b = Bucket::new(1000);
        assert_eq!(b.take(250, Duration::ZERO), Duration::ZERO);
        // An hour idle refills a quarter second's worth, no more.
        let hour = Duration::from_secs(3600);
        assert_eq!(b.take(250, hour), Duration::ZERO);
        assert_eq!(b.take(1000, hour), S);
        // A clock that goes backwards (it cannot, but) does not mint tokens.
        assert_eq!(b.take(0, Duration::ZERO), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_and_a_limit_sleeps_on_the_runtime_clock() {
        let start = tokio::time::Instant::now();
        Throttle::unlimited().acquire(u64::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The paused clock advances only through the throttle's sleep.
        let t = Throttle::new(Some(1000));
        t.acquire(250).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        t.clone().acquire(1000).await;
        assert!(start.elapsed() >= Duration::from_millis(990), "{:?}", start.elapsed());
    }
}
