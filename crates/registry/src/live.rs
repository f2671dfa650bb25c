//! Keeping replicas current: a polling task refreshes a [`Router`] snapshot when the store's
//! revision moves, and a monitor task judges running canaries on an interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::rollback::RollbackPolicy;
use crate::routing::Router;
use crate::service::{CanaryCheck, Registry};
use crate::store::Store;

/// Reloads the router's snapshot when the store has changed; returns whether it did.
pub async fn refresh_router(store: &dyn Store, router: &Router) -> Result<bool> {
    let revision = store.revision().await?;
    if revision == router.revision() && revision != 0 {
        return Ok(false);
    }
    router.replace(store.routing_table().await?);
    Ok(true)
}

/// A router loaded from `store` now.
pub async fn load_router(store: &dyn Store) -> Result<Router> {
    Ok(Router::new(store.routing_table().await?))
}

/// Polls `store` every `interval` and refreshes `router` until `stop` turns true. Errors are
/// handed to `on_error` and the old snapshot keeps serving.
pub fn spawn_router_refresh(
    store: Arc<dyn Store>,
    router: Arc<Router>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    on_error: impl Fn(&crate::RegistryError) + Send + Sync + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(err) = refresh_router(store.as_ref(), &router).await {
                        on_error(&err);
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
    })
}

/// Judges every running canary every `interval` (rolling back breaches) until `stop` turns true;
/// each round's checks go to `on_round`.
pub fn spawn_canary_monitor(
    registry: Registry,
    policy: RollbackPolicy,
    actor: String,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    on_round: impl Fn(Result<Vec<CanaryCheck>>) + Send + Sync + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    on_round(registry.check_all_canaries(&policy, &actor).await);
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
    })
}
