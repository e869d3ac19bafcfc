//! `GET /console/refused`: the refused callbacks, newest first, as `GET /v1/refused` lists
//! them, with their errors. A full-scope viewer gets a reprocess button on each, which posts
//! to `POST /v1/refused/{id}/reprocess` (the session cookie, plus the console's CSRF header).

use axum::{extract::State, http::Uri};
use maud::{Markup, html};

use super::{
    PageError, PageResult, Viewer,
    call::{raw_body, verdict},
    layout::{self, Nav},
    show_time,
};
use crate::{
    http::AppState,
    http::{
        api::{
            params::{
                CursorKind, RefusedOutcome, RefusedParams, encode_cursor, finish_page, parse_query,
            },
            view::RawCallbackView,
        },
        error::ApiError,
    },
    store::read,
};

/// `GET /console/refused`.
pub async fn page(State(state): State<AppState>, Viewer(viewer): Viewer, uri: Uri) -> PageResult {
    let fail = |e: ApiError| PageError::from_api(e, &viewer);
    let params: RefusedParams = parse_query(&uri).map_err(fail)?;
    if params.limit.is_some() {
        return Err(fail(ApiError::invalid_parameter(
            "limit",
            "the console's page size is console.rows",
        )));
    }
    let limit = state.config.console.rows as usize;
    let after = params.after().map_err(fail)?;
    let mut rows = read::refused(
        &state.pool,
        &params.filter(),
        after.as_ref(),
        limit as i64 + 1,
    )
    .await
    .map_err(|e| fail(ApiError::from(e)))?;
    let next = finish_page(&mut rows, limit, |raw| {
        let (at, id) = raw.sort_key();
        encode_cursor(CursorKind::Refused, at, &id.to_string())
    });
    let callbacks: Vec<RawCallbackView> = rows
        .into_iter()
        .map(|raw| RawCallbackView::new(raw, viewer.scope))
        .collect();
    let outcome = uri
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "outcome")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/refused" {
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any refusal" }
                    @for choice in RefusedOutcome::ALL.map(|o| o.receipt_outcome().as_str()) {
                        option value=(choice) selected[outcome == choice] { (choice) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if !viewer.full() {
            p.muted { "Reprocessing needs a token with scope full." }
        }
        table.refused {
            thead { tr {
                th { "Received (UTC)" } th { "Endpoint" } th { "eventType" } th { "Outcome" } th { "HTTP" }
                th { "Signature" } th { "Error" } th { "Reprocessed" } th { "Request" }
                @if viewer.full() { th {} }
            } }
            tbody {
                @if callbacks.is_empty() {
                    tr.empty { td colspan="10" { "No refused callbacks." } }
                }
                @for raw in &callbacks {
                    tr data-callback=(raw.id) {
                        td { (show_time(Some(raw.received_at))) }
                        td { (raw.endpoint) }
                        td { (raw.event_type.as_deref().unwrap_or("–")) }
                        td { span class={ "badge r-" (raw.outcome) } { (raw.outcome) } }
                        td { (raw.http_status) }
                        td { (verdict(&raw.signature_verdict)) }
                        td.error { (error(raw.error.as_ref())) }
                        td.reprocessed {
                            @if let Some(outcome) = &raw.reprocess_outcome {
                                (outcome) " · " (show_time(raw.reprocessed_at))
                                @if raw.reprocess_error.is_some() { br; (error(raw.reprocess_error.as_ref())) }
                            } @else { "–" }
                        }
                        td { (raw_body(raw)) }
                        @if viewer.full() {
                            td { button.reprocess type="button" data-reprocess=(format!("/v1/refused/{}/reprocess", raw.id)) { "Reprocess" } }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            @let query = if outcome.is_empty() { format!("cursor={next}") } else { format!("outcome={outcome}&cursor={next}") };
            p { a href={ "/console/refused?" (query) } { "Older →" } }
        }
    };
    Ok(layout::page(
        "Refused callbacks",
        Some(&viewer),
        Nav::Refused,
        body,
    ))
}

/// `{code, message, field?}` as people read it.
fn error(error: Option<&serde_json::Value>) -> Markup {
    let Some(error) = error else {
        return html! { "–" };
    };
    let text = |key: &str| error.get(key).and_then(|v| v.as_str());
    html! {
        @if let Some(code) = text("code") { span.code { (code) } " " }
        (text("message").unwrap_or(""))
        @if let Some(field) = text("field") { " " span.muted { "(" (field) ")" } }
    }
}
