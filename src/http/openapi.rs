//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the handlers'
//! annotations and the types they answer with (`utoipa`), so it cannot drift from the code. It
//! needs no token. Tests check that it names every route the router serves and that real
//! answers match it (`tests/api/openapi.rs`), and that its lenient field schemas accept exactly
//! what the readers accept (`tests/api/fuzz.rs`).
//!
//! What the derives cannot state is added by `document`, each from where the server takes it:
//! page sizes from the configuration, the answers every route may give (408, 500), what query
//! and path strings cannot hold, the fee list's rule that one readable CDR is enough, and the
//! paths that moved (from the router's `Routes::moved`), as deprecated redirects.

use std::sync::Arc;

use axum::{Extension, Json, http::Method};
use serde_json::{Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{
    Routes, api,
    callback_schema::{CallbackOutcome, KeptIn},
    callbacks, ops,
};
use crate::{
    config::ApiConfig, http::api::params::MAX_GAP_AGE_SECS, platform::callback::MAX_FEE_RECORDS,
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
        callbacks::status,
        callbacks::fee,
        callbacks::events,
        api::calls::list,
        api::calls::detail,
        api::calls::gaps,
        api::cdrs::list,
        api::kpis::get,
        api::refused::list,
        api::refused::reprocess_one,
        api::refused::reprocess_all,
        api::export::calls_csv,
        api::export::cdrs_csv,
        api::stream::stream,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
    ),
    // Referred to only by a header, or by the data of an event stream, so not found through
    // the paths.
    components(schemas(CallbackOutcome, KeptIn, api::view::CallChange)),
    modifiers(&BearerScheme),
    tags(
        (name = "callbacks", description = "What the platform pushes (register these URLs)"),
        (name = "call log", description = "One row per call, from everything stored about it"),
        (name = "CDRs", description = "Call detail records as the platform sent them"),
        (name = "KPIs", description = "Answer and network effectiveness ratios, durations and delays of the calls of a range"),
        (name = "refused callbacks", description = "Kept requests that were refused, and reprocessing them"),
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
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

/// Query and path strings are bound into SQL, and PostgreSQL text cannot hold a NUL: such a
/// value is a 400. (JSON Schema patterns are ECMA-262; `\u0000` is the NUL character.)
const NO_NUL: &str = r"^[^\u0000]*$";

/// The document served: the derived one with what the derives cannot state (module docs).
/// `untimed` are the routes `http.request_timeout_ms` does not bound (they never answer 408);
/// `moved` are (method, old path, new path) of the paths that moved.
pub fn document(
    api: &ApiConfig,
    untimed: &[(Method, &'static str)],
    moved: &[(Method, &'static str, &'static str)],
) -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    if let Some(paths) = document["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(operations) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in operations.iter_mut() {
                let timed = !untimed
                    .iter()
                    .any(|(m, p)| p == path && m.as_str().eq_ignore_ascii_case(method));
                let responses = &mut operation["responses"];
                if timed {
                    responses["408"] = json!({
                        "description": "The request took longer than http.request_timeout_ms; no body. \
                                        A callback may or may not have been stored (look for its request id)."
                    });
                }
                let mut internal = error.clone();
                internal["description"] =
                    json!("A bug or a storage failure (`internal_error`); nothing was stored");
                responses
                    .as_object_mut()
                    .map(|r| r.entry("500").or_insert(internal));
                // `get_mut`: indexing a missing key would insert a null `parameters`.
                let parameters = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut);
                for parameter in parameters.into_iter().flatten() {
                    constrain_parameter(parameter, api);
                }
            }
        }
    }
    // After the loop: a redirect answers neither 408 nor 500, and takes its target's
    // parameters as constrained already.
    for (method, from, to) in moved {
        let method = method.as_str().to_ascii_lowercase();
        let operation = moved_operation(&document["paths"][to][&method], to);
        document["paths"][from][&method] = operation;
    }
    let schemas = &mut document["components"]["schemas"];
    // Unknown fields are kept (`extra`, jsonb), so they too may hold no NUL, at any depth.
    schemas["StorableJson"] = json!({
        "description": "Any JSON holding no NUL character in a string or key (PostgreSQL cannot store one)",
        "type": ["null", "boolean", "number", "string", "array", "object"],
        "pattern": NO_NUL,
        "items": {"$ref": "#/components/schemas/StorableJson"},
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/StorableJson"},
    });
    for kept in ["CallStatusInfo", "FeeInfo"] {
        schemas[kept]["propertyNames"] = json!({"pattern": NO_NUL});
        schemas[kept]["additionalProperties"] =
            json!({"$ref": "#/components/schemas/StorableJson"});
    }
    schemas["FeeCallback"]["properties"]["feeLst"] = json!({
        "description": "1 to 50 CDRs. A list is taken when at least one of its CDRs can be read \
                        (FeeInfo); the others are kept in the request's error (outcome partial).",
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_FEE_RECORDS,
        "contains": {"$ref": "#/components/schemas/FeeInfo"},
    });
    document
}

