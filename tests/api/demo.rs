//! `callhook demo` keeps to its own database and its own app unless told otherwise.

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::database_url;

const REAL_APP: &str = "real-app-key";
const REAL_SECRET: &str = "real-app-secret-value";

/// Runs `callhook demo` with `args`, configured for the test's database and a real app, as a
/// production environment would be; returns the sessionIds it printed.
async fn demo(pool: &PgPool, args: &[&str]) -> Vec<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
            .arg("demo")
            .args(args)
            .env("DATABASE_URL", database_url(pool))
            .env(
                "CALLHOOK_APPS",
                format!(r#"[{{key="{REAL_APP}", secrets=["{REAL_SECRET}"]}}]"#),
            )
            .env("CALLHOOK_PLATFORM__DEFAULT_APP", REAL_APP)
            .env("CALLHOOK_LOG__FILTER", "warn")
            .env_remove("RUST_LOG")
            .env_remove("CALLHOOK_CONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo ends")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains(REAL_SECRET));
    let sessions: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("sessionId "))
        .map(str::to_owned)
        .collect();
    assert_eq!(sessions.len(), 6, "{stdout}");
    sessions
}

/// The placed calls of `sessions` in the database at `url`, by app key.
async fn placed_apps(url: &str, sessions: &[String]) -> Vec<String> {
    let pool = PgPool::connect(url).await.unwrap();
    let apps = sqlx::query_scalar(
        "select app_key from placed_calls where session_id = any($1) order by session_id",
    )
    .bind(sessions)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    apps
}

async fn rows_in(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select (select count(*) from placed_calls) + (select count(*) from raw_callbacks)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn with_database(pool: &PgPool, name: &str) -> String {
    let mut url = reqwest::Url::parse(&database_url(pool)).unwrap();
    url.set_path(name);
    url.to_string()
}

/// By default the demo writes into callhook_demo on the configured server, signs with its own
/// app, and leaves the configured database alone.
#[sqlx::test]
async fn the_demo_writes_into_its_own_database_with_its_own_app(pool: PgPool) {
    let sessions = demo(&pool, &[]).await;

    assert_eq!(
        rows_in(&pool).await,
        0,
        "nothing in the configured database"
    );
    let apps = placed_apps(&with_database(&pool, "callhook_demo"), &sessions).await;
    assert_eq!(
        apps,
        vec!["demo-app".to_owned(); 6],
        "placed as the demo app"
    );
}

/// `--database-url` names another database, created if missing.
#[sqlx::test]
async fn the_demo_writes_where_database_url_says(pool: PgPool) {
    let name = format!("callhook_demo_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&pool, &name);

    let sessions = demo(&pool, &["--database-url", &url]).await;

    assert_eq!(
        rows_in(&pool).await,
        0,
        "nothing in the configured database"
    );
    assert_eq!(placed_apps(&url, &sessions).await.len(), 6);
    sqlx::query(&format!(r#"drop database "{name}" with (force)"#))
        .execute(&pool)
        .await
        .unwrap();
}

/// `--use-configured-database` writes into the configured database, still as the demo app.
#[sqlx::test]
async fn the_demo_writes_into_the_configured_database_when_told_to(pool: PgPool) {
    let sessions = demo(&pool, &["--use-configured-database"]).await;

    let apps = placed_apps(&database_url(&pool), &sessions).await;
    assert_eq!(apps, vec!["demo-app".to_owned(); 6]);
}
