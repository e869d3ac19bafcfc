//! The platform on your own machine: `callhook simulate` (the stand-in platform), `callhook
//! simulate load` (callback traffic for any receiver), `callhook simulate sink` (a receiver that
//! does nothing, to measure the load generator itself) and `callhook demo`.

pub mod commands;
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

use self::stand_in::SimState;
use crate::config::Config;

/// A bound stand-in platform.
pub struct Simulator {
    listener: TcpListener,
    state: SimState,
}

impl Simulator {
    /// Binds `simulator.listen` of `config`; the apps it accepts are `config.apps` (first secret).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.simulator.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let apps: Vec<(String, SecretString)> = config
            .apps
            .iter()
            .filter_map(|app| Some((app.key.clone(), app.secrets.first()?.clone())))
            .collect();
        let state = SimState::new(config.simulator.clone(), apps, base);
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
