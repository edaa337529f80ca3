//! `runnerx verify IMAGE --key PUB`: reads the image's `.sig` and `.att` (cosign's tag
//! form) from its registry with the settings' trust and logins, checks both against
//! the key, and prints the provenance.

use serde_json::{Value, json};

use super::{
    PublicKey, SIGNATURE_ANNOTATION, check_envelope, check_signature, provenance, tag_for,
};
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};
use crate::registry::oci::{self, Reference};
use crate::registry::session::Session;
use crate::registry::{self, host_port, registry_for};
use crate::settings::Settings;

/// The one layer of a cosign artifact manifest, and its annotations.
async fn single_layer(
    s: &mut Session,
    repo: &str,
    tag: &str,
) -> std::result::Result<(Vec<u8>, Value), String> {
    let (bytes, _, _) = s
        .get_manifest(repo, tag)
        .await
        .map_err(|e| format!("no {tag} in {repo}: {e}"))?;
    let m: Value =
        serde_json::from_slice(&bytes).map_err(|_| format!("{tag} is not a manifest"))?;
    let layer = &m["layers"][0];
    let digest = layer["digest"]
        .as_str()
        .ok_or(format!("{tag} has no layer"))?;
    let blob = s
        .get_blob(repo, digest)
        .await
        .map_err(|e| format!("layer of {tag}: {e}"))?;
    if oci::digest(&blob) != digest {
        return Err(format!("the layer of {tag} does not match its digest"));
    }
    Ok((blob, layer["annotations"].clone()))
}

/// Checks signature and provenance of `args.image`.
pub(crate) async fn verify(settings: &Settings, args: &VerifyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.key).map_err(|e| Error::io("read", &args.key, e))?;
    let key = PublicKey::from_pem(&text)
        .map_err(|m| Error::Usage(format!("--key {} {m}", args.key.display())))?;
    let r = Reference::parse(&args.image).map_err(|e| Error::Usage(e.0))?;
    let reg = registry_for(settings, &r.registry);
    let (host, port) = host_port(&reg);
    let addr = registry::resolve(&settings.builder.extra_hosts, &host, port)
        .await?
        .0;
    let mut s = Session::open(&reg, Some(addr)).await?;
    let (_, _, digest) = s.get_manifest(&r.repository, &r.reference).await?;
    let name = format!("{}/{}", r.registry, r.repository);
    let fail = |m: String| Error::Signing(format!("{name}@{digest}: {m}"));

    let (payload, annotations) = single_layer(&mut s, &r.repository, &tag_for(&digest, "sig"))
        .await
        .map_err(fail)?;
    let sig = annotations[SIGNATURE_ANNOTATION]
        .as_str()
        .unwrap_or_default();
    let signed = check_signature(&payload, sig, &key).map_err(|e| fail(e.0))?;
    if signed != digest {
        return Err(fail(format!(
            "the signature is for {signed}, not this image"
        )));
    }
    let (envelope, _) = single_layer(&mut s, &r.repository, &tag_for(&digest, "att"))
        .await
        .map_err(fail)?;
    let statement = check_envelope(&envelope, &key).map_err(|e| fail(e.0))?;
    let subject_ok = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["digest"]["sha256"].as_str() == Some(digest.trim_start_matches("sha256:")));
    if !subject_ok {
        return Err(fail("the provenance is about another image".into()));
    }
    if args.json {
        let out = json!({"image": name, "digest": digest, "signature": "verified", "provenance": statement});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("{name}@{digest}");
    println!("  signature    verified ({})", args.key.display());
    println!("  provenance   verified (SLSA provenance v1, in-toto)");
    for (k, v) in provenance::summary(&statement) {
        println!("  {k:<13}{v}");
    }
    Ok(())
}
