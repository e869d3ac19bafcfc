//! The platform's code tables (spec §3.1 hang-up causes, §3.2 Q.850 causes, §3.3 release
//! points): the one source of truth. `store::codes` copies them into PostgreSQL on start for
//! people who query the database directly; result codes of the APIs are in `result_codes`.

/// `stateCode` of `disconnect` events (spec §3.1).
pub const STATE_CODES: &[(i32, &str)] = &[
    (0, "released normally after being connected"),
    (7001, "developer call-frequency control"),
    (7002, "application call-frequency control"),
    (7003, "fixed-line (display) number call-frequency control"),
    (7004, "called number blacklist control"),
    (7108, "user status frozen"),
    (7109, "not enough voice ports"),
    (8000, "internal error"),
    (
        8001,
        "user not connected (may be frequency control, line/carrier fault, callee off/no answer/busy)",
    ),
    (
        8002,
        "far end returned a failure announcement while connecting",
    ),
    (8003, "ringing timed out"),
    (8004, "hung up while ringing"),
    (8005, "TTS conversion failed"),
    (8006, "audio file does not exist"),
    (8007, "failed to play audio to the user"),
    (
        8008,
        "digit collection failed (keys must be pressed within 5 s after playback)",
    ),
    (8009, "caller hung up before connection"),
    (8010, "maximum call duration reached"),
    (8012, "invalid app_key"),
    (8015, "recording failed"),
    (8017, "release indicated by the user/SP"),
    (8018, "no service permission"),
    (8020, "service exception"),
    (8100, "called number does not exist"),
    (8101, "called party did not answer"),
    (8102, "called party busy"),
    (8103, "called party temporarily unreachable"),
    (8104, "called party powered off"),
    (8105, "called party hung up or line suspended"),
    // An older copy of the table (spec §3.1, third-party code, 2018) adds caller-side causes.
    (8106, "caller number does not exist"),
    (8107, "caller did not answer"),
    (8108, "caller busy"),
    (8109, "caller temporarily unreachable"),
    (8110, "caller powered off"),
    (8111, "caller hung up or line suspended"),
];

