//! The command line: `serve` (the default), `migrate`, `config`, `healthcheck`, `reprocess`,
//! `reproject`, `kpis`, the outbound commands of `client::commands` (`call`, `notify`,
//! `verify-code`, `stop`, `recording`). The stand-in platform, the load generator and the demo
//! are another binary's (`callhook-sim`).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    app::{Application, shutdown_signal},
    client,
    config::Config,
    ingest,
    store::{self, raw::ReceiptOutcome},
    telemetry,
};

#[derive(Debug, Parser)]
#[command(
    name = "callhook",
    version,
    about = "Receives Huawei Cloud VoiceCall status and CDR callbacks into PostgreSQL"
)]
pub struct Cli {
    /// Configuration file layered over the defaults (see config.toml).
    #[arg(long, env = "CALLHOOK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive callbacks (the default).
    Serve {
        /// Address to listen on, overriding `listen` of the configuration.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create the database if missing and apply the migrations, then exit.
    Migrate,
    /// Print the configuration in effect as TOML, every secret and the database password
    /// redacted, after the files it was read from, in order (and those looked for but absent).
    Config,
    /// Exit 0 if the service answers 200 at URL (for container health checks; needs no curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    #[command(flatten)]
    Client(Box<client::commands::ClientCommand>),
    /// Run refused callbacks (outcome rejected, partial, unrecognized, or unauthorized when the
    /// signature mode in force accepts their verdict) through today's parser and the projector
    /// again, after a fix, and print what became of each. Idempotent: what was stored is a
    /// duplicate the second time.
    Reprocess {
        /// The callback (raw_callbacks.id, as in X-Callhook-Callback-Id or GET /v1/refused).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        id: Option<uuid::Uuid>,
        /// Every refused callback that may be reprocessed, oldest first.
        #[arg(long)]
        all: bool,
    },
    /// Print the voice KPIs of the calls that started in a range as JSON, as GET /v1/kpis
    /// answers them (see docs/kpis.md).
    Kpis {
        /// Calls that started at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        from: time::OffsetDateTime,
        /// Calls that started before this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        to: time::OffsetDateTime,
        /// Only the calls of this application.
        #[arg(long)]
        app_key: Option<String>,
        /// Only the calls of this scenario (click2call, notify, verify, playback, unknown).
        #[arg(long)]
        scenario: Option<String>,
        /// Print how PostgreSQL runs the statements instead (EXPLAIN (ANALYZE, BUFFERS)).
        #[arg(long)]
        explain: bool,
    },
    /// Derive call_events, cdrs and calls again from the receipts of a time range (or of all of
    /// them), after a fix to the parser or the projection. On unchanged code the rows come out
    /// identical.
    Reproject {
        /// Receipts received at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long, value_parser = parse_rfc3339, required_unless_present = "all")]
        from: Option<time::OffsetDateTime>,
        /// Receipts received before this time (RFC 3339); default: now.
        #[arg(long, value_parser = parse_rfc3339)]
        to: Option<time::OffsetDateTime>,
        /// Every receipt.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        all: bool,
    },
}

fn parse_rfc3339(value: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("not an RFC 3339 time ({error})"))
}

