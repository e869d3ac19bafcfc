use std::process::ExitCode;

use clap::Parser;

// As the service's binary does: the load generator must stay cheaper than what it measures, and
// glibc's malloc/free was a fifth of the CPU of a server under this load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    callhook_simulator::commands::run(callhook_simulator::commands::Cli::parse()).await
}
