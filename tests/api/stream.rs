//! `GET /v1/stream`: server-sent events of call changes, read over real HTTP and parsed as a
//! client would; changes made through other instances on the same database, resuming with
//! `Last-Event-ID`, slow consumers, masking, filters, refusals, keep-alives, shutdown.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sqlx::PgPool;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
    time::{Instant, timeout},
};

use crate::{
    api_helpers::{Call, FULL_TOKEN, MASKED_TOKEN, get_json, hour, spawn_api, spawn_api_with},
    helpers::{TestApp, fee_body},
};

/// Long enough for a loaded machine; every wait polls and ends as soon as it can.
const PATIENCE: Duration = Duration::from_secs(30);

/// One SSE block: its fields as the EventSource parsing rules read them.
#[derive(Debug, Clone, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comments: Vec<String>,
}

impl Frame {
    fn parse(block: &str) -> Self {
        let mut frame = Self::default();
        for line in block.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                frame.comments.push(comment.trim_start().to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => frame.event = Some(value),
                "id" => frame.id = Some(value),
                "data" => {
                    frame.data = Some(match frame.data.take() {
                        Some(before) => format!("{before}\n{value}"),
                        None => value,
                    })
                }
                other => panic!("an unexpected field {other:?} in {block:?}"),
            }
        }
        frame
    }

    fn is_call(&self) -> bool {
        self.event.as_deref() == Some("call")
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// A stream being read.
struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
    /// The id of the last frame that had one: what an EventSource would reconnect with.
    last_id: Option<String>,
}

impl Sse {
    async fn open(app: &TestApp, token: &str, query: &str, last_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(app.url(&format!("/v1/stream{query}")))
            .bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("request is sent");
        assert_eq!(response.status(), 200, "GET /v1/stream{query}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            last_id: None,
        }
    }

    /// The next frame, or None when the stream ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let frame = Frame::parse(block.trim_end_matches('\n'));
                if frame.id.is_some() {
                    self.last_id = frame.id.clone();
                }
                return Some(frame);
            }
            let chunk = self.body.next().await?.expect("the stream reads");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    async fn next_within(&mut self, patience: Duration) -> Frame {
        timeout(patience, self.next())
            .await
            .expect("a frame in time")
            .expect("the stream goes on")
    }

    /// Reads until `done` holds for the latest state of each call seen so far; returns every
    /// call event read, in order.
    async fn calls_until(&mut self, done: impl Fn(&HashMap<String, Value>) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut latest = HashMap::new();
        let mut read = Vec::new();
        while !done(&latest) {
            let frame = timeout(deadline - Instant::now(), self.next())
                .await
                .unwrap_or_else(|_| panic!("not done in time; latest states: {latest:#?}"))
                .expect("the stream goes on");
            assert_ne!(frame.event.as_deref(), Some("end"), "{frame:?}");
            if frame.is_call() {
                let data = frame.json();
                latest.insert(
                    data["session_id"].as_str().unwrap().to_owned(),
                    data["call"].clone(),
                );
                read.push(data);
            }
        }
        read
    }
}

/// A `Call` (`api_helpers`) is delivered CDR last: once its row has the CDR, it is final.
fn finished(call: &Value) -> bool {
    call["has_cdr"] == true
}

/// Whether every one of `sessions` has arrived in its final state.
fn all_finished(sessions: &[&str]) -> impl Fn(&HashMap<String, Value>) -> bool {
    let sessions: Vec<String> = sessions.iter().map(|s| (*s).to_owned()).collect();
    move |latest| sessions.iter().all(|s| latest.get(s).is_some_and(finished))
}

/// A change committed through instance B reaches a subscriber of instance A, which polls so
/// rarely that only B's NOTIFY can have told it; the event's call is A's `/v1/calls/{id}` call.
#[sqlx::test]
async fn changes_made_through_another_instance_arrive(pool: PgPool) {
    let a = spawn_api_with(pool.clone(), |config| {
        config.stream.poll_interval_ms = 3_600_000;
        // A's projector then runs only for what A itself receives: B's callbacks are projected
        // (committed) by B.
        config.projector.poll_interval_ms = 3_600_000;
    })
    .await;
    let b = spawn_api(pool.clone()).await;
    let mut stream = Sse::open(&a, FULL_TOKEN, "", None).await;
    let first = stream.next_within(PATIENCE).await;
    assert!(
        first.id.is_some() && first.event.is_none() && first.data.is_none(),
        "{first:?}"
    );

    let calls = ["via-b-1", "via-b-2"].map(|s| Call::new(s, hour(0)));
    for call in &calls {
        call.deliver(&b).await;
    }
    let read = stream
        .calls_until(all_finished(&["via-b-1", "via-b-2"]))
        .await;

    for call in &calls {
        let detail = get_json(&a, &format!("/v1/calls/{}", call.session)).await;
        let last = read
            .iter()
            .rfind(|event| event["session_id"] == call.session.as_str())
            .unwrap();
        assert_eq!(last["call"], detail["call"], "{}", call.session);
    }
    // Each state arrives in commit order: a call's event count never goes back.
    for session in ["via-b-1", "via-b-2"] {
        let counts: Vec<i64> = read
            .iter()
            .filter(|e| e["session_id"] == session)
            .map(|e| e["call"]["events"].as_i64().unwrap())
            .collect();
        assert!(counts.is_sorted(), "{session}: {counts:?}");
    }
}

