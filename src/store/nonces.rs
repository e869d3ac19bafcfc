//! `callback_nonces`: remembers the nonces of signed callbacks for the signature window.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::StoreError;

/// Records nonces in one statement; returns the (app key, nonce) pairs that were new. A pair
/// already there was seen before: a replay. Concurrent first uses are decided by the primary
/// key, so exactly one of them wins; pairs go in key order, so writers never wait in a cycle.
pub async fn remember(
    connection: &mut PgConnection,
    nonces: &[(&str, &str)],
    seen_at: OffsetDateTime,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut nonces = nonces.to_vec();
    nonces.sort_unstable();
    let (apps, values): (Vec<&str>, Vec<&str>) = nonces.into_iter().unzip();
    let fresh = sqlx::query_as(
        "insert into callback_nonces (app_key, nonce, seen_at)
         select a, n, $3 from unnest($1::text[], $2::text[]) as u(a, n)
         on conflict do nothing
         returning app_key, nonce",
    )
    .bind(apps)
    .bind(values)
    .bind(seen_at)
    .fetch_all(connection)
    .await?;
    Ok(fresh)
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
