//! Property tests of the parsers of what arrives from outside: callback bodies
//! (`parse_callback`), `X-AKSK` (`parse_username_token`, and its redaction), `Authorization:
//! Bearer` (`bearer_token`), and the lenient time and number readers. Inputs are the sample
//! bodies mutated (`mutate`), and arbitrary bytes and strings; each property runs a bounded
//! number of cases with a fixed seed, so a run is reproducible and takes seconds.
//!
//! Properties:
//! - nothing panics;
//! - every refusal names a field (`field`, a path into the body) or is about the body as a
//!   whole (`invalid_json`, `not_an_object`, no `field`), and holds no NUL (it is stored);
//! - every accepted body is JSON, and everything in it is kept: each key of `statusInfo` (of
//!   each accepted CDR) that is not null or blank is a typed field or in `extra`, and no string
//!   kept holds a NUL (PostgreSQL could not store it);
//! - round trip: the typed value, serialised again as a body (typed fields and `extra`), parses
//!   to the same typed value; parsed a second time, its fingerprint and deduplication keys
//!   stay the same (the first parse only normalises spellings the lenient readers accept).

use std::sync::LazyLock;

use callhook::{
    http::api::bearer_token,
    platform::{
        callback::{Callback, RecordError, WireError, WireErrorCode, parse_callback},
        lenient::{opt_i32, opt_string},
        signature::{
            UsernameToken, format_username_token, parse_username_token, redact_username_token,
        },
        time::{format_created, format_platform_time, parse_platform_time},
    },
};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::mutate::{any_json, mutated, seeds};

static SEEDS: LazyLock<Vec<String>> = LazyLock::new(seeds);

/// `cases` cases from a fixed seed, failures not written to the source tree.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_ca11),
        ..ProptestConfig::default()
    }
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

fn check_error(error: &WireError, within: Option<&str>) -> Result<(), TestCaseError> {
    prop_assert!(!error.message.is_empty(), "an empty message: {error:?}");
    prop_assert!(!error.message.contains('\0'), "a NUL in {error:?}");
    match (error.code, error.field.as_deref()) {
        (WireErrorCode::InvalidJson | WireErrorCode::NotAnObject, None) if within.is_none() => {}
        (_, Some(field)) => {
            prop_assert!(!field.is_empty() && !field.contains('\0'), "{error:?}");
            if let Some(prefix) = within {
                prop_assert!(field.starts_with(prefix), "{field} outside {prefix}");
            }
        }
        _ => {
            return Err(fail(format!(
                "names neither a field nor the body: {error:?}"
            )));
        }
    }
    if error.code == WireErrorCode::InvalidRecords {
        prop_assert!(!error.records.is_empty());
        check_records(&error.records)?;
    }
    Ok(())
}

fn check_records(records: &[RecordError]) -> Result<(), TestCaseError> {
    for record in records {
        check_error(&record.error, Some(&format!("feeLst[{}]", record.index)))?;
    }
    Ok(())
}

/// The body a typed callback stands for: its typed fields and its unknown ones.
fn reserialize(callback: &Callback) -> Vec<u8> {
    fn object(typed: Value, extra: &Map<String, Value>) -> Value {
        let Value::Object(mut map) = typed else {
            unreachable!("a struct serializes as an object")
        };
        map.extend(extra.clone());
        Value::Object(map)
    }
    let body = match callback {
        Callback::Status(event) => json!({
            "eventType": event.event_type.as_str(),
            "statusInfo": object(serde_json::to_value(&event.info).unwrap(), &event.info.extra),
        }),
        Callback::Fee(batch) => json!({
            "eventType": "fee",
            "feeLst": batch.records.iter()
                .map(|r| object(serde_json::to_value(&r.info).unwrap(), &r.info.extra))
                .collect::<Vec<_>>(),
        }),
    };
    serde_json::to_vec(&body).unwrap()
}

fn same(a: &Callback, b: &Callback) -> bool {
    match (a, b) {
        (Callback::Status(a), Callback::Status(b)) => {
            (a.event_type, &a.session_id, &a.info) == (b.event_type, &b.session_id, &b.info)
        }
        (Callback::Fee(a), Callback::Fee(b)) => {
            a.records.len() == b.records.len()
                && a.records
                    .iter()
                    .zip(&b.records)
                    .all(|(a, b)| (&a.session_id, &a.info) == (&b.session_id, &b.info))
        }
        _ => false,
    }
}

