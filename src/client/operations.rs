//! The platform's operations (spec §2.2–§2.6): typed requests that serialise to the wire's
//! JSON (camelCase, optional fields left out), their validation, and typed answers.
//!
//! Rules checked before anything is sent (each error names the wire field):
//! * required strings are not empty; optional strings, when given, are not empty either;
//! * numbers (`displayNbr`, `callerNbr`, `displayCalleeNbr`, `calleeNbr`, `bindNbr`) are in global
//!   form: `+`, then 6–20 digits (country code first), nothing else;
//! * `maxDuration` 0–1440 minutes; `userData` at most 256 characters;
//! * `statusUrl`/`feeUrl` at most 128 characters once Base64-encoded (they are given here as
//!   plain URLs and encoded when sent);
//! * `verifyCode` 1–8 digits; `times` 0–9; `playInfoList` 1–5 segments, each with exactly one of
//!   `notifyVoice`/`templateId`; `collectInd` 0–32; `templateParas` only with `templateId`;
//!   `collectContentTriggerReplaying` 1–32 characters;
//! * the spec's "valid only when" pairs: `lastMinVoice` needs `maxDuration` ≥ 1, `preVoice` needs
//!   `playPreVoice`, `recordHintTone` needs `recordFlag`, `replayAfterCollection` needs
//!   `collectInd` ≥ 1, `collectContentTriggerReplaying` needs `replayAfterCollection`;
//! * callStop `sessionid` 1–256 characters; recording `fileName`/`recordDomain` 1–128 characters.
//!
//! Flags the spec types as the strings "true"/"false" are `Option<bool>` here and sent as those
//! strings.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::error::ValidationError;

type Checked = Result<(), ValidationError>;

/// Who hears the last-minute warning tone (`lastMinToUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LastMinToUe {
    /// The caller (A).
    Toa,
    /// The callee (B).
    Tob,
    Both,
}

/// How media is played to the callee (`calleeMedia`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CalleeMedia {
    All,
    None,
    Fail,
}

/// Click-to-call (voice callback): the platform calls A (`callerNbr`), then connects B
/// (`calleeNbr`). `POST /rest/httpsessions/click2Call/v2.0`, spec §2.2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickToCall {
    /// Number shown to A: a fixed-line number of the console, e.g. `+867550000000`.
    pub display_nbr: String,
    /// A: called first.
    pub caller_nbr: String,
    /// Number shown to B (may equal `display_nbr`).
    pub display_callee_nbr: String,
    /// B.
    pub callee_nbr: String,
    /// Legacy CallEnabler business number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_nbr: Option<String>,
    /// Longest talk time in minutes from B's answer; 0 or absent = no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<u32>,
    /// Audio file played in the last minute (needs `max_duration` ≥ 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(rename = "lastMinToUE", skip_serializing_if = "Option::is_none")]
    pub last_min_to_ue: Option<LastMinToUe>,
    /// Play `pre_voice` to A after A answers, before B is dialled.
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub play_pre_voice: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<String>,
    /// Waiting tone for A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callee_media: Option<CalleeMedia>,
    /// Plain URL for status callbacks (sent Base64-encoded). Absent: `public_base_url` +
    /// `/voicecall/status`, or none when that is not configured.
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// Plain URL for CDR callbacks, as `status_url` (`/voicecall/fee`).
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub fee_url: Option<String>,
    /// Record the call (recording must be enabled on the application).
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub record_flag: Option<bool>,
    /// Recording announcement (needs `record_flag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    /// Whether `disconnect` events say who hung up (`partyType`).
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub party_type_required_in_disconnect: Option<bool>,
    /// Ask for the number of idle call ports in the answer (`idle_port`).
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub return_idle_port: Option<bool>,
    /// Echoed in every callback of the call; at most 256 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// Voice notification: calls `calleeNbr` and plays 1–5 segments, optionally collecting digits.
/// `POST /rest/httpsessions/callnotify/v2.0`, spec §2.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceNotification {
    pub display_nbr: String,
    pub callee_nbr: String,
    pub play_info_list: Vec<PlayContentInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_nbr: Option<String>,
    /// As [`ClickToCall::status_url`].
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub fee_url: Option<String>,
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub return_idle_port: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// One segment of a notification: an approved audio file or an approved TTS template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayContentInfo {
    /// Audio file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_voice: Option<String>,
    /// TTS template id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Values of the template's variables, in order (only with `template_id`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub template_paras: Vec<String>,
    /// Digits to collect after this segment, 0–32; the result arrives as a `collectInfo` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collect_ind: Option<u32>,
    /// Replay the segment after collecting (needs `collect_ind` ≥ 1).
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub replay_after_collection: Option<bool>,
    /// Replay only when the collected digits equal this (needs `replay_after_collection`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collect_content_trigger_replaying: Option<String>,
}

