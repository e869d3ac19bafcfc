//! Callback bodies the platform pushes (spec §1.5 status events, §1.6 fee lists): typed, with
//! every documented field, unknown fields kept, and parse errors that name the field.
//!
//! The structs below are the field table: storage and documentation follow them.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, value::RawValue};
use sha2::{Digest, Sha256};

use super::lenient::{opt_i32, opt_string};

/// The platform pushes at most this many CDRs in one fee list (spec §1.4).
pub const MAX_FEE_RECORDS: usize = 50;

/// `eventType` values (spec §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Callout,
    Alerting,
    Answer,
    CollectInfo,
    Disconnect,
    Fee,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::Callout,
        Self::Alerting,
        Self::Answer,
        Self::CollectInfo,
        Self::Disconnect,
        Self::Fee,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callout => "callout",
            Self::Alerting => "alerting",
            Self::Answer => "answer",
            Self::CollectInfo => "collectInfo",
            Self::Disconnect => "disconnect",
            Self::Fee => "fee",
        }
    }

    /// Case-sensitive, like every field name of the platform (spec §1.1).
    pub fn from_wire(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// `statusInfo` of a status event (`CallStatusInfo`, spec §1.5): the union over scenarios.
/// Serializes as the platform sends it (the simulator uses that), absent fields left out.
/// Read leniently: a string field may come as a number, an integer as a string of digits, and
/// "" means absent. Fields not listed are accepted and kept.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStatusInfo {
    /// Required; checked after parsing so that its absence gets its own error code.
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_id, required = true)]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub caller: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub called: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub user_data: Option<String>,
    /// String or integer: its type and values are ⚠ UNKNOWN, so it is kept as written.
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub party_type: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub state_code: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub state_desc: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub digit_info: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub display_caller_num: Option<String>,
    /// Fields the spec does not list, as received.
    #[serde(skip)]
    pub extra: Map<String, Value>,
}

/// One CDR of a fee list (`FeeInfo`, spec §1.6). Times stay strings here; storage parses them.
/// Read leniently like `CallStatusInfo`; times are `yyyy-MM-dd HH:mm:ss` in UTC.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeeInfo {
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub direction: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub sp_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub app_key: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub icid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub bind_num: Option<String>,
    /// Required; checked after parsing.
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_id, required = true)]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub caller_num: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub callee_num: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fwd_display_num: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fwd_dst_num: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fwd_start_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fwd_alerting_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fwd_answer_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub call_end_time: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub fwd_unasw_rsn: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub fail_time: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub ul_fail_reason: Option<i32>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub sip_status_code: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub call_out_start_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub call_out_alerting_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub call_out_answer_time: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub call_out_unasw_rsn: Option<i32>,
    #[serde(rename = "dynIVRStartTime", default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub dyn_ivr_start_time: Option<String>,
    #[serde(rename = "dynIVRPath", default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub dyn_ivr_path: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub record_flag: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub record_start_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub record_object_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub record_bucket_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub record_domain: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub record_file_download_url: Option<String>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub tts_play_times: Option<i32>,
    #[serde(default, deserialize_with = "opt_i32")]
    #[schema(schema_with = lenient_integer)]
    pub tts_trans_duration: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub service_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub host_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    #[schema(schema_with = lenient_string)]
    pub user_data: Option<String>,
    /// Fields the spec does not list, as received.
    #[serde(skip)]
    pub extra: Map<String, Value>,
}

/// What `char::is_whitespace` (the readers' `trim`) takes for a blank, as a regex class: JSON
/// Schema's `\s` is ECMA-262's, which differs (it has U+FEFF, not U+0085).
const BLANK: &str =
    r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// The digits of 0 to 2147483647 (`last` = '7') or to 2147483648 (`last` = '8'), leading zeros
/// allowed, as `str::parse::<i32>` reads them.
fn i32_digits(last: char) -> String {
    format!(
        "0*(?:[0-9]{{1,9}}|1[0-9]{{9}}|20[0-9]{{8}}|21[0-3][0-9]{{7}}|214[0-6][0-9]{{6}}|2147[0-3][0-9]{{5}}\
         |21474[0-7][0-9]{{4}}|214748[0-2][0-9]{{3}}|2147483[0-5][0-9]{{2}}|21474836[0-3][0-9]|214748364[0-{last}])"
    )
}

