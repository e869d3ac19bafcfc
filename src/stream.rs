//! The live stream of call changes: what `GET /v1/stream` sends, and the same for Rust code
//! ([`Changes::subscribe`]). docs/stream.md is the reference; this is the short version.
//!
//! **Where changes come from.** Every writer of `calls` goes through `store::calls::refresh`,
//! whose upsert stamps each row with its transaction's id (`change_xid`) and queues a NOTIFY that
//! PostgreSQL sends when that transaction commits, whichever replica it runs on.
//!
//! **Positions ([`Cursor`]).** A position is a point in the order of `(change_xid, session_id)`.
//! A reader reads the rows after its position and below its snapshot's horizon (its xmin, less
//! the transactions of other databases: `store::calls`), then moves to that horizon. Below the
//! horizon every transaction that can write `calls` has finished, and a transaction that commits
//! later has an id at or above it; so nothing can ever
//! appear behind a position, and a position is complete: everything before it was delivered.
//! A sequence number would not do: two transactions take 9 and 10, 10 commits first, a reader
//! moves past 9, and 9 commits behind it. A call changed again comes back with its newer state.
//!
//! **One reader per process.** The hub ([`Changes::follow`]) reads the changes once for all
//! subscribers, woken by the NOTIFY ([`Changes::listen`], one connection of its own) and in any
//! case every `stream.poll_interval_ms`, since a notification sent while the listener was away
//! is lost: NOTIFY only says when to look, never what changed. It hands each subscriber what its
//! filter matches through a channel of `stream.buffer` changes, without ever waiting: a
//! subscriber whose channel is full is dropped ([`Ended::TooSlow`]), and the others go on.
//!
//! **Resuming.** A subscriber that starts from an older position reads on its own (pages of
//! [`PAGE`] rows) until it has caught up with the hub, then joins it; from a position of the
//! future it joins at once and skips what it has seen.

use std::{
    collections::VecDeque,
    fmt,
    str::FromStr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::{
    sync::{
        Notify,
        mpsc::{self, error::TrySendError},
    },
    time::Instant,
};

use crate::{
    config::StreamConfig,
    metrics as m,
    store::{
        StoreError,
        calls::{self, CHANGES_CHANNEL, ChangePage},
        read::CallRow,
    },
    telemetry::mask_numbers,
};

/// Rows one query reads at most, the hub's and a resuming subscriber's alike.
pub const PAGE: i64 = 500;

/// A position in the stream: every change before it has been delivered. Written as the event
/// `id`: `<xid>` (before everything transaction `xid` wrote), or `<xid>.<session id,
/// base64url>` (after that call among what `xid` wrote, where a page was cut).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    xid: u64,
    /// Compared as bytes, like `session_id collate "C"` in the queries.
    after_session: Option<Arc<str>>,
}

impl Cursor {
    /// Before everything transaction `xid` (and any later one) wrote.
    fn at(xid: u64) -> Self {
        Self {
            xid,
            after_session: None,
        }
    }

    /// Just after `session_id` as written by `xid`.
    fn after(xid: u64, session_id: &str) -> Self {
        Self {
            xid,
            after_session: Some(session_id.into()),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.after_session {
            None => write!(f, "{}", self.xid),
            Some(session) => write!(f, "{}.{}", self.xid, URL_SAFE_NO_PAD.encode(&**session)),
        }
    }
}

/// Why an event id cannot be read; says what one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an event id of this stream (one looks like 7306 or 7306.c2Vzc2lvbg: a transaction id, \
     optionally a dot and a base64url session id)"
)]
pub struct InvalidCursor;

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<Self, InvalidCursor> {
        let (xid, session) = match text.split_once('.') {
            Some((xid, session)) => (xid, Some(session)),
            None => (text, None),
        };
        if xid.is_empty() || !xid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidCursor);
        }
        let xid = xid.parse().map_err(|_| InvalidCursor)?;
        let Some(session) = session else {
            return Ok(Self::at(xid));
        };
        let bytes = URL_SAFE_NO_PAD.decode(session).map_err(|_| InvalidCursor)?;
        let session = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        // A session id is never empty and holds no NUL (PostgreSQL text cannot).
        if session.is_empty() || session.contains('\0') {
            return Err(InvalidCursor);
        }
        Ok(Self::after(xid, &session))
    }
}

