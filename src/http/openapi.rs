//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint, generated from the handlers'
//! annotations and the types they answer with (`utoipa`), so it cannot drift from the code. It
//! needs no token. A test checks real answers against it (`tests/api/openapi.rs`).

use std::sync::LazyLock;

use axum::{Json, Router, routing::get};
use serde::{Deserialize, Serialize};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{api, error::ErrorBody};
use crate::{
    app::AppState,
    platform::callback::{CallStatusInfo, FeeInfo},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callhook",
        description = "Receives Huawei Cloud VoiceCall status and CDR callbacks into PostgreSQL, \
                       and serves the call log they make. /voicecall/* is for the platform; /v1 needs \
                       `Authorization: Bearer <token>` (config api.tokens); phone numbers are masked \
                       unless the token's scope is full."
    ),
    paths(
        status_callback,
        fee_callback,
        events_callback,
        api::calls::list,
        api::calls::detail,
        api::calls::gaps,
        api::cdrs::list,
        api::rejected::list,
        api::rejected::reprocess_one,
        api::rejected::reprocess_all,
        api::export::calls_csv,
        api::export::cdrs_csv,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "callbacks", description = "What the platform pushes (register these URLs)"),
        (name = "call log", description = "One row per call, from everything stored about it"),
        (name = "CDRs", description = "Call detail records as the platform sent them"),
        (name = "refused callbacks", description = "Kept requests that were refused, and reprocessing them"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the tokens of config api.tokens"))
                    .build(),
            ),
        );
    }
}

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(&*DOCUMENT) }))
}

/// A status event push (spec §1.5).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCallback {
    pub event_type: StatusEventType,
    pub status_info: CallStatusInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum StatusEventType {
    Callout,
    Alerting,
    Answer,
    CollectInfo,
    Disconnect,
}

/// A fee (CDR) push (spec §1.6): 1 to 50 CDRs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeeCallback {
    pub event_type: FeeEventType,
    #[schema(min_items = 1, max_items = 50)]
    pub fee_lst: Vec<FeeInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum FeeEventType {
    Fee,
}

/// Either kind: every callback endpoint dispatches on `eventType`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnyCallback {
    Status(Box<StatusCallback>),
    Fee(FeeCallback),
}

/// The answer to a callback that was stored (or was a duplicate of something stored).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAck {
    /// "0": success, which is what stops the platform re-pushing.
    pub resultcode: String,
    pub resultdesc: String,
}

// The callback handlers are closures over their endpoint (`callbacks::router`); these stand in
// for them in the document.

/// Status events: callout, alerting, answer, collectInfo, disconnect. Any kind is accepted here
/// (dispatch is on `eventType`).
#[utoipa::path(
    post,
    path = "/voicecall/status",
    tag = "callbacks",
    request_body(content = StatusCallback, content_type = "application/json"),
    params(
        ("X-AKSK" = Option<String>, Header, description = "UsernameToken Username=…, PasswordDigest=…, Nonce=…, Created=… (signature.mode)"),
    ),
    responses(
        (status = 200, description = "Stored, or a duplicate of something stored; header x-callhook-outcome says which (stored, duplicate, partial)", body = CallbackAck),
        (status = 400, description = "Not a callback that can be read; `field` names the culprit", body = ErrorBody),
        (status = 401, description = "Signature refused (signature.mode = enforce)", body = ErrorBody),
        (status = 405, description = "Not POST", body = ErrorBody),
        (status = 413, description = "Body over http.body_limit_bytes", body = ErrorBody),
        (status = 503, description = "The database cannot commit; nothing was stored; retry after Retry-After", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn status_callback() {}

/// Fee lists (CDRs). Any kind is accepted here (dispatch is on `eventType`). CDRs that cannot
/// be read are listed in the kept request's error and the rest stored (outcome partial, 200).
#[utoipa::path(
    post,
    path = "/voicecall/fee",
    tag = "callbacks",
    request_body(content = FeeCallback, content_type = "application/json"),
    params(
        ("X-AKSK" = Option<String>, Header, description = "UsernameToken Username=…, PasswordDigest=…, Nonce=…, Created=… (signature.mode)"),
    ),
    responses(
        (status = 200, description = "Stored, partly stored, or a duplicate; header x-callhook-outcome says which", body = CallbackAck),
        (status = 400, description = "Not a fee list that can be read (no CDR of it can be); `field`/`records` name the culprits", body = ErrorBody),
        (status = 401, description = "Signature refused (signature.mode = enforce)", body = ErrorBody),
        (status = 405, description = "Not POST", body = ErrorBody),
        (status = 413, description = "Body over http.body_limit_bytes", body = ErrorBody),
        (status = 503, description = "The database cannot commit; nothing was stored; retry after Retry-After", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn fee_callback() {}

/// Either kind, for when one URL is registered for both.
#[utoipa::path(
    post,
    path = "/voicecall/events",
    tag = "callbacks",
    request_body(content = AnyCallback, content_type = "application/json"),
    params(
        ("X-AKSK" = Option<String>, Header, description = "UsernameToken Username=…, PasswordDigest=…, Nonce=…, Created=… (signature.mode)"),
    ),
    responses(
        (status = 200, description = "Stored, partly stored, or a duplicate; header x-callhook-outcome says which", body = CallbackAck),
        (status = 400, description = "Not a callback that can be read", body = ErrorBody),
        (status = 401, description = "Signature refused (signature.mode = enforce)", body = ErrorBody),
        (status = 405, description = "Not POST", body = ErrorBody),
        (status = 413, description = "Body over http.body_limit_bytes", body = ErrorBody),
        (status = 503, description = "The database cannot commit; nothing was stored; retry after Retry-After", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn events_callback() {}