fn schema(value: serde_json::Value) -> utoipa::openapi::schema::Schema {
    serde_json::from_value(value).expect("a valid schema")
}

/// The OpenAPI schema of an integer field read by `opt_i32`: an integer in i32's range, a string
/// of one (blanks around it allowed, a sign too), a blank string or null (both absent).
/// `tests/api/fuzz.rs` checks it accepts exactly what `opt_i32` accepts.
fn lenient_integer() -> utoipa::openapi::schema::Schema {
    let number = format!("[+]?{}|-{}", i32_digits('7'), i32_digits('8'));
    schema(serde_json::json!({"oneOf": [
        {"type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX},
        {"type": "string", "pattern": format!("^{BLANK}*(?:{number})?{BLANK}*$")},
        {"type": "null"},
    ]}))
}

/// The OpenAPI schema of a string field read by `opt_string`: a string (kept as written; "" is
/// absent), a number (kept as its digits) or null; never a NUL, which cannot be stored.
fn lenient_string() -> utoipa::openapi::schema::Schema {
    schema(serde_json::json!({
        "type": ["string", "number", "null"],
        "pattern": r"^[^\u0000]*$",
    }))
}

/// A required identifier read by `opt_string`: as `lenient_string`, but neither "" nor null.
fn lenient_id() -> utoipa::openapi::schema::Schema {
    schema(serde_json::json!({
        "type": ["string", "number"],
        "minLength": 1,
        "pattern": r"^[^\u0000]*$",
    }))
}

/// Why a body (or one record of a fee list) was refused. `field` is a path into the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: WireErrorCode,
    pub field: Option<String>,
    pub message: String,
    /// For `InvalidRecords`: why each CDR was refused.
    pub records: Vec<RecordError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireErrorCode {
    InvalidJson,
    NotAnObject,
    MissingField,
    InvalidField,
    UnknownEventType,
    EmptyBatch,
    BatchTooLarge,
    /// Every record of a fee list was refused; the per-record errors say why.
    InvalidRecords,
}

impl WireErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::UnknownEventType => "unknown_event_type",
            Self::EmptyBatch => "empty_batch",
            Self::BatchTooLarge => "batch_too_large",
            Self::InvalidRecords => "invalid_records",
        }
    }
}

impl WireError {
    /// A field path may quote a key of the body, and a message a value of it: a NUL in either
    /// becomes U+FFFD (as in the kept request's text columns), since PostgreSQL, which keeps
    /// every error, cannot store it.
    fn new(code: WireErrorCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.map(escape_nul),
            message: escape_nul(&message.into()),
            records: Vec::new(),
        }
    }
}

fn escape_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A status event, ready to store.
#[derive(Debug, Clone)]
pub struct StatusEvent {
    pub event_type: EventType,
    pub session_id: String,
    pub info: CallStatusInfo,
    /// SHA-256 over the event type and the canonical `statusInfo`: a redelivery has the same
    /// fingerprint, while the two legs of a click-to-call differ in their numbers or times.
    pub fingerprint: [u8; 32],
}

/// One accepted CDR of a fee list.
#[derive(Debug, Clone)]
pub struct FeeRecord {
    /// Position in `feeLst`.
    pub index: usize,
    pub session_id: String,
    pub info: FeeInfo,
    /// With `session_id`, identifies the CDR across re-pushes: `icid:<icid>` when the platform
    /// gives one, else `sha256:<hex of the canonical record>`.
    pub dedup_key: String,
}

/// One refused CDR of a fee list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub index: usize,
    pub error: WireError,
}

/// A fee list: the records that parsed, and those that did not (the batch policy is that
/// good records are stored whatever happens to their neighbours).
#[derive(Debug, Clone)]
pub struct FeeBatch {
    pub records: Vec<FeeRecord>,
    pub rejected: Vec<RecordError>,
}

impl FeeBatch {
    pub fn total(&self) -> usize {
        self.records.len() + self.rejected.len()
    }
}

#[derive(Debug, Clone)]
pub enum Callback {
    Status(Box<StatusEvent>),
    Fee(FeeBatch),
}

/// What could be read of a body: its `eventType` as written (even when the rest failed), and
/// the callback or the reason it was refused.
#[derive(Debug)]
pub struct Parsed {
    pub event_type: Option<String>,
    pub result: Result<Callback, WireError>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "eventType", default, borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(rename = "statusInfo", default, borrow)]
    status_info: Option<&'a RawValue>,
    #[serde(rename = "feeLst", default, borrow)]
    fee_lst: Option<&'a RawValue>,
}

