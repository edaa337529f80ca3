//! Command-line interface (clap derive).
//!
//! The four GitLab custom-executor stages (`config`, `prepare`, `run SCRIPT STAGE`,
//! `cleanup`) exactly as gitlab-runner calls them, plus operator commands. Stage names
//! given to `run` are free text: GitLab adds new ones over time (`step_*`), so none is
//! rejected.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// runnerx: a GitLab custom-executor driver running each job in its own
/// docker-in-docker builder.
#[derive(Debug, Parser)]
#[command(name = "runnerx", version, about, max_term_width = 100)]
pub struct Cli {
    /// Settings file (default: $RUNNERX_CONFIG, else /etc/runnerx/runnerx.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// config_exec: print the executor's JSON configuration on stdout.
    Config(JobArgs),
    /// prepare_exec: create and boot the job's builder.
    Prepare(JobArgs),
    /// run_exec: run one stage script inside the job's builder.
    Run(RunArgs),
    /// cleanup_exec: remove everything created for the job.
    Cleanup(JobArgs),
    /// Remove builders, volumes and bridges left behind by jobs older than a duration.
    Gc(GcArgs),
    /// Make a private CA and registry server/client certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Check this runner host and every configured registry; explain what fails.
    Doctor(DoctorArgs),
    /// Run one job of a .gitlab-ci.yml on this host through a runnerx builder
    /// (config → prepare → each stage → cleanup), like the removed `gitlab-runner exec`.
    Local(LocalArgs),
    /// Measure this host: prepare time, run overhead and log throughput against plain
    /// `docker exec`, cold vs warm (per-project cache) builds, peak RSS. Prints medians.
    Bench(BenchArgs),
    /// Multi-platform manifests: join per-arch images into an index, or list one.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// One-time set-up of the runner host itself (as root).
    #[command(subcommand)]
    Host(HostCommand),
    /// Set up a native BuildKit node ([[nodes]]) on this host: its certificates from the
    /// runner's CA, its buildkitd.toml with the registries' trust, and how to run it.
    Node(NodeArgs),
    /// Check an image's signature and build provenance made by runnerx (cosign's tag
    /// form, `sha256-<digest>.sig` and `.att`) against a public key, and print the
    /// provenance. Exits non-zero unless both verify.
    Verify(VerifyArgs),
}

/// `runnerx verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image (`harbor.example.com/team/app:1.0` or `…@sha256:…`).
    pub image: String,
    /// The public key (`cosign.pub` from `runnerx certs signing-key`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Print the result as JSON (the verified provenance statement included).
    #[arg(long)]
    pub json: bool,
}

/// `runnerx node` arguments.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Name of the node (buildx node name; container and volume runnerx-node-NAME).
    #[arg(long)]
    pub name: String,
    /// DNS name or IP runners reach the node by (repeat for more SANs; the first
    /// goes into the endpoint).
    #[arg(long = "address", required = true, value_name = "NAME")]
    pub addresses: Vec<String>,
    /// Port buildkitd listens on.
    #[arg(long, default_value_t = 1234)]
    pub port: u16,
    /// Address buildkitd binds (default: every interface).
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub listen: String,
    /// Platform the node builds natively, e.g. linux/arm64 (repeatable).
    #[arg(long = "platform", required = true, value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Directory with the CA (ca.crt, ca.key from `runnerx certs ca`).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Where to write node/ (the node's /etc/buildkit) and runner/ (for [[nodes]]).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// BuildKit image (default: builder.buildkit_image).
    #[arg(long)]
    pub image: Option<String>,
    /// Also start (or replace) the node's container on this host's Docker engine.
    #[arg(long)]
    pub start: bool,
    /// Overwrite existing files in --out.
    #[arg(long)]
    pub force: bool,
    /// Validity of the certificates, in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
}

/// `runnerx host …`
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Register the QEMU handlers of `builder.platforms` on the host with the F flag,
    /// kept across reboots in /etc/binfmt.d. Needed by rootless builders on kernels
    /// without binfmt_misc per user namespace (Linux < 6.7); needs qemu-user-static.
    Binfmt {
        /// Print what would be registered and written, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write runnerx's AppArmor profile for builders (runnerx-builder) to
    /// /etc/apparmor.d and load it. Needed once on hosts that enforce AppArmor
    /// (Debian, Ubuntu): builders run under it, and Ubuntu ≥ 23.10 lets only such a
    /// profile create the rootless builders' user namespaces. Idempotent.
    Apparmor {
        /// Print the profile, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Install the egress policy for builders: an nftables table (inet runnerx) that
    /// keeps jobs from the runner host's own addresses, link-local addresses (cloud
    /// metadata) and `[network] deny`, while what the settings name stays reachable.
    /// Made from the settings (run it again when registries, nodes, proxy or
    /// `[network]` change), kept across reboots by runnerx-network.service. Needed on
    /// every runner host: prepare refuses to start builders without it unless
    /// `network.egress = "open"`. Idempotent.
    Network {
        /// Print the ruleset (or, with --remove, what would go), change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove the policy, its files and its unit.
        #[arg(long)]
        remove: bool,
    },
}

/// `runnerx manifest …`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Push an index TARGET made of the images SRC… (per-arch tags, or indexes to
    /// flatten), copying children from other repositories of the same registry.
    Create {
        /// The index to push, e.g. harbor.example.com/ci/maven:3.8.5
        target: String,
        /// Source images, e.g. …/maven:3.8.5-amd64 …/maven:3.8.5-arm64
        #[arg(required = true)]
        sources: Vec<String>,
        /// Platform of each single-platform SRC, in order (default: from its config).
        #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
        platforms: Vec<String>,
    },
    /// List the platforms and digests of an image or index.
    Inspect {
        /// Image reference.
        reference: String,
    },
}

