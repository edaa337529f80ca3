//! The only module that talks to the Docker engine (bollard).
//!
//! Thin, typed wrappers: images (inspect, pull with throttled progress), containers
//! (create, upload, start, stop, remove, inspect, list by label, logs), volumes, and
//! exec (attached, streaming, with stdin). "Not found" on removal is success, so every
//! caller is idempotent. Errors carry what was being done; never a secret, because no
//! secret is ever passed through here in argv or env.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ExecConfig, Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// The API version to speak with the engine on `socket`: its `API-Version` from
/// `HEAD /_ping`, capped at bollard's own; `None` when it does not answer that way
/// (the caller negotiates the slow way, which also reports the error).
async fn ping_api_version(socket: &str) -> Option<bollard::ClientVersion> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::with_capacity(1024);
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    api_version_header(&String::from_utf8_lossy(&buf))
}

/// `1.41` from the `Api-Version` header of a `/_ping` answer, capped at bollard's own.
fn api_version_header(answer: &str) -> Option<bollard::ClientVersion> {
    let value = answer.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("api-version")
            .then(|| v.trim().to_string())
    })?;
    let (major, minor) = value.split_once('.')?;
    let server = (major.parse::<usize>().ok()?, minor.parse::<usize>().ok()?);
    let ours = bollard::API_DEFAULT_VERSION;
    let (major_version, minor_version) = server.min((ours.major_version, ours.minor_version));
    Some(bollard::ClientVersion {
        major_version,
        minor_version,
    })
}

/// A connected engine.
#[derive(Clone)]
pub(crate) struct Engine {
    docker: Docker,
}

/// Facts about the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineInfo {
    /// `20.10.24 (API 1.41)`: server version and the negotiated API version.
    pub version: String,
    /// Unique engine id (stable across restarts).
    pub id: String,
    /// CPU architecture as a GOARCH (`amd64`, `arm64`).
    pub arch: String,
    /// CPUs the engine's host has.
    pub ncpu: i64,
    /// Docker's data root on the host (volumes live under it).
    pub root_dir: String,
    /// The engine applies AppArmor profiles (`name=apparmor` in its security options).
    pub apparmor: bool,
}