/// Parses a callback body exactly as received.
pub fn parse_callback(body: &[u8]) -> Parsed {
    let mut event_type = None;
    let result = parse_into(body, &mut event_type);
    Parsed { event_type, result }
}

fn parse_into(body: &[u8], event_type_seen: &mut Option<String>) -> Result<Callback, WireError> {
    let invalid_json = |error: serde_json::Error| {
        WireError::new(
            WireErrorCode::InvalidJson,
            None,
            format!("the body is not valid JSON: {error}"),
        )
    };
    // serde would read a JSON array into the envelope positionally, so look before parsing.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(invalid_json)?;
        return Err(WireError::new(
            WireErrorCode::NotAnObject,
            None,
            "the body must be a JSON object",
        ));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|error| {
        // The one error of valid JSON here: a key of the envelope given twice.
        match duplicate_field(&error.to_string()) {
            Some(key) if error.is_data() => WireError::new(
                WireErrorCode::InvalidField,
                Some(key),
                format!("{key} appears more than once"),
            ),
            _ => invalid_json(error),
        }
    })?;

    let event_type = match envelope.event_type.filter(|raw| raw.get() != "null") {
        None => {
            return Err(WireError::new(
                WireErrorCode::MissingField,
                Some("eventType"),
                "eventType is required",
            ));
        }
        Some(raw) => serde_json::from_str::<String>(raw.get()).map_err(|_| {
            WireError::new(
                WireErrorCode::InvalidField,
                Some("eventType"),
                "eventType must be a string",
            )
        })?,
    };
    *event_type_seen = Some(event_type.clone());
    let Some(kind) = EventType::from_wire(&event_type) else {
        return Err(WireError::new(
            WireErrorCode::UnknownEventType,
            Some("eventType"),
            format!(
                "unknown eventType {event_type:?}; expected one of callout, alerting, answer, collectInfo, disconnect, fee"
            ),
        ));
    };

    if kind == EventType::Fee {
        parse_fee_list(envelope.fee_lst).map(Callback::Fee)
    } else {
        parse_status(kind, envelope.status_info).map(|event| Callback::Status(Box::new(event)))
    }
}

fn parse_status(event_type: EventType, raw: Option<&RawValue>) -> Result<StatusEvent, WireError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Err(WireError::new(
            WireErrorCode::MissingField,
            Some("statusInfo"),
            format!(
                "statusInfo is required for eventType {}",
                event_type.as_str()
            ),
        ));
    };
    let (mut info, fields): (CallStatusInfo, _) = parse_object(raw, "statusInfo")?;
    let session_id = info.session_id.clone().ok_or_else(|| {
        WireError::new(
            WireErrorCode::MissingField,
            Some("statusInfo.sessionId"),
            "statusInfo.sessionId is required",
        )
    })?;
    info.extra = unknown_fields(&fields, &info_unknown_keys::<CallStatusInfo>(raw));

    let mut hasher = Sha256::new();
    hasher.update(event_type.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_json(fields));
    Ok(StatusEvent {
        event_type,
        session_id,
        info,
        fingerprint: hasher.finalize().into(),
    })
}

fn parse_fee_list(raw: Option<&RawValue>) -> Result<FeeBatch, WireError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Err(WireError::new(
            WireErrorCode::MissingField,
            Some("feeLst"),
            "feeLst is required for eventType fee",
        ));
    };
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| {
        WireError::new(
            WireErrorCode::InvalidField,
            Some("feeLst"),
            "feeLst must be an array of CDR objects",
        )
    })?;
    if items.is_empty() {
        return Err(WireError::new(
            WireErrorCode::EmptyBatch,
            Some("feeLst"),
            "feeLst must hold at least one CDR",
        ));
    }
    if items.len() > MAX_FEE_RECORDS {
        return Err(WireError::new(
            WireErrorCode::BatchTooLarge,
            Some("feeLst"),
            format!(
                "feeLst holds {} CDRs; the platform sends at most {MAX_FEE_RECORDS}",
                items.len()
            ),
        ));
    }

    let mut batch = FeeBatch {
        records: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match parse_fee_record(index, item) {
            Ok(record) => batch.records.push(record),
            Err(error) => batch.rejected.push(RecordError { index, error }),
        }
    }
    if batch.records.is_empty() {
        let mut error = WireError::new(
            WireErrorCode::InvalidRecords,
            Some("feeLst"),
            format!("none of the {} CDRs could be read", batch.rejected.len()),
        );
        error.records = batch.rejected;
        return Err(error);
    }
    Ok(batch)
}

