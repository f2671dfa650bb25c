//! Requests-per-minute, tokens-per-minute and spend budgets per key name.
//!
//! Two backends behind [`Limiter`]:
//!
//! - [`MemoryLimiter`] (one replica): an exact *sliding window* log per key. A request is allowed
//!   when fewer than N requests were allowed in the last 60 s, so no 60 s interval of the clock
//!   ever holds more than N allowed requests. Memory is O(N) per key; state is sharded over 16
//!   mutexes by key name so different keys rarely contend.
//! - [`RedisLimiter`] (many replicas): *fixed* one-minute windows (`{prefix}rpm:{name}:{minute}`),
//!   checked and incremented atomically by a Lua script, so every replica sees one shared
//!   budget. A fixed window can allow up to 2N around a window boundary; that is the usual price
//!   of O(1) shared state. Window numbers come from the injected clock, so replicas should have
//!   NTP-synchronised clocks (skew only shifts boundaries).
//!
//! Tokens: [`Limiter::check_tokens`] asks whether an estimated number of tokens still fits in the
//! current window *without consuming it*; [`Limiter::record_tokens`] adds the actual count after
//! the response. Concurrent requests can therefore overshoot by what is in flight.
//!
//! Spend is a running total per key (micro-USD integers, so Redis can add atomically); the memory
//! backend's total is lost on restart, the Redis one is kept without expiry.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::config::{LimiterBackend, LimitsConfig};
use crate::{AccessError, Clock};

/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_MS: u64 = 60_000;
const SHARDS: usize = 16;
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// A key's limits (all optional: `None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Total spend budget in USD.
    pub budget_usd: Option<f64>,
}

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// When denied: how long until a retry can succeed (`None` if it never can, e.g. an
    /// estimate larger than the whole per-minute limit).
    pub retry_after: Option<Duration>,
    /// The limit applied (`None` = unlimited), for `x-ratelimit-limit-*` headers.
    pub limit: Option<u64>,
    /// What is left in the window after this decision (`None` = unlimited).
    pub remaining: Option<u64>,
}

impl Decision {
    /// The decision when no limit is configured.
    pub fn unlimited() -> Decision {
        Decision {
            allowed: true,
            retry_after: None,
            limit: None,
            remaining: None,
        }
    }

    fn allow(limit: u64, remaining: u64) -> Decision {
        Decision {
            allowed: true,
            retry_after: None,
            limit: Some(limit),
            remaining: Some(remaining),
        }
    }

    fn deny(limit: u64, retry_after_ms: Option<u64>, remaining: u64) -> Decision {
        Decision {
            allowed: false,
            retry_after: retry_after_ms.map(|ms| Duration::from_millis(ms.max(1))),
            limit: Some(limit),
            remaining: Some(remaining),
        }
    }
}

fn micros(usd: f64) -> Result<u64, AccessError> {
    if !(usd.is_finite() && usd >= 0.0) {
        return Err(AccessError::InvalidAmount {
            what: "spend in USD",
            value: usd.to_string(),
        });
    }
    // Saturating float-to-int conversion; amounts are far below u64::MAX micro-USD.
    Ok((usd * 1e6).round() as u64)
}

fn left(limits: &Limits, spent_micros: u64) -> Option<f64> {
    limits
        .budget_usd
        .map(|budget| budget - spent_micros as f64 / 1e6)
}

/// Rate limiter and spend tracker: in process or in Redis.
#[derive(Clone)]
pub enum Limiter {
    /// In-process limiter (one replica).
    Memory(Arc<MemoryLimiter>),
    /// Redis limiter (shared by replicas).
    Redis(RedisLimiter),
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limiter::Memory(_) => f.write_str("Limiter::Memory"),
            Limiter::Redis(r) => write!(f, "Limiter::Redis(prefix={:?})", r.prefix),
        }
    }
}

