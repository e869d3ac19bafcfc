//! A stand-in for the platform's API (spec §2): a real HTTP server on 127.0.0.1 that checks
//! what the client sends (method, path, Content-Type, Authorization, the X-AKSK/X-WSSE digest,
//! recomputed here with the hmac/sha2 crates and not with callhook's code, and the body), answers
//! as the spec documents, or with the replies a test scripts, and keeps every request it got.
//! A request that breaks a rule is answered 1010002 with the broken rule in `resultdesc`, and
//! the rule is kept in [`Received::problems`].

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// The bytes behind every recording link.
pub const RECORDING_BYTES: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt fake a-law recording";

/// What the fake answers to the next request that passes its checks.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The documented success of the operation.
    Success,
    /// `{"resultcode": code, "resultdesc": desc}` with this HTTP status.
    Code {
        http: u16,
        code: &'static str,
        desc: &'static str,
    },
    /// Any status and body (e.g. an HTML error page).
    Raw { http: u16, body: &'static str },
    /// Waits, then succeeds (for the client's total timeout).
    Slow(Duration),
}

impl Reply {
    pub fn code(code: &'static str) -> Self {
        Self::Code {
            http: 200,
            code,
            desc: "scripted",
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// "aksk" or "wsse", from the Authorization header.
    pub scheme: Option<&'static str>,
    pub app_key: Option<String>,
    pub nonce: Option<String>,
    /// All request headers, lowercase names.
    pub headers: HashMap<String, String>,
    /// The JSON body of a POST.
    pub body: Option<Value>,
    /// Rules the request broke; empty for a correct request.
    pub problems: Vec<String>,
}

struct Shared {
    /// app key -> secret the platform knows.
    apps: Vec<(String, String)>,
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    nonces: Mutex<HashSet<String>>,
    sessions: AtomicUsize,
    addr: SocketAddr,
}

pub struct FakePlatform {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The operations the fake knows: method, path, required body fields (or query parameters).
const ROUTES: &[(&str, &str, &[&str])] = &[
    (
        "POST",
        "/rest/httpsessions/click2Call/v2.0",
        &["displayNbr", "callerNbr", "displayCalleeNbr", "calleeNbr"],
    ),
    (
        "POST",
        "/rest/httpsessions/callnotify/v2.0",
        &["displayNbr", "calleeNbr", "playInfoList"],
    ),
    (
        "POST",
        "/rest/httpsessions/callVerify/v1.0",
        &[
            "displayNbr",
            "calleeNbr",
            "languageType",
            "preTone",
            "verifyCode",
        ],
    ),
    (
        "POST",
        "/rest/httpsessions/callStop/v2.0",
        &["sessionid", "signal"],
    ),
    (
        "GET",
        "/rest/provision/voice/record/v1.0",
        &["fileName", "recordDomain"],
    ),
];

impl FakePlatform {
    /// Starts on a random port, knowing `apps` (key, secret).
    pub async fn start(apps: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, apps)
    }

    /// Starts on a listener bound elsewhere (to come up on a port chosen in advance).
    pub fn start_on(listener: TcpListener, apps: &[(&str, &str)]) -> Self {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            apps: apps
                .iter()
                .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
                .collect(),
            received: Mutex::default(),
            script: Mutex::default(),
            nonces: Mutex::default(),
            sessions: AtomicUsize::new(0),
            addr,
        });
        let router = Router::new()
            .route("/files/{name}", get(recording_file))
            .fallback(platform)
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with `replies`, in order; after them, `Reply::Success`.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// The only request received (panics unless exactly one arrived), checked to be correct.
    pub fn single(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "requests received: {received:#?}");
        let request = received.into_iter().next().unwrap();
        assert!(request.problems.is_empty(), "{:?}", request.problems);
        request
    }
}

async fn platform(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut problems = Vec::new();
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default();
    let headers_map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let route = ROUTES.iter().find(|(_, p, _)| *p == path);
    match route {
        None => problems.push(format!("no such API: {path}")),
        Some((m, _, _)) if *m != method.as_str() => {
            problems.push(format!("{path} takes {m}, not {method}"));
        }
        Some(_) => {}
    }
    let content_type = headers_map.get("content-type").map(String::as_str);
    if content_type != Some("application/json;charset=UTF-8") {
        problems.push(format!("Content-Type is {content_type:?}"));
    }
    let (scheme, app_key, nonce) = check_auth(&shared, &headers_map, &mut problems);
    let body_json = if method == Method::POST {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => Some(Value::Object(object)),
            _ => {
                problems.push("the body is not a JSON object".into());
                None
            }
        }
    } else {
        if !body.is_empty() {
            problems.push("a GET with a body".into());
        }
        None
    };
    if let Some((_, _, required)) = route {
        for field in *required {
            let present = match &body_json {
                Some(body) => body.get(field).is_some_and(|v| !v.is_null()),
                None => query.get(*field).is_some_and(|v| !v.is_empty()),
            };
            if !present {
                problems.push(format!("required {field} is missing"));
            }
        }
    }
    shared.received.lock().unwrap().push(Received {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        scheme,
        app_key,
        nonce,
        headers: headers_map,
        body: body_json.clone(),
        problems: problems.clone(),
    });
    if route.is_none() {
        return answer(404, "1010006", "Invalid Rest API.");
    }
    if !problems.is_empty() {
        let desc = format!("Invalid request.{}", problems.join("; "));
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"resultcode": "1010002", "resultdesc": desc})),
        )
            .into_response();
    }
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Success);
    match reply {
        Reply::Success => success(&shared, &path, body_json.as_ref(), &query),
        Reply::Code { http, code, desc } => answer(http, code, desc),
        Reply::Raw { http, body } => (StatusCode::from_u16(http).unwrap(), body).into_response(),
        Reply::Slow(wait) => {
            tokio::time::sleep(wait).await;
            success(&shared, &path, body_json.as_ref(), &query)
        }
    }
}