fn parse_fee_record(index: usize, raw: &RawValue) -> Result<FeeRecord, WireError> {
    let prefix = format!("feeLst[{index}]");
    let (mut info, fields): (FeeInfo, _) = parse_object(raw, &prefix)?;
    let field = format!("{prefix}.sessionId");
    let session_id = info.session_id.clone().ok_or_else(|| {
        WireError::new(
            WireErrorCode::MissingField,
            Some(&field),
            format!("{field} is required"),
        )
    })?;
    info.extra = unknown_fields(&fields, &info_unknown_keys::<FeeInfo>(raw));
    let dedup_key = match &info.icid {
        Some(icid) => format!("icid:{icid}"),
        None => format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical_json(fields)))
        ),
    };
    Ok(FeeRecord {
        index,
        session_id,
        info,
        dedup_key,
    })
}

/// Deserializes one JSON object, naming the failing field (`prefix.field`) on error, and
/// returns it with all its fields as JSON (for the unknown ones and the canonical form).
///
/// The fields are read as JSON first, in full: a typed read skips the values of unknown fields
/// without checking them, so a string JSON cannot hold (a lone surrogate escape) or a NUL
/// (which PostgreSQL cannot store) would otherwise pass, and be lost from `extra`.
fn parse_object<T: DeserializeOwned>(
    raw: &RawValue,
    prefix: &str,
) -> Result<(T, Map<String, Value>), WireError> {
    // Structs also deserialize from arrays (positionally); the platform only sends objects.
    if !raw.get().starts_with('{') {
        return Err(WireError::new(
            WireErrorCode::InvalidField,
            Some(prefix),
            format!("{prefix} must be a JSON object"),
        ));
    }
    let named = |path: String, message: String| {
        let field = format!("{prefix}.{path}");
        let message = format!("{field}: {}", strip_position(&message));
        WireError::new(WireErrorCode::InvalidField, Some(&field), message)
    };
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let fields: Map<String, Value> = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| named(error.path().to_string(), error.into_inner().to_string()))?;
    if let Some(path) = nul_path(&fields) {
        return Err(named(
            path,
            "holds a NUL character, which cannot be stored".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let typed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        if path.is_empty() || path == "." {
            // Reported at the object itself: a field given twice.
            match duplicate_field(&inner) {
                Some(key) => {
                    let field = format!("{prefix}.{key}");
                    WireError::new(
                        WireErrorCode::InvalidField,
                        Some(&field),
                        format!("{field} appears more than once"),
                    )
                }
                None => WireError::new(
                    WireErrorCode::InvalidField,
                    Some(prefix),
                    format!("{prefix}: {}", strip_position(&inner)),
                ),
            }
        } else {
            named(path, inner)
        }
    })?;
    Ok((typed, fields))
}

/// The path (`key`, `key[2].inner`) of the first key or string of `fields` holding a NUL.
fn nul_path(fields: &Map<String, Value>) -> Option<String> {
    fn in_value(value: &Value) -> Option<String> {
        match value {
            Value::String(text) if text.contains('\0') => Some(String::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| in_value(item).map(|rest| format!("[{i}]{rest}"))),
            Value::Object(map) => nul_path(map).map(|rest| format!(".{rest}")),
            _ => None,
        }
    }
    fields.iter().find_map(|(key, value)| {
        if key.contains('\0') {
            return Some(key.clone());
        }
        in_value(value).map(|rest| format!("{key}{rest}"))
    })
}

/// The field serde names in "duplicate field `x`".
fn duplicate_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split('`').next())
}

/// The keys of `raw` that `T` does not declare. serde_ignored reports them, so the list of known
/// fields is the struct itself and cannot drift from it.
fn info_unknown_keys<T: DeserializeOwned>(raw: &RawValue) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let _: Result<T, _> = serde_ignored::deserialize(&mut deserializer, |path| {
        if let serde_ignored::Path::Map {
            parent: serde_ignored::Path::Root,
            key,
        } = path
        {
            unknown.push(key);
        }
    });
    unknown
}

fn unknown_fields(fields: &Map<String, Value>, keys: &[String]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|key| fields.get(key).map(|value| (key.clone(), value.clone())))
        .collect()
}

