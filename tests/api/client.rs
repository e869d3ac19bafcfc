//! The outbound client against a stand-in platform (`fake_platform`): every operation, both
//! authentication schemes, validation, callback URLs, retries and the lack of them, the circuit
//! breaker, the `placed_calls` record, and the CLI.

use std::{process::Output, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use callhook::{
    client::{
        CallAccepted, CalleeMedia, ClickToCall, Error, LastMinToUe, PlatformClient,
        PlayContentInfo, RecordingFile, StopCall, VerificationCode, VoiceNotification,
    },
    config::Config,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    fake_platform::{BlackHole, FakePlatform, HangUp, RECORDING_BYTES, Reply, refused_url},
    helpers::{APP_KEY, APP_SECRET, database_url},
};

const WSSE_APP_KEY: &str = "wsseLegacyApp0001";
const WSSE_APP_SECRET: &str = "legacy-wsse-secret";
const PUBLIC_URL: &str = "https://hooks.example.com";
const DISPLAY: &str = "+867550000001";
const CALLER: &str = "+8613800000001";
const CALLEE: &str = "+8613800000002";

async fn fake() -> FakePlatform {
    FakePlatform::start(&[(APP_KEY, APP_SECRET), (WSSE_APP_KEY, WSSE_APP_SECRET)]).await
}

/// Two apps (the first with a rotated older secret, the second on X-WSSE), short waits.
fn config(base_url: &str) -> Config {
    let mut config = Config::defaults();
    config.public_base_url = PUBLIC_URL.into();
    config.apps = serde_json::from_value(json!([
        {"key": APP_KEY, "secrets": [APP_SECRET, "previous-secret"]},
        {"key": WSSE_APP_KEY, "secrets": [WSSE_APP_SECRET], "auth": "wsse"},
    ]))
    .unwrap();
    config.platform.base_url = base_url.into();
    config.platform.connect_timeout_ms = 500;
    config.platform.timeout_ms = 3000;
    config.platform.retry_backoff_ms = 10;
    config.platform.flow_control_backoff_ms = 10;
    config
}

fn client_for(config: &Config, pool: &PgPool) -> PlatformClient {
    PlatformClient::new(config, pool.clone()).expect("client builds")
}

fn click_to_call() -> ClickToCall {
    ClickToCall {
        display_nbr: DISPLAY.into(),
        caller_nbr: CALLER.into(),
        display_callee_nbr: DISPLAY.into(),
        callee_nbr: CALLEE.into(),
        ..ClickToCall::default()
    }
}

fn notification() -> VoiceNotification {
    VoiceNotification {
        display_nbr: DISPLAY.into(),
        callee_nbr: CALLEE.into(),
        play_info_list: vec![PlayContentInfo {
            template_id: Some("tpl-1".into()),
            ..PlayContentInfo::default()
        }],
        ..VoiceNotification::default()
    }
}

fn verification() -> VerificationCode {
    VerificationCode {
        display_nbr: DISPLAY.into(),
        callee_nbr: CALLEE.into(),
        language_type: 2,
        pre_tone: "pre.wav".into(),
        verify_code: "1234".into(),
        ..VerificationCode::default()
    }
}

fn recording() -> RecordingFile {
    RecordingFile {
        file_name: "1200_366_0_20161228102743.wav".into(),
        record_domain: "ostor.huawei.com".into(),
    }
}

/// One request of any operation, for the tables below.
enum Request {
    Call(ClickToCall),
    Notify(VoiceNotification),
    Verify(VerificationCode),
    Stop(StopCall),
    Recording(RecordingFile),
}

async fn send(client: &PlatformClient, request: Request) -> Result<(), Error> {
    match request {
        Request::Call(r) => client.click_to_call(APP_KEY, r).await.map(drop),
        Request::Notify(r) => client.notify(APP_KEY, r).await.map(drop),
        Request::Verify(r) => client.verify_code(APP_KEY, r).await.map(drop),
        Request::Stop(r) => client.stop_call(APP_KEY, r).await.map(drop),
        Request::Recording(r) => client.recording_link(APP_KEY, r).await.map(drop),
    }
}

/// The placed_calls rows, oldest first: (operation, outcome, attempts, session_id, result_code).
async fn placed_rows(pool: &PgPool) -> Vec<(String, String, i16, Option<String>, Option<String>)> {
    sqlx::query_as(
        "select operation, outcome, attempts, session_id, result_code from placed_calls order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn decode(value: &Value) -> String {
    String::from_utf8(BASE64.decode(value.as_str().unwrap()).unwrap()).unwrap()
}

// --- operations -------------------------------------------------------------------------------

/// Click-to-call sends every documented parameter under its wire name, signed, and is recorded.
#[sqlx::test]
async fn click_to_call_is_signed_sent_and_recorded(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    let request = ClickToCall {
        bind_nbr: Some("+867550000009".into()),
        max_duration: Some(30),
        last_min_voice: Some("last.wav".into()),
        last_min_to_ue: Some(LastMinToUe::Both),
        play_pre_voice: Some(true),
        pre_voice: Some("pre.wav".into()),
        wait_voice: Some("wait.wav".into()),
        callee_media: Some(CalleeMedia::All),
        record_flag: Some(true),
        record_hint_tone: Some("hint.wav".into()),
        party_type_required_in_disconnect: Some(true),
        return_idle_port: Some(true),
        user_data: Some("order-42".into()),
        ..click_to_call()
    };

    let placed = client.click_to_call(APP_KEY, request).await.unwrap();

    let received = platform.single();
    assert_eq!(
        (received.method.as_str(), received.path.as_str()),
        ("POST", "/rest/httpsessions/click2Call/v2.0")
    );
    assert_eq!(received.scheme, Some("aksk"));
    assert_eq!(received.app_key.as_deref(), Some(APP_KEY));
    let body = received.body.unwrap();
    assert_eq!(
        body,
        json!({
            "displayNbr": DISPLAY, "callerNbr": CALLER, "displayCalleeNbr": DISPLAY,
            "calleeNbr": CALLEE, "bindNbr": "+867550000009", "maxDuration": 30,
            "lastMinVoice": "last.wav", "lastMinToUE": "both", "playPreVoice": "true",
            "preVoice": "pre.wav", "waitVoice": "wait.wav", "calleeMedia": "all",
            "statusUrl": body["statusUrl"], "feeUrl": body["feeUrl"], "recordFlag": "true",
            "recordHintTone": "hint.wav", "partyTypeRequiredInDisconnect": "true",
            "returnIdlePort": "true", "userData": "order-42"
        })
    );
    assert!(placed.session_id.starts_with("1201_612_1_"), "{placed:?}");
    assert_eq!(placed.idle_port, Some(42));
    assert_eq!(placed.result_desc, "Success");
    let row: (
        String,
        String,
        Value,
        Option<Value>,
        i16,
        String,
        String,
        String,
        String,
        i16,
    ) = sqlx::query_as(
        "select operation, app_key, request, response, http_status, result_code, session_id,
                    user_data, outcome, attempts
             from placed_calls where id = $1",
    )
    .bind(placed.placed_call_id.expect("recorded"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (
            row.0.as_str(),
            row.1.as_str(),
            &row.2,
            row.4,
            row.5.as_str(),
            row.6.as_str(),
            row.7.as_str(),
            row.8.as_str(),
            row.9
        ),
        (
            "click2call",
            APP_KEY,
            &body,
            200,
            "0",
            placed.session_id.as_str(),
            "order-42",
            "accepted",
            1
        )
    );
    assert_eq!(row.3.unwrap()["sessionId"], json!(placed.session_id));
}

/// The placed_calls row holds no secret and no authentication header, whatever the outcome.
#[sqlx::test]
async fn placed_calls_keep_no_secret_or_signature(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Success, Reply::code("1010002")]);
    let client = client_for(&config(&platform.url()), &pool);

    client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();
    client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();
    client
        .click_to_call(WSSE_APP_KEY, click_to_call())
        .await
        .unwrap();

    let rows: Vec<String> = sqlx::query_scalar("select row_to_json(p)::text from placed_calls p")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        for secret in [
            APP_SECRET,
            "previous-secret",
            WSSE_APP_SECRET,
            "PasswordDigest",
            "UsernameToken",
            "Nonce",
        ] {
            assert!(!row.contains(secret), "{secret} in {row}");
        }
    }
}