/// Voice verification code: calls `calleeNbr` and speaks the code.
/// `POST /rest/httpsessions/callVerify/v1.0`, spec §2.4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCode {
    pub display_nbr: String,
    pub callee_nbr: String,
    /// Language of the spoken code (values not published; the official sample uses 2).
    pub language_type: u32,
    /// Approved audio played before the code.
    pub pre_tone: String,
    /// 1–8 digits.
    pub verify_code: String,
    /// Approved audio played after the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos_tone: Option<String>,
    /// Plays, 0–9 (0 = until hung up); the platform's default is 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_nbr: Option<String>,
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(serialize_with = "base64_url", skip_serializing_if = "Option::is_none")]
    pub fee_url: Option<String>,
    #[serde(serialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub return_idle_port: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// The only `signal` of callStop: release both parties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopSignal {
    #[default]
    CallStop,
}

/// Stop a call in progress. `POST /rest/httpsessions/callStop/v2.0`, spec §2.5. Note the wire
/// name `sessionid`, lowercase unlike everywhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StopCall {
    #[serde(rename = "sessionid")]
    pub session_id: String,
    pub signal: StopSignal,
}

impl StopCall {
    pub fn new(session_id: impl Into<String>) -> Self {
        Self {
            session_id: session_id.into(),
            signal: StopSignal::CallStop,
        }
    }
}

/// A click-to-call recording, as named by its CDR (`recordObjectName`, `recordDomain`).
/// `GET /rest/provision/voice/record/v1.0?fileName=…&recordDomain=…`, spec §2.6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingFile {
    pub file_name: String,
    pub record_domain: String,
}

/// The platform accepted a call (click-to-call, notification, verification code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAccepted {
    /// The call's id: the `sessionId` of its status and CDR callbacks.
    pub session_id: String,
    pub result_desc: String,
    /// Idle call ports, when `return_idle_port` was asked for.
    pub idle_port: Option<u32>,
    /// The `placed_calls` row, unless recording it failed (then logged).
    pub placed_call_id: Option<Uuid>,
}

/// The platform stopped a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStopped {
    pub session_id: String,
    pub result_desc: String,
    pub placed_call_id: Option<Uuid>,
}

/// Where a recording can be downloaded (valid 7 days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingLink {
    pub url: String,
    pub placed_call_id: Option<Uuid>,
}

/// What the client needs to know of each operation.
pub(crate) trait Operation: Serialize {
    /// `placed_calls.operation`.
    const NAME: &'static str;
    /// URI under the base URL.
    const PATH: &'static str;
    /// `GET` with the fields as the query, accepted with a redirect (the recording link); else
    /// `POST` of the JSON body, accepted with resultcode "0".
    const GET_REDIRECT: bool = false;
    fn validate(&self) -> Checked;
    /// The callback URL fields, for the operations that have them.
    fn callback_urls(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        None
    }
    fn user_data(&self) -> Option<&str> {
        None
    }
}

impl Operation for ClickToCall {
    const NAME: &'static str = "click2call";
    const PATH: &'static str = "/rest/httpsessions/click2Call/v2.0";

    fn validate(&self) -> Checked {
        number("displayNbr", &self.display_nbr)?;
        number("callerNbr", &self.caller_nbr)?;
        number("displayCalleeNbr", &self.display_callee_nbr)?;
        number("calleeNbr", &self.callee_nbr)?;
        optional_number("bindNbr", self.bind_nbr.as_deref())?;
        if let Some(minutes) = self.max_duration {
            range("maxDuration", minutes, 0, 1440)?;
        }
        optional_text("lastMinVoice", self.last_min_voice.as_deref())?;
        if self.last_min_voice.is_some() && self.max_duration.unwrap_or(0) == 0 {
            return problem(
                "lastMinVoice",
                "is played only when maxDuration is 1 or more",
            );
        }
        optional_text("preVoice", self.pre_voice.as_deref())?;
        if self.pre_voice.is_some() && self.play_pre_voice != Some(true) {
            return problem("preVoice", "is played only when playPreVoice is true");
        }
        optional_text("waitVoice", self.wait_voice.as_deref())?;
        optional_text("recordHintTone", self.record_hint_tone.as_deref())?;
        if self.record_hint_tone.is_some() && self.record_flag != Some(true) {
            return problem("recordHintTone", "is played only when recordFlag is true");
        }
        callback_urls(self.status_url.as_deref(), self.fee_url.as_deref())?;
        user_data(self.user_data.as_deref())
    }

