//! Forgetting what carries nothing derived: requests refused when they arrived, refused
//! signatures and redeliveries that added nothing, once `retention.refused_days` old. Receipts
//! that typed rows come from are never deleted (they are what the rows are derived again from).

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::{config::RetentionConfig, store::StoreError};

/// Deletes in batches of `retention.batch` rows, each its own short statement, so a purge never
/// holds locks or a transaction for long. Returns how many rows went.
pub async fn purge(pool: &PgPool, config: &RetentionConfig) -> Result<u64, StoreError> {
    let cutoff = OffsetDateTime::now_utc() - Duration::from_secs(config.refused_days * 86_400);
    let mut total = 0;
    loop {
        let deleted = sqlx::query!(
            "delete from raw_callbacks where id in (
                 select id from raw_callbacks
                 where received_at < $1
                   and outcome in ('rejected', 'unauthorized', 'duplicate')
                   and (reprocess_outcome is null or reprocess_outcome not in ('stored', 'partial'))
                 limit $2)",
            cutoff,
            config.batch,
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < config.batch as u64 {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
