//! `callback_nonces`: remembers the nonces of signed callbacks for the signature window.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::StoreError;

/// Records a nonce; `false` when it was already seen (a replay). Concurrent first uses are
/// decided by the primary key, so exactly one of them wins.
pub async fn remember(
    connection: &mut PgConnection,
    app_key: &str,
    nonce: &str,
    seen_at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "insert into callback_nonces (app_key, nonce, seen_at) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(app_key)
    .bind(nonce)
    .bind(seen_at)
    .execute(connection)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Forgets nonces older than `retention`: a request that old is refused as stale anyway.
pub async fn purge(pool: &PgPool, retention: Duration) -> Result<u64, StoreError> {
    let cutoff = OffsetDateTime::now_utc() - retention;
    let result = sqlx::query("delete from callback_nonces where seen_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    Ok(result.rows_affected())
}