/// A voice notification sends its segments (template, parameters, digit collection).
#[sqlx::test]
async fn voice_notification_is_sent_with_its_segments(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    let request = VoiceNotification {
        play_info_list: vec![
            PlayContentInfo {
                notify_voice: Some("welcome.wav".into()),
                ..PlayContentInfo::default()
            },
            PlayContentInfo {
                template_id: Some("tpl-7".into()),
                template_paras: vec!["Alice".into(), "42".into()],
                collect_ind: Some(1),
                replay_after_collection: Some(true),
                collect_content_trigger_replaying: Some("1".into()),
                ..PlayContentInfo::default()
            },
        ],
        user_data: Some("n-1".into()),
        ..notification()
    };

    let placed = client.notify(APP_KEY, request).await.unwrap();

    let received = platform.single();
    assert_eq!(received.path, "/rest/httpsessions/callnotify/v2.0");
    let body = received.body.unwrap();
    assert_eq!(
        body["playInfoList"],
        json!([
            {"notifyVoice": "welcome.wav"},
            {"templateId": "tpl-7", "templateParas": ["Alice", "42"], "collectInd": 1,
             "replayAfterCollection": "true", "collectContentTriggerReplaying": "1"}
        ])
    );
    assert_eq!(
        (&body["displayNbr"], &body["calleeNbr"], &body["userData"]),
        (&json!(DISPLAY), &json!(CALLEE), &json!("n-1"))
    );
    assert_eq!(
        placed_rows(&pool).await,
        [(
            "notify".into(),
            "accepted".into(),
            1,
            Some(placed.session_id),
            Some("0".into())
        )]
    );
}

/// A verification code call sends the code, language and tones.
#[sqlx::test]
async fn verification_code_is_sent(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    let request = VerificationCode {
        pos_tone: Some("post.wav".into()),
        times: Some(0),
        ..verification()
    };

    let placed: CallAccepted = client.verify_code(APP_KEY, request).await.unwrap();

    let received = platform.single();
    assert_eq!(received.path, "/rest/httpsessions/callVerify/v1.0");
    let body = received.body.unwrap();
    assert_eq!(
        (
            &body["languageType"],
            &body["preTone"],
            &body["verifyCode"],
            &body["posTone"],
            &body["times"]
        ),
        (
            &json!(2),
            &json!("pre.wav"),
            &json!("1234"),
            &json!("post.wav"),
            &json!(0)
        )
    );
    assert!(!placed.session_id.is_empty());
    assert_eq!(placed_rows(&pool).await[0].0, "verify");
}