pub async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    if let Command::Healthcheck { url } = &command {
        return healthcheck(url).await;
    }
    let loaded = match Config::load_with_sources(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("callhook: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Config = &command {
        return match loaded.render() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("callhook: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let mut config = loaded.config;
    telemetry::init(&config.log);
    let result = match command {
        Command::Client(command) => return client::commands::run(*command, config).await,
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config).await
        }
        Command::Migrate => migrate(config).await,
        Command::Reprocess { id, all } => return reprocess(config, id, all).await,
        Command::Reproject { from, to, all: _ } => reproject(config, from, to).await,
        Command::Kpis {
            from,
            to,
            app_key,
            scenario,
            explain,
        } => {
            let filter = store::kpis::KpiFilter {
                from,
                to,
                app_key,
                scenario,
                top_hangup_causes: config.kpis.top_hangup_causes,
            };
            kpis(config, filter, explain).await
        }
        Command::Healthcheck { .. } | Command::Config => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "callhook failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn migrate(mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    config.database.create_if_missing = true;
    let pool = store::connect(&config.database).await?;
    store::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// `callhook reprocess`: one line per callback on stdout, `<id> <outcome>[ <code>: <message>]`;
/// exit 1 when the one asked for does not exist or the database fails.
async fn reprocess(config: Config, id: Option<uuid::Uuid>, all: bool) -> ExitCode {
    let pool = match store::connect(&config.database).await {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("callhook: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mode = config.signature.mode;
    let done = match (id, all) {
        (Some(id), _) => ingest::reprocess(&pool, id, mode)
            .await
            .map(|done| match done {
                Ok(done) => vec![done],
                Err(refusal) => {
                    eprintln!("callhook: {id} not reprocessed: {}", refusal.message());
                    Vec::new()
                }
            }),
        (None, _) => ingest::reprocess_all(&pool, mode).await,
    };
    pool.close().await;
    match done {
        Ok(done) => {
            for line in done.iter().map(reprocessed_line) {
                println!("{line}");
            }
            if all {
                let count =
                    |outcome: ReceiptOutcome| done.iter().filter(|d| d.outcome == outcome).count();
                println!(
                    "reprocessed {}: {} stored, {} duplicate, {} partial, {} still rejected, {} still unrecognized",
                    done.len(),
                    count(ReceiptOutcome::Stored),
                    count(ReceiptOutcome::Duplicate),
                    count(ReceiptOutcome::Partial),
                    count(ReceiptOutcome::Rejected),
                    count(ReceiptOutcome::Unrecognized),
                );
            }
            if done.is_empty() && !all {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("callhook: reprocessing failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `callhook reproject`: derives again, prints `reprojected N receipts, M calls`.
async fn reproject(
    config: Config,
    from: Option<time::OffsetDateTime>,
    to: Option<time::OffsetDateTime>,
) -> Result<(), Box<dyn std::error::Error>> {
    let pool = store::connect(&config.database).await?;
    let from = from.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let to = to.unwrap_or_else(|| time::OffsetDateTime::now_utc() + Duration::from_secs(1));
    let batch = i64::try_from(config.projector.batch).unwrap_or(i64::MAX);
    let done = ingest::reproject(&pool, from, to, batch).await;
    pool.close().await;
    let done = done?;
    println!(
        "reprojected {} receipts, {} calls",
        done.receipts, done.calls
    );
    Ok(())
}

/// `callhook kpis`: the JSON of GET /v1/kpis, or the plans of its statements. The range is
/// not bounded by kpis.max_range_days here: whoever runs it has the database anyway.
async fn kpis(
    config: Config,
    filter: store::kpis::KpiFilter,
    explain: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    filter.check(u32::MAX)?;
    let pool = store::connect(&config.database).await?;
    let result = if explain {
        store::kpis::explain(&pool, &filter)
            .await
            .map(|plans| print!("{plans}"))
    } else {
        store::kpis::compute(&pool, &filter).await.map(|kpis| {
            println!(
                "{}",
                serde_json::to_string_pretty(&kpis).expect("KPIs serialize")
            )
        })
    };
    pool.close().await;
    Ok(result?)
}

/// `<id> <outcome>`, and the error's code and message when there is one.
pub fn reprocessed_line(done: &ingest::Reprocessed) -> String {
    let mut line = format!("{} {}", done.id, done.outcome.as_str());
    if let Some(error) = &done.error {
        let text = |key: &str| error.get(key).and_then(|v| v.as_str()).unwrap_or("");
        line.push_str(&format!(" {}: {}", text("code"), text("message")));
    }
    line
}

async fn healthcheck(url: &str) -> ExitCode {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build();
    let ok = match client {
        Ok(client) => client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
