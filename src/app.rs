//! Startup and shutdown: one path for `main` and for the tests.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Notify};

use crate::{
    config::{Config, ConfigError, CreatedTimeZone},
    http,
    ingest::Committer,
    platform::signature::CallbackVerifier,
    store::{self, StoreError},
};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Where callbacks go to be committed in groups.
    pub committer: Committer,
    pub config: Arc<Config>,
    pub verifier: Arc<CallbackVerifier>,
    pub metrics: PrometheusHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Connects to the configured database (creating and migrating it if configured) and binds.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        // Before touching the database: a configuration that cannot work must not create one.
        config.validate()?;
        // The steps of `store` in order; each is safe with other replicas starting at once.
        if config.database.create_if_missing {
            store::create_database_if_missing(&config.database).await?;
        }
        let pool = store::open(&config.database).await?;
        if config.database.migrate_on_start {
            store::migrate(&pool).await?;
        }
        let mut app = Self::with_pool(config, pool).await?;
        app.owns_pool = true;
        Ok(app)
    }

    /// Binds with a pool made elsewhere (tests hand in a fresh database's pool).
    pub async fn with_pool(config: Config, pool: PgPool) -> Result<Self, StartError> {
        config.validate()?;
        // The code tables in Postgres are copies of the ones in the code; refresh them.
        store::codes::sync(&pool).await?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let verifier = Arc::new(verifier(&config));
        let state = AppState {
            committer: Committer::start(pool.clone(), &config.ingest),
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

    pub fn router(&self) -> Router {
        http::router(self.state.clone())
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
            let draining = draining.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown signal received; finishing in-flight requests");
                draining.notify_one();
            }
        };
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let drain_limit = state.config.http.shutdown_timeout();
        let result = tokio::select! {
            result = server => result,
            () = async { draining.notified().await; tokio::time::sleep(drain_limit).await } => {
                tracing::warn!(?drain_limit, "in-flight requests did not finish in time; exiting anyway");
                Ok(())
            }
        };
        housekeeping.abort();
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

/// Periodic chores: forget expired nonces, and let the metrics exporter fold histograms.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.metrics.run_upkeep();
        if let Err(error) =
            store::nonces::purge(&state.pool, state.verifier.nonce_retention()).await
        {
            tracing::warn!(%error, "could not purge old nonces");
        }
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