impl Limiter {
    /// Build the backend named by `config` (connects to Redis for the Redis backend).
    pub async fn from_config(
        config: &LimitsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Limiter, AccessError> {
        match &config.backend {
            LimiterBackend::Memory => Ok(Limiter::Memory(Arc::new(MemoryLimiter::new(clock)))),
            LimiterBackend::Redis { url, prefix } => Ok(Limiter::Redis(
                RedisLimiter::connect(url, prefix, clock).await?,
            )),
        }
    }

    /// Check and consume one request against `limits.requests_per_minute`.
    pub async fn check_request(
        &self,
        key_name: &str,
        limits: &Limits,
    ) -> Result<Decision, AccessError> {
        match self {
            Limiter::Memory(m) => Ok(m.check_request(key_name, limits)),
            Limiter::Redis(r) => r.check_request(key_name, limits).await,
        }
    }

    /// Whether `estimated_tokens` more fit in the key's current token window (consumes nothing).
    pub async fn check_tokens(
        &self,
        key_name: &str,
        limits: &Limits,
        estimated_tokens: u64,
    ) -> Result<Decision, AccessError> {
        match self {
            Limiter::Memory(m) => Ok(m.check_tokens(key_name, limits, estimated_tokens)),
            Limiter::Redis(r) => r.check_tokens(key_name, limits, estimated_tokens).await,
        }
    }

    /// Add the tokens a request actually used to the key's current window.
    pub async fn record_tokens(
        &self,
        key_name: &str,
        actual_tokens: u64,
    ) -> Result<(), AccessError> {
        match self {
            Limiter::Memory(m) => {
                m.record_tokens(key_name, actual_tokens);
                Ok(())
            }
            Limiter::Redis(r) => r.record_tokens(key_name, actual_tokens).await,
        }
    }

    /// Add `usd` (finite, non-negative) to the key's total spend.
    pub async fn record_spend(&self, key_name: &str, usd: f64) -> Result<(), AccessError> {
        match self {
            Limiter::Memory(m) => m.record_spend(key_name, usd),
            Limiter::Redis(r) => r.record_spend(key_name, usd).await,
        }
    }

    /// Budget minus spend so far (may be negative once overspent); `None` = no budget.
    pub async fn budget_left(
        &self,
        key_name: &str,
        limits: &Limits,
    ) -> Result<Option<f64>, AccessError> {
        match self {
            Limiter::Memory(m) => Ok(m.budget_left(key_name, limits)),
            Limiter::Redis(r) => r.budget_left(key_name, limits).await,
        }
    }

    /// Whether the backend answers (readiness): always for memory, a `PING` for Redis.
    pub async fn ping(&self) -> Result<(), AccessError> {
        match self {
            Limiter::Memory(_) => Ok(()),
            Limiter::Redis(r) => r.ping().await,
        }
    }
}

#[derive(Default)]
struct KeyState {
    /// Times (ms) of allowed requests within the last window, oldest first.
    requests: VecDeque<u64>,
    /// (time ms, tokens) recorded within the last window, oldest first.
    tokens: VecDeque<(u64, u64)>,
    tokens_sum: u64,
    spend_micros: u64,
    /// Latest time seen, so a clock stepping back cannot reorder the logs.
    last_ms: u64,
}

impl KeyState {
    fn now(&mut self, clock_ms: u64) -> u64 {
        self.last_ms = self.last_ms.max(clock_ms);
        self.last_ms
    }

    fn prune(&mut self, now: u64) {
        while self.requests.front().is_some_and(|t| t + WINDOW_MS <= now) {
            self.requests.pop_front();
        }
        while let Some(&(t, n)) = self.tokens.front() {
            if t + WINDOW_MS > now {
                break;
            }
            self.tokens.pop_front();
            self.tokens_sum = self.tokens_sum.saturating_sub(n);
        }
    }
}

/// In-process sliding-window limiter, sharded by key name.
pub struct MemoryLimiter {
    clock: Arc<dyn Clock>,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<String, KeyState>>]>,
}