/// While two instances take callbacks concurrently, a subscriber that disconnects after every
/// few events and reconnects with the last id it saw ends up with every call's final state;
/// an id older than everything replays all calls changed since; the query fallback works.
#[sqlx::test]
async fn resuming_with_last_event_id_loses_nothing(pool: PgPool) {
    let a = Arc::new(spawn_api(pool.clone()).await);
    let b = Arc::new(spawn_api(pool.clone()).await);
    let mut stream = Sse::open(&a, FULL_TOKEN, "", None).await;
    let start = stream.next_within(PATIENCE).await.id.unwrap();
    drop(stream);

    let sessions: Vec<String> = (0..24).map(|i| format!("resume-{i}")).collect();
    let writers: Vec<_> = sessions
        .chunks(12)
        .zip([a.clone(), b.clone()])
        .map(|(chunk, app)| {
            let calls: Vec<Call> = chunk.iter().map(|s| Call::new(s, hour(1))).collect();
            tokio::spawn(async move {
                for call in calls {
                    call.deliver(&app).await;
                }
            })
        })
        .collect();

    let mut last_id = start.clone();
    let mut latest: HashMap<String, Value> = HashMap::new();
    let mut reconnects = 0;
    let deadline = Instant::now() + PATIENCE * 2;
    while !sessions.iter().all(|s| latest.get(s).is_some_and(finished)) {
        assert!(
            Instant::now() < deadline,
            "not all final states arrived: {latest:#?}"
        );
        let mut stream = Sse::open(&a, FULL_TOKEN, "", Some(&last_id)).await;
        let first = stream.next_within(PATIENCE).await;
        assert_eq!(
            first.id.as_deref(),
            Some(last_id.as_str()),
            "a resumed stream starts where asked"
        );
        let mut calls = 0;
        while calls < 5 {
            let Ok(Some(frame)) = timeout(Duration::from_millis(500), stream.next()).await else {
                break;
            };
            if frame.is_call() {
                let data = frame.json();
                latest.insert(
                    data["session_id"].as_str().unwrap().to_owned(),
                    data["call"].clone(),
                );
                calls += 1;
            }
        }
        last_id = stream.last_id.clone().unwrap();
        reconnects += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        reconnects > 3,
        "the stream was really resumed: {reconnects}"
    );
    for session in &sessions {
        let detail = get_json(&a, &format!("/v1/calls/{session}")).await;
        assert_eq!(latest[session], detail["call"], "{session}");
    }

    // From the first position again (an id older than everything since): every call.
    let mut replay = Sse::open(&a, FULL_TOKEN, "", Some(&start)).await;
    let names: Vec<&str> = sessions.iter().map(String::as_str).collect();
    replay.calls_until(all_finished(&names)).await;
    // The same through ?last_event_id=, for clients that cannot set headers.
    let mut by_query = Sse::open(&a, FULL_TOKEN, &format!("?last_event_id={start}"), None).await;
    assert_eq!(by_query.next_within(PATIENCE).await.id.unwrap(), start);
    by_query.calls_until(all_finished(&names)).await;
}