/// A path that moved to `to`, whose operation there is `target`: deprecated, and answered with
/// a 308 to `to`. It takes the same parameters (the redirect keeps them) and the same token
/// (a client keeps `Authorization` on the same host).
fn moved_operation(target: &Value, to: &str) -> Value {
    let mut operation = json!({
        "deprecated": true,
        "summary": format!("Moved permanently to {to}"),
        "description": format!(
            "A permanent redirect (308: the method, body and token stay) to {to}, with the \
             query as sent. Use {to}."
        ),
        "responses": {"308": {
            "description": format!("Moved to {to}"),
            "headers": {"Location": {
                "description": format!("{to}, its parameters and query as sent"),
                "schema": {"type": "string"},
            }},
        }},
    });
    for key in ["tags", "parameters", "security"] {
        if let Some(value) = target.get(key) {
            operation[key] = value.clone();
        }
    }
    operation
}

fn constrain_parameter(parameter: &mut Value, api: &ApiConfig) {
    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
    let place = parameter["in"].as_str().unwrap_or_default().to_owned();
    let schema = &mut parameter["schema"];
    match (place.as_str(), name.as_str()) {
        ("query", "limit") => {
            schema["minimum"] = json!(1);
            schema["maximum"] = json!(api.max_limit);
            schema["default"] = json!(api.default_limit);
        }
        ("query", "older_than") => {
            schema["maximum"] = json!(MAX_GAP_AGE_SECS);
            schema["default"] = json!(api.cdr_gap_after_secs);
        }
        ("query", "cursor") => {
            // Base64url (padding tolerated); only a next_cursor of the same list is accepted.
            schema["pattern"] = json!("^[A-Za-z0-9_-]+=*$");
            schema["minLength"] = json!(1);
        }
        ("query" | "path", _) if is_plain_string(schema) => {
            schema["pattern"] = json!(NO_NUL);
            if place == "path" {
                schema["minLength"] = json!(1);
            }
        }
        _ => {}
    }
}

/// A string schema without a format (those have their own syntax), possibly nullable.
fn is_plain_string(schema: &Value) -> bool {
    let string = match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(types) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    string && schema.get("format").is_none() && schema.get("enum").is_none()
}

/// The document, made once when the routes are.
#[derive(Clone)]
pub struct Document(Arc<Value>);

pub fn routes(
    api: &ApiConfig,
    untimed: &[(Method, &'static str)],
    moved: &[(Method, &'static str, &'static str)],
) -> Routes {
    let document = Document(Arc::new(document(api, untimed, moved)));
    Routes::default()
        .route(Method::GET, "/openapi.json", openapi_json)
        .map(|router| router.layer(Extension(document)))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json(Extension(Document(document)): Extension<Document>) -> Json<Value> {
    Json(Value::clone(&document))
}