/// Which calls a subscriber is told about: all those given must equal the call's current row
/// (as the `/v1/calls` filters of the same names).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub app_key: Option<String>,
    /// The call's outcome now: a call that goes from `in_progress` to `answered` matches
    /// `outcome=answered` from that change on.
    pub outcome: Option<String>,
    /// Equals the caller, the callee or the display number.
    pub number: Option<String>,
    pub user_data: Option<String>,
}

impl Filter {
    pub fn matches(&self, call: &CallRow) -> bool {
        let equal = |wanted: &Option<String>, value: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| value == Some(wanted))
        };
        let number = self.number.as_deref().is_none_or(|number| {
            [&call.caller, &call.callee, &call.display_number]
                .into_iter()
                .any(|n| n.as_deref() == Some(number))
        });
        number
            && equal(&self.app_key, call.app_key.as_deref())
            && equal(&self.outcome, Some(&call.outcome))
            && equal(&self.user_data, call.user_data.as_deref())
    }
}

/// A call's row as it is after a change, with the position right after it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Resume from here to get every change after this one.
    pub cursor: Cursor,
    /// The call's row as stored (phone numbers unmasked).
    pub call: Arc<CallRow>,
}

impl Change {
    pub fn session_id(&self) -> &str {
        &self.call.session_id
    }
}

/// What [`Subscription::next`] gives.
#[derive(Debug, Clone)]
pub enum Next {
    Change(Change),
    /// Nothing came in the time given; everything before this position has been delivered.
    Idle(Cursor),
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    /// It fell `stream.buffer` changes behind and was dropped; resume from its last cursor.
    #[error("the subscriber fell stream.buffer changes behind and was dropped")]
    TooSlow,
    /// The process is shutting down.
    #[error("callhook is shutting down")]
    Closed,
    /// Catching up failed (the database); resume from its last cursor.
    #[error("reading the changes failed: {0}")]
    Failed(StoreError),
}

/// Why a subscription could not start.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("callhook is shutting down")]
    Closed,
    #[error("stream.max_subscribers ({0}) streams are open")]
    Busy(usize),
    /// The position is beyond any transaction of this database: not one it handed out.
    #[error("the position is ahead of this database (its next transaction is {next})")]
    Ahead { next: u64 },
    #[error(transparent)]
    Store(StoreError),
}

/// The process's reader of changes and its subscribers. Cheap to clone (one shared hub).
#[derive(Clone)]
pub struct Changes(Arc<Hub>);

struct Hub {
    pool: PgPool,
    config: StreamConfig,
    state: Mutex<HubState>,
    /// Woken by each notification (and by `close`).
    nudge: Notify,
    /// Subscriptions open, joined or catching up (`stream.max_subscribers`).
    open: AtomicUsize,
    next_id: AtomicU64,
}

struct HubState {
    /// Everything before it was handed to the joined subscribers; none until first read.
    position: Option<Cursor>,
    joined: Vec<Joined>,
    closed: bool,
}

/// A subscriber the hub hands changes to.
struct Joined {
    id: u64,
    filter: Filter,
    /// It has had everything up to here already (it caught up beyond the hub).
    seen: Cursor,
    sender: mpsc::Sender<Change>,
    dropped: Arc<AtomicBool>,
}

impl Changes {
    pub fn new(pool: PgPool, config: StreamConfig) -> Self {
        // Exported from the start, so alerts have a series to watch.
        metrics::gauge!(m::STREAM_SUBSCRIBERS).increment(0.0);
        metrics::counter!(m::STREAM_DROPPED_TOTAL).increment(0);
        metrics::counter!(m::STREAM_EVENTS_TOTAL).increment(0);
        Self(Arc::new(Hub {
            pool,
            config,
            state: Mutex::new(HubState {
                position: None,
                joined: Vec::new(),
                closed: false,
            }),
            nudge: Notify::new(),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        }))
    }