/// Stopping a call sends the lowercase `sessionid` and `call_stop`; the row names the session.
#[sqlx::test]
async fn stop_sends_the_lowercase_sessionid_and_call_stop(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    let stopped = client
        .stop_call(APP_KEY, StopCall::new("1201_612_9_20261124@host"))
        .await
        .unwrap();

    let received = platform.single();
    assert_eq!(received.path, "/rest/httpsessions/callStop/v2.0");
    assert_eq!(
        received.body.unwrap(),
        json!({"sessionid": "1201_612_9_20261124@host", "signal": "call_stop"})
    );
    assert_eq!(stopped.session_id, "1201_612_9_20261124@host");
    assert_eq!(
        placed_rows(&pool).await,
        [(
            "stop".into(),
            "accepted".into(),
            1,
            Some("1201_612_9_20261124@host".into()),
            Some("0".into())
        )]
    );
}

/// The recording link is the Location of the platform's 301, which is not followed.
#[sqlx::test]
async fn recording_link_is_the_location_of_the_301(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    let link = client.recording_link(APP_KEY, recording()).await.unwrap();

    let received = platform.single();
    assert_eq!(
        (received.method.as_str(), received.path.as_str()),
        ("GET", "/rest/provision/voice/record/v1.0")
    );
    assert_eq!(received.query["fileName"], "1200_366_0_20161228102743.wav");
    assert_eq!(received.query["recordDomain"], "ostor.huawei.com");
    assert_eq!(
        link.url,
        format!("{}/files/1200_366_0_20161228102743.wav", platform.url())
    );
    let (request, response): (Value, Value) =
        sqlx::query_as("select request, response from placed_calls")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        request,
        json!({"fileName": "1200_366_0_20161228102743.wav", "recordDomain": "ostor.huawei.com"})
    );
    assert_eq!(response, json!({"location": link.url}));
}

/// A recording request the platform refuses in JSON comes back as that result code.
#[sqlx::test]
async fn a_recording_error_comes_back_as_the_platform_code(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Code {
        http: 500,
        code: "1010001",
        desc: "Internal system error.",
    }]);
    let client = client_for(&config(&platform.url()), &pool);

    let error = client
        .recording_link(APP_KEY, recording())
        .await
        .unwrap_err();

    let Error::Platform {
        http_status,
        code,
        meaning,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (*http_status, code.as_str(), meaning.as_str()),
        (500, "1010001", "Internal system error. (platform error)")
    );
    assert_eq!(platform.count(), 1);
    assert_eq!(placed_rows(&pool).await[0].1, "declined");
}

/// An app configured with `auth = "wsse"` signs with the legacy X-WSSE header.
#[sqlx::test]
async fn wsse_apps_sign_with_the_legacy_header(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    client
        .click_to_call(WSSE_APP_KEY, click_to_call())
        .await
        .unwrap();

    let received = platform.single();
    assert_eq!(received.scheme, Some("wsse"));
    assert_eq!(received.app_key.as_deref(), Some(WSSE_APP_KEY));
    assert!(received.headers.contains_key("x-wsse"));
    assert!(!received.headers.contains_key("x-aksk"));
}

/// Each request gets a fresh 32-hex-digit nonce and is signed with the app's first secret.
#[sqlx::test]
async fn every_request_has_a_fresh_nonce(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    for _ in 0..3 {
        client
            .click_to_call(APP_KEY, click_to_call())
            .await
            .unwrap();
    }

    let nonces: Vec<String> = platform
        .received()
        .into_iter()
        .map(|r| {
            assert!(r.problems.is_empty(), "{:?}", r.problems);
            r.nonce.unwrap()
        })
        .collect();
    assert_eq!(nonces.len(), 3);
    assert!(nonces.iter().all(|n| {
        n.len() == 32
            && n.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    }));
    assert!(nonces[0] != nonces[1] && nonces[1] != nonces[2] && nonces[0] != nonces[2]);
}

// --- validation -------------------------------------------------------------------------------

