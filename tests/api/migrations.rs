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