fn answer(http: u16, code: &str, desc: &str) -> Response {
    (
        StatusCode::from_u16(http).unwrap(),
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        json!({"resultcode": code, "resultdesc": desc}).to_string(),
    )
        .into_response()
}

/// The documented success answers.
fn success(
    shared: &Shared,
    path: &str,
    body: Option<&Value>,
    query: &HashMap<String, String>,
) -> Response {
    if path.starts_with("/rest/provision/voice/record") {
        let location = format!("http://{}/files/{}", shared.addr, query["fileName"]);
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let mut answer = json!({"resultcode": "0", "resultdesc": "Success"});
    if !path.contains("callStop") {
        let n = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        answer["sessionId"] = json!(format!(
            "1201_612_{n}_20261124060000@callenabler.fake.huaweicaas.com"
        ));
        if body.and_then(|b| b.get("returnIdlePort")) == Some(&json!("true")) {
            answer["idlePort"] = json!(42);
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        answer.to_string(),
    )
        .into_response()
}

async fn recording_file(Path(name): Path<String>) -> Response {
    if name.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    (StatusCode::OK, RECORDING_BYTES).into_response()
}

/// Checks Authorization and X-AKSK/X-WSSE: scheme, attributes, app, nonce (fresh, 1–128
/// letters and digits), Created (within 5 minutes of now, UTC) and the digest.
fn check_auth(
    shared: &Shared,
    headers: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> (Option<&'static str>, Option<String>, Option<String>) {
    let scheme = match headers.get("authorization").map(String::as_str) {
        Some(r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#) => "aksk",
        Some(r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#) => "wsse",
        other => {
            problems.push(format!("Authorization is {other:?}"));
            return (None, None, None);
        }
    };
    let (token_header, other_header) = if scheme == "aksk" {
        ("x-aksk", "x-wsse")
    } else {
        ("x-wsse", "x-aksk")
    };
    if headers.contains_key(other_header) {
        problems.push(format!("{other_header} sent with the {scheme} scheme"));
    }
    let Some(token) = headers.get(token_header) else {
        problems.push(format!("{token_header} is missing"));
        return (Some(scheme), None, None);
    };
    let Some(attributes) = token.strip_prefix("UsernameToken ") else {
        problems.push(format!("{token_header} is not a UsernameToken: {token}"));
        return (Some(scheme), None, None);
    };
    let mut values = HashMap::new();
    for pair in attributes.split(',') {
        let Some((key, value)) = pair.trim().split_once('=') else {
            problems.push(format!("{token_header} attribute {pair:?}"));
            continue;
        };
        values.insert(key.to_owned(), value.trim_matches('"').to_owned());
    }
    let get = |name: &str| values.get(name).cloned().unwrap_or_default();
    let (username, digest, nonce, created) = (
        get("Username"),
        get("PasswordDigest"),
        get("Nonce"),
        get("Created"),
    );
    let Some((_, secret)) = shared.apps.iter().find(|(key, _)| *key == username) else {
        problems.push(format!("unknown app {username:?}"));
        return (Some(scheme), Some(username), Some(nonce));
    };
    if nonce.is_empty() || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        problems.push(format!("nonce {nonce:?} is not 1-128 letters and digits"));
    }
    if !shared.nonces.lock().unwrap().insert(nonce.clone()) {
        problems.push(format!("nonce {nonce} used twice"));
    }
    match PrimitiveDateTime::parse(
        &created,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    ) {
        Ok(at)
            if (OffsetDateTime::now_utc() - at.assume_utc()).abs()
                <= time::Duration::minutes(5) => {}
        _ => problems.push(format!("Created {created:?} is not now in UTC")),
    }
    let expected = if scheme == "aksk" {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{nonce}{created}").as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    } else {
        let hash = Sha256::digest(format!("{nonce}{created}{secret}").as_bytes());
        BASE64.encode(hex::encode(hash))
    };
    if digest != expected {
        problems.push(format!("PasswordDigest {digest:?} is wrong"));
    }
    (Some(scheme), Some(username), Some(nonce))
}

fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A URL where nothing listens: connecting is refused.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A server that reads a whole request, counts it, and closes the connection without answering:
/// the request reached the other side, the answer never came.
pub struct HangUp {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
}

impl HangUp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        if request_complete(&seen) {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let _ = socket.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        Self { url, requests }
    }
}

fn request_complete(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    seen.len() >= end + 4 + length
}

/// A port whose listen queue is full, so connecting hangs until the client's connect timeout:
/// nothing is ever received.
pub struct BlackHole {
    pub url: String,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

impl BlackHole {
    /// `None` where the kernel does not behave so (then the test has nothing to check).
    pub fn start() -> Option<Self> {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind("127.0.0.1:0".parse().unwrap()).ok()?;
        let listener = socket.listen(1).ok()?;
        let addr = listener.local_addr().ok()?;
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => fillers.push(stream),
                Err(_) => {
                    return Some(Self {
                        url: format!("http://{addr}"),
                        _listener: listener,
                        _fillers: fillers,
                    });
                }
            }
        }
        None
    }
}