/// Every validation rule refuses before sending, naming the field; nothing reaches the platform
/// and each refusal is recorded as not_sent.
#[sqlx::test]
async fn invalid_parameters_are_refused_before_sending_naming_the_field(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    let call = |change: fn(&mut ClickToCall)| {
        let mut request = click_to_call();
        change(&mut request);
        Request::Call(request)
    };
    let notify = |change: fn(&mut VoiceNotification)| {
        let mut request = notification();
        change(&mut request);
        Request::Notify(request)
    };
    let segment = |change: fn(&mut PlayContentInfo)| {
        let mut request = notification();
        change(&mut request.play_info_list[0]);
        Request::Notify(request)
    };
    let verify = |change: fn(&mut VerificationCode)| {
        let mut request = verification();
        change(&mut request);
        Request::Verify(request)
    };
    let record = |change: fn(&mut RecordingFile)| {
        let mut request = recording();
        change(&mut request);
        Request::Recording(request)
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Request, &str)> = vec![
        // click-to-call
        ("displayNbr required", call(|r| r.display_nbr.clear()), "displayNbr"),
        ("callerNbr without +", call(|r| r.caller_nbr = "8613800000001".into()), "callerNbr"),
        ("displayCalleeNbr too short", call(|r| r.display_callee_nbr = "+86138".into()), "displayCalleeNbr"),
        ("calleeNbr not digits", call(|r| r.callee_nbr = "+86 138 0000 0002".into()), "calleeNbr"),
        ("calleeNbr over 20 digits", call(|r| r.callee_nbr = format!("+{}", "1".repeat(21))), "calleeNbr"),
        ("bindNbr not a number", call(|r| r.bind_nbr = Some("bind".into())), "bindNbr"),
        ("maxDuration over 1440", call(|r| r.max_duration = Some(1441)), "maxDuration"),
        ("lastMinVoice without maxDuration", call(|r| r.last_min_voice = Some("l.wav".into())), "lastMinVoice"),
        ("lastMinVoice empty", call(|r| { r.max_duration = Some(3); r.last_min_voice = Some("".into()) }), "lastMinVoice"),
        ("preVoice without playPreVoice", call(|r| r.pre_voice = Some("p.wav".into())), "preVoice"),
        ("waitVoice blank", call(|r| r.wait_voice = Some(" ".into())), "waitVoice"),
        ("recordHintTone without recordFlag", call(|r| { r.record_hint_tone = Some("h.wav".into()); r.record_flag = Some(false) }), "recordHintTone"),
        ("statusUrl over 128 once encoded", call(|r| r.status_url = Some(format!("https://{}", "x".repeat(90)))), "statusUrl"),
        ("feeUrl not http", call(|r| r.fee_url = Some("ftp://example.com/fee".into())), "feeUrl"),
        ("userData over 256", call(|r| r.user_data = Some("x".repeat(257))), "userData"),
        ("userData empty", call(|r| r.user_data = Some(String::new())), "userData"),
        // voice notification
        ("notify calleeNbr", notify(|r| r.callee_nbr = "+86abc".into()), "calleeNbr"),
        ("playInfoList empty", notify(|r| r.play_info_list.clear()), "playInfoList"),
        ("playInfoList over 5", notify(|r| r.play_info_list = vec![r.play_info_list[0].clone(); 6]), "playInfoList"),
        ("segment with nothing to play", segment(|s| s.template_id = None), "playInfoList[0]"),
        ("segment with voice and template", segment(|s| s.notify_voice = Some("v.wav".into())), "playInfoList[0]"),
        ("templateParas without templateId", segment(|s| { s.template_id = None; s.notify_voice = Some("v.wav".into()); s.template_paras = vec!["p".into()] }), "playInfoList[0].templateParas"),
        ("collectInd over 32", segment(|s| s.collect_ind = Some(33)), "playInfoList[0].collectInd"),
        ("replayAfterCollection without collectInd", segment(|s| s.replay_after_collection = Some(true)), "playInfoList[0].replayAfterCollection"),
        ("trigger without replay", segment(|s| { s.collect_ind = Some(1); s.collect_content_trigger_replaying = Some("1".into()) }), "playInfoList[0].collectContentTriggerReplaying"),
        ("trigger over 32", segment(|s| { s.collect_ind = Some(1); s.replay_after_collection = Some(true); s.collect_content_trigger_replaying = Some("1".repeat(33)) }), "playInfoList[0].collectContentTriggerReplaying"),
        ("notify userData over 256", notify(|r| r.user_data = Some("x".repeat(257))), "userData"),
        // verification code
        ("verify displayNbr", verify(|r| r.display_nbr = "+86".into()), "displayNbr"),
        ("preTone required", verify(|r| r.pre_tone.clear()), "preTone"),
        ("verifyCode empty", verify(|r| r.verify_code.clear()), "verifyCode"),
        ("verifyCode over 8 digits", verify(|r| r.verify_code = "123456789".into()), "verifyCode"),
        ("verifyCode not digits", verify(|r| r.verify_code = "12a4".into()), "verifyCode"),
        ("times over 9", verify(|r| r.times = Some(10)), "times"),
        ("posTone empty", verify(|r| r.pos_tone = Some("".into())), "posTone"),
        // stop
        ("sessionid empty", Request::Stop(StopCall::new("")), "sessionid"),
        ("sessionid over 256", Request::Stop(StopCall::new("x".repeat(257))), "sessionid"),
        // recording
        ("fileName empty", record(|r| r.file_name.clear()), "fileName"),
        ("recordDomain over 128", record(|r| r.record_domain = "x".repeat(129)), "recordDomain"),
    ];
    let count = cases.len();

    for (case, request, field) in cases {
        match send(&client, request).await {
            Err(Error::Validation(invalid)) => {
                assert_eq!(invalid.field, field, "case {case}: {invalid}");
            }
            other => panic!("case {case}: expected a validation error, got {other:?}"),
        }
    }

    assert_eq!(platform.count(), 0, "{:#?}", platform.received());
    let rows = placed_rows(&pool).await;
    assert_eq!(rows.len(), count);
    assert!(
        rows.iter().all(|r| r.1 == "not_sent" && r.2 == 0),
        "{rows:?}"
    );
}

/// An app that is not configured is refused before anything is sent.
#[sqlx::test]
async fn unknown_apps_are_refused_before_sending(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    let error = client
        .click_to_call("nobody", click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(error, Error::UnknownApp(ref key) if key == "nobody"),
        "{error:?}"
    );
    assert_eq!(platform.count(), 0);
    assert_eq!(placed_rows(&pool).await[0].1, "not_sent");
}