/// Q.850 causes as the platform documents them (`fwdUnaswRsn`, `callOutUnaswRsn`; spec §3.2):
/// code, the doc's Chinese label, the ITU-T meaning.
pub const Q850_CAUSES: &[(i32, &str, &str)] = &[
    (0, "不涉及", "not applicable (no cause)"),
    (1, "无法找到号码", "unallocated (unassigned) number"),
    (2, "无法路由到网络", "no route to specified transit network"),
    (3, "无法路由到目的地", "no route to destination"),
    (4, "发送特殊消息", "send special information tone"),
    (5, "中继前缀出错", "misdialled trunk prefix"),
    (6, "通道无法接入", "channel unacceptable"),
    (
        7,
        "已经建立频道",
        "call awarded, delivered in an established channel",
    ),
    (8, "抢先占有", "preemption"),
    (9, "抢先占有保留", "preemption, circuit reserved for reuse"),
    (16, "正常呼叫清除", "normal call clearing"),
    (17, "用户忙", "user busy"),
    (18, "无应答", "no user responding"),
    (19, "无用户应答", "no answer from user (user alerted)"),
    (20, "用户不可及", "subscriber absent"),
    (21, "拒绝呼叫", "call rejected"),
    (22, "号码已改变", "number changed"),
    (23, "重定向", "redirection to new destination"),
    (25, "交换路由错误", "exchange routing error"),
    (26, "无用户准许", "non-selected user clearing"),
    (27, "目标无序", "destination out of order"),
    (28, "非法号码格式", "invalid number format"),
    (29, "设备拒绝", "facility rejected"),
    (30, "状态查询", "response to STATUS ENQUIRY"),
    (31, "正常", "normal, unspecified"),
    (34, "路由不可达", "no circuit/channel available"),
    (38, "网络状态不好", "network out of order"),
    (
        39,
        "服务链接不上",
        "permanent frame mode connection out of service",
    ),
    (
        40,
        "链接进行中",
        "permanent frame mode connection operational",
    ),
    (41, "暂时失败", "temporary failure"),
    (42, "设备拥塞", "switching equipment congestion"),
    (43, "信息丢弃", "access information discarded"),
    (
        44,
        "通道无法接入",
        "requested circuit/channel not available",
    ),
    (46, "呼叫阻塞", "precedence call blocked"),
    (47, "无可用资源", "resource unavailable, unspecified"),
    (49, "品质无效", "quality of service not available"),
    (50, "设备没预订", "requested facility not subscribed"),
    (53, "闭合群OCB呼出受限", "outgoing calls barred within CUG"),
    (55, "闭合群ICB呼入受限", "incoming calls barred within CUG"),
    (57, "无权限发送", "bearer capability not authorized"),
    (58, "发送无效", "bearer capability not presently available"),
    (
        62,
        "等级不一致",
        "inconsistent outgoing access / subscriber class",
    ),
    (63, "服务无效", "service or option not available"),
    (65, "发送无法执行", "bearer capability not implemented"),
    (66, "通道无法执行", "channel type not implemented"),
    (69, "设备无效", "requested facility not implemented"),
    (70, "发送有效", "only restricted digital bearer available"),
    (79, "CV服务没设置", "service or option not implemented"),
    (81, "引用非法值", "invalid call reference value"),
    (82, "通道不存在", "identified channel does not exist"),
    (
        83,
        "ID不存在",
        "suspended call exists, but this call identity does not",
    ),
    (
        84,
        "呼叫ID不存在",
        "call identity in use (ITU); doc label says \"call ID does not exist\"",
    ),
    (85, "无呼叫等待", "no call suspended"),
    (
        86,
        "隐藏号码呼叫",
        "call with requested identity has been cleared (ITU); doc label differs",
    ),
    (87, "CUG无成员", "user not member of CUG"),
    (88, "目标冲突", "incompatible destination"),
    (90, "CUG不存在", "non-existent CUG"),
    (91, "无效网络", "invalid transit network selection"),
    (95, "无效信息", "invalid message, unspecified"),
    (
        96,
        "非托管元素",
        "mandatory information element missing (ITU)",
    ),
    (
        97,
        "类型不存在",
        "message type non-existent or not implemented",
    ),
    (
        98,
        "信息没执行",
        "message not compatible with call state or not implemented",
    ),
    (
        99,
        "信息单元不存在",
        "information element / parameter non-existent",
    ),
    (
        100,
        "无效的信息单元",
        "invalid information element contents",
    ),
    (
        101,
        "呼叫状态不一致",
        "message not compatible with call state",
    ),
    (102, "定时器超时", "recovery on timer expiry"),
    (
        103,
        "参数不存在",
        "parameter non-existent or not implemented, passed on",
    ),
    (
        110,
        "消息中带有未识别的参数",
        "message with unrecognized parameter, discarded",
    ),
    (111, "协议错误", "protocol error, unspecified"),
    (127, "未指定的交互", "interworking, unspecified"),
];

