//! Artifacts between local jobs (`runnerx local JOB --needs`), as the executor's
//! artifact stages move them: a job's `artifacts: paths` (and `reports: dotenv` files)
//! are packed in its builder after a successful build, copied out, and unpacked into
//! the checkout of each job that takes them; dotenv variables join those jobs'
//! variables above their job variables.

use std::path::Path;

use crate::builder::engine::Engine;
use crate::error::{Error, Result};
use crate::gitlab::pipeline::{self, Artifacts, JobDef};

/// What one finished job left for the jobs after it.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// The job's name.
    pub job: String,
    /// Its stage.
    pub stage: String,
    /// A tar of its artifacts, paths relative to the project directory.
    pub tar: Vec<u8>,
    /// Its `reports: dotenv` files.
    pub dotenv: Vec<String>,
}

/// What a job takes from the jobs before it.
#[derive(Debug, Clone, Default)]
pub(super) struct Upstream {
    /// Artifact tars to unpack into the checkout, in order.
    pub tars: Vec<(String, Vec<u8>)>,
    /// Variables of their dotenv reports.
    pub dotenv: Vec<(String, String)>,
}

impl Upstream {
    /// What `def` takes from `kept` (its `needs`, else the earlier `stages`' jobs, of
    /// those its `dependencies` when set).
    pub(super) fn of(kept: &[Kept], def: &JobDef, stages: &[String]) -> Upstream {
        let mut up = Upstream::default();
        for k in kept
            .iter()
            .filter(|k| def.takes_artifacts_of(&k.job, &k.stage, stages))
        {
            up.tars.push((k.job.clone(), k.tar.clone()));
            for file in &k.dotenv {
                if let Some(text) = file_in_tar(&k.tar, file) {
                    up.dotenv.extend(pipeline::parse_dotenv(&text));
                }
            }
        }
        up
    }
}

/// The shell that packs a job's artifacts into `tar_path` (globs expanded by bash, as
/// the artifact uploader expands them; nothing matched gives an empty archive).
pub(super) fn pack_command(artifacts: &Artifacts, tar_path: &str) -> String {
    let patterns: Vec<&str> = artifacts
        .paths
        .iter()
        .chain(&artifacts.dotenv)
        .map(String::as_str)
        .collect();
    format!(
        "shopt -s globstar nullglob dotglob; found=(); for p in {}; do found+=(\"$p\"); done; \
         if [ ${{#found[@]}} -eq 0 ]; then echo 'WARNING: no file matches the artifacts paths'; fi; \
         tar -cf {tar_path} --files-from /dev/null \"${{found[@]}}\"; \
         echo \"artifacts: ${{#found[@]}} path(s) kept\"",
        patterns.join(" ")
    )
}

/// The file `name` inside `tar`, if there.
pub(super) fn file_in_tar(tar: &[u8], name: &str) -> Option<String> {
    let mut archive = tar::Archive::new(tar);
    let wanted = name.trim_start_matches("./");
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == wanted {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).ok()?;
            return Some(text);
        }
    }
    None
}

/// Copies the packed artifacts out of `builder`: the download is a tar holding the
/// one tar file.
pub(super) async fn fetch(engine: &Engine, builder: &str, tar_path: &str) -> Result<Vec<u8>> {
    let outer = engine.download(builder, tar_path).await?;
    let mut archive = tar::Archive::new(outer.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| Error::io("read artifacts of", Path::new(tar_path), e))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| Error::io("read artifacts of", Path::new(tar_path), e))?;
        if entry.header().entry_type().is_file() {
            let mut inner = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut inner)
                .map_err(|e| Error::io("read artifacts of", Path::new(tar_path), e))?;
            return Ok(inner);
        }
    }
    Ok(Vec::new())
}

/// `tar` re-rooted at `project_dir` and owned by the job user: what is uploaded into a
/// downstream job's checkout.
pub(super) fn rerooted(tar: &[u8], project_dir: &str, uid: u32) -> Result<Vec<u8>> {
    let bad = |e: std::io::Error| Error::io("unpack artifacts into", Path::new(project_dir), e);
    let mut archive = tar::Archive::new(tar);
    let mut out = tar::Builder::new(Vec::new());
    let root = project_dir.trim_start_matches('/');
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let mut header = entry.header().clone();
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(crate::builder::gid_of(uid)));
        let target = Path::new(root).join(&path);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(bad)?;
        out.append_data(&mut header, target, data.as_slice())
            .map_err(bad)?;
    }
    out.into_inner().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, c) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(c.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, c.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn dotenv_reports_of_taken_jobs_become_variables() {
        let kept = [Kept {
            job: "build".into(),
            stage: "build".into(),
            tar: tar_of(&[
                ("dist/app", "bin"),
                ("build.env", "VERSION=1.2.3\n# c\nDIGEST=sha256:ab\n"),
            ]),
            dotenv: vec!["build.env".into()],
        }];
        let stages: Vec<String> = ["build", "deploy"].map(String::from).to_vec();
        let def = JobDef {
            name: "deploy".into(),
            stage: "deploy".into(),
            ..Default::default()
        };
        let up = Upstream::of(&kept, &def, &stages);
        assert_eq!(up.tars.len(), 1);
        // A job of the same stage takes nothing it does not need.
        let same = JobDef {
            name: "package".into(),
            stage: "build".into(),
            ..Default::default()
        };
        assert!(Upstream::of(&kept, &same, &stages).tars.is_empty());
        let needs = JobDef {
            needs: Some(vec![pipeline::Need {
                job: "build".into(),
                artifacts: true,
            }]),
            ..same.clone()
        };
        assert_eq!(Upstream::of(&kept, &needs, &stages).tars.len(), 1);
        assert_eq!(
            up.dotenv,
            [
                ("VERSION".to_string(), "1.2.3".to_string()),
                ("DIGEST".to_string(), "sha256:ab".to_string())
            ]
        );
        let moved = rerooted(&kept[0].tar, "/builds/local/app", 1000).unwrap();
        assert_eq!(
            file_in_tar(&moved, "builds/local/app/dist/app").as_deref(),
            Some("bin")
        );
    }

    #[test]
    fn the_pack_command_expands_globs_and_tolerates_no_match() {
        let cmd = pack_command(
            &Artifacts {
                paths: vec!["dist/".into(), "out/**/*.bin".into()],
                dotenv: vec!["build.env".into()],
            },
            "../.a.tar",
        );
        assert!(
            cmd.contains("for p in dist/ out/**/*.bin build.env; do"),
            "{cmd}"
        );
        assert!(cmd.contains("shopt -s globstar nullglob dotglob"));
    }
}