/// What identifies the stored facts: fingerprints and deduplication keys.
fn keys(callback: &Callback) -> Vec<String> {
    match callback {
        Callback::Status(event) => vec![hex::encode(event.fingerprint)],
        Callback::Fee(batch) => batch.records.iter().map(|r| r.dedup_key.clone()).collect(),
    }
}

fn accepted(body: &[u8]) -> Result<Callback, TestCaseError> {
    parse_callback(body)
        .result
        .map_err(|e| fail(format!("{e:?} for {}", String::from_utf8_lossy(body))))
}

fn no_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains('\0'),
        Value::Array(items) => items.iter().all(no_nul),
        Value::Object(map) => map.iter().all(|(k, v)| !k.contains('\0') && no_nul(v)),
        _ => true,
    }
}

/// Every key of `input` that says something is in `kept` (typed fields and extra).
fn check_kept(input: &Value, kept: &Value) -> Result<(), TestCaseError> {
    let (Some(input), Some(kept)) = (input.as_object(), kept.as_object()) else {
        return Err(fail(format!("not objects: {input} / {kept}")));
    };
    for (key, value) in input {
        let blank = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
        prop_assert!(blank || kept.contains_key(key), "{key} was lost: {input:?}");
    }
    prop_assert!(no_nul(&Value::Object(kept.clone())), "a NUL kept: {kept:?}");
    Ok(())
}

/// The part of `body` that was accepted (`statusInfo`, or one CDR of `feeLst`), which must be
/// JSON throughout (the rest of a fee list need not be: its bad CDRs are refused one by one).
fn accepted_json(body: &[u8], key: &str, index: Option<usize>) -> Result<Value, TestCaseError> {
    use serde_json::value::RawValue;
    let envelope: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| fail(format!("accepted: {e}")))?;
    let mut raw = envelope[key];
    if let Some(index) = index {
        raw = serde_json::from_str::<Vec<&RawValue>>(raw.get()).unwrap()[index];
    }
    serde_json::from_str(raw.get()).map_err(|e| {
        fail(format!(
            "accepted {key}{index:?}, which is not JSON ({e}): {raw}"
        ))
    })
}

pub fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = parse_callback(body);
    let callback = match parsed.result {
        Err(error) => return check_error(&error, None),
        Ok(callback) => callback,
    };
    let again = reserialize(&callback);
    let kept: Value = serde_json::from_slice(&again).unwrap();
    match &callback {
        Callback::Status(_) => check_kept(
            &accepted_json(body, "statusInfo", None)?,
            &kept["statusInfo"],
        )?,
        Callback::Fee(batch) => {
            check_records(&batch.rejected)?;
            for (record, kept) in batch.records.iter().zip(kept["feeLst"].as_array().unwrap()) {
                check_kept(&accepted_json(body, "feeLst", Some(record.index))?, kept)?;
            }
        }
    }
    let once = accepted(&again)?;
    prop_assert!(same(&callback, &once), "{callback:?}\n!=\n{once:?}");
    let twice = accepted(&reserialize(&once))?;
    prop_assert!(same(&once, &twice));
    prop_assert_eq!(keys(&once), keys(&twice));
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn parse_callback_holds_for_mutated_sample_bodies(mutated in mutated(8 * 1024)) {
        check_body(&mutated.body(&SEEDS))?;
    }

    #[test]
    fn parse_callback_holds_for_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_body(&bytes)?;
    }

    #[test]
    fn parse_callback_holds_for_any_json(
        event_type in prop_oneof![Just("callout"), Just("disconnect"), Just("fee"), Just("x")],
        info in any_json(),
    ) {
        let key = if event_type == "fee" { "feeLst" } else { "statusInfo" };
        let info = if event_type == "fee" { json!([info]) } else { info };
        check_body(&serde_json::to_vec(&json!({"eventType": event_type, key: info})).unwrap())?;
    }
}

