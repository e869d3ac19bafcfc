//! The group-commit queue: a bounded channel in front of a few writer tasks. A writer takes the
//! first waiting job and everything queued behind it (up to `ingest.max_batch`) and commits them
//! together; while it does, the next writer gathers the next group. Under load many concurrent
//! requests share one commit; alone, a request is a group of one. When the queue is full the
//! request is refused at once (503 + Retry-After) rather than held in memory.

use std::sync::Arc;

use sqlx::{PgPool, Postgres, pool::PoolConnection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Failure, Ingested, Job, commit};
use crate::{config::IngestConfig, metrics as m, store::StoreError};

type Reply = (Job, Result<Ingested, Failure>);

/// How long a writer keeps its connection without work.
const IDLE: std::time::Duration = std::time::Duration::from_millis(100);

struct Pending {
    job: Job,
    reply: oneshot::Sender<Reply>,
}

/// What became of a submitted job.
pub enum Submitted {
    /// Its group was committed, or failed.
    Done(Job, Result<Ingested, Failure>),
    /// The queue was full (or shutting down): nothing was written.
    Overloaded(Job),
    /// The writer was lost before answering (it panicked); the job's fate is unknown.
    Lost,
}

#[derive(Clone)]
pub struct Committer {
    sender: mpsc::Sender<Pending>,
    capacity: usize,
}

impl Committer {
    /// Starts `ingest.writers` writers on `pool`. They stop once every `Committer` is dropped and
    /// the queue is drained.
    pub fn start(pool: PgPool, config: &IngestConfig) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..config.writers {
            tokio::spawn(write(pool.clone(), receiver.clone(), config.max_batch));
        }
        Self {
            sender,
            capacity: config.queue_capacity,
        }
    }

    pub async fn submit(&self, job: Job) -> Submitted {
        let (reply, answer) = oneshot::channel();
        let queued = self.sender.try_send(Pending { job, reply });
        metrics::gauge!(m::INGEST_QUEUE_DEPTH).set((self.capacity - self.sender.capacity()) as f64);
        match queued {
            Ok(()) => match answer.await {
                Ok((job, result)) => Submitted::Done(job, result),
                Err(_) => Submitted::Lost,
            },
            Err(
                mpsc::error::TrySendError::Full(pending)
                | mpsc::error::TrySendError::Closed(pending),
            ) => Submitted::Overloaded(pending.job),
        }
    }
}

async fn write(pool: PgPool, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>, max_batch: usize) {
    // A writer keeps its connection from group to group while there is work (no acquire, no
    // ping per group); it gives it back when idle, and drops it when the database failed, so a
    // broken connection is replaced.
    let mut connection: Option<PoolConnection<Postgres>> = None;
    loop {
        let mut group = Vec::new();
        {
            // A writer waiting for its turn holds no connection (pool.close() waits for them all).
            let mut receiver = match receiver.try_lock() {
                Ok(receiver) => receiver,
                Err(_) => {
                    connection = None;
                    receiver.lock().await
                }
            };
            let first = match tokio::time::timeout(IDLE, receiver.recv()).await {
                Ok(first) => first,
                Err(_) => {
                    // Idle: give the connection back, so the pool can close on shutdown and
                    // other work can use it.
                    connection = None;
                    receiver.recv().await
                }
            };
            match first {
                Some(first) => group.push(first),
                None => return,
            }
            while group.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!(m::INGEST_GROUP_SIZE).record(group.len() as f64);
        let (jobs, replies): (Vec<Job>, Vec<oneshot::Sender<Reply>>) =
            group.into_iter().map(|p| (p.job, p.reply)).unzip();
        let results = match connection.as_mut() {
            Some(held) => commit(held, jobs).await,
            None => match pool.acquire().await {
                Ok(fresh) => commit(connection.insert(fresh), jobs).await,
                Err(error) => {
                    let failure = Failure::from(&StoreError::from(error));
                    jobs.into_iter().map(|job| (job, Err(failure))).collect()
                }
            },
        };
        if results
            .iter()
            .any(|(_, result)| *result == Err(Failure::Unavailable))
        {
            connection = None;
        }
        for (result, reply) in results.into_iter().zip(replies) {
            // The requester may have gone (client disconnected); the commit stands either way.
            let _ = reply.send(result);
        }
    }
}
