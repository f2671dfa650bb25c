//! The SQLite store: one file in WAL mode, writers serialised with `BEGIN IMMEDIATE` and a busy
//! timeout so concurrent processes queue instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::redact_url;
use crate::error::{RegistryError, Result};

/// The registry on a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` (`sqlite:PATH`).
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| RegistryError::InvalidDatabaseUrl {
                url: redact_url(url),
                reason: err.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| RegistryError::Database {
                operation: "open the SQLite database",
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool (for tests and tools that inspect the tables).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// SQLite has no way to push changes to other processes: readers poll the revision.
    async fn open_change_feed(&self) -> Result<Option<super::ChangeFeed>> {
        Ok(None)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|source| RegistryError::Database {
                operation: "begin a transaction",
                source,
            })
    }
}

crate::store::sql::impl_sql_store!(SqliteStore, Sqlite);