/// Release points (`ulFailReason`, spec §3.3) as inclusive ranges; the narrowest match wins.
/// 8000 and up repeat the hang-up causes of §3.1 (the rest of that table was not retrieved).
pub const UL_FAIL_REASONS: &[(i32, i32, &str)] = &[
    (0, 0, "released normally after connection"),
    (
        100,
        100,
        "digit collection received nothing (keys must be pressed within 5 s after playback)",
    ),
    (
        400,
        699,
        "raw SIP response code (no Q.850 cause was returned)",
    ),
    (501, 510, "recording set-up failure or timeout"),
    (512, 512, "call released due to recording VCU switchover"),
    (513, 513, "call timeout"),
    (514, 514, "ringing timeout"),
    (515, 515, "remote user cancelled"),
    (516, 516, "local user cancelled"),
    (517, 517, "platform response timeout"),
    (518, 518, "remote user call failed (see the Q.850 cause)"),
    (519, 519, "local call failed (0XX; see the Q.850 cause)"),
    (520, 520, "local call failed (18X; see the Q.850 cause)"),
    (521, 521, "remote released before ringing"),
    (522, 522, "not enough voice ports"),
    (524, 524, "audio file does not exist"),
    (526, 526, "mute failed"),
    (527, 527, "unmute failed"),
    (528, 528, "number prefix not allowed"),
    (529, 529, "appkey does not exist"),
    (530, 530, "caller hung up before forwarding"),
    (539, 539, "recording flow not finished, caller hung up"),
    (540, 540, "recording flow not finished, callee hung up"),
    (
        541,
        541,
        "renegotiation with caller failed after callee answered",
    ),
    (542, 542, "recording timeout released the call"),
    (550, 550, "local ringing failed"),
    (551, 551, "click-to-call local side received 0XX"),
    (552, 552, "local user hung up while remote ringing"),
    (553, 553, "local user hung up before remote ringing"),
    (
        1001,
        1004,
        "agent, user, SP switchboard or blind-transfer release",
    ),
    (
        2801,
        2871,
        "IVR, MRF, ICSCF, licence, enterprise-suspended or dynamic-IVR-timeout condition",
    ),
    (2901, 2914, "recording failed"),
    (
        7001,
        7005,
        "frequency control (developer, app, display number) or callee/caller blacklist",
    ),
    (7100, 7100, "app information missing"),
    (7105, 7105, "business type mismatch"),
    (7106, 7106, "app lacks the capability"),
    (7107, 7107, "security prompt failed"),
    (7108, 7108, "user status frozen"),
    (7109, 7109, "not enough voice ports"),
    (8000, 8000, "internal error"),
    (8001, 8001, "user not connected"),
];

/// Meaning of a hang-up cause, if documented.
pub fn state_meaning(code: i32) -> Option<&'static str> {
    STATE_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, meaning)| *meaning)
}

/// ITU-T meaning of a Q.850 cause, if the platform documents the code.
pub fn q850_meaning(code: i32) -> Option<&'static str> {
    Q850_CAUSES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, meaning)| *meaning)
}

/// Meaning of a release point: the narrowest documented range that holds it.
pub fn ul_fail_meaning(code: i32) -> Option<&'static str> {
    UL_FAIL_REASONS
        .iter()
        .filter(|(from, to, _)| (*from..=*to).contains(&code))
        .min_by_key(|(from, to, _)| to - from)
        .map(|(_, _, meaning)| *meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_listed_once() {
        let mut states: Vec<i32> = STATE_CODES.iter().map(|(c, _)| *c).collect();
        let mut causes: Vec<i32> = Q850_CAUSES.iter().map(|(c, _, _)| *c).collect();
        let mut points: Vec<i32> = UL_FAIL_REASONS.iter().map(|(c, _, _)| *c).collect();
        for codes in [&mut states, &mut causes, &mut points] {
            let n = codes.len();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), n);
        }
    }

    #[test]
    fn lookups_decode_the_documented_codes() {
        assert_eq!(state_meaning(8102), Some("called party busy"));
        assert_eq!(q850_meaning(17), Some("user busy"));
        assert_eq!(ul_fail_meaning(514), Some("ringing timeout"));
        assert_eq!(
            ul_fail_meaning(486),
            Some("raw SIP response code (no Q.850 cause was returned)")
        );
        assert_eq!(
            ul_fail_meaning(2805),
            Some("IVR, MRF, ICSCF, licence, enterprise-suspended or dynamic-IVR-timeout condition")
        );
        assert_eq!(state_meaning(1), None);
    }
}
