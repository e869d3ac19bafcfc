//! `GET /v1/stream`: server-sent events, one per change of a call's row (docs/stream.md).
//!
//! The stream is `crate::stream` put on the wire: the first frame carries the position the
//! stream starts from (`id:` only, which sets an EventSource's last event id without firing an
//! event), then one `event: call` per change with the position after it as `id`, a comment with
//! the current position as `id` after `stream.keep_alive_ms` without one, and, when the stream
//! ends, `event: end` saying why. Mounted outside the `http.request_timeout_ms` layer: it lasts as
//! long as the client stays, and ends at shutdown.

use std::time::Duration;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
};
use futures_util::{Stream, StreamExt};
use serde_json::json;

use super::{
    auth::ApiCaller,
    params::{StreamParams, check_call_filter, parse_query},
    view::CallChange,
};
use crate::{
    config::TokenScope,
    http::AppState,
    http::error::{ApiError, ErrorBody, Unavailable},
    metrics as m,
    stream::{Cursor, Ended, Next, SubscribeError, Subscription},
    telemetry::mask_numbers,
};

const LAST_EVENT_ID: &str = "Last-Event-ID";

/// Changes of calls as they commit, on any replica, as server-sent events.
///
/// Each `event: call` carries a `CallChange` as its data (the call as `GET
/// /v1/calls/{session_id}` shows it, masked unless the token's scope is full) and, as its `id`,
/// the position after it: reconnect with that id in `Last-Event-ID` (or `last_event_id`) and
/// every call changed since arrives, none skipped (a call changed several times may arrive once,
/// in its latest state). The first frame carries the starting position as `id` and nothing else;
/// a comment (`: keep-alive`, with the current position as `id`) follows each
/// `stream.keep_alive_ms` without an event. `event: end` closes a stream that ends: data
/// `{"error":{"code","message"}}` with code `too_slow` (the client fell `stream.buffer` events
/// behind), `shutting_down` or `database_unavailable`; reconnect with the last id.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "call log",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: resume after it (wins over `last_event_id`)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A text/event-stream of `event: call` (data: CallChange), keep-alive comments, and a final `event: end`", content_type = "text/event-stream", body = String),
        (status = 400, description = "A parameter cannot be used, or Last-Event-ID / last_event_id is not an id of this stream (`field` names which)", body = ErrorBody),
        (status = 401, description = "No token, or not a configured one", body = ErrorBody),
        (status = 403, description = "A masked token filtered on `number`, or on `user_data` holding a phone number (`filter_not_allowed`)", body = ErrorBody),
        (status = 503, description = "stream.max_subscribers streams are open (`streams_busy`), callhook is shutting down, or the database is unavailable; retry", body = ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params: StreamParams = parse_query(&uri)?;
    check_call_filter(&caller, &params.as_call_filter())?;
    let (from, named) = resume_from(&headers, &params)?;
    let subscription = state
        .changes
        .subscribe(params.filter(), from)
        .await
        .map_err(|error| match error {
            SubscribeError::Ahead { .. } => ApiError::invalid_parameter(
                named,
                format!(
                    "{named} is ahead of this database, so it is not an id this stream handed out \
                     (the database was replaced?); connect again without it"
                ),
            ),
            SubscribeError::Busy(_) => ApiError::Unavailable(Unavailable::StreamsBusy),
            SubscribeError::Closed => ApiError::Unavailable(Unavailable::ShuttingDown),
            SubscribeError::Store(error) => error.into(),
        })?;
    let events = events(subscription, caller.scope, state.config.stream.keep_alive());
    let mut response = Sse::new(events).into_response();
    // Proxies that buffer answers (nginx) would hold events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Where to resume: `Last-Event-ID`, else `last_event_id`, with the name of the one used. An
/// empty id is none: an EventSource sends it only once an event has set one.
fn resume_from(
    headers: &HeaderMap,
    params: &StreamParams,
) -> Result<(Option<Cursor>, &'static str), ApiError> {
    let header = headers
        .get(LAST_EVENT_ID)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| invalid_id(LAST_EVENT_ID, "not ASCII"))
        })
        .transpose()?
        .filter(|value| !value.is_empty());
    let (value, named) = match header {
        Some(value) => (Some(value), LAST_EVENT_ID),
        None => (
            params.last_event_id.as_deref().filter(|v| !v.is_empty()),
            "last_event_id",
        ),
    };
    let from = value
        .map(|value| {
            value
                .parse::<Cursor>()
                .map_err(|error| invalid_id(named, &error.to_string()))
        })
        .transpose()?;
    Ok((from, named))
}

fn invalid_id(named: &'static str, why: &str) -> ApiError {
    ApiError::invalid_parameter(named, format!("{named}: {why}"))
}

/// The stream's frames (module docs).
fn events(
    subscription: Subscription,
    scope: TokenScope,
    keep_alive: Duration,
) -> impl Stream<Item = Result<Event, axum::Error>> {
    let start = Event::default().id(subscription.position().to_string());
    let rest = futures_util::stream::unfold(Some(subscription), move |subscription| async move {
        let mut subscription = subscription?;
        let event = match subscription.next(keep_alive).await {
            Ok(Next::Change(change)) => {
                metrics::counter!(m::STREAM_EVENTS_TOTAL).increment(1);
                Event::default()
                    .event("call")
                    .id(change.cursor.to_string())
                    .json_data(CallChange::new(&change.call, scope))
            }
            Ok(Next::Idle(position)) => Ok(Event::default()
                .id(position.to_string())
                .comment("keep-alive")),
            Err(ended) => return Some((Ok(end(&ended)), None)),
        };
        Some((event, Some(subscription)))
    });
    futures_util::stream::once(async move { Ok(start) }).chain(rest)
}

/// The last frame: why the stream ends.
fn end(ended: &Ended) -> Event {
    let (code, message) = match ended {
        Ended::TooSlow => (
            "too_slow",
            "this client fell stream.buffer events behind and was dropped; connect again with Last-Event-ID",
        ),
        Ended::Closed => (
            "shutting_down",
            "callhook is shutting down; connect again with Last-Event-ID",
        ),
        Ended::Failed(error) => {
            tracing::warn!(error = %mask_numbers(&error.to_string()), "a stream could not catch up; ended");
            (
                "database_unavailable",
                "reading the changes failed; connect again with Last-Event-ID",
            )
        }
    };
    Event::default()
        .event("end")
        .data(json!({"error": {"code": code, "message": message}}).to_string())
}