    fn callback_urls(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        Some((&mut self.status_url, &mut self.fee_url))
    }

    fn user_data(&self) -> Option<&str> {
        self.user_data.as_deref()
    }
}

impl Operation for VoiceNotification {
    const NAME: &'static str = "notify";
    const PATH: &'static str = "/rest/httpsessions/callnotify/v2.0";

    fn validate(&self) -> Checked {
        number("displayNbr", &self.display_nbr)?;
        number("calleeNbr", &self.callee_nbr)?;
        if !(1..=5).contains(&self.play_info_list.len()) {
            return problem("playInfoList", "must have 1 to 5 segments");
        }
        for (i, segment) in self.play_info_list.iter().enumerate() {
            segment.validate(&format!("playInfoList[{i}]"))?;
        }
        optional_number("bindNbr", self.bind_nbr.as_deref())?;
        callback_urls(self.status_url.as_deref(), self.fee_url.as_deref())?;
        user_data(self.user_data.as_deref())
    }

    fn callback_urls(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        Some((&mut self.status_url, &mut self.fee_url))
    }

    fn user_data(&self) -> Option<&str> {
        self.user_data.as_deref()
    }
}

impl PlayContentInfo {
    fn validate(&self, at: &str) -> Checked {
        let field = |name: &str| format!("{at}.{name}");
        optional_text(&field("notifyVoice"), self.notify_voice.as_deref())?;
        optional_text(&field("templateId"), self.template_id.as_deref())?;
        match (&self.notify_voice, &self.template_id) {
            (None, None) => return problem(at, "needs notifyVoice or templateId"),
            (Some(_), Some(_)) => {
                return problem(at, "takes notifyVoice or templateId, not both");
            }
            _ => {}
        }
        if !self.template_paras.is_empty() && self.template_id.is_none() {
            return problem(field("templateParas"), "is only allowed with templateId");
        }
        let collect = self.collect_ind.unwrap_or(0);
        range(&field("collectInd"), collect, 0, 32)?;
        if self.replay_after_collection.is_some() && collect == 0 {
            return problem(
                field("replayAfterCollection"),
                "applies only when collectInd is 1 or more",
            );
        }
        if let Some(trigger) = &self.collect_content_trigger_replaying {
            length(&field("collectContentTriggerReplaying"), trigger, 1, 32)?;
            if self.replay_after_collection != Some(true) {
                return problem(
                    field("collectContentTriggerReplaying"),
                    "applies only when replayAfterCollection is true",
                );
            }
        }
        Ok(())
    }
}

impl Operation for VerificationCode {
    const NAME: &'static str = "verify";
    const PATH: &'static str = "/rest/httpsessions/callVerify/v1.0";

    fn validate(&self) -> Checked {
        number("displayNbr", &self.display_nbr)?;
        number("calleeNbr", &self.callee_nbr)?;
        required("preTone", &self.pre_tone)?;
        let code = &self.verify_code;
        if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return problem("verifyCode", "must be 1 to 8 digits (0-9)");
        }
        optional_text("posTone", self.pos_tone.as_deref())?;
        if let Some(times) = self.times {
            range("times", times, 0, 9)?;
        }
        optional_number("bindNbr", self.bind_nbr.as_deref())?;
        callback_urls(self.status_url.as_deref(), self.fee_url.as_deref())?;
        user_data(self.user_data.as_deref())
    }

    fn callback_urls(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        Some((&mut self.status_url, &mut self.fee_url))
    }

    fn user_data(&self) -> Option<&str> {
        self.user_data.as_deref()
    }
}

impl Operation for StopCall {
    const NAME: &'static str = "stop";
    const PATH: &'static str = "/rest/httpsessions/callStop/v2.0";

    fn validate(&self) -> Checked {
        length("sessionid", &self.session_id, 1, 256)
    }
}

impl Operation for RecordingFile {
    const NAME: &'static str = "recording";
    const PATH: &'static str = "/rest/provision/voice/record/v1.0";
    const GET_REDIRECT: bool = true;

    fn validate(&self) -> Checked {
        length("fileName", &self.file_name, 1, 128)?;
        length("recordDomain", &self.record_domain, 1, 128)
    }
}

