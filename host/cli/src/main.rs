//! The `allama` command.

mod action_run;
mod admin_cmd;
mod backup_cmd;
mod bench;
mod bench_engine;
mod bench_server;
mod local;
mod package_cmd;
mod playbook_cmd;
mod runs_cmd;
mod scaffold;
mod serve_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// The engine allocates many small, short-lived values per step (events,
// expression contexts, JSON); glibc's malloc spent ~20% of a 3-step run's
// CPU time on them. See docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Allama: security automation where every integration runs sandboxed.
#[derive(Parser)]
#[command(name = "allama", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with action components.
    Action {
        #[command(subcommand)]
        command: ActionCommand,
    },
    /// Build, sign, verify and inspect packages.
    Package {
        #[command(subcommand)]
        command: package_cmd::PackageCommand,
    },
    /// Publisher signing keys.
    Keys {
        #[command(subcommand)]
        command: package_cmd::KeysCommand,
    },
    /// Validate, run and test playbooks.
    Playbook {
        #[command(subcommand)]
        command: playbook_cmd::PlaybookCommand,
    },
    /// Runs in the local data directory: list, show, cancel, approve, reject, stuck, resume.
    Runs {
        #[command(subcommand)]
        command: runs_cmd::RunsCommand,
    },
    /// Secrets held by a running server.
    Secrets {
        #[command(subcommand)]
        command: admin_cmd::SecretsCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: admin_cmd::AuditCommand,
    },
    /// Serve the HTTP API on the data directory.
    Serve(serve_cmd::Args),
    /// Write a consistent backup of a running server (or of a stopped
    /// server's data directory) to one file.
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup into a new data directory, and check its audit chains.
    Restore(backup_cmd::RestoreArgs),
    /// Sizing benchmarks for operators.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum ActionCommand {
    /// Run one action of a component or package locally, under a grant, and show what it did.
    Run(action_run::Args),
    /// Create a new Rust action crate that tests, builds and packages.
    New(scaffold::Args),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-step cost of the sandbox against bare wasmtime, throughput and cold start.
    Runtime(bench::Args),
    /// Durable engine throughput and latency, and memory of paused runs.
    Engine(bench_engine::Args),
    /// A whole server on loopback driven by signed webhooks: accepted/s,
    /// runs/s, webhook-to-finished latency, memory.
    Server(bench_server::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALLAMA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Action {
            command: ActionCommand::Run(args),
        } => action_run::main(args),
        Command::Action {
            command: ActionCommand::New(args),
        } => scaffold::main(args),
        Command::Bench {
            command: BenchCommand::Runtime(args),
        } => bench::main(args),
        Command::Bench {
            command: BenchCommand::Engine(args),
        } => bench_engine::main(args),
        Command::Bench {
            command: BenchCommand::Server(args),
        } => bench_server::main(args),
        Command::Playbook { command } => playbook_cmd::main(command),
        Command::Runs { command } => runs_cmd::main(command),
        Command::Serve(args) => serve_cmd::main(args),
        Command::Backup(args) => backup_cmd::backup(args),
        Command::Restore(args) => backup_cmd::restore(args),
        Command::Secrets { command } => admin_cmd::secrets(command),
        Command::Audit { command } => admin_cmd::audit(command),
        Command::Package { command } => package_cmd::package(command),
        Command::Keys { command } => package_cmd::keys(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