/// An X-AKSK header as the platform writes it, then changed a little: characters removed,
/// inserted or replaced by ones that matter to the parser (separators, quotes, blanks).
fn username_token_header() -> impl Strategy<Value = String> {
    let value = || "[A-Za-z0-9+/=:-]{0,24}";
    let edits = prop::collection::vec(
        (
            any::<usize>(),
            0..3u8,
            prop_oneof![
                Just(",".to_owned()),
                Just("\"".to_owned()),
                Just("=".to_owned()),
                Just(" ".to_owned()),
                Just("\t".to_owned()),
                Just("PasswordDigest=\"dup\"".to_owned()),
                Just("UsernameToken".to_owned()),
                any::<char>().prop_map(String::from),
            ],
        ),
        0..4,
    );
    (value(), value(), value(), value(), 0..4usize, edits).prop_map(|(u, d, n, c, turn, edits)| {
        // The platform's order, or another: the parser takes attributes in any order.
        let mut attributes = [
            format!("Username=\"{u}\""),
            format!("PasswordDigest=\"{d}\""),
            format!("Nonce=\"{n}\""),
            format!("Created=\"{c}\""),
        ];
        attributes.rotate_left(turn);
        let mut header = format!("UsernameToken {}", attributes.join(","));
        for (at, kind, text) in edits {
            let boundaries: Vec<usize> = header
                .char_indices()
                .map(|(i, _)| i)
                .chain([header.len()])
                .collect();
            let at = boundaries[at % boundaries.len()];
            let next = boundaries.iter().find(|&&b| b > at).copied();
            match (kind, next) {
                (0, Some(next)) => header.replace_range(at..next, ""),
                (1, Some(next)) => header.replace_range(at..next, &text),
                _ => header.insert_str(at, &text),
            }
        }
        header
    })
}

fn check_username_token(header: &str) -> Result<(), TestCaseError> {
    let redacted = redact_username_token(header);
    let Some(token) = parse_username_token(header) else {
        return Ok(());
    };
    prop_assert_eq!(
        parse_username_token(&format_username_token(&token)),
        Some(token.clone())
    );
    // Whatever the parser reads as the digest is what redaction removes. (`Debug` of a
    // token hides its digest, so the fields are compared as a tuple.)
    let fields = |t: UsernameToken| (t.username, t.password_digest, t.nonce, t.created);
    prop_assert_eq!(
        parse_username_token(&redacted).map(fields),
        Some(fields(UsernameToken {
            password_digest: "[redacted]".into(),
            ..token
        })),
        "redacted: {}",
        redacted
    );
    Ok(())
}

fn check_bearer(header: &str) -> Result<(), TestCaseError> {
    if let Some(token) = bearer_token(header) {
        prop_assert!(!token.is_empty() && token.trim() == token);
        prop_assert!(header.trim().to_ascii_lowercase().starts_with("bearer "));
        let again = format!("Bearer {token}");
        prop_assert_eq!(bearer_token(&again), Some(token));
    }
    Ok(())
}

proptest! {
    // Bodies up to twice http.body_limit_bytes: fewer cases, each costs more.
    #![proptest_config(config(60))]

    #[test]
    fn parse_callback_holds_for_huge_mutated_bodies(mutated in mutated(2 << 20)) {
        check_body(&mutated.body(&SEEDS))?;
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn x_aksk_headers_parse_round_trip_and_redact(header in username_token_header()) {
        check_username_token(&header)?;
    }

    #[test]
    fn x_aksk_parsing_holds_for_any_string(header in any::<String>()) {
        check_username_token(&header)?;
    }

    #[test]
    fn bearer_tokens_parse_round_trip(
        header in prop_oneof![
            any::<String>(),
            "(Bearer|bearer|BEARER|Basic)[ \t]{0,3}[ -~]{0,20}[ \t]{0,2}",
        ]
    ) {
        check_bearer(&header)?;
    }
}

/// A valid time and the spellings the lenient reader is documented to take (docs/storage.md).
fn platform_time() -> impl Strategy<Value = (time::OffsetDateTime, String)> {
    (
        0..=9999i32,
        1..=12u8,
        1..=28u8,
        0..24u8,
        0..60u8,
        0..60u8,
        0..6u8,
    )
        .prop_map(|(year, month, day, hour, minute, second, spelling)| {
            let date =
                time::Date::from_calendar_date(year, month.try_into().unwrap(), day).unwrap();
            let at = date.with_hms(hour, minute, second).unwrap().assume_utc();
            let (d, t) = format_platform_time(at)
                .split_once(' ')
                .map(|(d, t)| (d.to_owned(), t.to_owned()))
                .unwrap();
            let text = match spelling {
                0 => format!("{d} {t}"),
                1 => format!("{d}  {t}"),
                2 => format!("{d}T{t}"),
                3 => format!("{d}T{t}Z"),
                4 => format!(" {d} {t} "),
                _ => format!("{d} {t}Z"),
            };
            (at, text)
        })
}

fn check_time(text: &str) -> Result<(), TestCaseError> {
    if let Some(at) = parse_platform_time(text) {
        prop_assert_eq!(at.offset(), time::UtcOffset::UTC);
        prop_assert_eq!(parse_platform_time(&format_platform_time(at)), Some(at));
        prop_assert_eq!(parse_platform_time(&format_created(at)), Some(at));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "opt_i32")]
    n: Option<i32>,
    #[serde(default, deserialize_with = "opt_string")]
    s: Option<String>,
}

