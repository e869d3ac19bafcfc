//! Startup and shutdown: one path for `main` and for the tests.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Notify};

use crate::{
    config::{Config, ConfigError, CreatedTimeZone},
    http::{self, AppState},
    ingest::{
        self, Durability, ReceiptWriter,
        spool::{Spool, SpoolError},
    },
    metrics as m,
    platform::signature::CallbackVerifier,
    store::{self, StoreError},
    stream::Changes,
    tasks::supervise,
    telemetry::mask_numbers,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the spool (spool.dir): {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run server. Binding happens in `build`, so port 0 works and the actual
/// address is known before the first request.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Close the pool on exit only if we opened it; a pool handed in belongs to the caller.
    owns_pool: bool,
}

impl Application {
    /// Opens the spool, binds, and prepares the configured database (creating and migrating it
    /// if configured). A database that is down does not stop the start: callbacks are spooled,
    /// and preparing goes on in the background until the database is back.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let pool = store::connect_lazy(&config.database)?;
        let mut app = Self::start(config, pool, true).await?;
        app.owns_pool = true;
        Ok(app)
    }

    /// The same with a pool made elsewhere (tests hand in a fresh database's pool).
    pub async fn with_pool(config: Config, pool: PgPool) -> Result<Self, StartError> {
        Self::start(config, pool, false).await
    }

    async fn start(config: Config, pool: PgPool, create: bool) -> Result<Self, StartError> {
        // Before touching the database or the spool: a configuration that cannot work must not
        // create either.
        config.validate()?;
        let (spool, recovery) = Spool::open((&config.spool).into())?;
        if recovery.records > 0 {
            tracing::info!(records = recovery.records, dir = %spool.dir().display(), "spool holds receipts from before; draining them");
        }
        // Exported from the start (at 0), so alerts on them have a series to watch.
        metrics::counter!(m::SPOOLED_RECEIPTS_TOTAL).increment(0);
        metrics::counter!(m::SPOOL_DAMAGED_BYTES_TOTAL).increment(0);
        ingest::receipts::update_spool_gauges(&spool);
        if recovery.damaged_bytes > 0 {
            tracing::error!(bytes = recovery.damaged_bytes, files = ?recovery.damaged_files, "spool had damaged records; moved aside, the intact ones are drained");
            metrics::counter!(m::SPOOL_DAMAGED_BYTES_TOTAL).increment(recovery.damaged_bytes);
        }
        crate::kpis::label_apps(&config);
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let verifier = Arc::new(verifier(&config));
        let durability = Arc::new(Durability::new(
            pool.clone(),
            spool,
            &config.ingest,
            verifier.nonce_retention(),
        ));
        // One attempt now, so a start with the database up is ready at once; the rest waits.
        match store::prepare(&pool, &config.database, create).await {
            Ok(()) => durability.set_schema_ready(),
            Err(error) => tracing::warn!(
                error = %mask_numbers(&error.to_string()),
                "database not ready at start; accepting callbacks into the spool meanwhile"
            ),
        }
        let state = AppState {
            callback_slots: Arc::new(tokio::sync::Semaphore::new(
                config.ingest.max_concurrent_requests,
            )),
            receipts: ReceiptWriter::start(durability.clone(), &config.ingest),
            changes: Changes::new(pool.clone(), config.stream.clone()),
            durability,
            pool,
            config: Arc::new(config),
            verifier,
            metrics: crate::metrics::handle(),
        };
        Ok(Self {
            listener,
            state,
            owns_pool: false,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The database pool the application stores into.
    pub fn pool(&self) -> PgPool {
        self.state.pool.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish, for at most `http.shutdown_timeout_ms`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            state,
            owns_pool,
        } = self;
        let router = http::router(state.clone());
        let draining = Arc::new(Notify::new());
        let signal = {
            let (draining, changes) = (draining.clone(), state.changes.clone());
            async move {
                shutdown.await;
                tracing::info!("shutdown signal received; finishing in-flight requests");
                // Streams never finish by themselves; ending them lets their connections close.
                changes.close();
                draining.notify_one();
            }
        };
        let background = background_tasks(&state, owns_pool);
        let server = http::serve::serve(
            listener,
            router,
            state.config.http.header_read_timeout(),
            signal,
        );
        let drain_limit = state.config.http.shutdown_timeout();
        let result = tokio::select! {
            () = server => Ok(()),
            () = async { draining.notified().await; tokio::time::sleep(drain_limit).await } => {
                tracing::warn!(?drain_limit, "in-flight requests did not finish in time; exiting anyway");
                Ok(())
            }
        };
        for task in background {
            task.abort();
        }
        // What was acknowledged during the last moments is projected before exit, within a
        // bound; anything left is projected at the next start (or by another replica).
        if state.durability.schema_ready() {
            let batch = ingest::projector::Batch::of(&state.config.projector);
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(claimed) = ingest::projector::project_next(&state.pool, batch).await
                    && claimed > 0
                {}
            })
            .await;
        }
        if owns_pool {
            // Bounded: a connection still checked out must not keep the process alive.
            if tokio::time::timeout(Duration::from_secs(5), state.pool.close())
                .await
                .is_err()
            {
                tracing::warn!("database connections still in use at exit; closing anyway");
            }
        }
        tracing::info!("stopped");
        result
    }
}

