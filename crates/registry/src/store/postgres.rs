//! The PostgreSQL store: READ COMMITTED transactions whose collisions surface as unique
//! violations on the version number or the audit sequence, and are retried.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::{CHANGE_CHANNEL, ChangeFeed, redact_url};
use crate::error::{RegistryError, Result};

/// The registry on a PostgreSQL database (in the connection's `search_path` schema).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The schema the tables live in: change notices from other schemas are not ours.
    schema: String,
}

impl PostgresStore {
    /// Connects to and migrates the database at `url` (`postgres://...`; a schema can be chosen
    /// with `?options[search_path]=NAME`).
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let options =
            PgConnectOptions::from_str(url).map_err(|err| RegistryError::InvalidDatabaseUrl {
                url: redact_url(url),
                reason: err.to_string(),
            })?;
        PostgresStore::open_with(options).await
    }

    /// Connects with explicit options and migrates.
    pub async fn open_with(options: PgConnectOptions) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .map_err(|source| RegistryError::Database {
                operation: "connect to PostgreSQL",
                source,
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let schema = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(|source| RegistryError::Database {
                operation: "read the current schema",
                source,
            })?;
        Ok(PostgresStore { pool, schema })
    }

    /// A dedicated connection LISTENing for the `audit_log` trigger's notices.
    async fn open_change_feed(&self) -> Result<Option<ChangeFeed>> {
        let listen = |source| RegistryError::Database {
            operation: "listen for change notifications",
            source,
        };
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(listen)?;
        listener.listen(CHANGE_CHANNEL).await.map_err(listen)?;
        Ok(Some(ChangeFeed::new(listener, self.schema.clone())))
    }

    /// The connection pool (for tests and tools that inspect the tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(|source| RegistryError::Database {
                operation: "begin a transaction",
                source,
            })
    }
}

crate::store::sql::impl_sql_store!(PostgresStore, Postgres);
