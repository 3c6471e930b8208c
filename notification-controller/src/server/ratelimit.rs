//! Per-key rate limiting of events: one event per key and interval (Flux: `go-limiter` with one token per
//! `--rate-limit-interval`), answered 429 otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const SHARDS: usize = 32;

/// A map from key to the start of its current window, sharded to keep intake threads apart.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    shards: Vec<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl RateLimiter {
    /// One event per key per `interval` (zero: no limit).
    pub fn new(interval: Duration) -> Self {
        RateLimiter {
            interval,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether an event with `key` may pass at `now`; a pass opens a new window.
    pub fn allow(&self, key: &[u8; 32], now: Instant) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(key) {
            Some(start) if now.saturating_duration_since(*start) < self.interval => false,
            Some(start) => {
                *start = now;
                true
            }
            None => {
                map.insert(*key, now);
                true
            }
        }
    }

    /// Forgets `key`, e.g. when the event it let through could not be queued after all.
    pub fn forget(&self, key: &[u8; 32]) {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Forgets keys whose window ended more than an interval ago (Flux: sweep every interval, min TTL 2×).
    pub fn sweep(&self, now: Instant) {
        let ttl = self.interval * 2;
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, start| now.saturating_duration_since(*start) < ttl);
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_key_and_window() {
        let limiter = RateLimiter::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert!(limiter.allow(&a, t0));
        assert!(!limiter.allow(&a, t0 + Duration::from_secs(1)));
        assert!(
            limiter.allow(&b, t0 + Duration::from_secs(1)),
            "other keys pass"
        );
        assert!(!limiter.allow(&a, t0 + Duration::from_secs(299)));
        assert!(
            limiter.allow(&a, t0 + Duration::from_secs(300)),
            "new window"
        );
        assert!(!limiter.allow(&a, t0 + Duration::from_secs(301)));
    }

    #[test]
    fn sweep_forgets_old_keys_and_zero_disables() {
        let limiter = RateLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.allow(&[1u8; 32], t0);
        limiter.allow(&[2u8; 32], t0 + Duration::from_secs(15));
        limiter.sweep(t0 + Duration::from_secs(21));
        assert_eq!(limiter.len(), 1);
        let off = RateLimiter::new(Duration::ZERO);
        assert!(off.allow(&[1u8; 32], t0) && off.allow(&[1u8; 32], t0));
    }
}
