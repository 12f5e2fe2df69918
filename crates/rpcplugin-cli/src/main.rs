//! `rpcplugin`: the project's command line. Its one command, `bench`, is the load
//! generator of the interop contract (shared design INTEROP.md, "The load
//! generator"): it launches any go-plugin compatible plugin serving
//! `bench.v1.Bench` (rpcplugin's, go-plugin's, pyvider's), measures launch to first
//! call, drives `Echo` (or `Download`) from concurrent tasks over one connection, and
//! prints a table plus one machine line, `RESULT {json}`.
//!
//! ```text
//! rpcplugin bench --seconds 5 --concurrency 32 --size 1024 -- ./target/release/examples/kv_plugin
//! rpcplugin bench --mode download --size 64KiB -- go-bench-plugin
//! ```
//!
//! Exit status: 0 when every call succeeded and the plugin stopped, 1 when the plugin
//! could not be started or measured or a call failed, 2 for a bad command line. A
//! run with failed calls still prints its table and RESULT line (with the failures
//! per gRPC code and how fast they came back) before exiting 1, so a run meant to
//! fail some calls, as against a rate-limited plugin, reads RESULT and ignores the
//! status.

mod args;
mod bench;
mod procstat;
mod report;

use args::{BenchOptions, Command};
use std::io::Write as _;
use std::process::ExitCode;

/// Exit status for a command line that cannot be run.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match command {
        Command::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("rpcplugin {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Bench(opts) => run_bench(&opts),
    }
}

fn run_bench(opts: &BenchOptions) -> ExitCode {
    init_logging();
    // What a host tuned for streaming does (rpcplugin_client::tune_allocator);
    // without it, large messages cost page faults on this side of every call.
    rpcplugin_client::tune_allocator();
    let runtime = if opts.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(bench::run(opts)) {
        Ok(report) => report,
        Err(failure) => {
            eprintln!("{}", failure.render());
            return ExitCode::FAILURE;
        }
    };
    let table = report.table();
    let result = report.result_line();
    // With --json, stdout carries the machine line alone.
    if opts.json {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    println!("{result}");
    let _ = std::io::stdout().flush();
    if report.errors > 0 {
        eprintln!(
            "error: {} calls failed; the first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("(not recorded)")
        );
        return ExitCode::FAILURE;
    }
    if report.stop_failed {
        eprintln!("error: the plugin did not stop cleanly: {}", report.stopped);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Library and plugin logs (the client forwards the plugin's stderr) on stderr;
/// warnings only unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
