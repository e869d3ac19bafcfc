//! The platform's API result codes (spec §2.7, plus 1010004 from §2.6): one table, the single
//! source of truth for what a `resultcode` means and how the client reacts to it.
//!
//! The spec's table is partial ("the full table could not be retrieved"): codes it lists without
//! a text keep an empty `text`, and a code not listed here is reported as "undocumented code".
//! [`RESULT_CODES`] is a plain slice so it can be iterated (e.g. to load it into a database).

/// How the client treats a result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `"0"`: the request was accepted.
    Success,
    /// The platform declined the request for now and asks to retry later (flow control). The only
    /// answer after which the client sends the same request again.
    RetryLater,
    /// The authentication headers were missing or wrong. Repeated ones get this machine's IP
    /// blacklisted, so the client's circuit breaker counts them.
    AuthFailure,
    /// This IP is blacklisted for 30 minutes after repeated authentication failures. Opens the
    /// circuit breaker at once.
    Blacklisted,
    /// Any other answer: the platform declined the request (it is wrong or not allowed now).
    /// Never retried.
    Declined,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RetryLater => "retry_later",
            Self::AuthFailure => "auth_failure",
            Self::Blacklisted => "blacklisted",
            Self::Declined => "declined",
        }
    }

    pub fn is_retryable(self) -> bool {
        self == Self::RetryLater
    }

    pub fn is_auth_failure(self) -> bool {
        self == Self::AuthFailure
    }

    pub fn is_blacklist(self) -> bool {
        self == Self::Blacklisted
    }
}

/// One documented result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultCode {
    /// The `resultcode` string as sent.
    pub code: &'static str,
    /// The HTTP status the spec shows with it, where it shows one.
    pub http_status: Option<u16>,
    /// The platform's English `resultdesc` text; empty where the spec has none.
    pub text: &'static str,
    /// What it means and what to do, from the spec.
    pub meaning: &'static str,
    pub class: Class,
}

impl ResultCode {
    /// `text (meaning)`, or whichever of the two is known.
    pub fn describe(&self) -> String {
        match (self.text.is_empty(), self.meaning.is_empty()) {
            (false, false) => format!("{} ({})", self.text, self.meaning),
            (false, true) => self.text.to_owned(),
            (true, _) => self.meaning.to_owned(),
        }
    }
}

/// What to say about a code that is not in [`RESULT_CODES`].
pub const UNDOCUMENTED: &str = "undocumented code";

const fn code(
    code: &'static str,
    http_status: Option<u16>,
    text: &'static str,
    meaning: &'static str,
    class: Class,
) -> ResultCode {
    ResultCode {
        code,
        http_status,
        text,
        meaning,
        class,
    }
}

use Class::{AuthFailure, Blacklisted, Declined, RetryLater, Success};

const NOT_RETRIEVED_2020: &str = "added 2020-07 to the scenario APIs; meaning not retrieved";

