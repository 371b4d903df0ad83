//! API tokens and signing secrets on SQLite.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{millis, timestamp};
use crate::security::*;
use crate::{Result, SecurityStore, StoreError};

const TOKEN_COLUMNS: &str = "id, name, scope, secret_hash, created_at";

fn token(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scope: String = row.get(2)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        scope: scope.parse().map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(err))
        })?,
        secret_hash: row.get(3)?,
        created_at: timestamp(row.get(4)?)?,
    })
}

pub(super) fn create_token(conn: &Connection, token: &TokenRecord) -> Result<()> {
    let inserted = conn.execute(
        "INSERT INTO api_tokens (id, name, scope, secret_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        params![
            token.id,
            token.name,
            token.scope.to_string(),
            token.secret_hash,
            millis(token.created_at)
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "token {:?} already exists",
            token.id
        )));
    }
    Ok(())
}

pub(super) fn get_token(conn: &Connection, id: &str) -> Result<TokenRecord> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"
    ))?
    .query_row([id], token)
    .optional()?
    .ok_or_else(|| StoreError::not_found("token", id))
}

pub(super) fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))?
        .query_map([], token)?
        .collect::<rusqlite::Result<_>>()?)
}

pub(super) fn delete_token(conn: &Connection, id: &str) -> Result<()> {
    if conn.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? == 0 {
        return Err(StoreError::not_found("token", id));
    }
    Ok(())
}

pub(super) fn get_signing_secrets(
    conn: &Connection,
    subscription: &str,
) -> Result<Option<SigningSecrets>> {
    let row = conn
        .prepare_cached(
            "SELECT subscription, current, previous_secrets, rotated_at
             FROM signing_secrets WHERE subscription = ?1",
        )?
        .query_row([subscription], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                timestamp(row.get(3)?)?,
            ))
        })
        .optional()?;
    row.map(|(subscription, current, previous, rotated_at)| {
        Ok(SigningSecrets {
            subscription,
            current,
            previous: previous_from_json(&previous)?,
            rotated_at,
        })
    })
    .transpose()
}

fn require_subscription(conn: &Connection, subscription: &str) -> Result<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM subscriptions WHERE name = ?1")?
        .exists([subscription])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::not_found("subscription", subscription))
    }
}

pub(super) fn ensure_signing_secret(
    conn: &Connection,
    subscription: &str,
    current: &str,
    now: Timestamp,
) -> Result<SigningSecrets> {
    require_subscription(conn, subscription)?;
    conn.execute(
        "INSERT INTO signing_secrets (subscription, current, rotated_at)
         VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![subscription, current, millis(now)],
    )?;
    get_signing_secrets(conn, subscription)?
        .ok_or_else(|| StoreError::Backend("a signing secret vanished in its own write".into()))
}

/// Runs on the writer connection, so nothing rotates in between the read
/// and the write.
pub(super) fn rotate_signing_secret(
    conn: &Connection,
    rotation: &SecretRotation,
) -> Result<SigningSecrets> {
    require_subscription(conn, &rotation.subscription)?;
    let before = get_signing_secrets(conn, &rotation.subscription)?;
    let previous = previous_to_json(&rotation.previous_after(before.as_ref()));
    conn.execute(
        "INSERT INTO signing_secrets (subscription, current, previous_secrets, rotated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subscription) DO UPDATE SET
             current = ?2, previous_secrets = ?3, rotated_at = ?4",
        params![
            rotation.subscription,
            rotation.new,
            previous,
            millis(rotation.now)
        ],
    )?;
    get_signing_secrets(conn, &rotation.subscription)?
        .ok_or_else(|| StoreError::Backend("a signing secret vanished in its own write".into()))
}

#[async_trait]
impl SecurityStore for SqliteStore {
    async fn create_token(&self, token: TokenRecord) -> Result<()> {
        self.writer
            .write(move |conn| create_token(conn, &token))
            .await
    }

    async fn get_token(&self, id: &str) -> Result<TokenRecord> {
        let id = id.to_owned();
        self.readers.read(move |conn| get_token(conn, &id)).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.readers.read(list_tokens).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.writer.write(move |conn| delete_token(conn, &id)).await
    }

    async fn get_signing_secrets(&self, subscription: &str) -> Result<Option<SigningSecrets>> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| get_signing_secrets(conn, &subscription))
            .await
    }

    async fn ensure_signing_secret(
        &self,
        subscription: &str,
        current: String,
        now: Timestamp,
    ) -> Result<SigningSecrets> {
        let subscription = subscription.to_owned();
        self.writer
            .write(move |conn| ensure_signing_secret(conn, &subscription, &current, now))
            .await
    }

    async fn rotate_signing_secret(&self, rotation: SecretRotation) -> Result<SigningSecrets> {
        self.writer
            .write(move |conn| rotate_signing_secret(conn, &rotation))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema;

    #[test]
    fn the_migration_keeps_a_previous_secret_within_its_grace() {
        let conn = Connection::open_in_memory().unwrap();
        let before = schema::version_of("0007_previous_secrets").unwrap() - 1;
        schema::migrate_to(&conn, before).unwrap();
        conn.execute_batch(
            "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
                 VALUES ('a', 't', '{}', 0, 0), ('b', 't', '{}', 0, 0);
             INSERT INTO signing_secrets (subscription, current, previous, previous_until, rotated_at)
                 VALUES ('a', 'v1:new', 'v1:old', 86400000, 1000),
                        ('b', 'v1:only', NULL, NULL, 0);",
        )
        .unwrap();
        schema::migrate(&conn).unwrap();
        let a = get_signing_secrets(&conn, "a").unwrap().unwrap();
        assert_eq!(a.current, "v1:new");
        assert_eq!(
            a.previous,
            [PreviousSecret {
                secret: "v1:old".into(),
                until: Timestamp::from_millisecond(86_400_000).unwrap(),
            }]
        );
        assert_eq!(a.rotated_at, Timestamp::from_millisecond(1000).unwrap());
        let b = get_signing_secrets(&conn, "b").unwrap().unwrap();
        assert!(b.previous.is_empty());
    }
}