/// `runnerx certs …`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A new CA: ca.crt and ca.key.
    Ca {
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Common name of the CA (default: "runnerx registry CA <random id>", unique so
        /// a regenerated CA is never mistaken for the old one by name).
        #[arg(long)]
        cn: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// A signing key for runnerx to sign pushed images with (ECDSA P-256, cosign's
    /// format): cosign.key (the runner host's [[registries]] signing_key_file) and
    /// cosign.pub (for Harbor, deployers and `runnerx verify`).
    SigningKey {
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// A registry server certificate signed by the CA: server.crt and server.key.
    Server {
        /// Directory holding ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// DNS name or IP address the registry is reached by (repeat; all become SANs).
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// A client certificate for registry mTLS: client.cert and client.key.
    Client {
        /// Directory holding ca.crt and ca.key.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Common name (who the client is).
        #[arg(long)]
        cn: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// `local` arguments.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The job to run.
    #[arg(required_unless_present = "list")]
    pub job: Option<String>,
    /// List the pipeline's jobs with their stages, and what local runs ignore.
    #[arg(long)]
    pub list: bool,
    /// Print the job as runnerx local resolves it (extends, default, references).
    #[arg(long)]
    pub preview: bool,
    /// With `parallel: matrix`, run only the combinations with KEY=VALUE (repeat).
    #[arg(long = "matrix", value_name = "KEY=VALUE")]
    pub matrix: Vec<String>,
    /// Pipeline file.
    #[arg(short = 'f', long = "file", default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// Directory copied into the builder as the project (default: the file's directory).
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Extra or overriding variable (repeat).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A file-type variable, as GitLab's CI/CD settings make them: the job gets the
    /// content of this host file in a file of its own, and KEY holds that file's path
    /// (repeat).
    #[arg(long = "file-var", value_name = "KEY=PATH")]
    pub file_vars: Vec<String>,
    /// GitLab project path the job counts as, for per-project registry logins
    /// (default: the path of the project directory's `origin` remote).
    #[arg(long, value_name = "PATH")]
    pub project: Option<String>,
    /// First run the jobs it needs (its `needs:` chain, or the earlier stages),
    /// passing their artifacts and dotenv variables on.
    #[arg(long)]
    pub needs: bool,
}

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Repetitions per figure (medians are printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Multi-arch base image for the build benchmark (skipped without it).
    #[arg(long, value_name = "REF")]
    pub base_image: Option<String>,
    /// Repository the build benchmark pushes to.
    #[arg(long, value_name = "REPO")]
    pub push_to: Option<String>,
    /// The example pipeline built twice.
    #[arg(long, default_value = "ci-templates/examples/hello/.gitlab-ci.yml")]
    pub example: PathBuf,
    /// Loop iterations of the example's RUN step (stands in for compilation).
    #[arg(long, default_value_t = 300_000)]
    pub work: u64,
}

/// `doctor` arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only check this registry host (as in [[registries]] host).
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// Answer for a job of this GitLab project (path): which login it gets.
    #[arg(long, value_name = "PATH")]
    pub project: Option<String>,
}

/// The job a stage works on.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Job id for manual use outside gitlab-runner (default: from the job).
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
}

/// `run` arguments: gitlab-runner appends `<script_path> <stage_name>`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job id for manual use outside gitlab-runner.
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    /// Path of the stage script gitlab-runner wrote.
    pub script: PathBuf,
    /// Stage name (prepare_script, get_sources, build_script, step_*, …).
    pub stage: String,
}

/// `gc` arguments.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only remove what was created longer ago than this (e.g. 2h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = crate::settings::values::duration)]
    pub older_than: Duration,
    /// Print what would be removed without removing it (and every cache's size and
    /// last use against cache.total).
    #[arg(long)]
    pub dry_run: bool,
    /// Keep running: collect every DURATION (e.g. 10m) until stopped.
    #[arg(long, value_name = "DURATION", value_parser = crate::settings::values::duration)]
    pub every: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_accepts_any_stage_name() {
        for stage in [
            "build_script",
            "step_script",
            "step_release",
            "some_future_stage",
        ] {
            let cli = Cli::try_parse_from(["runnerx", "run", "/tmp/x/script", stage]).unwrap();
            let Command::Run(args) = cli.command else {
                panic!()
            };
            assert_eq!(args.stage, stage);
        }
    }

    #[test]
    fn gc_parses_durations() {
        let cli = Cli::try_parse_from(["runnerx", "gc", "--older-than", "2h"]).unwrap();
        let Command::Gc(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.older_than, Duration::from_secs(7200));
        assert!(Cli::try_parse_from(["runnerx", "gc", "--older-than", "soon"]).is_err());
    }
}