/// The app acted for: the one named, else platform.default_app, else the only one configured.
#[sqlx::test]
async fn the_app_is_the_one_named_the_default_or_the_only_one(pool: PgPool) {
    let mut two = config("http://127.0.0.1:9");
    let one = {
        let mut one = two.clone();
        one.apps.truncate(1);
        one
    };

    let named = client_for(&two, &pool)
        .app_key(Some(WSSE_APP_KEY))
        .unwrap()
        .to_owned();
    let unknown = client_for(&two, &pool).app_key(Some("nobody")).unwrap_err();
    let ambiguous = client_for(&two, &pool).app_key(None).unwrap_err();
    two.platform.default_app = WSSE_APP_KEY.into();
    let default = client_for(&two, &pool).app_key(None).unwrap().to_owned();
    let only = client_for(&one, &pool).app_key(None).unwrap().to_owned();

    assert_eq!(named, WSSE_APP_KEY);
    assert!(matches!(unknown, Error::UnknownApp(_)), "{unknown:?}");
    assert!(ambiguous.to_string().contains("--app KEY"), "{ambiguous}");
    assert_eq!(default, WSSE_APP_KEY);
    assert_eq!(only, APP_KEY);
}

// --- callback URLs ----------------------------------------------------------------------------

/// Without URLs from the caller, statusUrl/feeUrl are this service's public URLs, Base64.
#[sqlx::test]
async fn callback_urls_default_to_the_public_url_in_base64(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);

    client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();
    client.notify(APP_KEY, notification()).await.unwrap();
    client.verify_code(APP_KEY, verification()).await.unwrap();

    for received in platform.received() {
        let body = received.body.unwrap();
        assert_eq!(
            decode(&body["statusUrl"]),
            format!("{PUBLIC_URL}/voicecall/status")
        );
        assert_eq!(
            decode(&body["feeUrl"]),
            format!("{PUBLIC_URL}/voicecall/fee")
        );
    }
}

/// URLs the caller gives are sent instead (Base64-encoded); userData passes through.
#[sqlx::test]
async fn caller_given_callback_urls_are_kept(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    let request = ClickToCall {
        status_url: Some("https://www.huawei.com:9330/fee".into()),
        fee_url: Some("http://10.0.0.1:8080/cdr".into()),
        user_data: Some("customerId123".into()),
        ..click_to_call()
    };

    client.click_to_call(APP_KEY, request).await.unwrap();

    let body = platform.single().body.unwrap();
    assert_eq!(
        body["statusUrl"],
        json!("aHR0cHM6Ly93d3cuaHVhd2VpLmNvbTo5MzMwL2ZlZQ==")
    );
    assert_eq!(decode(&body["feeUrl"]), "http://10.0.0.1:8080/cdr");
    assert_eq!(body["userData"], json!("customerId123"));
}

/// Without a public URL no callback URLs are sent (the console's apply).
#[sqlx::test]
async fn without_a_public_url_no_callback_urls_are_sent(pool: PgPool) {
    let platform = fake().await;
    let mut config = config(&platform.url());
    config.public_base_url = String::new();
    let client = client_for(&config, &pool);

    client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();

    let body = platform.single().body.unwrap();
    assert!(
        body.get("statusUrl").is_none() && body.get("feeUrl").is_none(),
        "{body}"
    );
}

/// A public URL too long for the platform's 128 Base64 characters is refused, not truncated.
#[sqlx::test]
async fn a_public_url_too_long_for_the_platform_is_refused(pool: PgPool) {
    let platform = fake().await;
    let mut config = config(&platform.url());
    config.public_base_url = format!("https://{}.example.com", "h".repeat(60));
    let client = client_for(&config, &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::Validation(invalid) if invalid.field == "statusUrl"),
        "{error:?}"
    );
    assert_eq!(platform.count(), 0);
}

// --- retries, and requests that are never retried ----------------------------------------------

/// A refused connection is retried up to max_attempts, then reported; nothing was sent.
#[sqlx::test]
async fn a_refused_connection_is_retried_up_to_max_attempts(pool: PgPool) {
    let client = client_for(&config(&refused_url()), &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(error, Error::Connect { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(!error.may_have_placed_call());
    assert_eq!(
        placed_rows(&pool).await,
        [("click2call".into(), "not_sent".into(), 3, None, None)]
    );
}

/// A platform that comes up during the backoff gets the call, exactly once.
#[sqlx::test]
async fn a_platform_that_comes_up_during_the_backoff_gets_the_call_once(pool: PgPool) {
    let url = refused_url();
    let mut config = config(&url);
    config.platform.retry_backoff_ms = 300;
    let client = client_for(&config, &pool);
    let addr = url.trim_start_matches("http://").to_owned();
    let platform = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        FakePlatform::start_on(listener, &[(APP_KEY, APP_SECRET)])
    });

    let placed = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();

    let platform = platform.await.unwrap();
    platform.single();
    assert_eq!(
        placed_rows(&pool).await,
        [(
            "click2call".into(),
            "accepted".into(),
            2,
            Some(placed.session_id),
            Some("0".into())
        )]
    );
}

/// A connection that cannot be made in time is retried, then reported as a connect timeout.
#[sqlx::test]
async fn a_connect_timeout_is_retried_then_reported(pool: PgPool) {
    let Some(black_hole) = BlackHole::start() else {
        eprintln!("the kernel accepts connections beyond the backlog here; nothing to check");
        return;
    };
    let mut config = config(&black_hole.url);
    config.platform.connect_timeout_ms = 150;
    config.platform.max_attempts = 2;
    let client = client_for(&config, &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(error, Error::ConnectTimeout { attempts: 2 }),
        "{error:?}"
    );
    assert_eq!(placed_rows(&pool).await[0].1, "not_sent");
}

/// Flow control (1010010) is the platform refusing the request: it is retried after the backoff.
#[sqlx::test]
async fn flow_control_is_retried_after_the_backoff_then_succeeds(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::code("1010010")]);
    let client = client_for(&config(&platform.url()), &pool);

    let placed = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();

    assert_eq!(platform.count(), 2);
    assert_eq!(
        placed_rows(&pool).await,
        [(
            "click2call".into(),
            "accepted".into(),
            2,
            Some(placed.session_id),
            Some("0".into())
        )]
    );
}

