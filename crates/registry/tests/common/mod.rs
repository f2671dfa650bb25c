//! Test backends: a SQLite file in a temp dir, or a fresh PostgreSQL schema dropped afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use promptops_registry::Registry;
use promptops_registry::store::{PostgresStore, SqliteStore, Store};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store under test and what must be cleaned up after it.
pub struct Backend {
    pub url: String,
    pub store: Arc<dyn Store>,
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique_schema() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "reg_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn create_schema(schema: &str) {
    let mut conn = PgConnection::connect(PG_URL).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .unwrap();
}

pub fn drop_schema(schema: &str) {
    let schema = schema.to_owned();
    // Drop runs outside any runtime guarantee, so clean up on a thread with its own runtime.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = PgConnection::connect(PG_URL).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join();
}

impl Backend {
    pub async fn new(kind: Kind) -> Backend {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("registry.db").display());
                let store = Arc::new(SqliteStore::open(&url).await.unwrap());
                Backend {
                    url,
                    store,
                    kind,
                    _dir: Some(dir),
                    schema: None,
                }
            }
            Kind::Postgres => {
                let schema = unique_schema();
                create_schema(&schema).await;
                let url = format!("{PG_URL}?options[search_path]={schema}");
                let options = PgConnectOptions::from_str(PG_URL)
                    .unwrap()
                    .options([("search_path", &schema)]);
                let store = Arc::new(PostgresStore::open_with(options).await.unwrap());
                Backend {
                    url,
                    store,
                    kind,
                    _dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    /// A second, independent connection pool to the same database (like another process).
    pub async fn reopen(&self) -> Arc<dyn Store> {
        promptops_registry::store::open(&self.url).await.unwrap()
    }

    pub fn registry(&self) -> Registry {
        Registry::new(Arc::clone(&self.store))
    }

    /// Runs raw SQL against the backing database (for tamper tests).
    pub async fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            Kind::Postgres => {
                let options = PgConnectOptions::from_str(PG_URL)
                    .unwrap()
                    .options([("search_path", self.schema.as_deref().unwrap())]);
                let mut conn = PgConnection::connect_with(&options).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            drop_schema(schema);
        }
    }
}

/// Defines `mod $name { sqlite, postgres }` tests running `$body(Backend)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(common::Backend::new(common::Kind::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body(common::Backend::new(common::Kind::Postgres).await).await;
            }
        }
    };
}
