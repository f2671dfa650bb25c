//! A circuit breaker per upstream: closed (requests flow), open (requests refused until a
//! cool-down ends), half-open (a bounded number of probes decide whether to close again).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive upstream failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting probes through.
    pub open_for: Duration,
    /// Requests let through at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// The state of a breaker, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; counting consecutive failures.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// Probes are being let through.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

/// One upstream's breaker; cheap to share (`Arc`).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Leave to send one request; report how it went with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without a report (the request was cancelled), it frees its probe
/// slot and changes nothing else.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state invalid: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state (an open breaker whose cool-down is over reports half-open).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// A permit to send, or how long until one may be had.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        let probe = match &mut *state {
            State::Closed { .. } => false,
            State::Open { until } if now < *until => return Err(*until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { in_flight: 1 };
                true
            }
            State::HalfOpen { in_flight } if *in_flight < self.config.half_open_probes => {
                *in_flight += 1;
                true
            }
            State::HalfOpen { .. } => return Err(self.config.open_for),
        };
        Ok(Permit {
            breaker: Arc::clone(self),
            probe,
            reported: false,
        })
    }

    fn record(&self, probe: bool, success: bool) {
        let mut state = self.lock();
        let threshold = self.config.failure_threshold.max(1);
        let open = State::Open {
            until: Instant::now() + self.config.open_for,
        };
        match (&mut *state, success) {
            (State::Closed { failures }, true) => *failures = 0,
            (State::Closed { failures }, false) => {
                *failures += 1;
                if *failures >= threshold {
                    *state = open;
                }
            }
            (State::HalfOpen { .. }, true) if probe => *state = State::Closed { failures: 0 },
            (State::HalfOpen { .. }, false) if probe => *state = open,
            _ => {}
        }
    }

    /// Counts a failure seen after the permit was spent (a stream that broke mid-way).
    pub(crate) fn note_failure(&self) {
        self.record(false, false);
    }

    fn release(&self) {
        if let State::HalfOpen { in_flight } = &mut *self.lock() {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

impl Permit {
    /// The request reached a healthy upstream (a 4xx refusal counts as healthy).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true);
    }

    /// The upstream failed (5xx, 429, timeout, connection, malformed response).
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Arc<CircuitBreaker> {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_millis(open_ms),
            half_open_probes: 1,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = breaker(60_000);
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().success();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire().is_err());
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let breaker = breaker(1);
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err(), "only one probe at a time");
        probe.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_cancelled_one_frees_its_slot() {
        let breaker = breaker(1);
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        std::thread::sleep(Duration::from_millis(5));
        drop(breaker.try_acquire().unwrap());
        let probe = breaker.try_acquire().unwrap();
        probe.failure();
        assert!(matches!(
            breaker.state(),
            BreakerState::Open | BreakerState::HalfOpen
        ));
        assert!(matches!(&*breaker.lock(), State::Open { .. }));
    }
}