/// Flow control on every attempt ends after max_attempts with the flow-control code.
#[sqlx::test]
async fn flow_control_on_every_attempt_stops_at_max_attempts(pool: PgPool) {
    let platform = fake().await;
    platform.script([
        Reply::code("1010010"),
        Reply::code("1010010"),
        Reply::code("1010010"),
    ]);
    let client = client_for(&config(&platform.url()), &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::Platform { code, .. } if code == "1010010"),
        "{error:?}"
    );
    assert_eq!(platform.count(), 3);
    assert_eq!(placed_rows(&pool).await[0].2, 3);
}

/// A refusal such as 1010002 is not retried, and carries the code, meaning and resultdesc.
#[sqlx::test]
async fn an_invalid_request_answer_is_not_retried(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Code {
        http: 403,
        code: "1010002",
        desc: "Invalid request.lastMinVoice.wav does not exist",
    }]);
    let client = client_for(&config(&platform.url()), &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert_eq!(platform.count(), 1);
    assert_eq!(
        error.to_string(),
        "declined by the platform: 1010002 Invalid request. (malformed parameter; resultdesc \
         names it) - the platform says: \"Invalid request.lastMinVoice.wav does not exist\""
    );
    assert_eq!(error.result_code().unwrap().code, "1010002");
    assert!(!error.may_have_placed_call());
    let row: (String, i16, String, String) =
        sqlx::query_as("select outcome, http_status, result_code, result_desc from placed_calls")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        row,
        (
            "declined".into(),
            403,
            "1010002".into(),
            "Invalid request.lastMinVoice.wav does not exist".into()
        )
    );
}

/// A code the spec does not list is still an error with its code, "undocumented code".
#[sqlx::test]
async fn an_undocumented_code_is_reported_as_such(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::code("1999999")]);
    let client = client_for(&config(&platform.url()), &pool);

    let error = client.notify(APP_KEY, notification()).await.unwrap_err();

    assert!(
        matches!(&error, Error::Platform { code, meaning, .. }
            if code == "1999999" && meaning == "undocumented code"),
        "{error:?}"
    );
    assert_eq!(platform.count(), 1);
}

/// An HTTP 500 without a result code may have placed the call: not retried.
#[sqlx::test]
async fn an_http_500_is_not_retried(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Raw {
        http: 500,
        body: "<html>Internal Server Error</html>",
    }]);
    let client = client_for(&config(&platform.url()), &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::HttpStatus { status: 500, body_excerpt }
            if body_excerpt.contains("Internal Server Error")),
        "{error:?}"
    );
    assert!(error.may_have_placed_call());
    assert_eq!(platform.count(), 1);
    assert_eq!(placed_rows(&pool).await[0].1, "failed");
}

/// No answer within the total timeout: the request may have placed the call, so exactly one
/// request arrives.
#[sqlx::test]
async fn a_timeout_after_sending_is_not_retried(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Slow(Duration::from_secs(2))]);
    let mut config = config(&platform.url());
    config.platform.timeout_ms = 300;
    let client = client_for(&config, &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(matches!(error, Error::Timeout), "{error:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(platform.count(), 1);
    assert_eq!(
        placed_rows(&pool).await,
        [("click2call".into(), "failed".into(), 1, None, None)]
    );
}

/// A connection cut after the request was sent is not retried either.
#[sqlx::test]
async fn a_connection_cut_after_sending_is_not_retried(pool: PgPool) {
    let server = HangUp::start().await;
    let client = client_for(&config(&server.url), &pool);

    let error = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(matches!(error, Error::Interrupted(_)), "{error:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(placed_rows(&pool).await[0].1, "failed");
}

// --- circuit breaker ----------------------------------------------------------------------------

/// The IP-blacklist answer opens the breaker: the next call fails at once, sending nothing.
#[sqlx::test]
async fn an_ip_blacklist_answer_opens_the_breaker(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::code("1020176")]);
    let client = client_for(&config(&platform.url()), &pool);

    let first = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();
    let second = client
        .stop_call(APP_KEY, StopCall::new("s-1"))
        .await
        .unwrap_err();

    assert!(matches!(first, Error::Platform { ref code, .. } if code == "1020176"));
    assert!(matches!(second, Error::CircuitOpen { .. }), "{second:?}");
    assert_eq!(platform.count(), 1);
    let rows = placed_rows(&pool).await;
    assert_eq!((rows[1].1.as_str(), rows[1].2), ("not_sent", 0));
}

/// The breaker outlives the process: a new client (the next CLI command, another replica)
/// restores it from placed_calls and does not call the platform that blacklisted this machine.
#[sqlx::test]
async fn a_new_client_restores_the_breaker_from_placed_calls(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::code("1020176")]);
    let config = config(&platform.url());
    let first = client_for(&config, &pool)
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();
    assert!(matches!(first, Error::Platform { ref code, .. } if code == "1020176"));

    let next_process = client_for(&config, &pool);
    let error = next_process
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();

    assert!(matches!(error, Error::CircuitOpen { .. }), "{error:?}");
    assert_eq!(platform.count(), 1);
}