    /// Starts a subscription: from `from` (an earlier [`Change::cursor`] or [`Next::Idle`]),
    /// or from now.
    pub async fn subscribe(
        &self,
        filter: Filter,
        from: Option<Cursor>,
    ) -> Result<Subscription, SubscribeError> {
        let hub = &self.0;
        let max = hub.config.max_subscribers;
        if hub.open.fetch_add(1, Ordering::SeqCst) >= max {
            hub.open.fetch_sub(1, Ordering::SeqCst);
            return Err(SubscribeError::Busy(max));
        }
        // From here on, dropping it gives the slot back.
        let mut subscription = Subscription::new(hub.clone(), filter);
        if let Some(from) = &from {
            let next = calls::next_xid(&hub.pool)
                .await
                .map_err(SubscribeError::Store)?;
            if from.xid > next {
                return Err(SubscribeError::Ahead { next });
            }
        }
        let position = {
            let state = hub.state();
            if state.closed {
                return Err(SubscribeError::Closed);
            }
            state.position.clone()
        };
        let position = match position {
            Some(position) => position,
            // The hub has not read yet (just started): now is where it starts too.
            None => {
                let now = Cursor::at(
                    calls::horizon(&hub.pool)
                        .await
                        .map_err(SubscribeError::Store)?,
                );
                hub.state().position.get_or_insert(now).clone()
            }
        };
        subscription.position = from.unwrap_or(position);
        subscription.try_join()?;
        Ok(subscription)
    }

    /// Ends every subscription (shutdown): their streams end, so connections can close.
    pub fn close(&self) {
        let mut state = self.0.state();
        state.closed = true;
        state.joined.clear();
        self.0.nudge.notify_one();
    }

