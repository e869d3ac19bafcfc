//! callhook-simulator: the platform on your own machine. `callhook-sim` (the stand-in platform),
//! `callhook-sim load` (callback traffic for any receiver), `callhook-sim sink` (a receiver that
//! does nothing, to measure the load generator itself) and `callhook-sim demo`.
//!
//! A crate of its own on top of the service (`callhook`) and the wire formats
//! (`callhook-platform`), so that none of it is built into the production binary.
//!
//! | module | role |
//! |---|---|
//! | `commands` | the command line of `callhook-sim` |
//! | `config` | its own settings (`simulator.toml`, embedded): the stand-in and the demo |
//! | `stand_in` | the stand-in platform: the outbound API paths, their authentication and codes |
//! | `scenario` | how a placed call plays out: outcomes → status events and the CDR |
//! | `push` | signed callback pushes, CDR batching, fee re-pushes |
//! | `load`, `traffic` | the load generator and the call mix it sends |
//! | `demo` | the receiver and the stand-in together, a few calls, what arrived |

pub mod commands;
pub mod config;
pub mod demo;
pub mod load;
pub mod push;
pub mod scenario;
pub mod stand_in;
pub mod traffic;

use std::{future::Future, net::SocketAddr};

use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;
use tokio::net::TcpListener;

use callhook::config::AppCredentials;

use self::{config::SimulatorConfig, stand_in::SimState};

/// A bound stand-in platform.
pub struct Simulator {
    listener: TcpListener,
    state: SimState,
}

impl Simulator {
    /// Binds `settings.listen`; the apps it accepts (and signs its pushes for) are `apps`, each
    /// with its first secret: the service's `[[apps]]`.
    pub async fn bind(
        settings: &SimulatorConfig,
        apps: &[AppCredentials],
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let apps: Vec<(String, SecretString)> = apps
            .iter()
            .filter_map(|app| Some((app.key.clone(), app.secrets.first()?.clone())))
            .collect();
        let state = SimState::new(settings.clone(), apps, base);
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> SimState {
        self.state.clone()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, stand_in::router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A receiver that answers every request 200 with the fee success body at once, so that the load
/// generator's own ceiling can be measured.
pub async fn sink(
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "sink listening");
    // It reads each body (as a real receiver must), so connections stay reusable.
    let router = Router::new().fallback(|_body: axum::body::Bytes| async {
        Json(json!({"resultcode": "0", "resultdesc": "Success"}))
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
