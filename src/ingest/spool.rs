//! The local spool: where receipts go when PostgreSQL cannot take them, so that a callback is
//! still acknowledged durably while the database is down, failing over or too slow.
//!
//! An append-only log of checksummed records in numbered segment files. A group of receipts is
//! one `write` and one `fdatasync`, then acknowledged. Draining reads the oldest segment, keeps
//! its receipts in PostgreSQL (keyed by receipt id, so draining a segment twice after a crash
//! doubles nothing) and deletes the file. At open, every segment is checked record by record: a
//! torn or corrupted tail (a crash mid-write, a bad disk block) is cut off, moved aside to a
//! `.damaged` file and reported, and the intact records before it are drained as usual.
//!
//! Record: `len: u32 LE | crc32c(payload): u32 LE | payload`, the payload a postcard encoding of
//! `SpooledReceipt`. Segment: a 16-byte magic header, then records.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    platform::signature::Verdict,
    store::raw::{Receipt, ReceiptOutcome, endpoint_name},
};

const MAGIC: &[u8; 16] = b"callhook-spool01";
const RECORD_HEADER: usize = 8;
/// A record larger than this cannot have been written by us: the length itself is damaged.
const MAX_RECORD: usize = 64 << 20;

/// Where the spool lives and how much it may hold (`[spool]` in config.toml).
#[derive(Debug, Clone)]
pub struct SpoolLimits {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: std::time::Duration,
    pub segment_bytes: u64,
}