/// Authentication failures recorded longer ago than the cooldown do not open a new client's
/// breaker, and neither do fewer of them than the threshold.
#[sqlx::test]
async fn a_new_client_ignores_answers_older_than_the_cooldown(pool: PgPool) {
    let platform = fake().await;
    platform.script([
        Reply::code("1023006"),
        Reply::code("1023006"),
        Reply::code("1023006"),
    ]);
    let config = config(&platform.url());
    let client = client_for(&config, &pool);
    for _ in 0..3 {
        let _ = client.click_to_call(APP_KEY, click_to_call()).await;
    }
    // Older than the cooldown (defaults: 3 failures, 30 min): one failure stays inside it.
    sqlx::query(
        "update placed_calls set requested_at = requested_at - interval '2 hours',
             answered_at = answered_at - interval '2 hours'
         where id in (select id from placed_calls order by requested_at limit 2)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let after = client_for(&config, &pool)
        .click_to_call(APP_KEY, click_to_call())
        .await;

    assert!(after.is_ok(), "{after:?}");
    assert_eq!(platform.count(), 4);
}

/// auth_failures_before_cooldown authentication failures in a row open the breaker; clones of
/// the client share it.
#[sqlx::test]
async fn consecutive_authentication_failures_open_the_breaker(pool: PgPool) {
    let platform = fake().await;
    platform.script([
        Reply::code("1023006"),
        Reply::code("1010003"),
        Reply::code("1010013"),
    ]);
    let client = client_for(&config(&platform.url()), &pool);
    let clone = client.clone();

    for _ in 0..3 {
        let error = client
            .click_to_call(APP_KEY, click_to_call())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Platform { .. }), "{error:?}");
    }
    let error = clone.notify(APP_KEY, notification()).await.unwrap_err();

    assert!(matches!(error, Error::CircuitOpen { .. }), "{error:?}");
    assert_eq!(platform.count(), 3);
}

/// A success between authentication failures resets their count.
#[sqlx::test]
async fn a_success_resets_the_authentication_failure_count(pool: PgPool) {
    let platform = fake().await;
    platform.script([
        Reply::code("1023006"),
        Reply::code("1023006"),
        Reply::Success,
        Reply::code("1023006"),
        Reply::code("1023006"),
    ]);
    let client = client_for(&config(&platform.url()), &pool);

    for _ in 0..5 {
        let _ = client.click_to_call(APP_KEY, click_to_call()).await;
    }
    let sixth = client.click_to_call(APP_KEY, click_to_call()).await;

    assert!(sixth.is_ok(), "{sixth:?}");
    assert_eq!(platform.count(), 6);
}

/// After the cooldown the breaker lets requests through again.
#[sqlx::test]
async fn the_breaker_closes_after_the_cooldown(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::code("1020176")]);
    let mut config = config(&platform.url());
    config.platform.cooldown_secs = 1;
    let client = client_for(&config, &pool);
    client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap_err();
    assert!(matches!(
        client.click_to_call(APP_KEY, click_to_call()).await,
        Err(Error::CircuitOpen { .. })
    ));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = client.click_to_call(APP_KEY, click_to_call()).await;

    assert!(after.is_ok(), "{after:?}");
    assert_eq!(platform.count(), 2);
}

// --- the record -------------------------------------------------------------------------------

/// When placed_calls cannot be written, the platform's answer is still returned.
#[sqlx::test]
async fn a_failed_record_does_not_hide_the_platforms_answer(pool: PgPool) {
    let platform = fake().await;
    let client = client_for(&config(&platform.url()), &pool);
    sqlx::query("drop table placed_calls")
        .execute(&pool)
        .await
        .unwrap();

    let placed = client
        .click_to_call(APP_KEY, click_to_call())
        .await
        .unwrap();

    assert!(!placed.session_id.is_empty());
    assert_eq!(placed.placed_call_id, None);
    assert_eq!(platform.count(), 1);
}

// --- the CLI ------------------------------------------------------------------------------------