/// JSON with sorted keys and no insignificant whitespace, so the same content hashes the same
/// however it was formatted.
fn canonical_json(fields: Map<String, Value>) -> Vec<u8> {
    // serde_json's Map is a BTreeMap (no preserve_order feature), so keys come out sorted.
    serde_json::to_vec(&Value::Object(fields)).expect("a JSON map serializes")
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLOUT: &str = include_str!("../../../tests/fixtures/status-callout.json");
    const FEE: &str = include_str!("../../../tests/fixtures/fee-click2call.json");

    fn status(body: &str) -> StatusEvent {
        match parse_callback(body.as_bytes()).result {
            Ok(Callback::Status(event)) => *event,
            other => panic!("expected a status event, got {other:?}"),
        }
    }

    fn error(body: &str) -> WireError {
        parse_callback(body.as_bytes())
            .result
            .expect_err("expected an error")
    }

    #[test]
    fn the_platform_callout_sample_parses() {
        let event = status(CALLOUT);
        assert_eq!(event.event_type, EventType::Callout);
        assert_eq!(
            event.session_id,
            "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
        );
        assert_eq!(event.info.caller.as_deref(), Some("+86138*******2"));
        assert_eq!(event.info.user_data.as_deref(), Some("customerId123"));
        assert!(event.info.extra.is_empty());
    }

    #[test]
    fn the_platform_fee_sample_parses_every_field() {
        let Ok(Callback::Fee(batch)) = parse_callback(FEE.as_bytes()).result else {
            panic!("expected a fee list");
        };
        assert!(batch.rejected.is_empty());
        let record = &batch.records[0];
        assert_eq!(record.dedup_key, "icid:CAE-20190124110424-12019775");
        assert_eq!(record.info.direction, Some(0));
        assert_eq!(
            record.info.fwd_answer_time.as_deref(),
            Some("2019-01-24 03:04:38")
        );
        assert_eq!(record.info.fail_time, None);
        assert_eq!(record.info.service_type.as_deref(), Some("002"));
        assert_eq!(record.info.dyn_ivr_path, None);
        assert!(
            record.info.extra.is_empty(),
            "every sample field is a known field: {:?}",
            record.info.extra
        );
    }

    #[test]
    fn unknown_fields_are_kept() {
        let event =
            status(r#"{"eventType":"answer","statusInfo":{"sessionId":"s","newThing":{"a":1}}}"#);
        assert_eq!(
            event.info.extra.get("newThing"),
            Some(&serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_content() {
        let a = status(r#"{"eventType":"callout","statusInfo":{"sessionId":"s","called":"+1"}}"#);
        let b = status(
            r#"{ "statusInfo": { "called": "+1", "sessionId": "s" }, "eventType": "callout" }"#,
        );
        let c = status(r#"{"eventType":"callout","statusInfo":{"sessionId":"s","called":"+2"}}"#);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("not json", WireErrorCode::InvalidJson, None),
            ("[1]", WireErrorCode::NotAnObject, None),
            ("{}", WireErrorCode::MissingField, Some("eventType")),
            (
                r#"{"eventType":7}"#,
                WireErrorCode::InvalidField,
                Some("eventType"),
            ),
            (
                r#"{"eventType":"callin"}"#,
                WireErrorCode::UnknownEventType,
                Some("eventType"),
            ),
            (
                r#"{"eventType":"answer"}"#,
                WireErrorCode::MissingField,
                Some("statusInfo"),
            ),
            (
                r#"{"eventType":"answer","statusInfo":[]}"#,
                WireErrorCode::InvalidField,
                Some("statusInfo"),
            ),
            (
                r#"{"eventType":"answer","statusInfo":{}}"#,
                WireErrorCode::MissingField,
                Some("statusInfo.sessionId"),
            ),
            (
                r#"{"eventType":"disconnect","statusInfo":{"sessionId":"s","stateCode":"busy"}}"#,
                WireErrorCode::InvalidField,
                Some("statusInfo.stateCode"),
            ),
            (
                r#"{"eventType":"fee"}"#,
                WireErrorCode::MissingField,
                Some("feeLst"),
            ),
            (
                r#"{"eventType":"fee","feeLst":{}}"#,
                WireErrorCode::InvalidField,
                Some("feeLst"),
            ),
            (
                r#"{"eventType":"fee","feeLst":[]}"#,
                WireErrorCode::EmptyBatch,
                Some("feeLst"),
            ),
            (
                r#"{"eventType":"fee","feeLst":[{}]}"#,
                WireErrorCode::InvalidRecords,
                Some("feeLst"),
            ),
        ];
        for (body, code, field) in cases {
            let error = error(body);
            assert_eq!(
                (error.code, error.field.as_deref()),
                (code, field),
                "case {body}"
            );
        }
    }

    #[test]
    fn a_bad_record_does_not_cost_its_neighbours() {
        let body = r#"{"eventType":"fee","feeLst":[{"sessionId":"a"},{"sessionId":"b","direction":"in"},{"direction":1}]}"#;
        let Ok(Callback::Fee(batch)) = parse_callback(body.as_bytes()).result else {
            panic!("expected a fee list");
        };
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.rejected[0].index, 1);
        assert_eq!(
            batch.rejected[0].error.field.as_deref(),
            Some("feeLst[1].direction")
        );
        assert_eq!(
            batch.rejected[1].error.field.as_deref(),
            Some("feeLst[2].sessionId")
        );
    }

    #[test]
    fn more_than_fifty_records_is_refused() {
        let records = vec![r#"{"sessionId":"s"}"#; MAX_FEE_RECORDS + 1].join(",");
        let body = format!(r#"{{"eventType":"fee","feeLst":[{records}]}}"#);
        assert_eq!(error(&body).code, WireErrorCode::BatchTooLarge);
    }

    #[test]
    fn event_type_is_reported_even_when_the_rest_fails() {
        let parsed = parse_callback(br#"{"eventType":"answer","statusInfo":{}}"#);
        assert_eq!(parsed.event_type.as_deref(), Some("answer"));
    }

    // Found by fuzzing (tests/api/fuzz.rs): a lone surrogate escape in an unknown field passed
    // the typed read, then the unknown fields were silently dropped and the canonical form was
    // `null`, so every such event had the same fingerprint and the second one was taken for a
    // duplicate of the first.
    #[test]
    fn a_string_json_cannot_hold_is_refused_naming_its_field() {
        let error = error(
            r#"{"eventType":"answer","statusInfo":{"sessionId":"s","note":{"deep":["\ud800"]}}}"#,
        );
        assert_eq!(
            (error.code, error.field.as_deref()),
            (WireErrorCode::InvalidField, Some("statusInfo.note.deep[0]"))
        );
    }

    // Found by fuzzing: PostgreSQL cannot store a NUL in text or jsonb, and a NUL only failed
    // at the insert: a status event was refused as `unstorable_value` without naming the
    // field, and a fee list whole, its good CDRs with it, against the fee-list policy.
    #[test]
    fn a_nul_anywhere_is_refused_naming_its_field() {
        for (body, field) in [
            (
                r#"{"eventType":"answer","statusInfo":{"sessionId":"s","caller":"+86\u0000"}}"#,
                "statusInfo.caller",
            ),
            (
                r#"{"eventType":"answer","statusInfo":{"sessionId":"s","x":[1,{"y":"\u0000"}]}}"#,
                "statusInfo.x[1].y",
            ),
            (
                r#"{"eventType":"answer","statusInfo":{"sessionId":"s","a\u0000":1}}"#,
                "statusInfo.a\u{FFFD}",
            ),
        ] {
            let error = error(body);
            assert_eq!(error.field.as_deref(), Some(field), "{body}");
            assert!(!error.message.contains('\0'));
        }
        let body = r#"{"eventType":"fee","feeLst":[{"sessionId":"a"},{"sessionId":"b","appKey":"k\u0000"}]}"#;
        let Ok(Callback::Fee(batch)) = parse_callback(body.as_bytes()).result else {
            panic!("the good CDR is taken");
        };
        assert_eq!(batch.records[0].session_id, "a");
        assert_eq!(
            batch.rejected[0].error.field.as_deref(),
            Some("feeLst[1].appKey")
        );
    }

    // Found by fuzzing: a key given twice was answered "must be a JSON object" or "not valid
    // JSON", about a body that is both.
    #[test]
    fn a_key_given_twice_is_named() {
        let twice = error(
            r#"{"eventType":"answer","statusInfo":{"sessionId":"s","caller":"1","caller":"2"}}"#,
        );
        assert_eq!(twice.field.as_deref(), Some("statusInfo.caller"));
        assert_eq!(twice.message, "statusInfo.caller appears more than once");
        let twice = error(r#"{"eventType":"answer","eventType":"fee"}"#);
        assert_eq!(
            (twice.code, twice.field.as_deref()),
            (WireErrorCode::InvalidField, Some("eventType"))
        );
    }
}
