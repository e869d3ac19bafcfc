//! Reading a request body as exact bytes, within a limit, keeping what arrived even when the
//! body is too large or breaks off: that prefix is stored with the refusal.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

pub enum BodyRead {
    Complete(Bytes),
    /// Over the limit: the first `limit` bytes.
    TooLarge(Bytes),
    /// The body broke off (client gone, body timeout): what had arrived.
    Incomplete(Bytes),
}

pub async fn read_limited(mut body: Body, limit: usize) -> BodyRead {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return BodyRead::Incomplete(buffer.freeze());
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            let room = limit - buffer.len();
            buffer.extend_from_slice(&data[..room]);
            return BodyRead::TooLarge(buffer.freeze());
        }
        if buffer.is_empty() {
            // The common case is one frame: keep it without copying.
            buffer = BytesMut::from(data);
        } else {
            buffer.extend_from_slice(&data);
        }
    }
    BodyRead::Complete(buffer.freeze())
}