impl From<&crate::config::SpoolConfig> for SpoolLimits {
    fn from(config: &crate::config::SpoolConfig) -> Self {
        Self {
            dir: config.dir.clone(),
            max_bytes: config.max_bytes,
            max_age: std::time::Duration::from_secs(config.max_age_secs),
            segment_bytes: config.segment_bytes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A bound of `[spool]` is reached: nothing was written.
    #[error("the spool is full ({0})")]
    Full(&'static str),
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// What opening the spool found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub records: u64,
    /// Bytes of damaged tails moved aside.
    pub damaged_bytes: u64,
    /// Where they were moved.
    pub damaged_files: Vec<PathBuf>,
}

/// How full the spool is now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStatus {
    pub records: u64,
    pub bytes: u64,
    pub oldest: Option<OffsetDateTime>,
}

#[derive(Debug)]
struct Segment {
    bytes: u64,
    records: u64,
    oldest: Option<OffsetDateTime>,
}

struct Open {
    seq: u64,
    file: File,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    /// An append was refused at a bound; until a segment is drained, readiness says so.
    refusing: bool,
    /// The segment appended to, if any; never one that is being drained.
    open: Option<Open>,
    next_seq: u64,
}

pub struct Spool {
    limits: SpoolLimits,
    inner: Mutex<Inner>,
    /// Held for the life of the spool: two processes must never share one directory.
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool directory, takes its lock and checks every segment.
    pub fn open(limits: SpoolLimits) -> Result<(Self, Recovery), SpoolError> {
        fs::create_dir_all(&limits.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(limits.dir.join("LOCK"))?;
        if let Err(error) = lock.try_lock() {
            return Err(SpoolError::Io(io::Error::other(format!(
                "spool directory {} is in use by another callhook process ({error}); give each replica its own spool.dir",
                limits.dir.display()
            ))));
        }
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        for seq in segment_numbers(&limits.dir)? {
            let path = segment_path(&limits.dir, seq);
            let checked = check_segment(&path)?;
            if let Some(damaged) = checked.damaged_from {
                let aside = move_aside(&path, damaged)?;
                recovery.damaged_bytes += checked.file_len - damaged;
                recovery.damaged_files.push(aside);
            }
            if checked.records == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            recovery.segments += 1;
            recovery.records += checked.records;
            segments.insert(
                seq,
                Segment {
                    bytes: checked.valid_len,
                    records: checked.records,
                    oldest: checked.oldest,
                },
            );
        }
        sync_dir(&limits.dir)?;
        let next_seq = segments.keys().next_back().map_or(1, |last| last + 1);
        let spool = Self {
            limits,
            inner: Mutex::new(Inner {
                segments,
                refusing: false,
                open: None,
                next_seq,
            }),
            _lock: lock,
        };
        Ok((spool, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.limits.dir
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only counters behind, never a half-made
        // decision: the files are the truth, so carrying on is safe.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn status(&self) -> SpoolStatus {
        let inner = self.lock();
        SpoolStatus {
            records: inner.segments.values().map(|s| s.records).sum(),
            bytes: inner.segments.values().map(|s| s.bytes).sum(),
            oldest: inner.segments.values().find_map(|s| s.oldest),
        }
    }

    /// Whether another receipt could be appended now: below both bounds, and no append refused
    /// since the last segment was drained.
    pub fn has_room(&self) -> bool {
        if self.lock().refusing {
            return false;
        }
        let status = self.status();
        status.bytes < self.limits.max_bytes
            && status
                .oldest
                .is_none_or(|oldest| OffsetDateTime::now_utc() - oldest <= self.limits.max_age)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().segments.is_empty()
    }

    /// Appends receipts durably (written and fdatasync'd) when `admit` says so, deciding under
    /// the spool's lock, so that whoever flips the database back to "up" after the last segment
    /// was drained cannot race an append. Blocking: call from a blocking thread.
    pub fn append_if(
        &self,
        admit: impl FnOnce() -> bool,
        receipts: &[&Receipt],
    ) -> Result<bool, SpoolError> {
        let mut encoded = Vec::new();
        for receipt in receipts {
            encode_record(receipt, &mut encoded);
        }
        let mut inner = self.lock();
        if !admit() {
            return Ok(false);
        }
        let held: u64 = inner.segments.values().map(|s| s.bytes).sum();
        if held + encoded.len() as u64 > self.limits.max_bytes {
            inner.refusing = true;
            return Err(SpoolError::Full("spool.max_bytes"));
        }
        if let Some(oldest) = inner.segments.values().find_map(|s| s.oldest)
            && OffsetDateTime::now_utc() - oldest > self.limits.max_age
        {
            inner.refusing = true;
            return Err(SpoolError::Full("spool.max_age_secs"));
        }
        let rotate = match &inner.open {
            Some(open) => inner.segments[&open.seq].bytes >= self.limits.segment_bytes,
            None => true,
        };
        if rotate {
            let seq = inner.next_seq;
            let path = segment_path(&self.limits.dir, seq);
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            file.write_all(MAGIC)?;
            file.sync_all()?;
            sync_dir(&self.limits.dir)?;
            inner.next_seq += 1;
            inner.open = Some(Open { seq, file });
            inner.segments.insert(
                seq,
                Segment {
                    bytes: MAGIC.len() as u64,
                    records: 0,
                    oldest: None,
                },
            );
        }
        let open = inner.open.as_mut().expect("a segment is open");
        let seq = open.seq;
        if let Err(error) = open
            .file
            .write_all(&encoded)
            .and_then(|()| open.file.sync_data())
        {
            // What was written may be partial: never append after it. The checks at the next
            // open cut the segment back to its last whole record.
            inner.open = None;
            return Err(error.into());
        }
        let segment = inner
            .segments
            .get_mut(&seq)
            .expect("the open segment is listed");
        segment.bytes += encoded.len() as u64;
        segment.records += receipts.len() as u64;
        if segment.oldest.is_none() {
            segment.oldest = receipts.iter().map(|r| r.received_at).min();
        }
        Ok(true)
    }

    /// Runs `then` if the spool is empty, under its lock (see `append_if`).
    pub fn if_empty(&self, then: impl FnOnce()) -> bool {
        let inner = self.lock();
        if inner.segments.is_empty() {
            then();
            true
        } else {
            false
        }
    }

    /// The oldest segment, closed for appending first if it is the open one, to be drained.
    pub fn oldest_segment(&self) -> Option<u64> {
        let mut inner = self.lock();
        let oldest = *inner.segments.keys().next()?;
        if inner.open.as_ref().is_some_and(|o| o.seq == oldest) {
            inner.open = None;
        }
        Some(oldest)
    }

    /// Reads every receipt of a segment. Blocking.
    pub fn read_segment(&self, seq: u64) -> Result<Vec<Receipt>, SpoolError> {
        let bytes = fs::read(segment_path(&self.limits.dir, seq))?;
        let mut receipts = Vec::new();
        let mut at = MAGIC.len();
        while let Some((payload, next)) = next_record(&bytes, at) {
            receipts.push(decode_payload(payload).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a spooled receipt does not decode",
                )
            })?);
            at = next;
        }
        Ok(receipts)
    }

    /// Forgets a drained segment. Blocking.
    pub fn remove_segment(&self, seq: u64) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        if inner.open.as_ref().is_some_and(|o| o.seq == seq) {
            inner.open = None;
        }
        fs::remove_file(segment_path(&self.limits.dir, seq))?;
        sync_dir(&self.limits.dir)?;
        inner.segments.remove(&seq);
        inner.refusing = false;
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

fn segment_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse().ok())
        {
            numbers.push(seq);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Checked {
    file_len: u64,
    valid_len: u64,
    records: u64,
    oldest: Option<OffsetDateTime>,
    damaged_from: Option<u64>,
}

fn check_segment(path: &Path) -> io::Result<Checked> {
    let bytes = fs::read(path)?;
    let file_len = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // Not even a header: a segment created but never written, or not ours.
        return Ok(Checked {
            file_len,
            valid_len: 0,
            records: 0,
            oldest: None,
            damaged_from: (!bytes.is_empty()).then_some(0),
        });
    }
    let (mut at, mut records, mut oldest) = (MAGIC.len(), 0, None);
    while let Some((payload, next)) = next_record(&bytes, at) {
        let Some(receipt) = decode_payload(payload) else {
            break;
        };
        oldest = oldest.or(Some(receipt.received_at));
        records += 1;
        at = next;
    }
    Ok(Checked {
        file_len,
        valid_len: at as u64,
        records,
        oldest,
        damaged_from: (at < bytes.len()).then_some(at as u64),
    })
}

/// The payload of the record at `at`, if a whole one with a matching checksum is there.
fn next_record(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at + RECORD_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, at + RECORD_HEADER + len))
}