    /// The hub's reading loop, until the process ends or the pool is closed. `ready` says
    /// whether the schema is in place (the database may be prepared after start).
    pub async fn follow(self, ready: impl Fn() -> bool) {
        let hub = &self.0;
        let mut failing = false;
        loop {
            if hub.state().closed || hub.pool.is_closed() {
                return;
            }
            if ready() {
                match hub.advance().await {
                    // A full page: there is more to read at once.
                    Ok(true) => continue,
                    Ok(false) => failing = false,
                    Err(error) => {
                        if !failing {
                            tracing::warn!(error = %mask_numbers(&error.to_string()), "reading call changes failed; retrying");
                        }
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = hub.nudge.notified() => {}
                () = tokio::time::sleep(hub.config.poll_interval()) => {}
                () = hub.pool.close_event() => return,
            }
        }
    }

    /// Listens for the writers' notifications on a connection of its own, and wakes `follow` for
    /// each; also once whenever listening (re)starts, for what committed meanwhile.
    pub async fn listen(self, ready: impl Fn() -> bool) {
        let hub = &self.0;
        // Outside the pool, so database.max_connections stays what the rest of the work has;
        // never recycled, since a listener must stay connected.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with((*hub.pool.connect_options()).clone());
        let mut failing = false;
        loop {
            if hub.state().closed || hub.pool.is_closed() {
                return;
            }
            if ready() {
                match hub.listen_until_lost(&own).await {
                    Ok(()) => return,
                    Err(error) => {
                        if !failing {
                            tracing::warn!(error = %mask_numbers(&error.to_string()), "listening for call changes failed; polling every stream.poll_interval_ms meanwhile");
                        }
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(hub.config.poll_interval()) => {}
                () = hub.pool.close_event() => return,
            }
        }
    }
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent at every await-free step, so a panic elsewhere holding
        // the lock leaves nothing half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads once and hands out what it read. True when the page was full (more to read).
    async fn advance(&self) -> Result<bool, StoreError> {
        let (position, joined) = {
            let state = self.state();
            (state.position.clone(), !state.joined.is_empty())
        };
        let Some(position) = position.filter(|_| joined) else {
            // Nobody to hand rows to: move up to now without reading them. Subscribers that
            // come later start here, or catch up to here on their own.
            let now = Cursor::at(calls::horizon(&self.pool).await?);
            let mut state = self.state();
            if state.joined.is_empty() || state.position.is_none() {
                let position = state.position.take().map_or(now.clone(), |p| p.max(now));
                state.position = Some(position);
            }
            return Ok(false);
        };
        let page = calls::changed_after(
            &self.pool,
            position.xid,
            position.after_session.as_deref(),
            PAGE,
        )
        .await?;
        let (rows, end, full) = keyed(page, &position);
        let mut state = self.state();
        state
            .joined
            .retain(|subscriber| subscriber.hand_out(&rows, &end));
        state.position = Some(end);
        Ok(full)
    }

    async fn listen_until_lost(&self, own: &PgPool) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(own).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        self.nudge.notify_one();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received?,
                () = self.pool.close_event() => return Ok(()),
            };
            // None: the connection was lost and made again; what was sent meanwhile is lost,
            // so look anyway.
            if received.is_none() {
                tracing::info!("the connection listening for call changes was re-established");
            }
            self.nudge.notify_one();
        }
    }
}

impl Joined {
    /// Sends what matches; false when this subscriber must go (too slow, or gone).
    fn hand_out(&self, rows: &[(Cursor, Arc<CallRow>)], end: &Cursor) -> bool {
        for change in matching(rows, end, &self.seen, &self.filter) {
            match self.sender.try_send(change) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.store(true, Ordering::SeqCst);
                    metrics::counter!(m::STREAM_DROPPED_TOTAL).increment(1);
                    tracing::info!(
                        buffer = self.sender.max_capacity(),
                        "a stream subscriber fell stream.buffer changes behind; dropped"
                    );
                    return false;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// The page's rows with their positions, where the page ends, and whether it was full. A page
/// that was not full ends at the horizon (everything below it was read); a full one just after
/// its last row.
fn keyed(page: ChangePage, from: &Cursor) -> (Vec<(Cursor, Arc<CallRow>)>, Cursor, bool) {
    let full = page.rows.len() as i64 >= PAGE;
    let rows: Vec<(Cursor, Arc<CallRow>)> = page
        .rows
        .into_iter()
        .map(|row| {
            (
                Cursor::after(row.changed_by, &row.call.session_id),
                Arc::new(row.call),
            )
        })
        .collect();
    let end = match rows.last() {
        Some((last, _)) if full => last.clone(),
        _ => Cursor::at(page.horizon),
    };
    // Horizons never go back; should the database ever say otherwise, stay put.
    let end = end.max(from.clone());
    (rows, end, full)
}

/// The changes of `rows` after `seen` that `filter` matches. The last one carries `end`: once
/// it is delivered, so is everything before `end` that matches.
fn matching<'a>(
    rows: &'a [(Cursor, Arc<CallRow>)],
    end: &'a Cursor,
    seen: &'a Cursor,
    filter: &'a Filter,
) -> impl Iterator<Item = Change> + 'a {
    let mut rows = rows
        .iter()
        .filter(move |(key, call)| key > seen && filter.matches(call))
        .peekable();
    std::iter::from_fn(move || {
        let (key, call) = rows.next()?;
        let cursor = if rows.peek().is_none() { end } else { key };
        Some(Change {
            cursor: cursor.clone(),
            call: call.clone(),
        })
    })
}

/// One subscriber: catching up on its own, then joined to the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    filter: Filter,
    /// Everything before it has been given out by `next`.
    position: Cursor,
    phase: Phase,
    dropped: Arc<AtomicBool>,
}

enum Phase {
    /// Read on its own, not given out yet.
    CatchingUp(VecDeque<Change>),
    Joined(mpsc::Receiver<Change>),
}

impl Subscription {
    fn new(hub: Arc<Hub>, filter: Filter) -> Self {
        metrics::gauge!(m::STREAM_SUBSCRIBERS).increment(1.0);
        Self {
            id: hub.next_id.fetch_add(1, Ordering::Relaxed),
            hub,
            filter,
            position: Cursor::at(0),
            phase: Phase::CatchingUp(VecDeque::new()),
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Everything before this has been given out.
    pub fn position(&self) -> &Cursor {
        &self.position
    }

    /// The next change; [`Next::Idle`] when none comes within `idle`.
    pub async fn next(&mut self, idle: Duration) -> Result<Next, Ended> {
        let deadline = Instant::now() + idle;
        loop {
            if self.hub.state().closed {
                return Err(Ended::Closed);
            }
            let pending = match &mut self.phase {
                Phase::Joined(receiver) => {
                    return match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(Some(change)) => {
                            if change.cursor > self.position {
                                self.position = change.cursor.clone();
                            }
                            Ok(Next::Change(change))
                        }
                        Ok(None) if self.dropped.load(Ordering::SeqCst) => Err(Ended::TooSlow),
                        Ok(None) => Err(Ended::Closed),
                        Err(_) => Ok(Next::Idle(self.idle_position())),
                    };
                }
                Phase::CatchingUp(pending) => pending,
            };
            if let Some(change) = pending.pop_front() {
                self.position = change.cursor.clone();
                return Ok(Next::Change(change));
            }
            if self.try_join().map_err(|_| Ended::Closed)? {
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(Next::Idle(self.position.clone()));
            }
            let page = calls::changed_after(
                &self.hub.pool,
                self.position.xid,
                self.position.after_session.as_deref(),
                PAGE,
            )
            .await
            .map_err(Ended::Failed)?;
            let (rows, end, _) = keyed(page, &self.position);
            let changes: VecDeque<Change> =
                matching(&rows, &end, &self.position, &self.filter).collect();
            if changes.is_empty() {
                self.position = end;
            } else if let Phase::CatchingUp(pending) = &mut self.phase {
                *pending = changes;
            }
        }
    }

    /// Joins the hub once this subscriber has caught up with it (at once when it is ahead,
    /// skipping what it has seen). True when it joined now.
    fn try_join(&mut self) -> Result<bool, SubscribeError> {
        if !matches!(&self.phase, Phase::CatchingUp(pending) if pending.is_empty()) {
            return Ok(false);
        }
        let mut state = self.hub.state();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if state
            .position
            .as_ref()
            .is_none_or(|hub| self.position < *hub)
        {
            return Ok(false);
        }
        let (sender, receiver) = mpsc::channel(self.hub.config.buffer);
        state.joined.push(Joined {
            id: self.id,
            filter: self.filter.clone(),
            seen: self.position.clone(),
            sender,
            dropped: self.dropped.clone(),
        });
        self.phase = Phase::Joined(receiver);
        Ok(true)
    }

    /// The position once nothing is waiting: the hub's, if this subscriber has taken all the hub
    /// gave it (checked under the hub's lock, so no page is half handed out).
    fn idle_position(&mut self) -> Cursor {
        if let Phase::Joined(receiver) = &self.phase {
            let state = self.hub.state();
            if receiver.is_empty()
                && !state.closed
                && !self.dropped.load(Ordering::SeqCst)
                && let Some(hub) = &state.position
                && *hub > self.position
            {
                self.position = hub.clone();
            }
        }
        self.position.clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .state()
            .joined
            .retain(|joined| joined.id != self.id);
        self.hub.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(m::STREAM_SUBSCRIBERS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write_and_refuse_the_rest() {
        for cursor in [
            Cursor::at(0),
            Cursor::at(u64::MAX),
            Cursor::after(
                7306,
                "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com",
            ),
            Cursor::after(1, "a.b/c+d\n"),
        ] {
            assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor.clone()));
            assert!(!cursor.to_string().contains(['\n', '\r', '\0']));
        }
        for bad in [
            "",
            "x",
            "-1",
            "+1",
            "1.",
            "1.!",
            "1.%",
            " 1",
            "1 ",
            "12a",
            "18446744073709551616",
            ".c2Vzc2lvbg",
            "1.c2Vzc2lvbg.x",
            "1.AA", // a NUL session id
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(InvalidCursor), "{bad:?}");
        }
    }

    #[test]
    fn positions_order_by_transaction_then_session_bytes() {
        let before = Cursor::at(10);
        let first = Cursor::after(10, "B");
        let second = Cursor::after(10, "a");
        assert!(Cursor::after(9, "zzz") < before);
        assert!(before < first && first < second);
        assert!(second < Cursor::at(11));
    }
}
