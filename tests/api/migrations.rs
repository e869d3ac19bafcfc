//! Migrations: every down migration undoes its up migration, so a release can be rolled back.

use callhook::store::{MIGRATOR, is_migrated};
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
