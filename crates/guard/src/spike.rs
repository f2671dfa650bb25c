//! Injection spike detection: the share of flagged requests in fixed windows against a
//! baseline learned from earlier windows, so a sudden campaign raises one alert per window
//! instead of going unnoticed among individually blocked requests.
//!
//! The baseline is an exponentially weighted mean of past window rates. Windows that alerted
//! do not feed it, so a long campaign keeps alerting instead of becoming the new normal.

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::GuardError;

/// Settings, as written in config (`[guard.alerts]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Alert when the window's flagged share exceeds `factor` times the baseline.
    pub factor: f64,
    /// ... and exceeds this absolute share (so 2 flags in 100 requests over a 0.5% baseline
    /// is not an incident).
    pub min_rate: f64,
    /// ... and the window has seen at least this many requests.
    pub min_requests: u64,
    /// Baseline before any window has completed.
    pub initial_baseline: f64,
    /// Weight of the newest window in the baseline (exponential smoothing).
    pub smoothing: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            window_secs: 60,
            factor: 3.0,
            min_rate: 0.05,
            min_requests: 20,
            initial_baseline: 0.01,
            smoothing: 0.2,
        }
    }
}

impl SpikeConfig {
    /// Checks the numbers; errors name the setting.
    pub fn validate(&self) -> Result<(), GuardError> {
        let bad = |field: &str, message: String| GuardError::BadConfig {
            field: format!("guard.alerts.{field}"),
            message,
        };
        if self.window_secs == 0 {
            return Err(bad("window_secs", "must be at least 1".to_owned()));
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(bad(
                "factor",
                format!("{} must be a number >= 1", self.factor),
            ));
        }
        for (field, value) in [
            ("min_rate", self.min_rate),
            ("initial_baseline", self.initial_baseline),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(field, format!("{value} must be a number from 0 to 1")));
            }
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(bad(
                "smoothing",
                format!("{} must be in (0, 1]", self.smoothing),
            ));
        }
        Ok(())
    }
}

/// One alert: the window that spiked and the baseline it was judged against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpikeAlert {
    /// Requests seen in the window so far.
    pub requests: u64,
    /// Of which flagged.
    pub flagged: u64,
    /// `flagged / requests`.
    pub rate: f64,
    /// The baseline rate.
    pub baseline: f64,
    /// Window length in seconds.
    pub window_secs: u64,
}

#[derive(Debug)]
struct State {
    window_start_ms: u64,
    requests: u64,
    flagged: u64,
    baseline: f64,
    alerted: bool,
}

/// Counts verdicts per window and says when a window spikes. Shared by all requests.
#[derive(Debug)]
pub struct SpikeDetector {
    config: SpikeConfig,
    state: Mutex<State>,
}

impl SpikeDetector {
    /// A detector; `now_ms` starts the first window.
    pub fn new(config: SpikeConfig, now_ms: u64) -> Result<SpikeDetector, GuardError> {
        config.validate()?;
        let baseline = config.initial_baseline;
        Ok(SpikeDetector {
            config,
            state: Mutex::new(State {
                window_start_ms: now_ms,
                requests: 0,
                flagged: 0,
                baseline,
                alerted: false,
            }),
        })
    }

    /// Records one scanned request at `now_ms` (a monotonic clock in milliseconds); returns
    /// an alert the first time the current window crosses the threshold.
    pub fn record(&self, flagged: bool, now_ms: u64) -> Option<SpikeAlert> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let window_ms = self.config.window_secs.saturating_mul(1000);
        if now_ms >= state.window_start_ms.saturating_add(window_ms) {
            self.close_window(&mut state);
            // Skipped empty windows carry no information; the next window starts on the grid.
            let elapsed = now_ms - state.window_start_ms;
            state.window_start_ms += elapsed - elapsed % window_ms;
        }
        state.requests += 1;
        state.flagged += u64::from(flagged);
        if state.alerted || !flagged || state.requests < self.config.min_requests {
            return None;
        }
        let rate = state.flagged as f64 / state.requests as f64;
        let threshold = (state.baseline * self.config.factor).max(self.config.min_rate);
        if rate <= threshold {
            return None;
        }
        state.alerted = true;
        Some(SpikeAlert {
            requests: state.requests,
            flagged: state.flagged,
            rate,
            baseline: state.baseline,
            window_secs: self.config.window_secs,
        })
    }

    /// The current baseline rate.
    pub fn baseline(&self) -> f64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .baseline
    }

    fn close_window(&self, state: &mut State) {
        if !state.alerted && state.requests >= self.config.min_requests {
            let rate = state.flagged as f64 / state.requests as f64;
            let weight = self.config.smoothing;
            state.baseline = (1.0 - weight) * state.baseline + weight * rate;
        }
        state.requests = 0;
        state.flagged = 0;
        state.alerted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> SpikeDetector {
        SpikeDetector::new(SpikeConfig::default(), 0).unwrap()
    }

    /// Feeds `requests` of which every `every`-th is flagged, spread over one window.
    fn feed(d: &SpikeDetector, start_ms: u64, requests: u64, every: u64) -> Vec<SpikeAlert> {
        (0..requests)
            .filter_map(|i| d.record(i % every == 0, start_ms + i * 50_000 / requests))
            .collect()
    }

    #[test]
    fn quiet_traffic_never_alerts_and_learns_its_baseline() {
        let d = detector();
        for window in 0..20 {
            // 2% flagged: under min_rate, so never an incident.
            assert!(feed(&d, window * 60_000, 200, 50).is_empty());
        }
        d.record(false, 21 * 60_000);
        assert!((d.baseline() - 0.02).abs() < 0.002, "{}", d.baseline());
    }

    #[test]
    fn a_campaign_alerts_once_per_window_and_does_not_become_normal() {
        let d = detector();
        for window in 0..5 {
            assert!(feed(&d, window * 60_000, 100, 100).is_empty());
        }
        for window in 5..10 {
            let alerts = feed(&d, window * 60_000, 100, 2);
            assert_eq!(alerts.len(), 1, "window {window}");
            let alert = &alerts[0];
            assert!(alert.rate > 0.3 && alert.requests >= 20, "{alert:?}");
        }
        // The campaign windows did not raise the baseline.
        assert!(d.baseline() < 0.02, "{}", d.baseline());
    }

    #[test]
    fn few_requests_do_not_alert() {
        let d = detector();
        for i in 0..19 {
            assert!(d.record(true, i).is_none());
        }
        assert!(d.record(true, 19).is_some());
    }

    #[test]
    fn bad_settings_are_named() {
        let config = SpikeConfig {
            factor: 0.5,
            ..SpikeConfig::default()
        };
        let error = SpikeDetector::new(config, 0).unwrap_err().to_string();
        assert!(error.contains("guard.alerts.factor"), "{error}");
        let config = SpikeConfig {
            window_secs: 0,
            ..SpikeConfig::default()
        };
        assert!(SpikeDetector::new(config, 0).is_err());
    }
}
