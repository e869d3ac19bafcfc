//! The console in a real browser: headless Chromium driven through chromedriver (WebDriver,
//! `fantoccini`). Calls are placed through the simulated platform, which pushes signed
//! callbacks to the real receiver, and the test watches them arrive on the live page without
//! a reload. Screenshots of every page are kept under `target/console-screenshots/` for a
//! reviewer to look at.
//!
//! Needs `chromedriver` and Chromium: `apt-get install -y chromium chromium-driver` on Debian
//! (`.ci/run` installs them). `CHROMEDRIVER` names another chromedriver binary. Without one the
//! test fails and says so: it never passes without having looked.

use std::{path::PathBuf, process::Stdio, time::Duration};

use callhook::{client::PlatformClient, config::SignatureMode};
use callhook_simulator::scenario::ScenarioOutcome;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    api_helpers::{A, B, DISPLAY, FULL_TOKEN, MASKED_TOKEN, spawn_api_with},
    end_to_end::{click_to_call, configs, fast_simulator, start_platform},
    helpers::{APP_KEY, APP_SECRET, Signature, TestApp, with_test_app},
};

/// How long the browser test waits for anything (polling) before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver on a free port, and a headless Chromium session on it. Both end with the test,
/// even one that fails: chromedriver runs in a process group of its own, which dropping the
/// `Driver` kills whole (Chromium with it).
struct Browser {
    client: Client,
    _driver: Driver,
}

struct Driver(tokio::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Browser {
    async fn start() -> Self {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {program:?} ({error}): the console's browser test needs \
                     chromedriver and Chromium. On Debian: apt-get install -y chromium \
                     chromium-driver (.ci/run installs them); CHROMEDRIVER names another binary"
                )
            });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,960"]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "chromedriver at {url} started no browser ({error}): is Chromium installed? \
                     On Debian: apt-get install -y chromium chromium-driver"
                ),
            }
        };
        Self {
            client,
            _driver: Driver(driver),
        }
    }
}

