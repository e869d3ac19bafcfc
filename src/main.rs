use std::process::ExitCode;

use clap::Parser;

// glibc's allocator spent about a fifth of the server's CPU in malloc/free (consolidation and
// unlinking included) under load; mimalloc's thread-local free lists avoid most of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    callhook::cli::run(callhook::cli::Cli::parse()).await
}
