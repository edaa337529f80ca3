//! runnerx: a GitLab custom-executor driver that runs every job inside its own
//! docker-in-docker builder (host networking, own bridge, own /var/lib/docker).
//!
//! See `docs/architecture.md` for the map. Entry point: [`run`].

pub(crate) mod builder;
pub(crate) mod buildkit;
pub(crate) mod cancel;
pub mod cli;
pub mod env;
pub mod error;
pub mod gitlab;
pub(crate) mod host;
pub(crate) mod keys;
pub mod logging;
pub(crate) mod ops;
pub(crate) mod registry;
pub(crate) mod settings;
pub(crate) mod sign;
pub(crate) mod trust;

pub use gitlab::job::ExitCodes;

use cli::{Cli, Command};
use env::Env;
use error::Result;
use gitlab::job::Job;
use settings::Settings;

/// Runs one command to completion.
pub async fn run(cli: Cli, env: Env) -> Result<()> {
    let cancel = cancel::on_signals();
    let settings = || Settings::load(cli.config.as_deref(), &env);
    match &cli.command {
        Command::Config(args) => {
            let settings = settings()?;
            let job = Job::from_env(&env, args.job_id.as_deref(), false).ok();
            gitlab::stages::config::config(&settings, job.as_ref())
        }
        Command::Prepare(args) => {
            let settings = settings()?;
            let job = Job::from_env(&env, args.job_id.as_deref(), true)?;
            let engine = builder::engine::Engine::connect().await?;
            gitlab::stages::prepare::prepare(&settings, &job, &engine, &cancel).await
        }
        Command::Run(args) => {
            let job = Job::from_env(&env, args.job_id.as_deref(), false)?;
            let engine = builder::engine::Engine::connect().await?;
            gitlab::stages::run::run(&job, &engine, &args.script, &args.stage, &cancel, &settings)
                .await
        }
        Command::Cleanup(args) => {
            let settings = Settings::load_lenient(cli.config.as_deref(), &env);
            let job = Job::from_env(&env, args.job_id.as_deref(), false)?;
            let engine = builder::engine::Engine::connect().await?;
            gitlab::stages::cleanup::cleanup(&settings, &job, &engine).await
        }
        Command::Certs(cmd) => ops::certs::run(cmd),
        Command::Doctor(args) => {
            let settings = settings()?;
            ops::doctor::doctor(&settings, args.registry.as_deref(), args.project.as_deref()).await
        }
        Command::Bench(args) => {
            let settings = settings()?;
            ops::bench::bench(&settings, args).await
        }
        Command::Local(args) => {
            let settings = settings()?;
            ops::local::local(&settings, args, &env, &cancel).await
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
        Command::Verify(args) => {
            let settings = settings()?;
            sign::verify::verify(&settings, args).await
        }
        Command::Node(args) => {
            let settings = settings()?;
            ops::node::node(&settings, args).await
        }
        Command::Host(cli::HostCommand::Binfmt { dry_run }) => {
            let settings = settings()?;
            let native = host::binfmt::goarch(std::env::consts::ARCH);
            let needed = host::binfmt::needed(&settings.builder.platforms, native);
            host::register_binfmt(&needed, *dry_run)
        }
        Command::Host(cli::HostCommand::Apparmor { dry_run }) => host::apparmor::install(*dry_run),
        Command::Host(cli::HostCommand::Network { dry_run, remove }) => {
            if *remove {
                host::network::install::remove(*dry_run)
            } else {
                host::network::install::install(&settings()?, *dry_run)
            }
        }
        Command::Gc(args) => {
            let settings = Settings::load_lenient(cli.config.as_deref(), &env);
            let engine = builder::engine::Engine::connect().await?;
            loop {
                let round = ops::gc::gc(&settings, &engine, args.older_than, args.dry_run, &cancel);
                match round.await {
                    // A long-running collector reports a failed round and goes on.
                    Err(e) if args.every.is_some() && !matches!(e, error::Error::Cancelled(_)) => {
                        tracing::warn!("{e}")
                    }
                    r => r?,
                }
                let Some(every) = args.every else {
                    return Ok(());
                };
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(every) => {}
                }
            }
        }
    }
}