async fn cli(pool: &PgPool, platform_url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CALLHOOK_CONFIG")
        .env("DATABASE_URL", database_url(pool))
        .env("CALLHOOK_PLATFORM__BASE_URL", platform_url)
        .env("CALLHOOK_PUBLIC_BASE_URL", PUBLIC_URL)
        .env("CALLHOOK_LOG__FILTER", "warn")
        .env(
            "CALLHOOK_APPS",
            format!(r#"[{{key="{APP_KEY}", secrets=["{APP_SECRET}"]}}]"#),
        )
        .output()
        .await
        .expect("the callhook binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `callhook call` places the call, prints its sessionId and the placed_calls row, exits 0.
#[sqlx::test]
async fn the_cli_places_a_call_and_prints_the_session(pool: PgPool) {
    let platform = fake().await;

    let output = cli(
        &pool,
        &platform.url(),
        &[
            "call",
            "--caller",
            CALLER,
            "--callee",
            CALLEE,
            "--display",
            DISPLAY,
            "--record",
            "--user-data",
            "cli-1",
        ],
    )
    .await;

    assert!(output.status.success(), "{}", text(&output.stderr));
    let body = platform.single().body.unwrap();
    assert_eq!(
        (
            &body["displayCalleeNbr"],
            &body["recordFlag"],
            &body["userData"]
        ),
        (&json!(DISPLAY), &json!("true"), &json!("cli-1"))
    );
    let (id, session_id): (uuid::Uuid, String) =
        sqlx::query_as("select id, session_id from placed_calls")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        text(&output.stdout).trim(),
        format!("placed: sessionId={session_id} (recorded as placed_calls {id})")
    );
}

/// Each outbound command reaches its API from the command line.
#[sqlx::test]
async fn the_cli_notifies_verifies_and_stops(pool: PgPool) {
    let platform = fake().await;
    let url = platform.url();

    let runs = [
        cli(
            &pool,
            &url,
            &[
                "notify",
                "--callee",
                CALLEE,
                "--display",
                DISPLAY,
                "--template-id",
                "tpl-1",
                "--template-param",
                "Alice",
                "--collect",
                "1",
            ],
        )
        .await,
        cli(
            &pool,
            &url,
            &[
                "verify-code",
                "--callee",
                CALLEE,
                "--display",
                DISPLAY,
                "--code",
                "1234",
                "--pre-tone",
                "pre.wav",
                "--times",
                "2",
            ],
        )
        .await,
        cli(&pool, &url, &["stop", "1201_612_9_20261124@host"]).await,
    ];

    for output in &runs {
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    assert!(text(&runs[2].stdout).starts_with("stopped: sessionId=1201_612_9_20261124@host"));
    let received = platform.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(|r| r.problems.is_empty()),
        "{received:#?}"
    );
    assert_eq!(
        received[0].body.as_ref().unwrap()["playInfoList"],
        json!([{"templateId": "tpl-1", "templateParas": ["Alice"], "collectInd": 1}])
    );
    assert_eq!(received[1].body.as_ref().unwrap()["languageType"], json!(2));
    let operations: Vec<String> =
        sqlx::query_scalar("select operation from placed_calls order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(operations, ["notify", "verify", "stop"]);
}

/// A refusal exits non-zero, printing the platform's code and its documented meaning.
#[sqlx::test]
async fn the_cli_exits_non_zero_with_the_platform_code_and_meaning(pool: PgPool) {
    let platform = fake().await;
    platform.script([Reply::Code {
        http: 403,
        code: "1010002",
        desc: "Invalid request.calleeNbr",
    }]);

    let output = cli(
        &pool,
        &platform.url(),
        &[
            "call",
            "--caller",
            CALLER,
            "--callee",
            CALLEE,
            "--display",
            DISPLAY,
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("declined by the platform: 1010002 Invalid request. (malformed parameter"),
        "{stderr}"
    );
    assert!(stderr.contains("Invalid request.calleeNbr"), "{stderr}");
}

/// A validation failure exits non-zero naming the field, and sends nothing.
#[sqlx::test]
async fn the_cli_refuses_invalid_parameters_without_sending(pool: PgPool) {
    let platform = fake().await;

    let bad_number = cli(
        &pool,
        &platform.url(),
        &[
            "verify-code",
            "--callee",
            "13800000002",
            "--display",
            DISPLAY,
            "--code",
            "1234",
            "--pre-tone",
            "pre.wav",
        ],
    )
    .await;
    let bad_enum = cli(
        &pool,
        &platform.url(),
        &[
            "call",
            "--caller",
            CALLER,
            "--callee",
            CALLEE,
            "--display",
            DISPLAY,
            "--last-min-to",
            "toc",
        ],
    )
    .await;

    let bad_media = cli(
        &pool,
        &platform.url(),
        &[
            "call",
            "--caller",
            CALLER,
            "--callee",
            CALLEE,
            "--display",
            DISPLAY,
            "--callee-media",
            "some",
        ],
    )
    .await;

    assert_eq!(bad_number.status.code(), Some(1));
    assert!(text(&bad_number.stderr).contains("invalid parameter calleeNbr"));
    assert_eq!(bad_media.status.code(), Some(2), "clap's usage error");
    assert!(
        text(&bad_media.stderr).contains("all, none, fail"),
        "{}",
        text(&bad_media.stderr)
    );
    assert_eq!(bad_enum.status.code(), Some(2), "clap's usage error");
    assert!(
        text(&bad_enum.stderr).contains("toa, tob, both"),
        "{}",
        text(&bad_enum.stderr)
    );
    assert_eq!(platform.count(), 0);
}

/// `callhook recording … --download PATH` prints the link and writes the file it points to.
#[sqlx::test]
async fn the_cli_downloads_a_recording(pool: PgPool) {
    let platform = fake().await;
    let directory = std::env::temp_dir().join(format!("callhook-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("call.wav");

    let output = cli(
        &pool,
        &platform.url(),
        &[
            "recording",
            "rec.wav",
            "ostor.huawei.com",
            "--download",
            path.to_str().unwrap(),
        ],
    )
    .await;

    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("recording link: {}/files/rec.wav", platform.url())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("downloaded {} bytes", RECORDING_BYTES.len())));
    assert_eq!(std::fs::read(&path).unwrap(), RECORDING_BYTES);
    std::fs::remove_dir_all(&directory).unwrap();
}

/// Every outbound command documents itself with --help.
#[tokio::test]
async fn every_outbound_command_has_help() {
    for command in ["call", "notify", "verify-code", "stop", "recording"] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callhook"))
            .args([command, "--help"])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{command}");
        assert!(
            text(&output.stdout).contains("Usage: callhook"),
            "{command}"
        );
    }
}