/// A client that never reads is dropped once `stream.buffer` events wait for it; another client
/// of the same instance receives every change meanwhile.
#[sqlx::test]
async fn a_consumer_that_never_reads_is_dropped_while_others_go_on(pool: PgPool) {
    let app = spawn_api_with(pool, |config| config.stream.buffer = 256).await;
    // The one that never reads: a socket with a small receive buffer, so little hides in the
    // kernel, asking for the stream and then reading nothing until the end of the test.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut idle = socket.connect(app.addr).await.unwrap();
    idle.write_all(
        format!(
            "GET /v1/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {FULL_TOKEN}\r\nConnection: close\r\n\r\n",
            app.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The reader, in a task of its own, collecting the sessions it is told about.
    let mut reader = Sse::open(&app, FULL_TOKEN, "", None).await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let reading = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(frame) = reader.next().await {
                assert_ne!(
                    frame.event.as_deref(),
                    Some("end"),
                    "the reader is never dropped: {frame:?}"
                );
                if frame.is_call() {
                    let session = frame.json()["session_id"].as_str().unwrap().to_owned();
                    seen.lock().unwrap().insert(session);
                }
            }
        })
    };

    // Commits of 16 calls each (one fee list each), well within the buffer for a reader that
    // keeps up. Each call carries 16 kB of userData, so the 1,600 changes (about 27 MB of
    // events) are three times what the buffer, hyper and the kernel's socket buffers (at most
    // net.ipv4.tcp_wmem's 4 MB here) hold for the idle client.
    let (rounds, per_round) = (100, 16);
    let user_data = "u".repeat(16_000);
    for round in 0..rounds {
        let mut fee: Value =
            serde_json::from_str(&fee_body(&format!("burst-{round}"), per_round)).unwrap();
        for record in fee["feeLst"].as_array_mut().unwrap() {
            record["userData"] = user_data.clone().into();
        }
        let response = app.post("/voicecall/fee", fee.to_string()).await;
        assert_eq!(response.status(), 200);
    }
    let deadline = Instant::now() + PATIENCE;
    while seen.lock().unwrap().len() < rounds * per_round {
        assert!(!reading.is_finished(), "the reader's stream ended");
        assert!(
            Instant::now() < deadline,
            "the reader saw {} changes",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Now read what the idle client was sent: the stream ended (the connection closes) with
    // `event: end`, code too_slow, long before the last change.
    let mut sent = Vec::new();
    timeout(PATIENCE, idle.read_to_end(&mut sent))
        .await
        .expect("the idle client's stream was ended")
        .unwrap();
    let sent = String::from_utf8_lossy(&sent);
    let events = sent.matches("event: call\n").count();
    assert!(sent.contains("event: end\n"), "{sent}");
    assert!(sent.contains(r#""code":"too_slow""#), "{sent}");
    assert!(
        events < rounds * per_round,
        "the idle client got {events} events"
    );
    assert!(!reading.is_finished(), "the reader goes on");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped = metrics
        .lines()
        .find_map(|line| line.strip_prefix("callhook_stream_dropped_total "))
        .and_then(|value| value.parse::<f64>().ok());
    assert!(dropped.is_some_and(|n| n >= 1.0), "{metrics}");
}

/// A masked token's events show no full number; filters pick calls by their current row;
/// what cannot be used is refused before the stream starts.
#[sqlx::test]
async fn masked_scope_filters_and_refusals(pool: PgPool) {
    let app = spawn_api(pool).await;
    let mut masked = Sse::open(&app, MASKED_TOKEN, "", None).await;
    let mut app_2 = Sse::open(&app, FULL_TOKEN, "?app_key=app-2", None).await;
    let mut busy = Sse::open(&app, FULL_TOKEN, "?outcome=busy", None).await;
    let mut by_number = Sse::open(&app, FULL_TOKEN, "?number=%2B8613900000009", None).await;

    let one = Call::new("filter-1", hour(2));
    let two = Call {
        app_key: "app-2".into(),
        answered: false,
        b: "+8613900000009".into(),
        ..Call::new("filter-2", hour(2))
    };
    one.deliver(&app).await;
    two.deliver(&app).await;

    let read = masked
        .calls_until(all_finished(&["filter-1", "filter-2"]))
        .await;
    let text = serde_json::to_string(&read).unwrap();
    for number in ["8613800000001", "8613900000009", "867550000001"] {
        assert!(!text.contains(number), "{number} in {text}");
    }
    assert!(text.contains("+86*********01"), "{text}");
    assert_eq!(read[0]["session_id"], read[0]["call"]["session_id"]);

    for (stream, what) in [
        (&mut app_2, "app_key"),
        (&mut busy, "outcome"),
        (&mut by_number, "number"),
    ] {
        let read = stream.calls_until(all_finished(&["filter-2"])).await;
        let sessions: HashSet<&str> = read
            .iter()
            .map(|e| e["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(sessions, HashSet::from(["filter-2"]), "{what}");
    }
    // filter-1 committed before filter-2's changes, so it would have come first: it was held
    // back, not late.

    let refused =
        |query: &'static str, header: Option<&'static str>, token: Option<&'static str>| {
            let mut request = app.client.get(app.url(&format!("/v1/stream{query}")));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(id) = header {
                request = request.header("Last-Event-ID", id);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (
                    status,
                    body["error"]["code"].clone(),
                    body["error"]["field"].clone(),
                )
            }
        };
    let cases = [
        (
            refused("", None, None).await,
            (401, "token_missing", "Authorization"),
        ),
        (
            refused("", Some("abc"), Some(FULL_TOKEN)).await,
            (400, "invalid_parameter", "Last-Event-ID"),
        ),
        (
            refused("", Some("12.!!"), Some(FULL_TOKEN)).await,
            (400, "invalid_parameter", "Last-Event-ID"),
        ),
        (
            refused("", Some("999999999999999"), Some(FULL_TOKEN)).await,
            (400, "invalid_parameter", "Last-Event-ID"),
        ),
        (
            refused("?last_event_id=-3", None, Some(FULL_TOKEN)).await,
            (400, "invalid_parameter", "last_event_id"),
        ),
        (
            refused("?apps=x", None, Some(FULL_TOKEN)).await,
            (400, "invalid_parameter", "apps"),
        ),
        (
            refused("?number=%2B8613800000001", None, Some(MASKED_TOKEN)).await,
            (403, "filter_not_allowed", "number"),
        ),
    ];
    for ((status, code, field), (want_status, want_code, want_field)) in cases {
        assert_eq!(
            (status, code.as_str().unwrap(), field.as_str().unwrap()),
            (want_status, want_code, want_field)
        );
    }
}

/// A quiet stream carries keep-alive comments with the position as their id; a change whose
/// notification never came (a writer that stamps the row but does not notify, as a listener
/// reconnecting would miss one) arrives by the slow poll; and shutdown ends the stream.
#[sqlx::test]
async fn keep_alives_the_slow_poll_and_shutdown(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |config| {
        config.stream.keep_alive_ms = 100;
        config.stream.poll_interval_ms = 300;
    })
    .await;
    Call::new("quiet-1", hour(3)).deliver(&app).await;
    let mut stream = Sse::open(&app, FULL_TOKEN, "", None).await;
    let start = stream.next_within(PATIENCE).await;
    let keep_alive = loop {
        let frame = stream.next_within(PATIENCE).await;
        if frame.comments.iter().any(|c| c == "keep-alive") {
            break frame;
        }
    };
    assert!(
        keep_alive.event.is_none() && keep_alive.data.is_none(),
        "{keep_alive:?}"
    );
    assert!(keep_alive.id.is_some(), "{keep_alive:?}");
    assert!(start.id.is_some());

    sqlx::query(
        "update calls set outcome = 'failed', change_xid = pg_current_xact_id()
         where session_id = 'quiet-1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    stream
        .calls_until(|latest| {
            latest
                .get("quiet-1")
                .is_some_and(|c| c["outcome"] == "failed")
        })
        .await;

    let ended = tokio::spawn(async move {
        loop {
            match stream.next().await {
                Some(frame) if frame.event.as_deref() == Some("end") => break frame.json(),
                Some(_) => {}
                None => panic!("the stream ended without saying why"),
            }
        }
    });
    timeout(PATIENCE, app.shutdown())
        .await
        .expect("shutdown is not held up by an open stream");
    let end = timeout(PATIENCE, ended).await.unwrap().unwrap();
    assert_eq!(end["error"]["code"], "shutting_down", "{end}");
}

/// Two writers, the earlier transaction committing last (transaction ids 9 and 10, 10 committing
/// first): a client that reads while the earlier one is open, disconnects, and resumes from the
/// last id it saw (events and keep-alives alike) still gets the earlier one's change once it
/// commits, and in position order it comes first.
#[sqlx::test]
async fn an_earlier_transaction_committing_later_is_not_skipped(pool: PgPool) {
    let app = spawn_api_with(pool.clone(), |config| config.stream.keep_alive_ms = 100).await;
    Call::new("early", hour(4)).deliver(&app).await;
    let mut stream = Sse::open(&app, FULL_TOKEN, "", None).await;
    stream.next_within(PATIENCE).await;

    // The earlier transaction: it has its id (it wrote) and stays open.
    let mut earlier = pool.begin().await.unwrap();
    sqlx::query(
        "update calls set outcome = 'failed', change_xid = pg_current_xact_id()
         where session_id = 'early'",
    )
    .execute(&mut *earlier)
    .await
    .unwrap();
    // The later ones commit first.
    Call::new("late", hour(4)).deliver(&app).await;
    // Whatever the stream says meanwhile (the late call must wait, keep-alives come), bounded
    // only to give it the chance to move on.
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(Some(frame)) = timeout(until - Instant::now(), stream.next()).await {
        assert!(
            !(frame.is_call() && frame.json()["session_id"] == "late"),
            "a change was delivered past a transaction still open: {frame:?}"
        );
    }
    let resume_from = stream.last_id.clone().unwrap();
    drop(stream);
    earlier.commit().await.unwrap();

    let mut resumed = Sse::open(&app, FULL_TOKEN, "", Some(&resume_from)).await;
    let read = resumed
        .calls_until(|latest| {
            latest
                .get("early")
                .is_some_and(|c| c["outcome"] == "failed")
                && latest.get("late").is_some_and(finished)
        })
        .await;
    let first_late = read.iter().position(|e| e["session_id"] == "late").unwrap();
    let early = read
        .iter()
        .position(|e| e["session_id"] == "early")
        .unwrap();
    assert!(early < first_late, "{read:#?}");
}
