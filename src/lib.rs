//! runnerx: a GitLab custom-executor driver that runs every job inside its own
//! docker-in-docker builder (host networking, own bridge, own /var/lib/docker).
//!
//! See `docs/architecture.md` for the map. Entry point: [`run`].

pub mod binfmt;
pub mod builder;
pub mod cancel;
pub mod certs;
pub mod cli;
pub mod duration;
pub mod engine;
pub mod env;
pub mod error;
pub mod host;
pub mod hostlock;
pub mod job;
pub mod logging;
pub mod ops;
pub mod pipeline;
pub mod registry;
pub mod settings;
pub mod stages;
pub mod teardown;
pub mod trust;

use cli::{Cli, Command};
use env::Env;
use error::Result;
use job::Job;
use settings::Settings;

/// Runs one command to completion.
pub async fn run(cli: Cli, env: Env) -> Result<()> {
    let cancel = cancel::on_signals();
    let settings = || Settings::load(cli.config.as_deref(), &env);
    match &cli.command {
        Command::Config(args) => {
            let settings = settings()?;
            let job = Job::from_env(&env, args.job_id.as_deref(), false).ok();
            stages::config::config(&settings, job.as_ref())
        }
        Command::Prepare(args) => {
            let settings = settings()?;
            let job = Job::from_env(&env, args.job_id.as_deref(), true)?;
            let engine = engine::Engine::connect().await?;
            stages::prepare::prepare(&settings, &job, &engine, &cancel).await
        }
        Command::Run(args) => {
            let job = Job::from_env(&env, args.job_id.as_deref(), false)?;
            let engine = engine::Engine::connect().await?;
            stages::run::run(&job, &engine, &args.script, &args.stage, &cancel).await
        }
        Command::Cleanup(args) => {
            let settings = Settings::load_lenient(cli.config.as_deref(), &env);
            let job = Job::from_env(&env, args.job_id.as_deref(), false)?;
            let engine = engine::Engine::connect().await?;
            stages::cleanup::cleanup(&settings, &job, &engine).await
        }
        Command::Certs(cmd) => ops::certs::run(cmd),
        Command::Doctor(args) => {
            let settings = settings()?;
            ops::doctor::doctor(&settings, args.registry.as_deref()).await
        }
        Command::Bench(args) => {
            let settings = settings()?;
            ops::bench::bench(&settings, args).await
        }
        Command::Local(args) => {
            let settings = settings()?;
            ops::local::local(&settings, args, &cancel).await
        }
        Command::Manifest(cmd) => {
            let settings = settings()?;
            match cmd {
                cli::ManifestCommand::Create {
                    target,
                    sources,
                    platforms,
                } => ops::manifest::create(&settings, target, sources, platforms).await,
                cli::ManifestCommand::Inspect { reference } => {
                    ops::manifest::inspect(&settings, reference).await
                }
            }
        }
        Command::Host(cli::HostCommand::Binfmt { dry_run }) => {
            let settings = settings()?;
            let native = binfmt::goarch(std::env::consts::ARCH);
            let needed = binfmt::needed(&settings.builder.platforms, native);
            host::register_binfmt(&needed, *dry_run)
        }
        Command::Gc(args) => {
            let settings = Settings::load_lenient(cli.config.as_deref(), &env);
            let engine = engine::Engine::connect().await?;
            ops::gc::gc(&settings, &engine, args.older_than, args.dry_run, &cancel).await
        }
    }
}
