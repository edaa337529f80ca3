//! The commands runnerx runs inside a builder, as argv (pure). Everything goes through
//! the builder's `exec.sh`, which drops to the job user (rootless) or enters the
//! daemons' namespace (privileged) first; scripts arrive on stdin, never in argv.

use super::spec::EXEC_PATH;
use crate::trust;

/// Name of the buildx builder runnerx creates for the docker-container driver.
pub(crate) const BUILDX_BUILDER: &str = "runnerx";

/// `docker buildx create` for the docker-container driver: the rendered buildkitd.toml
/// (registry CAs, mirrors), host networking (resolves registries as the builder does),
/// a pinned BuildKit image, the configured platforms, and `--use` so plain
/// `docker buildx build` in job scripts picks it.
pub(crate) fn buildx_create_cmd(
    buildkit_image: &str,
    platforms: &[crate::settings::Platform],
) -> Vec<String> {
    let platforms = platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    [
        "docker",
        "buildx",
        "create",
        "--name",
        BUILDX_BUILDER,
        "--driver",
        "docker-container",
        "--driver-opt",
        "network=host",
        "--driver-opt",
        &format!("image={buildkit_image}"),
        "--buildkitd-config",
        trust::BUILDKITD_TOML,
        "--platform",
        &platforms,
        "--use",
        "--bootstrap",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// `exec.sh <cmd> <args…>`: how runnerx runs anything in a builder.
fn wrapped(cmd: &str, args: impl IntoIterator<Item = String>) -> Vec<String> {
    ["bash", EXEC_PATH, cmd]
        .map(String::from)
        .into_iter()
        .chain(args)
        .collect()
}

/// Command that succeeds once the inner dockerd answers, polling for up to `secs`.
/// One exec for the whole wait instead of one per poll: an exec costs tens of ms.
pub(crate) fn wait_ready_cmd(secs: u64) -> Vec<String> {
    wrapped("ready", [secs.to_string()])
}

/// `cmd` run as the job user (rootless) or as is (privileged).
pub(crate) fn user_cmd(cmd: Vec<String>) -> Vec<String> {
    wrapped("do", cmd)
}

/// Prints `<name> ok|missing|disabled|nof` per QEMU handler, as the inner dockerd
/// sees them (inside the namespace for rootless builders).
pub(crate) fn binfmt_check_cmd(names: &[&str]) -> Vec<String> {
    wrapped("binfmt", names.iter().map(|n| (*n).to_string()))
}

/// Runs a stage script inside the builder without leaving a copy of it there.
///
/// The script (it holds the job token) arrives on stdin, length-prefixed by the
/// length argument, and is read through a pipe by `exec.sh run`: it is never written
/// to the container's filesystem. `setsid` gives the script its own process group so
/// cancellation can signal the whole tree, as gitlab-runner does with `kill(-pid)`;
/// its pid goes to `/run/runnerx/<token>.pid`. The script's own stdin is /dev/null.
pub(crate) fn exec_wrapper(script_len: usize, token: &str) -> Vec<String> {
    wrapped("run", [script_len.to_string(), token.to_string()])
}

/// Sends `signal` to the process group of the script started with `token`.
/// Waits briefly for the pid file, which the wrapper writes right after starting.
pub(crate) fn kill_cmd(token: &str, signal: &str) -> Vec<String> {
    wrapped("kill", [token.to_string(), signal.to_string()])
}

/// The last non-empty line of a command's output: usually the error that matters.
pub(crate) fn last_line(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::spec::EXEC_SCRIPT;

    #[test]
    fn buildx_create_uses_rendered_config_host_network_and_pinned_image() {
        let platforms: Vec<_> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|p| p.parse::<crate::settings::Platform>().unwrap())
            .collect();
        let cmd =
            buildx_create_cmd("harbor.example.com/mirror/buildkit:v0.23.2", &platforms).join(" ");
        assert_eq!(
            cmd,
            "docker buildx create --name runnerx --driver docker-container --driver-opt network=host \
             --driver-opt image=harbor.example.com/mirror/buildkit:v0.23.2 \
             --buildkitd-config /etc/buildkit/buildkitd.toml --platform linux/amd64,linux/arm64 --use --bootstrap"
        );
    }

    #[test]
    fn exec_wrapper_never_puts_the_script_in_argv() {
        let cmd = exec_wrapper(1234, "tok");
        assert_eq!(cmd, ["bash", EXEC_PATH, "run", "1234", "tok"]);
        assert!(EXEC_SCRIPT.contains("head -c \"$len\""));
        assert!(EXEC_SCRIPT.contains("setsid"));
        // Rootless: the wrapper drops to the user for good before anything else.
        assert!(EXEC_SCRIPT.contains("--no-new-privs"));
    }
}
