//! API tokens and signing secrets on PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::rows::{get, millis, timestamp};
use super::{PostgresStore, pg_error};
use crate::security::*;
use crate::{Result, SecurityStore, StoreError};

/// How often a rotation retries when another node rotated the same
/// subscription between its read and its write.
const ROTATION_ATTEMPTS: usize = 8;

const TOKEN_COLUMNS: &str = "id, name, scope, secret_hash, created_at";
const SECRET_COLUMNS: &str = "subscription, current, previous_secrets, rotated_at";

fn token(row: &Row) -> Result<TokenRecord> {
    let scope: String = get(row, 2)?;
    Ok(TokenRecord {
        id: get(row, 0)?,
        name: get(row, 1)?,
        scope: scope
            .parse()
            .map_err(|err| StoreError::Backend(format!("stored token scope: {err}")))?,
        secret_hash: get(row, 3)?,
        created_at: timestamp(get(row, 4)?)?,
    })
}

fn secrets(row: &Row) -> Result<SigningSecrets> {
    Ok(SigningSecrets {
        subscription: get(row, 0)?,
        current: get(row, 1)?,
        previous: previous_from_json(&get::<String>(row, 2)?)?,
        rotated_at: timestamp(get(row, 3)?)?,
    })
}

impl PostgresStore {
    async fn require_subscription(&self, subscription: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .query_opt(
                "SELECT 1 FROM subscriptions WHERE name = $1",
                &[&subscription],
            )
            .await
            .map_err(pg_error)?
            .map(|_| ())
            .ok_or_else(|| StoreError::not_found("subscription", subscription))
    }
}

#[async_trait]
impl SecurityStore for PostgresStore {
    async fn create_token(&self, token: crate::TokenRecord) -> Result<()> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO api_tokens (id, name, scope, secret_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &token.id,
                    &token.name,
                    &token.scope.to_string(),
                    &token.secret_hash,
                    &millis(token.created_at),
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "token {:?} already exists",
                token.id
            )));
        }
        Ok(())
    }

    async fn get_token(&self, id: &str) -> Result<crate::TokenRecord> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg_error)?
            .ok_or_else(|| StoreError::not_found("token", id))?;
        token(&row)
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(token)
            .collect()
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM api_tokens WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        if deleted == 0 {
            return Err(StoreError::not_found("token", id));
        }
        Ok(())
    }

    async fn get_signing_secrets(
        &self,
        subscription: &str,
    ) -> Result<Option<crate::SigningSecrets>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {SECRET_COLUMNS} FROM signing_secrets WHERE subscription = $1"),
                &[&subscription],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(secrets)
            .transpose()
    }

    async fn ensure_signing_secret(
        &self,
        subscription: &str,
        current: String,
        now: Timestamp,
    ) -> Result<crate::SigningSecrets> {
        self.require_subscription(subscription).await?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO signing_secrets (subscription, current, rotated_at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&subscription, &current, &millis(now)],
            )
            .await
            .map_err(|err| match pg_error(err) {
                // The subscription went away in between.
                StoreError::Backend(_) => StoreError::not_found("subscription", subscription),
                other => other,
            })?;
        self.get_signing_secrets(subscription)
            .await?
            .ok_or_else(|| StoreError::not_found("subscription", subscription))
    }

    /// Reads, plans with [`SecretRotation::previous_after`], and writes only
    /// if the row is still what was read (its current secret, sealed with a
    /// fresh nonce each time, tells): a concurrent rotation on another node
    /// makes this one read again instead of dropping that one's secret.
    async fn rotate_signing_secret(
        &self,
        rotation: crate::SecretRotation,
    ) -> Result<crate::SigningSecrets> {
        self.require_subscription(&rotation.subscription).await?;
        let client = self.client().await?;
        for _ in 0..ROTATION_ATTEMPTS {
            let before = self.get_signing_secrets(&rotation.subscription).await?;
            let previous = previous_to_json(&rotation.previous_after(before.as_ref()));
            let written = match &before {
                None => {
                    client
                        .query_opt(
                            &format!(
                                "INSERT INTO signing_secrets
                                     (subscription, current, previous_secrets, rotated_at)
                                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
                                 RETURNING {SECRET_COLUMNS}"
                            ),
                            &[
                                &rotation.subscription,
                                &rotation.new,
                                &previous,
                                &millis(rotation.now),
                            ],
                        )
                        .await
                }
                Some(before) => {
                    client
                        .query_opt(
                            &format!(
                                "UPDATE signing_secrets
                                 SET current = $2, previous_secrets = $3, rotated_at = $4
                                 WHERE subscription = $1 AND current = $5
                                 RETURNING {SECRET_COLUMNS}"
                            ),
                            &[
                                &rotation.subscription,
                                &rotation.new,
                                &previous,
                                &millis(rotation.now),
                                &before.current,
                            ],
                        )
                        .await
                }
            };
            if let Some(row) = written.map_err(pg_error)? {
                return secrets(&row);
            }
        }
        Err(StoreError::Conflict(format!(
            "the signing secret of {:?} is being rotated elsewhere; try again",
            rotation.subscription
        )))
    }
}
