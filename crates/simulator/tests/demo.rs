//! `callhook-sim demo` keeps to its own database and its own app unless told otherwise. Needs
//! DATABASE_URL pointing at a server where new databases may be created, as the service's tests.
//!
//! Every database the demo writes into here has a name of this run's own: a fixed name would be
//! shared by every checkout on the server, and a stale one (an older migration's checksum) fails
//! the next run.

use std::{path::PathBuf, time::Duration};

use sqlx::PgPool;

const REAL_APP: &str = "real-app-key";
const REAL_SECRET: &str = "real-app-secret-value";

/// The URL of the test's own database (the one `#[sqlx::test]` made), for the demo process:
/// the server of `DATABASE_URL` with the test database's name.
fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for these tests");
    let name = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test names the database")
        .to_owned();
    with_database(&server, &name)
}

/// A database name no other run uses.
fn unique_name() -> String {
    format!("callhook_demo_{}", uuid::Uuid::new_v4().simple())
}

/// Runs `callhook-sim demo` with `args` (options of the demo, or `--sim-config` before it),
/// configured for the test's database and a real app, as a production environment would be;
/// returns the sessionIds it printed.
async fn demo(pool: &PgPool, args: &[&str]) -> Vec<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook-sim"))
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

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.set_path(name);
    url.to_string()
}

async fn drop_database(pool: &PgPool, name: &str) {
    sqlx::query(&format!(r#"drop database "{name}" with (force)"#))
        .execute(pool)
        .await
        .unwrap();
}

/// By default the demo writes into its own database (demo.database) on the configured server,
/// signs with its own app, and leaves the configured database alone.
#[sqlx::test(migrator = "callhook::store::MIGRATOR")]
async fn the_demo_writes_into_its_own_database_with_its_own_app(pool: PgPool) {
    let name = unique_name();
    let settings = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.toml"));
    std::fs::write(&settings, format!("[demo]\ndatabase = \"{name}\"\n")).unwrap();

    let sessions = demo(&pool, &["--sim-config", settings.to_str().unwrap()]).await;

    assert_eq!(
        rows_in(&pool).await,
        0,
        "nothing in the configured database"
    );
    let apps = placed_apps(&with_database(&database_url(&pool), &name), &sessions).await;
    assert_eq!(
        apps,
        vec!["demo-app".to_owned(); 6],
        "placed as the demo app"
    );
    drop_database(&pool, &name).await;
    let _ = std::fs::remove_file(settings);
}

/// `--database-url` names another database, created if missing.
#[sqlx::test(migrator = "callhook::store::MIGRATOR")]
async fn the_demo_writes_where_database_url_says(pool: PgPool) {
    let name = unique_name();
    let url = with_database(&database_url(&pool), &name);

    let sessions = demo(&pool, &["--database-url", &url]).await;

    assert_eq!(
        rows_in(&pool).await,
        0,
        "nothing in the configured database"
    );
    assert_eq!(placed_apps(&url, &sessions).await.len(), 6);
    drop_database(&pool, &name).await;
}

/// `--use-configured-database` writes into the configured database, still as the demo app.
#[sqlx::test(migrator = "callhook::store::MIGRATOR")]
async fn the_demo_writes_into_the_configured_database_when_told_to(pool: PgPool) {
    let sessions = demo(&pool, &["--use-configured-database"]).await;

    let apps = placed_apps(&database_url(&pool), &sessions).await;
    assert_eq!(apps, vec!["demo-app".to_owned(); 6]);
}