/// Where the screenshots go: `target/console-screenshots/` (the parent of cargo's scratch
/// directory for integration tests is the target directory).
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` until it gives a value (at most `PATIENCE`); `what` says what was awaited.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_in(browser: &Client, app: &TestApp, token: &str) {
    browser.goto(&app.url("/console/login")).await.unwrap();
    let field = browser.find(Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    browser
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the live page after logging in", || async move {
        let url = browser.current_url().await.ok()?;
        (url.path() == "/console").then_some(())
    })
    .await;
}

/// The session ids of the live table's rows, and their outcome badges' text.
async fn live_rows(browser: &Client) -> Vec<(String, String)> {
    let script = "return Array.from(document.querySelectorAll('#live-rows tr[data-session]'))
                  .map(tr => [tr.dataset.session, tr.querySelector('.badge').textContent]);";
    let rows = browser.execute(script, vec![]).await.unwrap();
    serde_json::from_value(rows).unwrap()
}

/// The page's text and markup, with the attribute values the script left in the DOM.
async fn source(browser: &Client) -> String {
    browser.source().await.unwrap()
}

/// Calls placed through the simulator appear on the live page without a reload; one opens to
/// its timeline; refused callbacks can be reprocessed from their page; operations are drawn;
/// and a masked token sees no full number on any page.
#[sqlx::test]
async fn the_console_shows_calls_as_they_happen_in_a_real_browser(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |c| {
        with_test_app(c);
        c.signature.mode = SignatureMode::Enforce;
        c.http.trust_forwarded_headers = true;
    })
    .await;
    let mut config = configs(&app, APP_SECRET);
    let platform = start_platform(&fast_simulator(), &config).await;
    config.platform.base_url = platform.url.clone();
    let calls = PlatformClient::new(&config, pool.clone()).unwrap();
    let Browser {
        client: browser,
        _driver,
    } = Browser::start().await;
    let browser = &browser;

    log_in(browser, &app, FULL_TOKEN).await;
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "callhook_session")
        .expect("the session cookie is set");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert!(!session.value().contains(FULL_TOKEN));
    eventually("the live stream to connect", || async move {
        let state = browser.find(Locator::Css("#live-state.live")).await.ok()?;
        state.text().await.ok()
    })
    .await;
    // Set on this document only: still there later means the page was never reloaded.
    browser
        .execute("window.sameDocument = 'yes';", vec![])
        .await
        .unwrap();

    let mut placed = Vec::new();
    for outcome in [
        ScenarioOutcome::Answered,
        ScenarioOutcome::Busy,
        ScenarioOutcome::NoAnswer,
        ScenarioOutcome::CallerHangsUpFirst,
    ] {
        let session = calls
            .click_to_call(APP_KEY, click_to_call(outcome))
            .await
            .unwrap()
            .session_id;
        placed.push((session, outcome));
    }
    let expected = ["answered", "busy", "no answer", "caller hung up"];
    let placed = &placed;
    let rows = eventually(
        "every placed call, ended, on the live page",
        || async move {
            let rows = live_rows(browser).await;
            let ended = placed
                .iter()
                .zip(expected)
                .all(|((session, _), badge)| rows.iter().any(|(s, b)| s == session && b == badge));
            ended.then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), placed.len(), "{rows:?}");
    let same: Value = browser
        .execute("return window.sameDocument || null;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!("yes"), "the page was reloaded");
    screenshot(browser, "live").await;

    // KPIs: the figures shown are those of an SQL of our own over the same rows.
    let now = time::OffsetDateTime::now_utc();
    let (from, to) = (
        now - time::Duration::hours(2),
        now + time::Duration::hours(2),
    );
    let rfc3339 = |at: time::OffsetDateTime| {
        let text = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
    };
    browser
        .goto(&app.url(&format!(
            "/console/kpis?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        )))
        .await
        .unwrap();
    let shown: Value = browser
        .execute(
            "return Object.fromEntries(Array.from(document.querySelectorAll('[data-kpi]'))
                    .map(tile => [tile.dataset.kpi, tile.dataset.value]));",
            vec![],
        )
        .await
        .unwrap();
    let shown = |key: &str| -> Option<f64> {
        let text = shown[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {shown}"));
        (!text.is_empty()).then(|| text.parse().unwrap())
    };
    let (ended, in_progress, answered, effective, acd, pdd): (
        i64,
        i64,
        i64,
        i64,
        Option<f64>,
        Option<f64>,
    ) = sqlx::query_as(
        "select count(*) filter (where outcome <> 'in_progress'),
                count(*) filter (where outcome = 'in_progress'),
                count(*) filter (where outcome = 'answered'),
                count(*) filter (where outcome in ('answered', 'busy', 'no_answer', 'rejected')),
                (avg(talk_seconds) filter (where outcome = 'answered'))::float8,
                (avg(extract(epoch from a_alerting_at - a_callout_at))
                    filter (where outcome <> 'in_progress' and a_alerting_at >= a_callout_at))::float8
         from calls where started_at >= $1 and started_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ended, placed.len() as i64);
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (a, b) => a == b,
    };
    for (key, expected) in [
        ("calls", Some(ended as f64)),
        ("in_progress", Some(in_progress as f64)),
        ("asr", Some(answered as f64 / ended as f64)),
        ("ner", Some(effective as f64 / ended as f64)),
        ("acd_seconds", acd),
        ("pdd_seconds", pdd),
    ] {
        assert!(
            close(shown(key), expected),
            "{key}: shown {:?}, SQL {expected:?}",
            shown(key)
        );
    }
    screenshot(browser, "kpis").await;
    browser.goto(&app.url("/console")).await.unwrap();

    // One call: both legs on the time axis.
    let (answered, _) = &placed[0];
    let link = format!("tr[data-session=\"{answered}\"] a");
    let link = &link;
    // The live script may render the rows again between finding the link and clicking it.
    eventually("a click on the call's row", || async move {
        let row = browser.find(Locator::Css(link)).await.ok()?;
        row.click().await.ok()
    })
    .await;
    let timeline = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("svg.timeline"))
        .await
        .unwrap();
    for leg in ["A", "B"] {
        for stage in ["callout", "answer", "disconnect"] {
            let selector = format!("g.leg[data-leg=\"{leg}\"] g.stage[data-stage=\"{stage}\"]");
            assert!(
                timeline.find(Locator::Css(&selector)).await.is_ok(),
                "{selector}"
            );
        }
    }
    let talking = timeline
        .find_all(Locator::Css("g.leg rect.span.talking"))
        .await
        .unwrap();
    assert_eq!(talking.len(), 2, "both legs talked");
    let page = source(browser).await;
    assert!(page.contains("valid"), "signature verdicts are shown");
    assert!(
        page.contains(A) && page.contains(B),
        "a full token sees the numbers"
    );
    screenshot(browser, "call").await;

    // Refused callbacks, reprocessed from the page.
    let signed = Signature::new(app.url("/voicecall/status"));
    let refused = app
        .post_signed("/voicecall/status", "not json", &signed)
        .await;
    assert_eq!(refused.status(), 400);
    browser.goto(&app.url("/console/refused")).await.unwrap();
    let button = browser
        .find(Locator::Css("button[data-reprocess]"))
        .await
        .unwrap();
    button.click().await.unwrap();
    eventually("the reprocess outcome in the row", || async move {
        let cell = browser.find(Locator::Css("td.reprocessed")).await.ok()?;
        let text = cell.text().await.ok()?;
        text.starts_with("rejected").then_some(())
    })
    .await;
    let reprocessed: Option<String> = sqlx::query_scalar(
        "select reprocess_outcome from raw_callbacks where outcome = 'rejected'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        reprocessed.as_deref(),
        Some("rejected"),
        "the button reprocessed it"
    );
    screenshot(browser, "refused").await;

    browser.goto(&app.url("/console/operations")).await.unwrap();
    let gauges = browser.find_all(Locator::Css("svg.gauge")).await.unwrap();
    assert_eq!(gauges.len(), 4);
    screenshot(browser, "operations").await;

    // Masked: log out, log in with the masked token, watch one more call arrive.
    browser
        .find(Locator::Css(".who button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the login page after logging out", || async move {
        let url = browser.current_url().await.ok()?;
        (url.path() == "/console/login").then_some(())
    })
    .await;
    log_in(browser, &app, MASKED_TOKEN).await;
    eventually("the live stream to connect", || async move {
        browser.find(Locator::Css("#live-state.live")).await.ok()
    })
    .await;
    let late = calls
        .click_to_call(APP_KEY, click_to_call(ScenarioOutcome::Answered))
        .await
        .unwrap()
        .session_id;
    let late = &late;
    eventually(
        "the masked page to show the new call, ended",
        || async move {
            let rows = live_rows(browser).await;
            rows.iter()
                .any(|(s, b)| s == late && b == "answered")
                .then_some(())
        },
    )
    .await;
    let numbers = [A, B, DISPLAY].map(|n| n.trim_start_matches('+').to_owned());
    let mut pages = vec![("live-masked", app.url("/console"))];
    for (name, path) in [
        ("call-masked", format!("/console/calls/{answered}")),
        ("refused-masked", "/console/refused".to_owned()),
        ("kpis-masked", "/console/kpis".to_owned()),
        ("operations-masked", "/console/operations".to_owned()),
    ] {
        pages.push((name, app.url(&path)));
    }
    for (i, (name, url)) in pages.iter().enumerate() {
        if i > 0 {
            browser.goto(url).await.unwrap();
        }
        let page = source(browser).await;
        for number in &numbers {
            assert!(!page.contains(number.as_str()), "{number} on {url}");
        }
        assert!(page.contains("masked"), "{url} names the scope");
        screenshot(browser, name).await;
    }
    browser.clone().close().await.unwrap();
}
