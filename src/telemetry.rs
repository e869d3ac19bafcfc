//! Logging, set up once, and the masking that keeps phone numbers out of it.

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

/// Masks every run of five or more digits (optionally after '+') in free text, such as an error
/// message that quotes a value from a callback body.
pub fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if digits >= 5 {
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
}