/// Preparing the database (until it is done), draining the spool, projecting, reading the
/// changes of calls for the stream, housekeeping.
fn background_tasks(state: &AppState, create: bool) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if !state.durability.schema_ready() {
        let (durability, config) = (state.durability.clone(), state.config.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match store::prepare(&durability.pool, &config.database, create).await {
                    Ok(()) => {
                        tracing::info!("database prepared; draining the spool and projecting");
                        durability.set_schema_ready();
                        return;
                    }
                    Err(error) => tracing::debug!(error = %mask_numbers(&error.to_string()), "database not ready yet"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let durability = state.durability.clone();
    tasks.push(supervise("spool drainer".into(), move || {
        ingest::receipts::drain(durability.clone())
    }));
    for index in 0..state.config.projector.workers {
        let (durability, config) = (state.durability.clone(), state.config.projector.clone());
        tasks.push(supervise(format!("projector {index}"), move || {
            ingest::projector::run(durability.clone(), config.clone())
        }));
    }
    for (name, listen) in [("stream reader", false), ("stream listener", true)] {
        let (changes, durability) = (state.changes.clone(), state.durability.clone());
        tasks.push(supervise(name.into(), move || {
            let (changes, durability) = (changes.clone(), durability.clone());
            async move {
                let ready = move || durability.schema_ready();
                if listen {
                    changes.listen(ready).await;
                } else {
                    changes.follow(ready).await;
                }
            }
        }));
    }
    let housekeeping_state = state.clone();
    tasks.push(supervise("housekeeping".into(), move || {
        housekeeping(housekeeping_state.clone())
    }));
    tasks
}

fn verifier(config: &Config) -> CallbackVerifier {
    let signature = &config.signature;
    CallbackVerifier {
        apps: config
            .apps
            .iter()
            .map(|app| (app.key.clone(), app.secrets.clone()))
            .collect(),
        variants: signature.digest_variants.clone(),
        accept_utc: signature.created_time_zones.contains(&CreatedTimeZone::Utc),
        accept_beijing: signature
            .created_time_zones
            .contains(&CreatedTimeZone::Beijing),
        clock_skew: Duration::from_secs(signature.clock_skew_secs),
    }
}

/// Periodic chores: let the metrics exporter fold histograms, count the projection backlog,
/// and forget old refused requests.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        state.metrics.run_upkeep();
        ingest::receipts::update_spool_gauges(&state.durability.spool);
        if !state.durability.schema_ready() {
            continue;
        }
        if let Ok(mut connection) = state.pool.acquire().await
            && let Ok(backlog) = store::raw::backlog(&mut connection).await
        {
            metrics::gauge!(m::PROJECTION_BACKLOG).set(backlog as f64);
        }
        // Every ten minutes, the first time right after start.
        if ticks.is_multiple_of(40) {
            match ingest::retention::purge(&state.pool, &state.config.retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    deleted,
                    "forgot refused requests past retention.refused_days"
                ),
                Err(error) => tracing::warn!(%error, "could not purge old refused requests"),
            }
        }
        ticks += 1;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