impl MemoryLimiter {
    /// A limiter reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> MemoryLimiter {
        MemoryLimiter {
            clock,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn with_state<R>(&self, key_name: &str, f: impl FnOnce(&mut KeyState, u64) -> R) -> R {
        let shard = (self.hasher.hash_one(key_name) as usize) % SHARDS;
        let clock_ms = self.clock.now_ms();
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let state = match map.get_mut(key_name) {
            Some(s) => s,
            None => map.entry(key_name.to_string()).or_default(),
        };
        let now = state.now(clock_ms);
        state.prune(now);
        f(state, now)
    }

    /// Check and consume one request against `limits.requests_per_minute`.
    pub fn check_request(&self, key_name: &str, limits: &Limits) -> Decision {
        let Some(n) = limits.requests_per_minute else {
            return Decision::unlimited();
        };
        let n = u64::from(n);
        self.with_state(key_name, |state, now| {
            let used = state.requests.len() as u64;
            if used < n {
                state.requests.push_back(now);
                Decision::allow(n, n - used - 1)
            } else {
                let retry = state.requests.front().map(|t| t + WINDOW_MS - now);
                Decision::deny(n, retry.or(Some(WINDOW_MS)), 0)
            }
        })
    }

    /// Whether `estimated` tokens fit in the last minute's remaining allowance (consumes nothing).
    pub fn check_tokens(&self, key_name: &str, limits: &Limits, estimated: u64) -> Decision {
        let Some(limit) = limits.tokens_per_minute else {
            return Decision::unlimited();
        };
        self.with_state(key_name, |state, now| {
            let used = state.tokens_sum;
            let remaining = limit.saturating_sub(used);
            if estimated > limit {
                return Decision::deny(limit, None, remaining);
            }
            if used.saturating_add(estimated) <= limit {
                return Decision::allow(limit, remaining);
            }
            // Wait until enough recorded tokens leave the window.
            let mut still = used;
            let mut retry = WINDOW_MS;
            for &(t, n) in &state.tokens {
                still = still.saturating_sub(n);
                if still.saturating_add(estimated) <= limit {
                    retry = t + WINDOW_MS - now;
                    break;
                }
            }
            Decision::deny(limit, Some(retry), remaining)
        })
    }

    /// Add the tokens a request actually used.
    pub fn record_tokens(&self, key_name: &str, actual: u64) {
        if actual == 0 {
            return;
        }
        self.with_state(key_name, |state, now| {
            state.tokens.push_back((now, actual));
            state.tokens_sum = state.tokens_sum.saturating_add(actual);
        });
    }

    /// Add `usd` to the key's total spend.
    pub fn record_spend(&self, key_name: &str, usd: f64) -> Result<(), AccessError> {
        let m = micros(usd)?;
        self.with_state(key_name, |state, _| {
            state.spend_micros = state.spend_micros.saturating_add(m);
        });
        Ok(())
    }

    /// Budget minus spend so far; `None` = no budget.
    pub fn budget_left(&self, key_name: &str, limits: &Limits) -> Option<f64> {
        limits.budget_usd?;
        self.with_state(key_name, |state, _| left(limits, state.spend_micros))
    }
}

/// Atomically: if the window counter is below the limit, increment it (setting its expiry on
/// creation) and return {1, count}; otherwise return {0, count}.
const CHECK_REQUEST_LUA: &str = r"
local limit = tonumber(ARGV[1])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= limit then
  return {0, count}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, count}
";

/// Redis fixed-window limiter shared by all replicas.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    clock: Arc<dyn Clock>,
    script: Arc<redis::Script>,
}

