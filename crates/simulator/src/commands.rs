//! The command line of `callhook-sim`: the stand-in platform (the default), `load`, `sink`,
//! `demo` and `config`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use callhook::{app::shutdown_signal, config::Config, telemetry};
use callhook_platform::signature::DigestVariant;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hyper::Uri;

use super::{
    Simulator,
    config::SimConfig,
    demo,
    load::{self, LoadOptions, Signer},
    sink,
};

/// `callhook-sim`: with no command, the stand-in platform.
#[derive(Debug, Parser)]
#[command(
    name = "callhook-sim",
    version,
    about = "A stand-in for the VoiceCall platform, a callback load generator and the demo, for callhook"
)]
pub struct Cli {
    /// The service's configuration file, layered over its defaults as `callhook --config` does:
    /// the [[apps]] accepted and signed as, the database, [platform], [log].
    #[arg(long, env = "CALLHOOK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Simulator settings layered over their defaults (see simulator.toml).
    #[arg(long, global = true)]
    pub sim_config: Option<PathBuf>,
    /// Address of the stand-in platform, overriding `simulator.listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send platform-like callback traffic to a receiver; report throughput, latency and errors.
    Load(LoadArgs),
    /// A receiver that answers everything at once, to measure the load generator itself.
    Sink {
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: SocketAddr,
    },
    /// Start the receiver and the simulated platform, place a few calls, and show what arrived.
    /// Writes into its own database (demo.database, callhook_demo, on the configured server) and
    /// signs with its own demo app, never with the configured [[apps]].
    Demo(DemoArgs),
    /// Print the simulator settings in effect as TOML (the service's: `callhook config`).
    Config,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Sign {
    Newline,
    Concat,
    None,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// URL to post to: status events, and fee lists too unless --fee-url is given.
    #[arg(long)]
    pub url: String,
    /// URL for fee lists, if the receiver has a separate one.
    #[arg(long)]
    pub fee_url: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to run (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests (over all connections), even before --duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Share of requests that are fee lists, 0-1.
    #[arg(long, default_value_t = 0.1)]
    pub fee_share: f64,
    /// Smallest fee list; sizes are drawn from --min-batch to --max-batch.
    #[arg(long, default_value_t = 1)]
    pub min_batch: usize,
    /// Largest fee list.
    #[arg(long, default_value_t = 50)]
    pub max_batch: usize,
    /// Seed of the traffic mix, for reproducible runs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Digest variant to sign with; default: newline when an app is configured, else none.
    #[arg(long, value_enum)]
    pub sign: Option<Sign>,
    /// App to sign as (default: the first configured app).
    #[arg(long)]
    pub app: Option<String>,
    /// Public base URL the receiver verifies against (default: the URLs posted to).
    #[arg(long)]
    pub signed_base_url: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: Cli) -> ExitCode {
    let mut settings = match SimConfig::load(cli.sim_config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => return exit(Err(error.into())),
    };
    if let Some(listen) = cli.listen {
        settings.simulator.listen = listen;
    }
    if let Some(Command::Config) = &cli.command {
        return match settings.render() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => exit(Err(error.into())),
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return exit(Err(error.into())),
    };
    telemetry::init(&config.log);
    match cli.command {
        None => match Simulator::bind(&settings.simulator, &config.apps).await {
            Ok(simulator) => {
                tracing::info!(addr = %simulator.local_addr(), "simulated platform listening");
                exit(
                    simulator
                        .run_until(shutdown_signal())
                        .await
                        .map_err(Into::into),
                )
            }
            Err(error) => exit(Err(error.into())),
        },
        Some(Command::Sink { listen }) => {
            exit(sink(listen, shutdown_signal()).await.map_err(Into::into))
        }
        Some(Command::Load(load)) => run_load(load, &config).await,
        Some(Command::Demo(args)) => demo(args, config, settings).await,
        Some(Command::Config) => unreachable!("handled above"),
    }
}

/// `callhook-sim demo`: where it writes.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write into this database instead of demo.database (created and migrated if missing).
    #[arg(long, conflicts_with = "use_configured_database")]
    pub database_url: Option<String>,
    /// Write into the configured database itself (database.url / DATABASE_URL).
    #[arg(long)]
    pub use_configured_database: bool,
}

async fn demo(args: DemoArgs, config: Config, settings: SimConfig) -> ExitCode {
    let database = match (args.database_url, args.use_configured_database) {
        (Some(url), _) => demo::DemoDatabase::Url(url),
        (None, true) => demo::DemoDatabase::Configured,
        (None, false) => demo::DemoDatabase::Own,
    };
    exit(demo::run(config, settings, database).await)
}

fn exit(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("callhook-sim: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_load(args: LoadArgs, config: &Config) -> ExitCode {
    let parse = |url: &str| url.parse::<Uri>().map_err(|e| format!("{url}: {e}"));
    let (url, fee_url) = match (
        parse(&args.url),
        args.fee_url.as_deref().map(parse).transpose(),
    ) {
        (Ok(url), Ok(fee_url)) => (url, fee_url),
        (Err(e), _) | (_, Err(e)) => return exit(Err(e.into())),
    };
    if url.scheme_str() != Some("http") {
        return exit(Err("the load generator speaks plain http:// (put TLS in front of the receiver, not in the loop)".into()));
    }
    let app = match &args.app {
        Some(key) => config.apps.iter().find(|app| &app.key == key),
        None => config.apps.first(),
    };
    let variant = match (args.sign, app) {
        (Some(Sign::None), _) | (None, None) => None,
        (Some(Sign::Concat), _) => Some(DigestVariant::Concat),
        (Some(Sign::Newline) | None, _) => Some(DigestVariant::Newline),
    };
    let signer = match (variant, app) {
        (None, _) => None,
        (Some(_), None) => {
            return exit(Err(
                "signing needs an app: configure [[apps]] or pass --sign none".into(),
            ));
        }
        (Some(variant), Some(app)) => {
            let signed = |uri: &Uri| match &args.signed_base_url {
                Some(base) => format!("{}{}", base.trim_end_matches('/'), uri.path()),
                None => uri.to_string(),
            };
            Some(Signer {
                app_key: app.key.clone(),
                secret: app.secrets[0].clone(),
                variant,
                signed_status_url: signed(&url),
                signed_fee_url: signed(fee_url.as_ref().unwrap_or(&url)),
            })
        }
    };
    let options = LoadOptions {
        url,
        fee_url,
        connections: args.connections.max(1),
        duration: args.duration,
        max_requests: args.requests,
        fee_share: args.fee_share.clamp(0.0, 1.0),
        min_batch: args
            .min_batch
            .clamp(1, callhook_platform::callback::MAX_FEE_RECORDS),
        max_batch: args
            .max_batch
            .clamp(1, callhook_platform::callback::MAX_FEE_RECORDS),
        seed: args.seed,
        signer,
        request_timeout: args.timeout,
    };
    let report = load::run(options).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        println!("{report}");
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
