//! `callhook-sim demo`: the receiver and the stand-in platform on free local ports, a handful of calls
//! placed through the client with different outcomes, and what Postgres then holds for each.
//!
//! It writes into its own database and signs with its own app unless told otherwise, so that
//! trying it next to a production configuration cannot put demo calls among real ones, nor
//! use a real app's secret.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use callhook::{
    app::Application,
    client::{ClickToCall, PlatformClient, PlayContentInfo, VerificationCode, VoiceNotification},
    config::{Config, SignatureMode, redacted_url},
};

use super::{Simulator, config::SimConfig, scenario::ScenarioOutcome};
/// The demo's own app: the simulator and the receiver share its secret, and nothing else does.
pub const DEMO_APP: &str = "demo-app";
const DEMO_SECRET: &str = "demo-secret";
const DISPLAY: &str = "+867550000001";
const CUSTOMER: &str = "+8613800000001";
const DRIVER: &str = "+8613800000002";

type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Where the demo writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoDatabase {
    /// `demo.database` of the settings, on the configured server (the default).
    Own,
    /// The database at this URL.
    Url(String),
    /// The configured database itself.
    Configured,
}

impl DemoDatabase {
    /// The URL of the database the demo writes into, given the configured one and the name of
    /// its own.
    pub fn url(&self, configured: &str, own: &str) -> Result<String, DemoError> {
        match self {
            Self::Own => {
                let mut url = reqwest::Url::parse(configured)
                    .map_err(|e| format!("database.url is not a URL ({e})"))?;
                url.set_path(&format!("/{own}"));
                Ok(url.to_string())
            }
            Self::Url(url) => Ok(url.clone()),
            Self::Configured => Ok(configured.to_owned()),
        }
    }
}

