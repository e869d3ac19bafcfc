//! Starting several replicas at once: every start-up step (create the database, migrate, copy
//! the code tables) must tolerate the others running it at the same moment.

use std::{process::Stdio, time::Duration};

use callhook::{
    config::Config,
    platform::{
        codes::{Q850_CAUSES, STATE_CODES, UL_FAIL_REASONS},
        result_codes::RESULT_CODES,
    },
    store,
};
use sqlx::PgPool;
use tokio::io::AsyncReadExt;

use crate::helpers::database_url;

/// Rounds of the race: each round is four fresh processes on a fresh database.
const ROUNDS: usize = 3;
const REPLICAS: usize = 4;

/// Four `callhook serve` started together on a database that does not exist yet all come up
/// ready, and the code tables hold every code once.
#[sqlx::test]
async fn replicas_started_at_once_on_a_fresh_database_all_come_up(pool: PgPool) {
    for round in 0..ROUNDS {
        let name = format!("callhook_replicas_{}", uuid::Uuid::new_v4().simple());
        let mut url = reqwest::Url::parse(&database_url(&pool)).unwrap();
        url.set_path(&name);
        let mut replicas = Vec::new();
        for _ in 0..REPLICAS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("DATABASE_URL", url.as_str())
                .env("CALLHOOK_LOG__FILTER", "error")
                .env("CALLHOOK_SPOOL__DIR", crate::helpers::temp_spool_dir())
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the callhook binary starts");
            replicas.push((child, format!("http://127.0.0.1:{port}")));
        }

        let client = reqwest::Client::new();
        for (i, (child, base)) in replicas.iter_mut().enumerate() {
            let mut ready = false;
            for _ in 0..300 {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr)
                        .await
                        .unwrap();
                    panic!("round {round}: replica {i} exited ({status}): {stderr}");
                }
                let answer = client.get(format!("{base}/readyz")).send().await;
                if answer.is_ok_and(|a| a.status() == 200) {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ready, "round {round}: replica {i} became ready");
            let health = client.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(health.status(), 200, "round {round}: replica {i}");
        }

        let fresh = PgPool::connect(url.as_str()).await.unwrap();
        let count = |table: &'static str| {
            let fresh = fresh.clone();
            async move {
                let sql = format!("select count(*) from {table}");
                let n: i64 = sqlx::query_scalar(&sql).fetch_one(&fresh).await.unwrap();
                usize::try_from(n).unwrap()
            }
        };
        assert_eq!(
            count("state_codes").await,
            STATE_CODES.len(),
            "round {round}"
        );
        assert_eq!(
            count("q850_causes").await,
            Q850_CAUSES.len(),
            "round {round}"
        );
        assert_eq!(
            count("ul_fail_reasons").await,
            UL_FAIL_REASONS.len(),
            "round {round}"
        );
        assert_eq!(
            count("result_codes").await,
            RESULT_CODES.len(),
            "round {round}"
        );

        for (mut child, _) in replicas {
            child.kill().await.unwrap();
        }
        fresh.close().await;
        sqlx::query(&format!(r#"drop database "{name}" with (force)"#))
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// Every start-up step may be run again (a bootstrap retrying after an outage does): the second
/// run of each changes nothing and fails nothing.
#[sqlx::test]
async fn every_start_up_step_can_run_again(pool: PgPool) {
    let mut database = Config::defaults().database;
    database.url = database_url(&pool);

    for _ in 0..2 {
        store::create_database_if_missing(&database).await.unwrap();
        let opened = store::open(&database).await.unwrap();
        store::migrate(&opened).await.unwrap();
        store::codes::sync(&opened).await.unwrap();
        opened.close().await;
    }

    let codes: i64 = sqlx::query_scalar("select count(*) from state_codes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(usize::try_from(codes).unwrap(), STATE_CODES.len());
    assert!(store::is_migrated(&pool).await.unwrap());
}
