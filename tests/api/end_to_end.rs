//! The whole loop on one machine: our client places calls on the simulated platform, which plays
//! them out as signed callbacks to the real receiver, which stores them in Postgres.

use std::time::Duration;

use callhook::{
    client::{ClickToCall, PlatformClient, VerificationCode},
    config::{Config, SignatureMode},
};
use callhook_simulator::{
    Simulator,
    config::{SimConfig, SimulatorConfig},
    load::{self, LoadOptions, Signer},
    push::PushStats,
    scenario::ScenarioOutcome,
    stand_in::SimState,
};
use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::helpers::{
    APP_KEY, APP_SECRET, ChaosProxy, TestApp, spawn_app_with, spool_has_segments,
    wait_for_projection, with_test_app,
};

/// A started simulator; stops when dropped with the test's runtime.
pub struct Platform {
    pub url: String,
    pub state: SimState,
    _stop: oneshot::Sender<()>,
}

/// The stand-in accepts (and signs for) the apps of `config`.
pub async fn start_platform(settings: &SimulatorConfig, config: &Config) -> Platform {
    let simulator = Simulator::bind(settings, &config.apps)
        .await
        .expect("the simulator binds");
    let url = format!("http://{}", simulator.local_addr());
    let state = simulator.state();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(simulator.run_until(async move {
        let _ = stopped.await;
    }));
    Platform {
        url,
        state,
        _stop: stop,
    }
}

/// Receiver (enforcing signatures), simulator and client, all sharing the test app's secret.
pub fn configs(receiver: &TestApp, platform_secret: &str) -> Config {
    let mut config = Config::defaults();
    config.apps =
        serde_json::from_value(serde_json::json!([{"key": APP_KEY, "secrets": [platform_secret]}]))
            .unwrap();
    config.public_base_url = format!("http://{}", receiver.addr);
    config
}

/// The stand-in on a free port, its time compressed so that calls play out in milliseconds.
pub fn fast_simulator() -> SimulatorConfig {
    let mut settings = SimConfig::defaults().simulator;
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.time_scale = 0.002;
    settings.batch_window_ms = 50;
    settings.fee_retry_delays_ms = vec![300; 6];
    settings
}

pub fn click_to_call(outcome: ScenarioOutcome) -> ClickToCall {
    ClickToCall {
        display_nbr: "+867550000001".into(),
        caller_nbr: "+8613800000001".into(),
        display_callee_nbr: "+867550000001".into(),
        callee_nbr: "+8613800000002".into(),
        user_data: Some(format!("e2e;sim-outcome={}", outcome.as_str())),
        ..ClickToCall::default()
    }
}

