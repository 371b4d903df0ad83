//! Throw-away schemas: a schema of its own, with a random name, for a run
//! that must not touch anything else in the database (`redrive
//! bench-console`, tests), dropped when the guard drops.

use std::str::FromStr;

use tokio_postgres::NoTls;

/// A schema that exists until this guard drops.
pub struct ScratchSchema {
    base_url: String,
    pub name: String,
    /// The base URL with this schema as the search path.
    pub url: String,
}

impl ScratchSchema {
    /// Creates a fresh schema named `{prefix}_{random}` in the database at
    /// `base_url`.
    pub async fn create(base_url: &str, prefix: &str) -> Result<ScratchSchema, String> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        // Connections of this run carry the schema's name, so the guard can
        // end them even while the run's runtime is no longer running them.
        let config = tokio_postgres::Config::from_str(base_url)
            .map_err(|err| format!("invalid database URL: {err}"))?;
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|err| format!("cannot connect to {base_url}: {err}"))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|err| format!("cannot create schema {name}: {}", super::pg_error(err)))?;
        drop(client);
        let _ = driver.await;
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{base_url}{separator}options=-c%20search_path%3D{name}&application_name={name}"
        );
        Ok(ScratchSchema {
            base_url: base_url.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let base_url = self.base_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime, which must not block on
        // itself: the schema is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async move {
                let config =
                    tokio_postgres::Config::from_str(&base_url).map_err(|err| err.to_string())?;
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|err| err.to_string())?;
                tokio::spawn(connection);
                // A store of the run may still be open, mid-transaction,
                // on a runtime that is blocked on this very drop: end its
                // connections so their locks go, then drop the schema.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .await
                    .map_err(|err| super::pg_error(err).to_string())?;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                    .map_err(|err| super::pg_error(err).to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cannot drop schema {}: {err}", self.name),
            Err(_) => eprintln!("cannot drop schema {}: the thread panicked", self.name),
        }
    }
}
