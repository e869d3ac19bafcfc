//! Migrations: every down migration undoes its up migration, so a release can be rolled back;
//! and the tables the migrations make are the tables the row types read.

use callhook::store::{
    MIGRATOR, is_migrated,
    read::{CallRow, CdrRow, EventRow, RawRow},
};
use sqlx::PgPool;

/// Reverting everything leaves no table behind, and migrating again restores the schema.
#[sqlx::test]
async fn migrations_revert_to_nothing_and_apply_again(pool: PgPool) {
    let tables = || async {
        sqlx::query_scalar::<_, String>(
            "select table_name::text from information_schema.tables
             where table_schema = 'public' and table_name <> '_sqlx_migrations' order by 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = tables().await;

    MIGRATOR
        .undo(&pool, 0)
        .await
        .expect("every migration reverts");
    let reverted = tables().await;
    let ready_when_reverted = is_migrated(&pool).await.unwrap();
    MIGRATOR.run(&pool).await.expect("migrations apply again");

    assert!(before.contains(&"raw_callbacks".to_owned()), "{before:?}");
    assert!(reverted.is_empty(), "left behind: {reverted:?}");
    assert!(!ready_when_reverted);
    assert_eq!(tables().await, before);
    assert!(is_migrated(&pool).await.unwrap());
}

/// Each table's row type (the one definition its reads, CSV export and writes come from) names
/// every column users query, and only columns that exist; what it leaves out is internal and
/// listed here: dedup and replay keys, the stream's change stamp, and what only the KPI
/// queries read (its generated per-bucket columns included).
#[sqlx::test]
async fn the_row_types_read_every_column_the_migrations_make(pool: PgPool) {
    let internal: [(&str, &[&str], &[&str]); 4] = [
        (
            "calls",
            CallRow::COLUMNS,
            &["change_xid", "callback_delay_counts"],
        ),
        ("cdrs", CdrRow::COLUMNS, &[]),
        ("call_events", EventRow::COLUMNS, &["fingerprint"]),
        ("raw_callbacks", RawRow::COLUMNS, &["nonce", "projected_at"]),
    ];
    for (table, columns, internal) in internal {
        let mut made: Vec<String> = sqlx::query_scalar(
            "select column_name::text from information_schema.columns
             where table_schema = 'public' and table_name = $1 and is_generated = 'NEVER'
             order by ordinal_position",
        )
        .bind(table)
        .fetch_all(&pool)
        .await
        .unwrap();
        made.retain(|column| !internal.contains(&column.as_str()));
        let mut read: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        made.sort();
        read.sort();
        assert_eq!(
            read, made,
            "{table}: the row type's columns against the table's"
        );
    }
}

/// A placed call the platform declined, recorded as `refused` before that outcome was renamed,
/// reads `declined` after the rename and `refused` again once it is reverted.
#[sqlx::test]
async fn the_declined_outcome_carries_existing_rows_both_ways(pool: PgPool) {
    const BEFORE_RENAME: i64 = 20261202000007;
    let outcome = || async {
        sqlx::query_scalar::<_, String>("select outcome from placed_calls")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    MIGRATOR.undo(&pool, BEFORE_RENAME).await.unwrap();
    sqlx::query(
        "insert into placed_calls (id, operation, app_key, request, outcome, attempts, requested_at)
         values (gen_random_uuid(), 'click2call', 'app', '{}', 'refused', 1, now())",
    )
    .execute(&pool)
    .await
    .unwrap();

    MIGRATOR.run(&pool).await.unwrap();
    let renamed = outcome().await;
    let old_word = sqlx::query("update placed_calls set outcome = 'refused'")
        .execute(&pool)
        .await;
    MIGRATOR.undo(&pool, BEFORE_RENAME).await.unwrap();
    let reverted = outcome().await;
    MIGRATOR.run(&pool).await.unwrap();

    assert_eq!(renamed, "declined");
    assert!(old_word.is_err(), "the check no longer allows refused");
    assert_eq!(reverted, "refused");
    assert_eq!(outcome().await, "declined");
}