/// The simulator's counts once `done` holds (its counters move just after the receiver answers).
async fn settled(platform: &Platform, done: impl Fn(&PushStats) -> bool) -> PushStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = platform.state.pusher().stats.lock().unwrap().clone();
        if done(&stats) || tokio::time::Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(pool: &PgPool, sql: &'static str, expected: i64, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if n >= expected || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outcome, placed through the client: each status event and each CDR the simulator
/// pushed is stored exactly once, signed and verified.
#[sqlx::test]
async fn calls_placed_on_the_simulator_arrive_in_postgres_exactly_once(pool: PgPool) {
    let receiver = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        // The receiver's port is known only once bound: the signed URL comes from Host.
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let mut config = configs(&receiver, APP_SECRET);
    let platform = start_platform(&fast_simulator(), &config).await;
    config.platform.base_url = platform.url.clone();
    let client = PlatformClient::new(&config, pool.clone()).unwrap();

    let mut sessions = Vec::new();
    for outcome in ScenarioOutcome::ALL {
        sessions.push(
            client
                .click_to_call(APP_KEY, click_to_call(outcome))
                .await
                .unwrap()
                .session_id,
        );
    }
    let verification = VerificationCode {
        display_nbr: "+867550000001".into(),
        callee_nbr: "+8613800000001".into(),
        language_type: 2,
        pre_tone: "pre.wav".into(),
        verify_code: "1234".into(),
        ..VerificationCode::default()
    };
    sessions.push(
        client
            .verify_code(APP_KEY, verification)
            .await
            .unwrap()
            .session_id,
    );
    let cdrs = wait_for(
        &pool,
        "select count(*) from cdrs",
        sessions.len() as i64,
        Duration::from_secs(20),
    )
    .await;

    let pushed = settled(&platform, |s| {
        s.fee_delivered_records == sessions.len() as u64
    })
    .await;
    receiver.projected().await;
    let events: i64 = sqlx::query_scalar("select count(*) from call_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let refused: i64 =
        sqlx::query_scalar("select count(*) from raw_callbacks where outcome not in ('stored')")
            .fetch_one(&pool)
            .await
            .unwrap();
    let joined: i64 = sqlx::query_scalar(
        "select count(distinct p.session_id) from placed_calls p join cdrs c using (session_id) join call_events e using (session_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cdrs, sessions.len() as i64);
    assert_eq!(
        (pushed.status_failed, pushed.fee_retries),
        (0, 0),
        "{pushed:?}"
    );
    assert_eq!(
        events, pushed.status_sent as i64,
        "every pushed event stored once"
    );
    assert_eq!(pushed.fee_delivered_records, sessions.len() as u64);
    assert_eq!(refused, 0, "every callback verified and new");
    assert_eq!(
        joined,
        sessions.len() as i64,
        "placed calls join their callbacks"
    );
    let busy: (i32, i32) = sqlx::query_as(
        "select e.state_code, c.fwd_unasw_rsn from call_events e join cdrs c using (session_id)
         where e.event_type = 'disconnect' and c.session_id = $1 limit 1",
    )
    .bind(&sessions[2])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        busy,
        (8102, 17),
        "a busy callee carries stateCode 8102 and Q.850 17"
    );
}

/// The receiver's database is down while a call is played out: every push (status events and
/// the CDR) is still acknowledged, from the receiver's spool, so the platform neither loses a
/// status event nor re-pushes the CDR; once the database is back each lands exactly once.
#[sqlx::test]
async fn pushes_during_an_outage_are_acknowledged_and_land_exactly_once(pool: PgPool) {
    let (proxy, proxied) = ChaosProxy::in_front_of(&pool, 300).await;
    let receiver = spawn_app_with(proxied, with_test_app).await;
    let mut config = configs(&receiver, APP_SECRET);
    let platform = start_platform(&fast_simulator(), &config).await;
    config.platform.base_url = platform.url.clone();
    let client = PlatformClient::new(&config, pool.clone()).unwrap();

    proxy.set_down(true);
    let session = client
        .click_to_call(APP_KEY, click_to_call(ScenarioOutcome::Busy))
        .await
        .unwrap()
        .session_id;
    let during = settled(&platform, |s| s.fee_delivered_records == 1).await;
    let spooled = spool_has_segments(&receiver.spool_dir);
    let cdrs_during: i64 = sqlx::query_scalar("select count(*) from cdrs")
        .fetch_one(&pool)
        .await
        .unwrap();
    proxy.set_down(false);
    // On the test's own pool, not the receiver's (which goes through the proxy).
    wait_for_projection(&pool, Some(&receiver.spool_dir)).await;

    let pushed = settled(&platform, |s| s.fee_delivered_records == 1).await;
    let stored: Vec<String> = sqlx::query_scalar("select session_id from cdrs")
        .fetch_all(&pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("select count(*) from call_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let outcomes: Vec<String> = sqlx::query_scalar("select distinct outcome from raw_callbacks")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        during.fee_delivered_records, 1,
        "the CDR is acknowledged during the outage"
    );
    assert!(spooled, "kept in the spool meanwhile");
    assert_eq!(
        cdrs_during, 0,
        "nothing reached the database while it was down"
    );
    assert_eq!(stored, [session]);
    assert_eq!(
        (pushed.fee_retries, pushed.status_failed),
        (0, 0),
        "nothing was refused, so nothing re-pushed or lost: {pushed:?}"
    );
    assert!(pushed.status_sent > 0, "{pushed:?}");
    assert_eq!(
        events, pushed.status_sent as i64,
        "every status event pushed during the outage stored once"
    );
    assert_eq!(
        outcomes,
        ["stored"],
        "each receipt drained and projected once"
    );
}

/// Callbacks signed with a secret the receiver does not hold are refused in enforce mode:
/// nothing is stored but the refusals, and the platform's fee re-pushes are refused too.
#[sqlx::test]
async fn forged_callbacks_are_refused_in_enforce_mode(pool: PgPool) {
    let receiver = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        // The receiver's port is known only once bound: the signed URL comes from Host.
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let mut config = configs(&receiver, "a-secret-the-receiver-does-not-hold");
    let mut settings = fast_simulator();
    settings.fee_retry_delays_ms = vec![50];
    let platform = start_platform(&settings, &config).await;
    config.platform.base_url = platform.url.clone();
    let client = PlatformClient::new(&config, pool.clone()).unwrap();

    client
        .click_to_call(APP_KEY, click_to_call(ScenarioOutcome::Answered))
        .await
        .unwrap();
    let refusals = wait_for(
        &pool,
        "select count(*) from raw_callbacks where outcome = 'unauthorized'",
        10,
        Duration::from_secs(10),
    )
    .await;

    let stored: i64 = sqlx::query_scalar(
        "select (select count(*) from call_events) + (select count(*) from cdrs)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let verdicts: Vec<String> =
        sqlx::query_scalar("select distinct signature_verdict from raw_callbacks")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        refusals, 10,
        "8 status events, the fee push and its one re-push"
    );
    assert_eq!(stored, 0);
    assert_eq!(verdicts, ["bad_digest"]);
}

/// Load mode's counts agree with what the receiver stored: every request answered 200 is a row.
#[sqlx::test]
async fn load_mode_reports_what_the_receiver_stored(pool: PgPool) {
    let receiver = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        // The receiver's port is known only once bound: the signed URL comes from Host.
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let url = format!("http://{}/voicecall/events", receiver.addr);

    let report = load::run(LoadOptions {
        url: url.parse().unwrap(),
        fee_url: None,
        connections: 4,
        duration: Duration::from_secs(30),
        max_requests: Some(300),
        fee_share: 0.2,
        min_batch: 1,
        max_batch: 50,
        seed: 7,
        signer: Some(Signer {
            app_key: APP_KEY.into(),
            secret: crate::helpers::secret(APP_SECRET),
            variant: callhook::platform::signature::DigestVariant::Newline,
            signed_status_url: url.clone(),
            signed_fee_url: url.clone(),
        }),
        request_timeout: Duration::from_secs(10),
    })
    .await;
    receiver.projected().await;

    let events: i64 = sqlx::query_scalar("select count(*) from call_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let cdrs: i64 = sqlx::query_scalar("select count(*) from cdrs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.requests, 300);
    assert_eq!(report.succeeded, 300);
    assert_eq!(events as u64, report.status_events);
    assert_eq!(cdrs as u64, report.cdr_rows);
    assert!(report.fee_lists > 0 && report.latency_ms.max >= report.latency_ms.p50);
}

/// A call stopped before anyone answered (callStop) ends with an 8017 disconnect, and its CDR
/// says only what happened before the stop: no answer, no second leg, an end after the start.
#[sqlx::test]
async fn a_stopped_call_ends_with_8017_and_a_cdr_that_matches_its_events(pool: PgPool) {
    let receiver = spawn_app_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        // The receiver's port is known only once bound: the signed URL comes from Host.
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let mut config = configs(&receiver, APP_SECRET);
    let mut settings = fast_simulator();
    // Slow enough to stop it before A answers (5 simulated seconds = 250 ms).
    settings.time_scale = 0.05;
    let platform = start_platform(&settings, &config).await;
    config.platform.base_url = platform.url.clone();
    let client = PlatformClient::new(&config, pool.clone()).unwrap();

    let session = client
        .click_to_call(APP_KEY, click_to_call(ScenarioOutcome::Answered))
        .await
        .unwrap()
        .session_id;
    client
        .stop_call(APP_KEY, callhook::client::StopCall::new(&session))
        .await
        .unwrap();
    let cdrs = wait_for(
        &pool,
        "select count(*) from cdrs",
        1,
        Duration::from_secs(20),
    )
    .await;

    assert_eq!(cdrs, 1);
    let stops: i64 = sqlx::query_scalar(
        "select count(*) from call_events where session_id = $1 and event_type = 'disconnect' and state_code = 8017",
    )
    .bind(&session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stops, 1, "one party called, one released");
    let (answered, second_leg, ends_after_start): (bool, bool, bool) = sqlx::query_as(
        "select call_out_answer_time is not null or fwd_answer_time is not null,
                fwd_start_time is not null, call_end_time >= call_out_start_time
         from cdrs where session_id = $1",
    )
    .bind(&session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (answered, second_leg, ends_after_start),
        (false, false, true)
    );
    let outcome: String = sqlx::query_scalar("select outcome from calls where session_id = $1")
        .bind(&session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(outcome, "answered");
}

/// The simulator checks what the platform checks: each malformed or wrong authentication, and a
/// missing parameter, is answered with its documented result code; an X-WSSE app (the legacy
/// scheme) is accepted like an X-AKSK one.
#[sqlx::test]
async fn the_simulator_refuses_what_the_platform_refuses_with_its_codes(pool: PgPool) {
    use callhook::platform::{outbound::aksk_digest, time::format_created};
    use time::OffsetDateTime;

    let receiver = spawn_app_with(pool.clone(), with_test_app).await;
    let mut config = configs(&receiver, APP_SECRET);
    config.apps = serde_json::from_value(serde_json::json!([
        {"key": APP_KEY, "secrets": [APP_SECRET]},
        {"key": "wsse-app", "secrets": ["wsse-secret"], "auth": "wsse"},
    ]))
    .unwrap();
    let platform = start_platform(&fast_simulator(), &config).await;
    config.platform.base_url = platform.url.clone();
    let url = format!("{}/rest/httpsessions/click2Call/v2.0", platform.url);
    let realm = r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#;
    let token = |app: &str, secret: &str, created: OffsetDateTime| {
        let created = format_created(created);
        let digest = aksk_digest(secret, "0123456789ABCDEF", &created);
        format!(
            r#"UsernameToken Username="{app}",PasswordDigest="{digest}",Nonce="0123456789ABCDEF",Created="{created}""#
        )
    };
    let now = OffsetDateTime::now_utc();
    let body = serde_json::json!({"displayNbr": "+867550000001", "callerNbr": "+8613800000001",
        "displayCalleeNbr": "+867550000001", "calleeNbr": "+8613800000002"});
    let cases: Vec<(&str, Vec<(&str, String)>, serde_json::Value, &str)> = vec![
        ("no Authorization", vec![], body.clone(), "1023006"),
        (
            "no realm",
            vec![("authorization", "AKSK profile=\"UsernameToken\"".into())],
            body.clone(),
            "1023007",
        ),
        (
            "wrong realm",
            vec![("authorization", realm.replace("SDP", "XYZ"))],
            body.clone(),
            "1023009",
        ),
        (
            "no X-AKSK",
            vec![("authorization", realm.into())],
            body.clone(),
            "1023038",
        ),
        (
            "unknown app",
            vec![
                ("authorization", realm.into()),
                ("x-aksk", token("nobody", APP_SECRET, now)),
            ],
            body.clone(),
            "1010003",
        ),
        (
            "wrong secret",
            vec![
                ("authorization", realm.into()),
                ("x-aksk", token(APP_KEY, "wrong", now)),
            ],
            body.clone(),
            "1010003",
        ),
        (
            "stale Created",
            vec![
                ("authorization", realm.into()),
                (
                    "x-aksk",
                    token(APP_KEY, APP_SECRET, now - time::Duration::days(1)),
                ),
            ],
            body.clone(),
            "1010013",
        ),
        (
            "no calleeNbr",
            vec![
                ("authorization", realm.into()),
                ("x-aksk", token(APP_KEY, APP_SECRET, now)),
            ],
            serde_json::json!({"displayNbr": "+867550000001", "callerNbr": "+8613800000001", "displayCalleeNbr": "+867550000001"}),
            "1010002",
        ),
    ];
    let http = reqwest::Client::new();

    for (case, headers, body, code) in cases {
        let mut request = http.post(&url).json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["resultcode"], code, "case {case}: {answer}");
    }
    let client = PlatformClient::new(&config, pool.clone()).unwrap();
    let placed = client
        .click_to_call("wsse-app", click_to_call(ScenarioOutcome::Answered))
        .await;
    assert!(placed.is_ok(), "an X-WSSE app is accepted: {placed:?}");
}
