//! Configuration as the binary sees it: the files it discovers, `callhook config`, the variables
//! Kubernetes injects, and configurations refused before anything starts.

use std::{path::PathBuf, process::Stdio, time::Duration};

use callhook::{
    app::Application,
    config::{Config, SignatureMode},
};
use sqlx::PgPool;

use crate::helpers::{database_url, spawn_binary, wait_until_healthy};

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("callhook-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary with a clean configuration environment: only what the test sets counts.
fn callhook(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"));
    command.args(args).env_remove("RUST_LOG").kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.to_ascii_uppercase().starts_with("CALLHOOK_") {
            command.env_remove(&*name);
        }
    }
    command
}

/// `callhook config` prints the layers it read in order (a discovered ./config.toml, the
/// --config file, the environment's variable names) and the merged result as TOML, with every
/// secret and the database password redacted.
#[tokio::test]
async fn the_config_command_prints_the_layers_and_the_redacted_result() {
    let directory = TempDir::new();
    std::fs::write(
        directory.0.join("config.toml"),
        "[http]\nretry_after_secs = 7\nbody_timeout_ms = 1234\n",
    )
    .unwrap();
    let given = directory.0.join("given.toml");
    std::fs::write(
        &given,
        "[http]\nbody_timeout_ms = 4321\n\n[[apps]]\nkey = \"file-app\"\nsecrets = [\"file-secret-value\"]\n",
    )
    .unwrap();

    let output = callhook(&["config", "--config", given.to_str().unwrap()])
        .current_dir(&directory.0)
        .env(
            "CALLHOOK_API__TOKENS",
            r#"[{token="api-token-value-0123", name="ops", scope="full"}]"#,
        )
        .env(
            "DATABASE_URL",
            "postgres://callhook:db-password-value@db:5432/callhook",
        )
        .env("CALLHOOK_PORT", "tcp://10.96.0.12:8080")
        .output()
        .await
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    for secret in [
        "file-secret-value",
        "api-token-value-0123",
        "db-password-value",
    ] {
        assert!(!text.contains(secret), "{secret} is shown in:\n{text}");
    }
    let position = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    let local = directory.0.join("config.toml");
    let layers = [
        position("embedded defaults"),
        position("/etc/callhook/config.toml: "),
        position(&format!("{}: read", local.display())),
        position(&format!("{} (--config): read", given.display())),
        position("environment: CALLHOOK_API__TOKENS, DATABASE_URL\n"),
    ];
    assert!(layers.is_sorted(), "layers in order in:\n{text}");
    assert!(text.contains("Ignored (Kubernetes service links): CALLHOOK_PORT\n"));
    let body: toml::Value = toml::from_str(&text).expect("the output is TOML");
    assert_eq!(body["http"]["retry_after_secs"].as_integer(), Some(7));
    assert_eq!(body["http"]["body_timeout_ms"].as_integer(), Some(4321));
    assert_eq!(body["apps"][0]["key"].as_str(), Some("file-app"));
    assert_eq!(body["apps"][0]["secrets"][0].as_str(), Some("***"));
    assert_eq!(body["api"]["tokens"][0]["token"].as_str(), Some("***"));
    assert_eq!(body["api"]["tokens"][0]["name"].as_str(), Some("ops"));
    assert_eq!(
        body["database"]["url"].as_str(),
        Some("postgres://callhook:***@db:5432/callhook")
    );
}