impl RedisLimiter {
    /// Connect to `url`; keys are `{prefix}rpm:{name}:{minute}`, `{prefix}tpm:{name}:{minute}`
    /// and `{prefix}spend:{name}`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisLimiter, AccessError> {
        let map = |source| AccessError::Redis {
            op: "connect",
            source,
        };
        let client = redis::Client::open(url).map_err(map)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(map)?;
        Ok(RedisLimiter {
            conn,
            prefix: prefix.to_string(),
            clock,
            script: Arc::new(redis::Script::new(CHECK_REQUEST_LUA)),
        })
    }

    /// `PING`, bounded by the connection's response timeout.
    pub async fn ping(&self) -> Result<(), AccessError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| AccessError::Redis { op: "ping", source })
    }

    /// (window number, ms until the window ends) at the clock's current time.
    fn window(&self) -> (u64, u64) {
        let now = self.clock.now_ms();
        (now / WINDOW_MS, WINDOW_MS - now % WINDOW_MS)
    }

    /// Check and consume one request against `limits.requests_per_minute`.
    pub async fn check_request(
        &self,
        key_name: &str,
        limits: &Limits,
    ) -> Result<Decision, AccessError> {
        let Some(n) = limits.requests_per_minute else {
            return Ok(Decision::unlimited());
        };
        let n = u64::from(n);
        let (window, until_end) = self.window();
        let key = format!("{}rpm:{key_name}:{window}", self.prefix);
        let mut conn = self.conn.clone();
        let (allowed, count): (u64, u64) = self
            .script
            .key(&key)
            .arg(n)
            .arg(until_end + 1000)
            .invoke_async(&mut conn)
            .await
            .map_err(|source| AccessError::Redis {
                op: "check_request",
                source,
            })?;
        Ok(if allowed == 1 {
            Decision::allow(n, n.saturating_sub(count))
        } else {
            Decision::deny(n, Some(until_end), 0)
        })
    }

    /// Whether `estimated` tokens fit in the current window (consumes nothing).
    pub async fn check_tokens(
        &self,
        key_name: &str,
        limits: &Limits,
        estimated: u64,
    ) -> Result<Decision, AccessError> {
        let Some(limit) = limits.tokens_per_minute else {
            return Ok(Decision::unlimited());
        };
        let (window, until_end) = self.window();
        let mut conn = self.conn.clone();
        let used: Option<u64> = redis::cmd("GET")
            .arg(format!("{}tpm:{key_name}:{window}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|source| AccessError::Redis {
                op: "check_tokens",
                source,
            })?;
        let used = used.unwrap_or(0);
        let remaining = limit.saturating_sub(used);
        Ok(if estimated > limit {
            Decision::deny(limit, None, remaining)
        } else if used.saturating_add(estimated) <= limit {
            Decision::allow(limit, remaining)
        } else {
            Decision::deny(limit, Some(until_end), remaining)
        })
    }

    /// Add the tokens a request actually used to the current window.
    pub async fn record_tokens(&self, key_name: &str, actual: u64) -> Result<(), AccessError> {
        if actual == 0 {
            return Ok(());
        }
        let (window, until_end) = self.window();
        let key = format!("{}tpm:{key_name}:{window}", self.prefix);
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(actual)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(until_end + 1000)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| AccessError::Redis {
                op: "record_tokens",
                source,
            })
    }

    /// Add `usd` to the key's total spend (kept without expiry).
    pub async fn record_spend(&self, key_name: &str, usd: f64) -> Result<(), AccessError> {
        let m = micros(usd)?;
        let mut conn = self.conn.clone();
        redis::cmd("INCRBY")
            .arg(format!("{}spend:{key_name}", self.prefix))
            .arg(m)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| AccessError::Redis {
                op: "record_spend",
                source,
            })
    }

    /// Budget minus spend so far; `None` = no budget.
    pub async fn budget_left(
        &self,
        key_name: &str,
        limits: &Limits,
    ) -> Result<Option<f64>, AccessError> {
        if limits.budget_usd.is_none() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let spent: Option<u64> = redis::cmd("GET")
            .arg(format!("{}spend:{key_name}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|source| AccessError::Redis {
                op: "budget_left",
                source,
            })?;
        Ok(left(limits, spent.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn limiter(start: u64) -> (Arc<ManualClock>, MemoryLimiter) {
        let clock = Arc::new(ManualClock::new(start));
        (clock.clone(), MemoryLimiter::new(clock))
    }

    fn rpm(n: u32) -> Limits {
        Limits {
            requests_per_minute: Some(n),
            ..Limits::default()
        }
    }

    #[test]
    fn allows_n_per_minute_then_denies_then_recovers() {
        let (clock, lim) = limiter(1_000_000);
        for i in 0..3u64 {
            let d = lim.check_request("k", &rpm(3));
            assert_eq!(d, Decision::allow(3, 2 - i));
            clock.advance_ms(10_000);
        }
        // Now at +30 s: the first request (at +0) leaves the window at +60 s.
        let d = lim.check_request("k", &rpm(3));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(d.remaining, Some(0));
        // Other keys are independent.
        assert!(lim.check_request("other", &rpm(3)).allowed);
        clock.advance_ms(29_999);
        assert!(!lim.check_request("k", &rpm(3)).allowed);
        clock.advance_ms(1);
        assert!(lim.check_request("k", &rpm(3)).allowed);
        assert!(!lim.check_request("k", &rpm(3)).allowed);
        // A full minute later everything is back.
        clock.advance_ms(60_000);
        for _ in 0..3 {
            assert!(lim.check_request("k", &rpm(3)).allowed);
        }
    }

    #[test]
    fn no_limit_is_unlimited() {
        let (_, lim) = limiter(0);
        for _ in 0..1000 {
            assert_eq!(
                lim.check_request("k", &Limits::default()),
                Decision::unlimited()
            );
        }
        assert_eq!(
            lim.check_tokens("k", &Limits::default(), u64::MAX),
            Decision::unlimited()
        );
        assert_eq!(lim.budget_left("k", &Limits::default()), None);
    }

    #[test]
    fn clock_stepping_back_does_not_reset() {
        let (clock, lim) = limiter(500_000);
        assert!(lim.check_request("k", &rpm(1)).allowed);
        clock.set_ms(400_000);
        let d = lim.check_request("k", &rpm(1));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(WINDOW));
    }

    #[test]
    fn tokens_per_minute() {
        let (clock, lim) = limiter(0);
        let limits = Limits {
            tokens_per_minute: Some(1000),
            ..Limits::default()
        };
        assert_eq!(
            lim.check_tokens("k", &limits, 600),
            Decision::allow(1000, 1000)
        );
        lim.record_tokens("k", 600);
        clock.advance_ms(20_000);
        lim.record_tokens("k", 300);
        let d = lim.check_tokens("k", &limits, 200);
        assert!(!d.allowed);
        assert_eq!(d.remaining, Some(100));
        // Fits once the 600 recorded at 0 leave the window at 60 s.
        assert_eq!(d.retry_after, Some(Duration::from_secs(40)));
        assert!(lim.check_tokens("k", &limits, 100).allowed);
        // Larger than the whole limit: never.
        let d = lim.check_tokens("k", &limits, 1001);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, None);
        clock.advance_ms(40_000);
        assert_eq!(
            lim.check_tokens("k", &limits, 700),
            Decision::allow(1000, 700)
        );
    }

    #[test]
    fn spend_and_budget() {
        let (_, lim) = limiter(0);
        let limits = Limits {
            budget_usd: Some(1.0),
            ..Limits::default()
        };
        assert_eq!(lim.budget_left("k", &limits), Some(1.0));
        lim.record_spend("k", 0.25).unwrap();
        lim.record_spend("k", 0.000_001).unwrap();
        let left = lim.budget_left("k", &limits).unwrap();
        assert!((left - 0.749_999).abs() < 1e-9, "{left}");
        lim.record_spend("k", 1.0).unwrap();
        assert!(lim.budget_left("k", &limits).unwrap() < 0.0);
        assert!(lim.budget_left("other", &limits).unwrap() == 1.0);
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            let err = lim.record_spend("k", bad).unwrap_err();
            assert!(matches!(err, AccessError::InvalidAmount { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn enum_dispatches_to_memory() {
        let clock = Arc::new(ManualClock::new(0));
        let lim = Limiter::from_config(&LimitsConfig::default(), clock)
            .await
            .unwrap();
        assert!(lim.check_request("k", &rpm(1)).await.unwrap().allowed);
        assert!(!lim.check_request("k", &rpm(1)).await.unwrap().allowed);
        lim.record_tokens("k", 5).await.unwrap();
        lim.record_spend("k", 0.5).await.unwrap();
        let limits = Limits {
            tokens_per_minute: Some(10),
            budget_usd: Some(2.0),
            ..Limits::default()
        };
        assert_eq!(
            lim.check_tokens("k", &limits, 5).await.unwrap().remaining,
            Some(5)
        );
        assert_eq!(lim.budget_left("k", &limits).await.unwrap(), Some(1.5));
    }

    proptest::proptest! {
        /// Replay random request times: in no 60 s interval are more than N requests allowed,
        /// and a denial always comes with a retry_after that really leads to an allowed request.
        #[test]
        fn never_more_than_n_in_any_window(
            n in 1u32..8,
            gaps in proptest::collection::vec(0u64..30_000, 1..200),
        ) {
            let (clock, lim) = limiter(1_000);
            let mut allowed: Vec<u64> = Vec::new();
            for gap in gaps {
                clock.advance_ms(gap);
                let now = clock.now_ms();
                let d = lim.check_request("k", &rpm(n));
                if d.allowed {
                    allowed.push(now);
                } else {
                    let retry = d.retry_after.map(|r| r.as_millis() as u64);
                    proptest::prop_assert!(retry.is_some_and(|r| (1..=WINDOW_MS).contains(&r)));
                    // At now + retry_after the oldest request has left the window.
                    let in_window_then = allowed
                        .iter()
                        .filter(|&&t| t + WINDOW_MS > now + retry.unwrap_or(0))
                        .count();
                    proptest::prop_assert!(in_window_then < n as usize);
                }
            }
            for (i, &start) in allowed.iter().enumerate() {
                let in_window = allowed[i..].iter().take_while(|&&t| t < start + WINDOW_MS).count();
                proptest::prop_assert!(in_window <= n as usize, "{} allowed within 60 s of {}", in_window, start);
            }
        }
    }
}