/// An attached exec: its id and its output stream.
pub(crate) struct ExecStream {
    /// Exec id, for [`Engine::exec_exit_code`].
    pub id: String,
    /// stdout/stderr chunks as they arrive.
    pub output: Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>,
    // Held so the attach connection's write half stays open while output flows.
    _input: Pin<Box<dyn AsyncWrite + Send>>,
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_not_modified(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// Adds `:latest` when a reference has neither tag nor digest: the pull API would
/// otherwise fetch every tag of the repository.
pub(crate) fn with_default_tag(image: &str) -> String {
    if crate::settings::has_tag_or_digest(image) {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

impl Engine {
    /// Connects via `DOCKER_HOST` or the local socket and negotiates the API version.
    pub(crate) async fn connect() -> Result<Engine> {
        let where_ =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let fix = |e: BollardError| {
            Error::Engine(format!(
                "cannot reach the Docker engine at {where_}: {e}; start dockerd or set DOCKER_HOST"
            ))
        };
        // A local socket: negotiate from `HEAD /_ping`'s API-Version header, as the
        // docker CLI does (~0.5 ms against ~10 ms for bollard's `/version`; every stage
        // of every job pays it).
        let socket = where_
            .strip_prefix("unix://")
            .unwrap_or("/var/run/docker.sock");
        if (where_.starts_with("unix://") || std::env::var_os("DOCKER_HOST").is_none())
            && let Some(version) = ping_api_version(socket).await
        {
            let docker = Docker::connect_with_unix(socket, 120, &version).map_err(fix)?;
            return Ok(Engine { docker });
        }
        let docker = Docker::connect_with_local_defaults().map_err(fix)?;
        let docker = docker.negotiate_version().await.map_err(fix)?;
        Ok(Engine { docker })
    }

    /// What runnerx needs to know about the engine, from one `/info` call (on Docker
    /// 20.10 `/version` and `/info` cost ~10–15 ms each: prepare asks once).
    pub(crate) async fn info(&self) -> Result<EngineInfo> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| Error::docker("query engine info", e))?;
        let api = self.docker.client_version();
        Ok(EngineInfo {
            version: format!(
                "{} (API {}.{})",
                info.server_version.unwrap_or_default(),
                api.major_version,
                api.minor_version
            ),
            id: info.id.unwrap_or_default(),
            arch: crate::host::binfmt::goarch(&info.architecture.unwrap_or_default()).to_string(),
            ncpu: info.ncpu.unwrap_or(1),
            root_dir: info
                .docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".into()),
            apparmor: info
                .security_options
                .unwrap_or_default()
                .iter()
                .any(|o| o.split(',').any(|kv| kv == "name=apparmor")),
        })
    }

    /// Whether `image` is in the engine's image store.
    pub(crate) async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::docker(format!("inspect image {image}"), e)),
        }
    }

    /// Pulls `image`, reporting progress through `progress` at most every `every`.
    pub(crate) async fn pull(
        &self,
        image: &str,
        every: Duration,
        mut progress: impl FnMut(&str),
    ) -> Result<()> {
        let reference = with_default_tag(image);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&reference)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        let mut layers: HashMap<String, (String, i64, i64)> = HashMap::new();
        let mut last = Instant::now();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| Error::docker(format!("pull image {reference}"), e))?;
            if let Some(id) = info.id.filter(|id| id.len() == 12) {
                let (cur, tot) = info
                    .progress_detail
                    .map_or((0, 0), |d| (d.current.unwrap_or(0), d.total.unwrap_or(0)));
                layers.insert(id, (info.status.unwrap_or_default(), cur, tot));
            }
            if last.elapsed() >= every {
                last = Instant::now();
                progress(&summarize(&layers));
            }
        }
        progress(&format!("pulled {reference} ({} layers)", layers.len()));
        Ok(())
    }

    /// Creates a container named `name`.
    pub(crate) async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let r = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::docker(format!("create container {name}"), e))?;
        Ok(r.id)
    }

    /// Extracts an uncompressed tar at `/` of a (created or running) container.
    pub(crate) async fn upload(&self, container: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::default().path("/").build();
        self.docker
            .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| Error::docker(format!("upload files into {container}"), e))
    }

    /// A tar of `path` in a (running or stopped) container, as `docker cp` gives it.
    pub(crate) async fn download(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| Error::docker(format!("copy {path} out of {container}"), e))?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Starts a created container.
    pub(crate) async fn start(&self, container: &str) -> Result<(), BollardError> {
        match self.docker.start_container(container, None).await {
            Err(e) if is_not_modified(&e) => Ok(()),
            other => other,
        }
    }

    /// Whether a container runs; `None` when it does not exist.
    pub(crate) async fn running(&self, container: &str) -> Result<Option<bool>> {
        match self.docker.inspect_container(container, None).await {
            Ok(c) => Ok(Some(c.state.and_then(|s| s.running).unwrap_or(false))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::docker(format!("inspect container {container}"), e)),
        }
    }

    /// The id of the image a container runs (`sha256:…`), if it exists.
    pub(crate) async fn container_image(&self, container: &str) -> Result<Option<String>> {
        match self.docker.inspect_container(container, None).await {
            Ok(c) => Ok(c.image),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::docker(format!("inspect container {container}"), e)),
        }
    }

    /// Stops a container (SIGTERM, then SIGKILL after `timeout_secs`); absent is fine.
    pub(crate) async fn stop(&self, container: &str, timeout_secs: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default()
            .t(timeout_secs)
            .build();
        match self.docker.stop_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::docker(format!("stop container {container}"), e)),
        }
    }

    /// Removes a container and its anonymous volumes; absent is fine.
    pub(crate) async fn remove_container(&self, container: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress": someone else (a concurrent cleanup) is on it.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(Error::docker(format!("remove container {container}"), e)),
        }
    }

    /// Containers (any state) carrying `label` (`key` or `key=value`).
    pub(crate) async fn containers_with_label(&self, label: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label", vec![label])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::docker(format!("list containers labelled {label}"), e))
    }

    /// Creates a named volume with labels (no-op if it exists).
    pub(crate) async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let req = VolumeCreateRequest {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(|e| Error::docker(format!("create volume {name}"), e))
    }

    /// Volumes carrying `label`.
    pub(crate) async fn volumes_with_label(&self, label: &str) -> Result<Vec<Volume>> {
        let filters = HashMap::from([("label", vec![label])]);
        let opts = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let r = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| Error::docker(format!("list volumes labelled {label}"), e))?;
        Ok(r.volumes.unwrap_or_default())
    }

    /// Size in bytes of a volume no container uses, measured by `du` in a short-lived
    /// container of `image` (the df API's shape differs across engine versions).
    pub(crate) async fn volume_size(&self, volume: &str, image: &str) -> Result<u64> {
        let name = format!("runnerx-du-{}", crate::host::random_hex(4));
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(vec!["du".into(), "-sk".into(), "/v".into()]),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![format!("{volume}:/v:ro")]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_container(&name, body).await?;
        let started = self.start(&name).await;
        let mut wait = self.docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let _ = wait.next().await;
        let out = self.logs_tail(&name, 5).await;
        self.remove_container(&name).await?;
        started.map_err(|e| Error::docker(format!("measure volume {volume}"), e))?;
        out.split_whitespace()
            .next()
            .and_then(|k| k.parse::<u64>().ok())
            .map(|k| k * 1024)
            .ok_or_else(|| Error::Engine(format!("cannot measure volume {volume}: {}", out.trim())))
    }

    /// Removes a volume; absent is fine.
    pub(crate) async fn remove_volume(&self, name: &str) -> Result<()> {
        let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::docker(format!("remove volume {name}"), e)),
        }
    }

    /// The last `lines` lines of a container's output.
    pub(crate) async fn logs_tail(&self, container: &str, lines: usize) -> String {
        let n = lines.to_string();
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n)
            .build();
        let mut out = String::new();
        let mut s = self.docker.logs(container, Some(opts));
        while let Some(Ok(chunk)) = s.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out
    }

    /// Starts `cmd` in `container`, attached, writing `stdin` to it first.
    pub(crate) async fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
        stdin: Option<&[u8]>,
    ) -> Result<ExecStream> {
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd),
            ..Default::default()
        };
        let created = match self.docker.create_exec(container, config).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Err(Error::NoBuilder(container.to_string())),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => return Err(Error::BuilderStopped(container.to_string())),
            Err(e) => return Err(Error::docker(format!("create exec in {container}"), e)),
        };
        match self
            .docker
            .start_exec(
                &created.id,
                // A larger read buffer: job logs can be hundreds of MB.
                Some(bollard::exec::StartExecOptions {
                    output_capacity: Some(256 * 1024),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| Error::docker(format!("start exec in {container}"), e))?
        {
            bollard::exec::StartExecResults::Attached { output, mut input } => {
                if let Some(bytes) = stdin {
                    input
                        .write_all(bytes)
                        .await
                        .and(input.flush().await)
                        .map_err(|e| Error::io("send script to", container.to_string(), e))?;
                }
                Ok(ExecStream {
                    id: created.id,
                    output,
                    _input: input,
                })
            }
            bollard::exec::StartExecResults::Detached => Err(Error::Engine(format!(
                "exec in {container} started detached; expected an attached stream"
            ))),
        }
    }

    /// The exit code of a finished exec (polls briefly while the engine catches up).
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Result<i64> {
        for _ in 0..50 {
            let r = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| Error::docker("inspect exec", e))?;
            if r.running != Some(true)
                && let Some(code) = r.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Engine(format!(
            "exec {exec_id} did not report an exit code"
        )))
    }

    /// Runs a short-lived container to completion, removes it, returns its exit code.
    pub(crate) async fn run_oneshot(&self, name: &str, body: ContainerCreateBody) -> Result<i64> {
        self.remove_container(name).await?;
        self.create_container(name, body).await?;
        if let Err(e) = self.start(name).await {
            let _ = self.remove_container(name).await;
            return Err(Error::docker(format!("start container {name}"), e));
        }
        let mut wait = self.docker.wait_container(
            name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            // A non-zero exit arrives as an error; it is data here.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                let _ = self.remove_container(name).await;
                return Err(Error::docker(format!("wait for container {name}"), e));
            }
            None => -1,
        };
        self.remove_container(name).await?;
        Ok(code)
    }

    /// Runs `cmd` to completion and returns its exit code and combined output.
    pub(crate) async fn exec_capture(
        &self,
        container: &str,
        cmd: Vec<String>,
    ) -> Result<(i64, String)> {
        let mut ex = self.exec(container, cmd, None).await?;
        let mut out = String::new();
        while let Some(chunk) = ex.output.next().await {
            let chunk =
                chunk.map_err(|e| Error::docker(format!("read exec output in {container}"), e))?;
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok((self.exec_exit_code(&ex.id).await?, out))
    }
}

