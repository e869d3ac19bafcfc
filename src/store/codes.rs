//! Copies the code tables of `platform::codes` and `platform::result_codes` into PostgreSQL, so
//! people who query the database can join them. The code is the source of truth: the tables are
//! rewritten on every start, in one transaction, one start at a time.

use sqlx::PgPool;

use super::StoreError;
use crate::platform::{
    codes::{Q850_CAUSES, STATE_CODES, UL_FAIL_REASONS},
    result_codes::RESULT_CODES,
};

/// The advisory lock (`pg_advisory_xact_lock(int, int)`) that serialises [`sync`]s; its first
/// key is not the calls' (`store::calls`), so the two never wait for each other.
const SYNC_LOCK: (i32, i32) = (0x0ca1_1c0d, 1);

/// Rewrites the code tables. Safe to call again, and from replicas starting at once: without the
/// lock, a second transaction's delete would find no rows to wait for once the first deleted
/// them, and its insert would then fail on the rows the first inserted (23505).
pub async fn sync(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "select pg_advisory_xact_lock($1, $2)::text as locked",
        SYNC_LOCK.0,
        SYNC_LOCK.1
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!("delete from state_codes")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "insert into state_codes (code, meaning) select * from unnest($1::int4[], $2::text[])",
        &STATE_CODES.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        &STATE_CODES
            .iter()
            .map(|(_, m)| m.to_string())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("delete from q850_causes")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "insert into q850_causes (code, label_zh, meaning)
         select * from unnest($1::int4[], $2::text[], $3::text[])",
        &Q850_CAUSES.iter().map(|(c, _, _)| *c).collect::<Vec<_>>(),
        &Q850_CAUSES
            .iter()
            .map(|(_, zh, _)| zh.to_string())
            .collect::<Vec<_>>(),
        &Q850_CAUSES
            .iter()
            .map(|(_, _, m)| m.to_string())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("delete from ul_fail_reasons")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "insert into ul_fail_reasons (code_from, code_to, meaning)
         select * from unnest($1::int4[], $2::int4[], $3::text[])",
        &UL_FAIL_REASONS
            .iter()
            .map(|(f, _, _)| *f)
            .collect::<Vec<_>>(),
        &UL_FAIL_REASONS
            .iter()
            .map(|(_, t, _)| *t)
            .collect::<Vec<_>>(),
        &UL_FAIL_REASONS
            .iter()
            .map(|(_, _, m)| m.to_string())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("delete from result_codes")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "insert into result_codes (code, http_status, text, meaning)
         select * from unnest($1::text[], $2::int2[], $3::text[], $4::text[])",
        &RESULT_CODES
            .iter()
            .map(|r| r.code.to_owned())
            .collect::<Vec<_>>(),
        &RESULT_CODES
            .iter()
            .map(|r| r.http_status.map(|s| s as i16))
            .collect::<Vec<_>>() as &[Option<i16>],
        &RESULT_CODES
            .iter()
            .map(|r| r.text.to_owned())
            .collect::<Vec<_>>(),
        &RESULT_CODES
            .iter()
            .map(|r| r.meaning.to_owned())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