/// Copies the damaged tail of a segment to a `.damaged` file beside it, then cuts the segment
/// back to its intact records. Returns the `.damaged` file.
fn move_aside(path: &Path, from: u64) -> io::Result<PathBuf> {
    let bytes = fs::read(path)?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let aside = path.with_extension(format!("{stamp}.damaged"));
    let mut file = File::create(&aside)?;
    file.write_all(&bytes[from as usize..])?;
    file.sync_all()?;
    let segment = OpenOptions::new().write(true).open(path)?;
    segment.set_len(from)?;
    segment.sync_all()?;
    Ok(aside)
}

/// A receipt as the spool keeps it: only owned plain data, so the encoding is stable.
#[derive(Serialize, Deserialize)]
struct SpooledReceipt {
    id: [u8; 16],
    received_at_unix_nanos: i128,
    endpoint: String,
    method: String,
    path: String,
    peer_addr: Option<String>,
    headers: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    body_truncated: bool,
    event_type: Option<String>,
    app_key: Option<String>,
    nonce: Option<String>,
    signature_verdict: String,
    request_id: Option<String>,
    outcome: String,
    http_status: u16,
    error: Option<String>,
}

fn encode_record(receipt: &Receipt, out: &mut Vec<u8>) {
    let spooled = SpooledReceipt {
        id: receipt.id.into_bytes(),
        received_at_unix_nanos: receipt.received_at.unix_timestamp_nanos(),
        endpoint: receipt.endpoint.to_owned(),
        method: receipt.method.clone(),
        path: receipt.path.clone(),
        peer_addr: receipt.peer_addr.clone(),
        headers: receipt.headers.to_string(),
        body: receipt.body.to_vec(),
        body_truncated: receipt.body_truncated,
        event_type: receipt.event_type.clone(),
        app_key: receipt.app_key.clone(),
        nonce: receipt.nonce.clone(),
        signature_verdict: receipt.signature_verdict.as_str().to_owned(),
        request_id: receipt.request_id.clone(),
        outcome: receipt.outcome.as_str().to_owned(),
        http_status: receipt.http_status,
        error: receipt.error.as_ref().map(|e| e.to_string()),
    };
    let payload = postcard::to_stdvec(&spooled).expect("plain data always encodes");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn decode_payload(payload: &[u8]) -> Option<Receipt> {
    let s: SpooledReceipt = postcard::from_bytes(payload).ok()?;
    Some(Receipt {
        id: Uuid::from_bytes(s.id),
        received_at: OffsetDateTime::from_unix_timestamp_nanos(s.received_at_unix_nanos).ok()?,
        endpoint: endpoint_name(&s.endpoint)?,
        method: s.method,
        path: s.path,
        peer_addr: s.peer_addr,
        headers: serde_json::from_str(&s.headers).ok()?,
        body: s.body.into(),
        body_truncated: s.body_truncated,
        event_type: s.event_type,
        app_key: s.app_key,
        nonce: s.nonce,
        signature_verdict: Verdict::parse(&s.signature_verdict)?,
        request_id: s.request_id,
        outcome: ReceiptOutcome::parse(&s.outcome)?,
        http_status: s.http_status,
        error: match s.error {
            Some(text) => Some(serde_json::from_str(&text).ok()?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path) -> SpoolLimits {
        SpoolLimits {
            dir: dir.to_owned(),
            max_bytes: 1 << 20,
            max_age: std::time::Duration::from_secs(3600),
            segment_bytes: 4096,
        }
    }

    fn receipt(n: u8) -> Receipt {
        Receipt {
            id: Uuid::now_v7(),
            received_at: OffsetDateTime::now_utc(),
            endpoint: "status",
            method: "POST".into(),
            path: "/voicecall/status".into(),
            peer_addr: Some("127.0.0.1:1".into()),
            headers: serde_json::json!({"host": "x"}),
            body: vec![b'{', n, b'}'].into(),
            body_truncated: false,
            event_type: Some("callout".into()),
            app_key: None,
            nonce: Some(format!("N{n}")),
            signature_verdict: Verdict::Valid,
            request_id: None,
            outcome: ReceiptOutcome::Received,
            http_status: 200,
            error: Some(serde_json::json!({"code": "x"})),
        }
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callhook-spool-unit-{}", Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appended_receipts_read_back_in_order_across_segments_and_reopen() {
        let dir = temp_dir();
        let (spool, _) = Spool::open(limits(&dir)).unwrap();
        let written: Vec<Receipt> = (0..100).map(receipt).collect();
        for chunk in written.chunks(7) {
            let refs: Vec<&Receipt> = chunk.iter().collect();
            assert!(spool.append_if(|| true, &refs).unwrap());
        }
        assert_eq!(spool.status().records, 100);
        drop(spool);
        let (spool, recovery) = Spool::open(limits(&dir)).unwrap();
        assert_eq!(recovery.records, 100);
        assert!(recovery.segments > 1, "4 KiB segments rotate");
        let mut read = Vec::new();
        while let Some(seq) = spool.oldest_segment() {
            read.extend(spool.read_segment(seq).unwrap());
            spool.remove_segment(seq).unwrap();
        }
        let ids = |r: &[Receipt]| r.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&read), ids(&written));
        assert_eq!(read[5].body, written[5].body);
        assert_eq!(read[5].error, written[5].error);
        assert!(spool.is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = temp_dir();
        let (_spool, _) = Spool::open(limits(&dir)).unwrap();
        assert!(Spool::open(limits(&dir)).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_spool_refuses_and_writes_nothing() {
        let dir = temp_dir();
        let mut small = limits(&dir);
        small.max_bytes = 200;
        let (spool, _) = Spool::open(small).unwrap();
        let many: Vec<Receipt> = (0..10).map(receipt).collect();
        let refs: Vec<&Receipt> = many.iter().collect();
        assert!(spool.has_room());
        assert!(matches!(
            spool.append_if(|| true, &refs),
            Err(SpoolError::Full("spool.max_bytes"))
        ));
        assert_eq!(spool.status().records, 0);
        assert!(!spool.has_room(), "readiness follows the refusal");
        fs::remove_dir_all(dir).unwrap();
    }
}