/// Spec §2.7, in its order.
pub const RESULT_CODES: &[ResultCode] = &[
    code("0", Some(200), "Success.", "OK", Success),
    code(
        "1010001",
        Some(500),
        "Internal system error.",
        "platform error",
        Declined,
    ),
    code(
        "1010002",
        Some(403),
        "Invalid request.",
        "malformed parameter; resultdesc names it",
        Declined,
    ),
    code(
        "1010003",
        None,
        "Invalid app_key.",
        "wrong or paused app_key",
        AuthFailure,
    ),
    // Spec §2.6: seen in third-party code of the OAuth era.
    code(
        "1010004",
        None,
        "",
        "access token invalid (old OAuth-era API)",
        AuthFailure,
    ),
    code(
        "1010006",
        None,
        "Invalid Rest API.",
        "wrong method or URI",
        Declined,
    ),
    code(
        "1010007",
        None,
        "The ativeState of User is not ACTIVATING.",
        "account not active or in arrears",
        Declined,
    ),
    code(
        "1010008",
        None,
        "The status of the app_key is unavailable.",
        "application paused",
        Declined,
    ),
    code(
        "1010009",
        None,
        "No more APIs can be invoked.",
        "",
        Declined,
    ),
    code(
        "1010010",
        None,
        "The flow control upper limit is reached on the platform.",
        "retry after a minute",
        RetryLater,
    ),
    code(
        "1010011",
        None,
        "The app is not allowed to access a commercial address.",
        "application state",
        Declined,
    ),
    code(
        "1010013",
        None,
        "Time out limit.",
        "Created too far from the platform's clock",
        AuthFailure,
    ),
    code(
        "1010021",
        None,
        "Application unavailable.",
        "application state",
        Declined,
    ),
    code(
        "1010023",
        None,
        "Display number invalid.",
        "displayNbr/displayCalleeNbr not among the console's numbers",
        Declined,
    ),
    code(
        "1012003",
        None,
        "The template ID does not exist.",
        "template not added",
        Declined,
    ),
    // The spec gives 1012004 the same text as 1012003.
    code(
        "1012004",
        None,
        "The template ID does not exist.",
        "templateParas count differs from the template's variable count",
        Declined,
    ),
    code(
        "1013002",
        None,
        "Calls exceed the APP limit.",
        "application call quota",
        Declined,
    ),
    code(
        "1013003",
        None,
        "Calls exceed the display number limit.",
        "display-number quota",
        Declined,
    ),
    code("1013112", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013113", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013114", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013115", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013116", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013117", None, "", NOT_RETRIEVED_2020, Declined),
    code("1013118", None, "", NOT_RETRIEVED_2020, Declined),
    code(
        "1013120",
        None,
        "Ip address is null.",
        "sender IPv4 address missing",
        Declined,
    ),
    code(
        "1013121",
        None,
        "Call black time forbidden.",
        "call in a forbidden time window",
        Declined,
    ),
    code(
        "1020001",
        None,
        "Parameter error.",
        "invalid parameter",
        Declined,
    ),
    code(
        "1020002",
        None,
        "Internal error.",
        "contact support",
        Declined,
    ),
    code(
        "1020003",
        None,
        "Parameter error.",
        "invalid parameter",
        Declined,
    ),
    code(
        "1020151",
        None,
        "",
        "added 2019-09 to the scenario APIs; meaning not retrieved",
        Declined,
    ),
    code(
        "1020165",
        None,
        "The appkey call port of using exceeds the limited.",
        "concurrent-port quota exceeded",
        Declined,
    ),
    code(
        "1020176",
        None,
        "Authentication failed, try again later",
        "IP blacklisted for 30 min after repeated authentication failures",
        Blacklisted,
    ),
    code("1023001", None, "Internal error.", "", Declined),
    code(
        "1023006",
        Some(400),
        "Authorization not contained in the HTTP header.",
        "",
        AuthFailure,
    ),
    code(
        "1023007",
        None,
        "realm not contained in Authorization.",
        "",
        AuthFailure,
    ),
    code(
        "1023009",
        None,
        "The value of realm in Authorization must be SDP.",
        "",
        AuthFailure,
    ),
    code(
        "1023034",
        None,
        "UserName not contained in X-AKSK.",
        "",
        AuthFailure,
    ),
    code(
        "1023035",
        None,
        "Nonce not contained in X-AKSK.",
        "",
        AuthFailure,
    ),
    code(
        "1023038",
        None,
        "UsernameToken not contained in X-AKSK.",
        "",
        AuthFailure,
    ),
];

/// The documented entry for `code`, if there is one.
pub fn lookup(code: &str) -> Option<&'static ResultCode> {
    RESULT_CODES.iter().find(|entry| entry.code == code)
}

/// How the client treats `code`: an undocumented non-zero code declines like any other.
pub fn class_of(code: &str) -> Class {
    lookup(code).map_or(Class::Declined, |entry| entry.class)
}

/// `text (meaning)` for a documented code, else [`UNDOCUMENTED`].
pub fn describe(code: &str) -> String {
    lookup(code).map_or_else(|| UNDOCUMENTED.to_owned(), ResultCode::describe)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_listed_once_and_is_all_digits() {
        let mut seen = HashSet::new();
        for entry in RESULT_CODES {
            assert!(seen.insert(entry.code), "{} listed twice", entry.code);
            assert!(
                entry.code.bytes().all(|b| b.is_ascii_digit()),
                "{}",
                entry.code
            );
            assert!(
                !(entry.text.is_empty() && entry.meaning.is_empty()),
                "{} says nothing",
                entry.code
            );
        }
    }

    #[test]
    fn only_zero_is_success_and_only_flow_control_is_retryable() {
        let successes: Vec<_> = RESULT_CODES
            .iter()
            .filter(|e| e.class == Class::Success)
            .map(|e| e.code)
            .collect();
        assert_eq!(successes, ["0"]);
        let retryable: Vec<_> = RESULT_CODES
            .iter()
            .filter(|e| e.class.is_retryable())
            .map(|e| e.code)
            .collect();
        assert_eq!(retryable, ["1010010"]);
    }

    #[test]
    fn authentication_failures_and_the_blacklist_are_marked() {
        for auth in [
            "1010003", "1010013", "1023006", "1023007", "1023009", "1023034", "1023035", "1023038",
        ] {
            assert!(class_of(auth).is_auth_failure(), "{auth}");
        }
        assert!(class_of("1020176").is_blacklist());
        assert_eq!(class_of("1010002"), Class::Declined);
    }

    #[test]
    fn descriptions_join_text_and_meaning_and_name_unknown_codes() {
        assert_eq!(
            describe("1010002"),
            "Invalid request. (malformed parameter; resultdesc names it)"
        );
        assert_eq!(
            describe("1023006"),
            "Authorization not contained in the HTTP header."
        );
        assert!(describe("1020151").contains("not retrieved"));
        assert_eq!(describe("4242"), UNDOCUMENTED);
        assert_eq!(class_of("4242"), Class::Declined);
    }
}
