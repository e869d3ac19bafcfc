use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    callhook::cli::run(callhook::cli::Cli::parse()).await
}