/// Runs the demo against `database`, printing to stdout.
pub async fn run(
    mut config: Config,
    mut settings: SimConfig,
    database: DemoDatabase,
) -> Result<(), DemoError> {
    config.database.url = database.url(&config.database.url, &settings.demo.database)?;
    config.database.create_if_missing = true;
    config.database.migrate_on_start = true;
    config.apps = serde_json::from_value(json!([{"key": DEMO_APP, "secrets": [DEMO_SECRET]}]))?;
    config.platform.default_app = String::new();
    let receiver_port = free_port()?;
    config.listen = SocketAddr::from(([127, 0, 0, 1], receiver_port));
    config.public_base_url = format!("http://127.0.0.1:{receiver_port}");
    // The simulator signs every push; the receiver refuses anything unsigned or forged.
    config.signature.mode = SignatureMode::Enforce;
    settings.simulator.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // A spool of its own: the demo must never take (or lock) a running service's spool.
    let spool = std::env::temp_dir().join(format!("callhook-demo-spool-{}", uuid::Uuid::new_v4()));
    config.spool.dir = spool.clone();

    let receiver = Application::build(config.clone()).await?;
    let pool = receiver.pool();
    let simulator = Simulator::bind(&settings.simulator, &config.apps).await?;
    config.platform.base_url = format!("http://{}", simulator.local_addr());
    println!(
        "receiver  http://{}   (callbacks: /voicecall/status, /voicecall/fee)",
        receiver.local_addr()
    );
    println!("platform  http://{}   (simulated)", simulator.local_addr());
    println!("database  {}", redacted_url(&config.database.url));

    let (stop_receiver, receiver_stopped) = oneshot::channel::<()>();
    let (stop_simulator, simulator_stopped) = oneshot::channel::<()>();
    let receiver_task = tokio::spawn(receiver.run_until(async move {
        let _ = receiver_stopped.await;
    }));
    let simulator_task = tokio::spawn(simulator.run_until(async move {
        let _ = simulator_stopped.await;
    }));

    let client = PlatformClient::new(&config, pool.clone())?;
    let app_key = client.app_key(None)?.to_owned();
    let mut placed = Vec::new();
    for (label, outcome) in [
        ("click-to-call, answered", ScenarioOutcome::Answered),
        ("click-to-call, driver busy", ScenarioOutcome::Busy),
        ("click-to-call, no answer", ScenarioOutcome::NoAnswer),
        (
            "click-to-call, driver hangs up first",
            ScenarioOutcome::CalleeHangsUpFirst,
        ),
    ] {
        let accepted = client
            .click_to_call(
                &app_key,
                ClickToCall {
                    display_nbr: DISPLAY.into(),
                    caller_nbr: CUSTOMER.into(),
                    display_callee_nbr: DISPLAY.into(),
                    callee_nbr: DRIVER.into(),
                    user_data: Some(format!("demo;sim-outcome={}", outcome.as_str())),
                    ..ClickToCall::default()
                },
            )
            .await?;
        placed.push((label, accepted.session_id));
    }
    let notification = VoiceNotification {
        display_nbr: DISPLAY.into(),
        callee_nbr: CUSTOMER.into(),
        play_info_list: vec![PlayContentInfo {
            template_id: Some("delivery-arriving".into()),
            template_paras: vec!["5".into()],
            collect_ind: Some(1),
            ..PlayContentInfo::default()
        }],
        user_data: Some("demo;sim-outcome=answered".into()),
        ..VoiceNotification::default()
    };
    placed.push((
        "voice notification with a key press",
        client.notify(&app_key, notification).await?.session_id,
    ));
    let verification = VerificationCode {
        display_nbr: DISPLAY.into(),
        callee_nbr: CUSTOMER.into(),
        language_type: 2,
        pre_tone: "code-follows.wav".into(),
        verify_code: "4711".into(),
        user_data: Some("demo;sim-outcome=answered".into()),
        ..VerificationCode::default()
    };
    placed.push((
        "verification code",
        client.verify_code(&app_key, verification).await?.session_id,
    ));

    println!(
        "\nplaced {} calls; waiting for their callbacks …",
        placed.len()
    );
    let sessions: Vec<String> = placed.iter().map(|(_, s)| s.clone()).collect();
    let arrived = wait_for_cdrs(&pool, &sessions, Duration::from_secs(60)).await?;
    for (label, session) in &placed {
        print_call(&pool, label, session).await?;
    }

    let _ = stop_simulator.send(());
    let _ = stop_receiver.send(());
    simulator_task.await??;
    receiver_task.await??;
    if arrived == sessions.len() {
        let _ = std::fs::remove_dir_all(&spool);
    }
    if arrived < sessions.len() {
        return Err(format!("only {arrived} of {} CDRs arrived in time", sessions.len()).into());
    }
    println!(
        "\nall {} calls are in Postgres: tables call_events, cdrs, raw_callbacks, placed_calls.",
        sessions.len()
    );
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until every session has its CDR, or `limit` passes; returns how many arrived.
async fn wait_for_cdrs(
    pool: &PgPool,
    sessions: &[String],
    limit: Duration,
) -> Result<usize, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let arrived: i64 = sqlx::query_scalar(
            "select count(distinct session_id) from cdrs where session_id = any($1)",
        )
        .bind(sessions)
        .fetch_one(pool)
        .await?;
        let arrived = usize::try_from(arrived).unwrap_or(0);
        if arrived == sessions.len() || tokio::time::Instant::now() >= deadline {
            return Ok(arrived);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type EventRow = (
    String,
    Option<OffsetDateTime>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
);
type CdrRow = (
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

async fn print_call(pool: &PgPool, label: &str, session: &str) -> Result<(), sqlx::Error> {
    println!("\n{label}\n  sessionId {session}");
    let events: Vec<EventRow> = sqlx::query_as(
        "select event_type, event_at, called, state_code, digit_info, party_type
         from call_events where session_id = $1 order by event_at, id",
    )
    .bind(session)
    .fetch_all(pool)
    .await?;
    for (event_type, at, called, state_code, digits, party) in events {
        let mut details = BTreeMap::new();
        if let Some(code) = state_code {
            details.insert("stateCode", code.to_string());
        }
        if let Some(digits) = digits {
            details.insert("digits", digits);
        }
        if let Some(party) = party {
            details.insert("partyType", party);
        }
        let details: Vec<String> = details
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  {}  {:<11} to {:<15} {}",
            at.map_or_else(|| "?".into(), clock),
            event_type,
            called.unwrap_or_default(),
            details.join(" ")
        );
    }
    let cdr: Option<CdrRow> = sqlx::query_as(
        // Talk time is counted from B's answer on click-to-call (serviceType 002), else from A's.
        "select case when service_type = '002' then fwd_answer_time else call_out_answer_time end,
                call_out_start_time, call_end_time,
                ul_fail_reason, coalesce(fwd_unasw_rsn, call_out_unasw_rsn), sip_status_code
         from cdrs where session_id = $1",
    )
    .bind(session)
    .fetch_optional(pool)
    .await?;
    match cdr {
        Some((answered, started, ended, fail_reason, q850, sip)) => {
            let talk = match (answered, ended) {
                (Some(a), Some(e)) => format!("{} s talk", (e - a).whole_seconds()),
                _ => "not answered".into(),
            };
            let span = match (started, ended) {
                (Some(s), Some(e)) => format!("{} → {}", clock(s), clock(e)),
                _ => "?".into(),
            };
            println!(
                "  CDR  {span}, {talk}; ulFailReason={} Q.850={} SIP={}",
                fail_reason.unwrap_or_default(),
                q850.unwrap_or_default(),
                sip.unwrap_or_default()
            );
        }
        None => println!("  CDR  (not arrived)"),
    }
    Ok(())
}

fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}