/// Standard Base64 of a callback URL, as the platform wants `statusUrl`/`feeUrl`.
pub fn encode_callback_url(url: &str) -> String {
    BASE64.encode(url)
}

fn base64_url<S: Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&encode_callback_url(url)),
        None => serializer.serialize_none(),
    }
}

fn flag<S: Serializer>(value: &Option<bool>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(true) => serializer.serialize_str("true"),
        Some(false) => serializer.serialize_str("false"),
        None => serializer.serialize_none(),
    }
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> Checked {
    Err(ValidationError::new(field, problem))
}

fn required(field: &str, value: &str) -> Checked {
    if value.trim().is_empty() {
        return problem(field, "is required");
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<&str>) -> Checked {
    if value.is_some_and(|v| v.trim().is_empty()) {
        return problem(field, "must not be empty when given (leave it out instead)");
    }
    Ok(())
}

fn length(field: &str, value: &str, min: usize, max: usize) -> Checked {
    let chars = value.chars().count();
    if value.trim().is_empty() && min > 0 {
        return problem(field, "is required");
    }
    if !(min..=max).contains(&chars) {
        return problem(field, format!("must be {min} to {max} characters"));
    }
    Ok(())
}

fn range(field: &str, value: u32, min: u32, max: u32) -> Checked {
    if !(min..=max).contains(&value) {
        return problem(field, format!("must be {min} to {max}"));
    }
    Ok(())
}

/// `+`, then 6–20 digits.
fn number(field: &str, value: &str) -> Checked {
    required(field, value)?;
    let digits = value.strip_prefix('+').unwrap_or("");
    if !(6..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return problem(
            field,
            "must be a number in global form: '+', country code and number, 6 to 20 digits",
        );
    }
    Ok(())
}

fn optional_number(field: &str, value: Option<&str>) -> Checked {
    value.map_or(Ok(()), |value| number(field, value))
}

fn callback_urls(status_url: Option<&str>, fee_url: Option<&str>) -> Checked {
    for (field, url) in [("statusUrl", status_url), ("feeUrl", fee_url)] {
        let Some(url) = url else { continue };
        if url.trim() != url || url.is_empty() {
            return problem(field, "must be a URL without surrounding spaces");
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return problem(field, "must be an http:// or https:// URL");
        }
        let encoded = encode_callback_url(url).len();
        if encoded > 128 {
            return problem(
                field,
                format!(
                    "is {encoded} characters once Base64-encoded; the platform takes at most 128"
                ),
            );
        }
    }
    Ok(())
}

/// 1–256 characters when given (spec §2.2): leave it out rather than send it empty.
fn user_data(value: Option<&str>) -> Checked {
    match value.map(|v| v.chars().count()) {
        Some(0) => problem("userData", "must not be empty (leave it out instead)"),
        Some(n) if n > 256 => problem("userData", "must be at most 256 characters"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn click_to_call_serialises_with_the_wire_names_and_string_flags() {
        let request = ClickToCall {
            display_nbr: "+867550000001".into(),
            caller_nbr: "+8613800000001".into(),
            display_callee_nbr: "+867550000001".into(),
            callee_nbr: "+8613800000002".into(),
            max_duration: Some(5),
            last_min_to_ue: Some(LastMinToUe::Both),
            callee_media: Some(CalleeMedia::None),
            record_flag: Some(false),
            status_url: Some("https://www.huawei.com:9330/fee".into()),
            ..ClickToCall::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "displayNbr": "+867550000001", "callerNbr": "+8613800000001",
                "displayCalleeNbr": "+867550000001", "calleeNbr": "+8613800000002",
                "maxDuration": 5, "lastMinToUE": "both", "calleeMedia": "none",
                "recordFlag": "false",
                "statusUrl": "aHR0cHM6Ly93d3cuaHVhd2VpLmNvbTo5MzMwL2ZlZQ=="
            })
        );
    }

    #[test]
    fn stop_uses_the_lowercase_sessionid_and_the_only_signal() {
        assert_eq!(
            serde_json::to_value(StopCall::new("s-1")).unwrap(),
            json!({"sessionid": "s-1", "signal": "call_stop"})
        );
    }

    #[test]
    fn numbers_must_be_plus_and_six_to_twenty_digits() {
        for good in ["+861380", "+8613800000001", "+12345678901234567890"] {
            assert_eq!(number("n", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "8613800000001",
            "+86 138 0000 0001",
            "+86138",
            "+123456789012345678901",
            "+86-13800000001",
        ] {
            assert!(number("n", bad).is_err(), "{bad:?}");
        }
    }
}
