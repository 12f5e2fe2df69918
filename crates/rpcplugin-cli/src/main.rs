//! `rpcplugin`: the project's command line, parsed with clap (src/args.rs).
//!
//! `bench` is the load generator of the interop contract (shared design INTEROP.md,
//! "The load generator"): it launches any go-plugin compatible plugin serving
//! `bench.v1.Bench` (rpcplugin's, go-plugin's, pyvider's), measures launch to first
//! call, drives `Echo` (or `Download`) from concurrent tasks over one connection, and
//! prints a table plus one machine line, `RESULT {json}`. `completions SHELL` prints
//! a completion script.
//!
//! ```text
//! rpcplugin bench --seconds 5 --concurrency 32 --size 1024 -- ./target/release/examples/kv_plugin
//! rpcplugin bench --mode download --size 64KiB -- go-bench-plugin
//! ```
//!
//! Exit status: 0 when the command worked, 1 when the plugin could not be started or
//! measured or a call failed, 2 for a bad command line. A bench run with failed calls
//! still prints its table and RESULT line (with the failures per gRPC code and how
//! fast they came back) before exiting 1, so a run meant to fail some calls, as
//! against a rate-limited plugin, reads RESULT and ignores the status.

mod args;
mod bench;
mod call;
mod certs;
mod config;
mod conformance;
mod launch;
mod probe;
mod procstat;
mod reflect;
mod report;

use args::{BenchOptions, Cli, Command};
use clap::{CommandFactory as _, Parser as _};
use std::io::Write as _;
use std::process::ExitCode;

/// Exit status for a command line that cannot be run.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return refused(&err),
    };
    match cli.command {
        Command::Bench(bench) => match bench.into_options() {
            Ok(opts) => run_bench(&opts),
            Err(err) => {
                eprintln!("{err}");
                ExitCode::from(USAGE_ERROR)
            }
        },
        Command::Probe(args) => {
            let target = match args.launch.target("probe") {
                Ok(target) => target,
                Err(err) => return usage(&err),
            };
            run_probe(&args, &target)
        }
        Command::Call(args) => {
            let prepared = args
                .launch
                .target("call --method proto.KV/Get")
                .and_then(|target| Ok((target, args.requests()?)));
            let (target, requests) = match prepared {
                Ok(prepared) => prepared,
                Err(err) => return usage(&err),
            };
            init_logging();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            match runtime.block_on(call::run(&args, &target, &requests)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(text) => {
                    eprintln!("{text}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Conformance(args) => {
            let (program, plugin_args) = match args.launch.target("conformance") {
                Ok(args::Target::Command(program, plugin_args)) => (program, plugin_args),
                Ok(args::Target::Reattach(_)) => {
                    return usage(&args::UsageError::new(
                        "conformance cannot attach to a running plugin",
                        "it starts the plugin several times: give its command after `--`",
                    ));
                }
                Err(err) => return usage(&err),
            };
            init_logging();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            let report = runtime.block_on(conformance::run(&args, &program, &plugin_args));
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("the report is plain data")
                );
            } else {
                print!("{}", report.render());
            }
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        // No log subscriber: the config layer's own warnings about unknown
        // variables would repeat what the report lists.
        Command::Config(args) => match config::run(&args) {
            Ok(report) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).expect("the report is plain data")
                    );
                } else {
                    print!("{}", config::render(&report));
                }
                ExitCode::SUCCESS
            }
            Err(text) => {
                eprintln!("{text}");
                ExitCode::FAILURE
            }
        },
        Command::Certs(command) => match certs::run(&command) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(text) => {
                eprintln!("{text}");
                ExitCode::FAILURE
            }
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "rpcplugin",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

/// A command line that parsed but cannot be run.
fn usage(err: &args::UsageError) -> ExitCode {
    eprintln!("{err}");
    ExitCode::from(USAGE_ERROR)
}

/// The runtime of a command that talks to one plugin: one thread is plenty.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

fn run_probe(args: &args::ProbeArgs, target: &args::Target) -> ExitCode {
    init_logging();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = runtime.block_on(probe::run(args, target));
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("the report is plain data")
        );
    } else {
        print!("{}", probe::render(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A gRPC status as a person reads it: `NOT_FOUND: no such key`.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    let code = format!("{:?}", status.code());
    // tonic's Debug names are CamelCase; gRPC's are SCREAMING_SNAKE.
    let mut name = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    if status.message().is_empty() {
        name
    } else {
        format!("{name}: {}", status.message())
    }
}

/// A command line clap did not run: `--help` and `--version` go to stdout with
/// status 0, mistakes to stderr with status 2.
fn refused(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{}", args::render_clap_error(err).trim_end());
            ExitCode::from(USAGE_ERROR)
        }
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