fn read(field: &str, value: &Value) -> Option<Probe> {
    serde_json::from_str(&json!({ field: value }).to_string()).ok()
}

/// What the README promises of an integer field: a number, a string of digits (blanks around
/// allowed), or null; "" (or blanks) is absent.
fn integer_reading(value: &Value) -> Option<Option<i32>> {
    match value {
        Value::Null => Some(None),
        Value::String(text) if text.trim().is_empty() => Some(None),
        Value::String(text) => text.trim().parse().ok().map(Some),
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX))
                    .then_some(f as i32)
            })
            .map(Some),
        _ => None,
    }
}

/// Of a string field: a string, a number (as its digits), or null; "" is absent.
fn string_reading(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(text) => Some((!text.is_empty()).then(|| text.clone())),
        Value::Number(n) => Some(Some(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.to_string(),
            (_, Some(i)) => i.to_string(),
            _ => n.as_f64().unwrap().to_string(),
        })),
        _ => None,
    }
}

/// The OpenAPI schemas of the callback fields (`http::openapi::document`), compiled.
struct FieldSchemas {
    integer: jsonschema::Validator,
    string: jsonschema::Validator,
    id: jsonschema::Validator,
}

static FIELD_SCHEMAS: LazyLock<FieldSchemas> = LazyLock::new(|| {
    let document =
        callhook::http::openapi::document(&callhook::config::Config::defaults().api, &[], &[]);
    let info = &document["components"]["schemas"]["CallStatusInfo"];
    let compile = |field: &str| {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&info["properties"][field])
            .unwrap_or_else(|e| panic!("the schema of {field}: {e}"))
    };
    assert!(
        info["required"]
            .as_array()
            .unwrap()
            .contains(&json!("sessionId"))
    );
    FieldSchemas {
        integer: compile("stateCode"),
        string: compile("caller"),
        id: compile("sessionId"),
    }
});

proptest! {
    #![proptest_config(config(3000))]

    /// The document says of each lenient field exactly what its reader takes, so clients and
    /// schema-driven fuzzers generated from it agree with the server.
    #[test]
    fn the_documented_field_schemas_accept_what_the_readers_accept(
        value in prop_oneof![
            any_json(),
            "[ \t\u{85}\u{a0}\u{3000}\u{feff}]{0,2}[+-]{0,2}0{0,3}[0-9]{0,11}[ \t\u{85}\u{feff}]{0,2}"
                .prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
        ]
    ) {
        let schemas = &*FIELD_SCHEMAS;
        let storable = no_nul(&value);
        prop_assert_eq!(schemas.integer.is_valid(&value), read("n", &value).is_some(), "{}", value);
        let as_string = read("s", &value).map(|p| p.s);
        prop_assert_eq!(schemas.string.is_valid(&value), as_string.is_some() && storable, "{}", value);
        prop_assert_eq!(
            schemas.id.is_valid(&value),
            matches!(as_string, Some(Some(_))) && storable,
            "{}",
            value
        );
    }

    #[test]
    fn platform_times_in_every_documented_spelling_are_read((at, text) in platform_time()) {
        prop_assert_eq!(parse_platform_time(&text), Some(at));
        check_time(&text)?;
    }

    #[test]
    fn the_time_reader_holds_for_changed_and_any_strings(
        (_, text) in platform_time(),
        cut in any::<usize>(),
        insert in any::<char>(),
        other in any::<String>(),
    ) {
        let mut changed: Vec<char> = text.chars().collect();
        let at = cut % (changed.len() + 1);
        changed.insert(at, insert);
        check_time(&changed.into_iter().collect::<String>())?;
        check_time(&text[..cut % (text.len() + 1)])?;
        check_time(&other)?;
    }

    #[test]
    fn lenient_numbers_read_what_is_documented_and_round_trip(value in any_json()) {
        let as_integer = read("n", &value).map(|p| p.n);
        prop_assert_eq!(as_integer, integer_reading(&value), "{}", value);
        if let Some(Some(n)) = as_integer {
            prop_assert_eq!(read("n", &json!(n)).map(|p| p.n), Some(Some(n)));
        }
        let as_string = read("s", &value).map(|p| p.s);
        prop_assert_eq!(&as_string, &string_reading(&value), "{}", value);
        if let Some(Some(s)) = as_string {
            prop_assert_eq!(read("s", &json!(s)).map(|p| p.s), Some(Some(s)));
        }
    }
}