/// Without ./config.toml it says the file was looked for and is absent; a --config file that
/// does not exist is an error.
#[tokio::test]
async fn the_config_command_lists_absent_files_and_refuses_a_missing_given_one() {
    let directory = TempDir::new();

    let output = callhook(&["config"])
        .current_dir(&directory.0)
        .output()
        .await
        .unwrap();
    let missing = callhook(&["config", "--config", "nowhere.toml"])
        .current_dir(&directory.0)
        .output()
        .await
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let local = directory.0.join("config.toml");
    assert!(
        text.contains(&format!("{}: absent", local.display())),
        "{text}"
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere.toml"));
}

/// The variables Kubernetes injects for a Service named callhook do not stop `callhook serve`.
#[sqlx::test]
async fn serve_starts_with_kubernetes_service_link_variables(pool: PgPool) {
    let (mut server, base) = spawn_binary(&pool, |command| {
        for (name, value) in [
            ("CALLHOOK_PORT", "tcp://10.96.0.12:8080"),
            ("CALLHOOK_SERVICE_HOST", "10.96.0.12"),
            ("CALLHOOK_SERVICE_PORT", "8080"),
            ("CALLHOOK_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
            ("CALLHOOK_PORT_8080_TCP_ADDR", "10.96.0.12"),
            ("CALLHOOK_PORT_8080_TCP_PROTO", "tcp"),
            ("CALLHOOK_PORT_8080_TCP_PORT", "8080"),
        ] {
            command.env(name, value);
        }
    });

    wait_until_healthy(&base).await;
    let ready = reqwest::get(format!("{base}/readyz")).await;

    assert_eq!(server.try_wait().unwrap(), None, "the server is running");
    assert_eq!(ready.unwrap().status(), 200);
    server.kill().await.unwrap();
}

/// A misspelt real key still stops the start, and the error names the variable.
#[tokio::test]
async fn a_misspelt_variable_stops_the_start_and_is_named() {
    let output = callhook(&["serve", "--listen", "127.0.0.1:0"])
        .env("CALLHOOK_SIGNATURE__MOED", "enforce")
        .output()
        .await
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CALLHOOK_SIGNATURE__MOED"), "{stderr}");
}

/// Enforce mode that could only answer 401 is refused before the database is touched, naming
/// the key: without app secrets, and without a way to know the signed URL.
#[sqlx::test]
async fn serve_refuses_enforce_mode_that_cannot_verify_anything(pool: PgPool) {
    let cases = [
        ("no apps", None, "[[apps]]"),
        (
            "no public URL",
            Some(r#"[{key="k", secrets=["s"]}]"#),
            "http.trust_forwarded_headers",
        ),
    ];
    for (case, apps, named) in cases {
        let mut url = reqwest::Url::parse(&database_url(&pool)).unwrap();
        let database = format!("callhook_never_{}", uuid::Uuid::new_v4().simple());
        url.set_path(&database);
        let mut command = callhook(&["serve", "--listen", "127.0.0.1:0"]);
        command
            .env("DATABASE_URL", url.as_str())
            .env("CALLHOOK_SIGNATURE__MODE", "enforce")
            .stdout(Stdio::null());
        if let Some(apps) = apps {
            command.env("CALLHOOK_APPS", apps);
        }

        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .expect("exits at once")
            .unwrap();

        assert!(!output.status.success(), "case {case}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("signature.mode"), "case {case}: {stderr}");
        assert!(stderr.contains(named), "case {case}: {stderr}");
        let created: bool =
            sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
                .bind(&database)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(!created, "case {case}: no database was created");
    }
}

/// The library's start path holds a configuration changed in code to the same rules.
#[sqlx::test]
async fn an_application_with_an_impossible_configuration_does_not_start(pool: PgPool) {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.signature.mode = SignatureMode::Enforce;

    let error = Application::with_pool(config, pool)
        .await
        .err()
        .expect("refused");

    assert!(error.to_string().contains("signature.mode"), "{error}");
}

/// The image carries only the binary: the runtime stage copies nothing else, and the only
/// configuration file the build copies is the embedded defaults (which hold no secrets).
#[test]
fn the_image_copies_no_configuration_of_its_own() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    let runtime = stages.last().expect("a runtime stage");
    let copies = |stage: &str| -> Vec<String> {
        stage
            .lines()
            .filter(|line| line.trim_start().starts_with("COPY"))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        copies(runtime),
        ["COPY --from=builder /usr/local/bin/callhook /usr/local/bin/callhook"]
    );
    let configs: Vec<String> = stages
        .iter()
        .flat_map(|stage| copies(stage))
        .filter(|copy| copy.contains(".toml") && !copy.contains("Cargo.toml"))
        .collect();
    assert_eq!(configs, ["COPY config.toml ./"]);
    let dockerignore =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.dockerignore")).unwrap();
    assert!(
        dockerignore.lines().any(|line| line.trim() == "*"),
        "the build context is an allowlist, so no other file can be copied by accident"
    );
}