fn summarize(layers: &HashMap<String, (String, i64, i64)>) -> String {
    let done = layers
        .values()
        .filter(|(s, ..)| s.starts_with("Pull complete") || s.starts_with("Already exists"))
        .count();
    let (cur, tot) = layers
        .values()
        .filter(|(s, ..)| s.starts_with("Downloading"))
        .fold((0, 0), |(c, t), (_, cur, tot)| (c + cur, t + tot));
    format!(
        "pulling: {done}/{} layers done, downloading {} of {} MB",
        layers.len(),
        cur / 1_000_000,
        tot / 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_version_comes_from_the_ping_answer_capped_at_ours() {
        let v = api_version_header(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nDocker-Experimental: false\r\n\r\n",
        )
        .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        let v = api_version_header("HTTP/1.1 200 OK\r\napi-version: 1.99\r\n\r\n").unwrap();
        assert_eq!(
            (v.major_version, v.minor_version),
            (1, bollard::API_DEFAULT_VERSION.minor_version)
        );
        assert!(api_version_header("HTTP/1.1 404 Not Found\r\n\r\n").is_none());
    }

    #[test]
    fn default_tag_is_added_only_when_missing() {
        assert_eq!(with_default_tag("docker"), "docker:latest");
        assert_eq!(with_default_tag("docker:28-dind"), "docker:28-dind");
        assert_eq!(
            with_default_tag("registry.test:5000/dind"),
            "registry.test:5000/dind:latest"
        );
        assert_eq!(
            with_default_tag("registry.test:5000/dind:1"),
            "registry.test:5000/dind:1"
        );
        assert_eq!(with_default_tag("a/b@sha256:abc"), "a/b@sha256:abc");
    }

    #[test]
    fn progress_summary_counts_layers() {
        let layers = HashMap::from([
            (
                "aaaaaaaaaaaa".to_string(),
                ("Pull complete".to_string(), 0, 0),
            ),
            (
                "bbbbbbbbbbbb".to_string(),
                ("Downloading".to_string(), 5_000_000, 20_000_000),
            ),
        ]);
        assert_eq!(
            summarize(&layers),
            "pulling: 1/2 layers done, downloading 5 of 20 MB"
        );
    }
}
