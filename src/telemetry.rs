//! Logging, set up once, and the masking that keeps phone numbers out of it.

use serde_json::Value;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Logs go to stderr, so the CLI's results on stdout stay
/// clean (container runtimes collect both). RUST_LOG, when set, wins over `log.filter`. Calling it again
/// (tests start many apps in one process) keeps the first subscriber.
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

/// Masks a phone number for logs: the country prefix and the last two digits stay, so two log
/// lines about one number can still be matched by eye. `+8613800001111` -> `+86*********11`.
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let keep_head = if chars.first() == Some(&'+') { 3 } else { 2 };
    if chars.len() <= keep_head + 2 {
        return "*".repeat(chars.len());
    }
    let tail = chars.len() - 2;
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_head || i >= tail || !c.is_ascii_digit() {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// A run of this many digits or more is taken for a phone number wherever it appears: shorter
/// ones are codes (state codes, Q.850 causes, SIP statuses), and the shortest numbers worth
/// hiding (service numbers such as 95588) have five.
pub const PHONE_DIGITS: usize = 5;

/// Masks every run of `PHONE_DIGITS` or more digits (optionally after '+') in free text, such as
/// an error message that quotes a value from a callback body.
pub fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if digits >= PHONE_DIGITS {
            out.push_str(&mask_phone(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || (c == '+' && run.is_empty()) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether a JSON key of the platform's bodies or of our requests names a phone number.
fn is_number_key(key: &str) -> bool {
    matches!(key, "caller" | "called") || key.ends_with("Num") || key.ends_with("Nbr")
}

/// The one masking of JSON (raw bodies, placed-call requests and answers, errors, `extra`): at
/// any depth, in any field, known or not,
/// - the value of a key that names a number (`caller`, `called`, `…Num`, `…Nbr`) is masked
///   whole (`mask_phone`), however short: the platform's own samples carry partly masked ones;
/// - every other string, and every key, has its digit runs masked (`mask_numbers`), and a JSON
///   number of `PHONE_DIGITS` or more digits becomes the masked string of its digits;
/// - except the value of `sessionId`: the platform's call identifier, which every answer shows
///   unmasked as `session_id` anyway, and without which a refused body cannot be told apart.
pub fn mask_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let fields = std::mem::take(map);
            for (key, mut field) in fields {
                if key != "sessionId" {
                    if is_number_key(&key) {
                        mask_whole(&mut field);
                    } else {
                        mask_json(&mut field);
                    }
                }
                map.insert(mask_numbers(&key), field);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::String(text) => *text = mask_numbers(text),
        Value::Number(number) => {
            let digits = number.to_string();
            if digits.bytes().filter(u8::is_ascii_digit).count() >= PHONE_DIGITS {
                *value = Value::String(mask_numbers(&digits));
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// A number field's value: a string or number is masked whole; anything else is searched.
fn mask_whole(value: &mut Value) {
    match value {
        Value::String(number) => *number = mask_phone(number),
        Value::Number(number) => *value = Value::String(mask_phone(&number.to_string())),
        other => mask_json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_prefix_and_last_two_digits() {
        assert_eq!(mask_phone("+8613800001111"), "+86*********11");
        assert_eq!(mask_phone("13800001111"), "13*******11");
        assert_eq!(mask_phone("+86138****7021"), "+86*********21");
        assert_eq!(mask_phone("123"), "***");
    }

    #[test]
    fn masks_numbers_inside_messages_but_not_short_codes() {
        assert_eq!(
            mask_numbers(r#"invalid value: string "+8613800001111", expected code 8001"#),
            r#"invalid value: string "+86*********11", expected code 8001"#
        );
    }

    #[test]
    fn json_is_masked_in_every_field_at_every_depth() {
        let mut body = serde_json::json!({
            "eventType": "fee",
            "feeLst": [{"sessionId": "1201_612_4294967295_20190124030424@h", "callerNum": "+8613800001111",
                        "calleeNum": 8613800002222_u64, "fwdDstNum": "+8613800003333", "bindNum": "+867550000000",
                        "userData": "call back 13800007777 please", "newField": {"deep": ["x+8613800008888"]},
                        "+8613800009999": 13800001212_u64, "stateCode": 8101, "icid": "CAE-1"}],
            "statusInfo": {"caller": "+8613800004444", "called": "+8613800005555", "displayCallerNum": "+8613800006666",
                           "caller_short": "1234"}
        });
        mask_json(&mut body);
        let text = body.to_string();
        for number in [
            "8613800001111",
            "8613800002222",
            "8613800003333",
            "867550000000",
            "8613800004444",
            "8613800005555",
            "8613800006666",
            "13800007777",
            "8613800008888",
            "8613800009999",
            "13800001212",
        ] {
            assert!(!text.contains(number), "{number} in {text}");
        }
        let cdr = &body["feeLst"][0];
        assert_eq!(cdr["callerNum"], "+86*********11");
        assert_eq!(cdr["calleeNum"], "86*********22");
        assert_eq!(cdr["userData"], "call back 13*******77 please");
        assert_eq!(cdr["newField"]["deep"][0], "x+86*********88");
        assert_eq!(cdr["+86*********99"], "13*******12");
        // Codes stay readable, and so does the session id.
        assert_eq!(cdr["stateCode"], 8101);
        assert_eq!(cdr["icid"], "CAE-1");
        assert_eq!(cdr["sessionId"], "1201_612_4294967295_20190124030424@h");
        assert_eq!(body["statusInfo"]["caller_short"], "1234");
    }
}
