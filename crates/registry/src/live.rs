//! Keeping replicas current: a task refreshes a [`Router`] snapshot when the store's revision
//! moves (at once on a pushed change notice where the backend has them, PostgreSQL; otherwise at
//! the next poll), and a monitor task judges running canaries on an interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::rollback::RollbackPolicy;
use crate::routing::Router;
use crate::service::{CanaryCheck, Registry};
use crate::store::{ChangeFeed, Store};

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

/// Refreshes `router` from `store` on every change notice the store pushes and, as a safety net
/// for lost notices and for backends without them, every `interval`, until `stop` turns true.
/// Errors are handed to `on_error` and the old snapshot keeps serving; a broken notice
/// connection is re-opened at the next poll.
pub fn spawn_router_refresh(
    store: Arc<dyn Store>,
    router: Arc<Router>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    on_error: impl Fn(crate::RegistryError) + Send + Sync + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed: Option<ChangeFeed> = None;
        let mut has_feed = true;
        loop {
            let notice = async {
                match feed.as_mut() {
                    Some(feed) => Some(feed.changed().await),
                    None => std::future::pending().await,
                }
            };
            let noticed = tokio::select! {
                _ = ticker.tick() => None,
                noticed = notice => noticed,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                    continue;
                }
            };
            match noticed {
                Some(Ok(())) => {}
                Some(Err(err)) => {
                    on_error(err);
                    feed = None;
                    continue;
                }
                // A poll: also the moment to (re)open the notice connection.
                None if feed.is_none() && has_feed => match store.change_feed().await {
                    Ok(opened) => {
                        has_feed = opened.is_some();
                        feed = opened;
                    }
                    Err(err) => on_error(err),
                },
                None => {}
            }
            if let Err(err) = refresh_router(store.as_ref(), &router).await {
                on_error(err);
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
