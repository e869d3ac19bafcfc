//! Platform-like callback bodies for load: status events of calls moving through their stages,
//! and fee lists of 1–`max_batch` CDRs, every one distinct so a receiver really stores it.
//! Bodies are serialized from the platform's own typed structs, so field names cannot drift.

use bytes::Bytes;
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::platform::callback::{CallStatusInfo, EventType, FeeInfo};

const STAGES: [EventType; 4] = [
    EventType::Callout,
    EventType::Alerting,
    EventType::Answer,
    EventType::Disconnect,
];
const HOST: &str = "callenabler245.huaweicaas.com";

// Serialized directly (not through serde_json::Value): this is the load generator's hot path.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    event_type: &'a str,
    status_info: &'a CallStatusInfo,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct FeeBody<'a> {
    event_type: &'a str,
    fee_lst: &'a [FeeInfo],
}

/// What one generated request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Status,
    /// A fee list of this many CDRs.
    Fee(usize),
}

/// A deterministic stream of bodies for one connection: the same seed gives the same kinds and
/// sizes; `run_id` keeps session ids of different runs apart.
pub struct Traffic {
    rng: StdRng,
    prefix: String,
    fee_share: f64,
    min_batch: usize,
    max_batch: usize,
    calls: u64,
    stage: usize,
    fees: u64,
}

impl Traffic {
    pub fn new(
        seed: u64,
        run_id: &str,
        connection: usize,
        fee_share: f64,
        batch: (usize, usize),
    ) -> Self {
        let (min_batch, max_batch) = (batch.0.max(1), batch.1.max(batch.0.max(1)));
        Self {
            rng: StdRng::seed_from_u64(
                seed ^ (connection as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            prefix: format!("load-{run_id}-{connection}"),
            fee_share,
            min_batch,
            max_batch,
            calls: 0,
            stage: 0,
            fees: 0,
        }
    }

    pub fn next_body(&mut self) -> (Kind, Bytes) {
        if self.rng.random_bool(self.fee_share) {
            let size = self.rng.random_range(self.min_batch..=self.max_batch);
            (Kind::Fee(size), self.fee_list(size))
        } else {
            (Kind::Status, self.status_event())
        }
    }

    fn status_event(&mut self) -> Bytes {
        let event_type = STAGES[self.stage];
        let info = CallStatusInfo {
            session_id: Some(format!("{}-c{}@{HOST}", self.prefix, self.calls)),
            timestamp: Some("2026-11-24 06:00:00".into()),
            caller: Some("+8613800000001".into()),
            called: Some("+8613800000002".into()),
            user_data: Some(format!("order-{}", self.calls)),
            state_code: (event_type == EventType::Disconnect).then_some(0),
            state_desc: (event_type == EventType::Disconnect)
                .then(|| "The user releases the call.".into()),
            ..CallStatusInfo::default()
        };
        self.stage += 1;
        if self.stage == STAGES.len() {
            self.stage = 0;
            self.calls += 1;
        }
        let body = StatusBody {
            event_type: event_type.as_str(),
            status_info: &info,
        };
        Bytes::from(serde_json::to_vec(&body).expect("serializable"))
    }

    fn fee_list(&mut self, size: usize) -> Bytes {
        self.fees += 1;
        let records: Vec<FeeInfo> = (0..size)
            .map(|i| {
                let session = format!("{}-f{}-{i}@{HOST}", self.prefix, self.fees);
                FeeInfo {
                    direction: Some(0),
                    sp_id: Some("CaaS_Test_01".into()),
                    app_key: Some("loadtest".into()),
                    icid: Some(format!("CAE-{session}")),
                    bind_num: Some("+867550000000".into()),
                    session_id: Some(session),
                    caller_num: Some("+8613800000001".into()),
                    callee_num: Some("+8613800000002".into()),
                    call_out_start_time: Some("2026-11-24 06:00:00".into()),
                    call_out_alerting_time: Some("2026-11-24 06:00:02".into()),
                    call_out_answer_time: Some("2026-11-24 06:00:05".into()),
                    call_end_time: Some("2026-11-24 06:01:00".into()),
                    call_out_unasw_rsn: Some(0),
                    ul_fail_reason: Some(0),
                    record_flag: Some(0),
                    service_type: Some("001".into()),
                    host_name: Some(HOST.into()),
                    ..FeeInfo::default()
                }
            })
            .collect();
        let body = FeeBody {
            event_type: EventType::Fee.as_str(),
            fee_lst: &records,
        };
        Bytes::from(serde_json::to_vec(&body).expect("serializable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::callback::{Callback, parse_callback};

    #[test]
    fn generated_bodies_parse_as_the_platform_would_send_them() {
        let mut traffic = Traffic::new(7, "t", 0, 0.5, (1, 50));
        for _ in 0..200 {
            let (kind, body) = traffic.next_body();
            match (kind, parse_callback(&body).result) {
                (Kind::Status, Ok(Callback::Status(_))) => {}
                (Kind::Fee(n), Ok(Callback::Fee(batch))) => {
                    assert_eq!(batch.records.len(), n);
                    assert!(batch.rejected.is_empty());
                }
                (kind, other) => panic!("{kind:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_sessions_never_repeat() {
        let kinds = |seed| {
            let mut traffic = Traffic::new(seed, "t", 3, 0.1, (1, 50));
            (0..100).map(|_| traffic.next_body()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(1), kinds(1));
        let bodies = kinds(1);
        let unique: std::collections::HashSet<_> = bodies.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(unique.len(), bodies.len());
    }
}
