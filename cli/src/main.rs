//! The `causeway` binary: parses arguments, sets up logging, binds, and
//! hands over to the daemons' libraries. No logic of its own lives here
//! beyond wiring; see `commands.rs`, `config.rs` and `demo.rs`.

mod args;
mod commands;
mod config;
mod daemons;
mod demo;
mod demo_orders;
mod shutdown;

#[cfg(test)]
mod settings_table;

use clap::Parser;

/// mimalloc rather than the system's allocator: the collector allocates
/// and frees small strings and vectors per record on several threads
/// (decoding, mapping, indexing); BENCHMARKS.md "Run J" measures it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("causeway: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("causeway: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
