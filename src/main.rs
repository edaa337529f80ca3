//! Thin entry point: parse, log to stderr, run, map the error to GitLab's exit codes.

use std::process::ExitCode;

use clap::Parser;
use runnerx::ExitCodes;
use runnerx::cli::Cli;
use runnerx::env::Env;
use runnerx::error::{Error, Fault};

fn main() -> ExitCode {
    let cli = Cli::parse();
    runnerx::logging::init();
    let env = Env::from_process();
    let codes = ExitCodes::from_env(&env);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failed to start the async runtime: {e}");
            return exit(codes.system_failure);
        }
    };
    match runtime.block_on(runnerx::run(cli, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A failed script already told its story in the job log.
            if !matches!(e, Error::Script { .. }) {
                tracing::error!("{e}");
            }
            exit(match e.fault() {
                Fault::Build => codes.build_failure,
                Fault::System => codes.system_failure,
            })
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
