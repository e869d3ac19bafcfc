//! Pushing callbacks as the platform does (spec §1.3, §1.4): status events once and never again;
//! CDRs batched by `callEndTime` (at most 50 per push) and re-pushed on failure on a schedule.

use std::{collections::HashMap, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Mutex;

use callhook_platform::{
    callback::{CallStatusInfo, EventType, FeeInfo, MAX_FEE_RECORDS},
    signature::{DigestVariant, sign_callback},
    time::format_created,
};

/// How pushes to one app's URLs are signed: `variant` None sends no signature headers (the FAQ
/// says the platform may send none).
#[derive(Clone)]
pub struct PushSigner {
    pub app_key: String,
    pub secret: SecretString,
    pub variant: Option<DigestVariant>,
}

/// Counts of what was pushed, for the operator and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushStats {
    pub status_sent: u64,
    pub status_failed: u64,
    pub fee_pushes: u64,
    pub fee_retries: u64,
    pub fee_delivered_records: u64,
    pub fee_abandoned_records: u64,
}

#[derive(Clone)]
pub struct Pusher {
    client: reqwest::Client,
    retry_delays: Arc<Vec<Duration>>,
    batch_window: Duration,
    pending: Arc<Mutex<HashMap<BatchKey, Vec<FeeInfo>>>>,
    pub stats: Arc<std::sync::Mutex<PushStats>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct BatchKey {
    app_key: String,
    fee_url: String,
    call_end_time: String,
}

impl Pusher {
    pub fn new(retry_delays: Vec<Duration>, batch_window: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds");
        Self {
            client,
            retry_delays: Arc::new(retry_delays),
            batch_window,
            pending: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Pushes one status event. Not retried, whatever the answer: the platform does not either.
    pub async fn push_status(
        &self,
        url: &str,
        signer: &PushSigner,
        event_type: EventType,
        info: &CallStatusInfo,
    ) {
        let body = json!({"eventType": event_type.as_str(), "statusInfo": info});
        let delivered = self.post(url, signer, body.to_string()).await;
        let mut stats = self.stats.lock().expect("stats lock");
        if delivered {
            stats.status_sent += 1;
        } else {
            stats.status_failed += 1;
            tracing::warn!(
                url,
                event_type = event_type.as_str(),
                "status push failed; the platform does not retry"
            );
        }
    }

    /// Queues a CDR. CDRs of one app and URL with the same `callEndTime` leave together, once the
    /// batch window has passed or 50 have gathered.
    pub async fn queue_cdr(&self, fee_url: &str, signer: PushSigner, cdr: FeeInfo) {
        let key = BatchKey {
            app_key: signer.app_key.clone(),
            fee_url: fee_url.to_owned(),
            call_end_time: cdr.call_end_time.clone().unwrap_or_default(),
        };
        let mut pending = self.pending.lock().await;
        let batch = pending.entry(key.clone()).or_default();
        batch.push(cdr);
        let first = batch.len() == 1;
        if batch.len() >= MAX_FEE_RECORDS {
            let full = pending.remove(&key).unwrap_or_default();
            drop(pending);
            self.spawn_delivery(key.fee_url, signer, full);
        } else if first {
            let pusher = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(pusher.batch_window).await;
                let batch = pusher.pending.lock().await.remove(&key);
                if let Some(batch) = batch {
                    pusher.spawn_delivery(key.fee_url, signer, batch);
                }
            });
        }
    }

    fn spawn_delivery(&self, fee_url: String, signer: PushSigner, records: Vec<FeeInfo>) {
        let pusher = self.clone();
        tokio::spawn(async move { pusher.deliver_fee(&fee_url, &signer, records).await });
    }

    /// First push, then one re-push per configured delay while the receiver does not confirm.
    async fn deliver_fee(&self, fee_url: &str, signer: &PushSigner, records: Vec<FeeInfo>) {
        let body = json!({"eventType": "fee", "feeLst": records}).to_string();
        let count = records.len() as u64;
        let mut delays = self.retry_delays.iter();
        loop {
            self.stats.lock().expect("stats lock").fee_pushes += 1;
            if self.post(fee_url, signer, body.clone()).await {
                self.stats.lock().expect("stats lock").fee_delivered_records += count;
                return;
            }
            let Some(delay) = delays.next() else {
                tracing::warn!(
                    fee_url,
                    count,
                    "fee push abandoned after every re-push failed"
                );
                self.stats.lock().expect("stats lock").fee_abandoned_records += count;
                return;
            };
            self.stats.lock().expect("stats lock").fee_retries += 1;
            tokio::time::sleep(*delay).await;
        }
    }

    /// One POST; success is a 200 whose body, if it has a `resultcode`, says "0" (spec §1.3).
    async fn post(&self, url: &str, signer: &PushSigner, body: String) -> bool {
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json;charset=UTF-8")
            .body(body);
        if let Some(variant) = signer.variant {
            let nonce = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
            let created = format_created(time::OffsetDateTime::now_utc());
            let headers = sign_callback(
                &signer.app_key,
                signer.secret.expose_secret(),
                url,
                nonce,
                created,
                variant,
            );
            request = request
                .header("authorization", headers.authorization)
                .header("x-aksk", headers.x_aksk);
        }
        let Ok(response) = request.send().await else {
            return false;
        };
        if response.status() != reqwest::StatusCode::OK {
            return false;
        }
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) => value
                .get("resultcode")
                .is_none_or(|code| code == "0" || code == 0),
            Err(_) => true,
        }
    }
}
