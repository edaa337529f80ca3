use super::*;

#[test]
fn a_generated_key_signs_and_its_public_key_verifies() {
    let (key, pem_text) = SigningKey::generate().unwrap();
    assert!(pem_text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let again = SigningKey::from_pem(&pem_text).unwrap();
    let public = PublicKey::from_pem(&key.public_pem()).unwrap();
    let sig = again.sign(b"payload").unwrap();
    assert!(public.verifies(b"payload", &sig));
    assert!(!public.verifies(b"tampered", &sig));
    let (other, _) = SigningKey::generate().unwrap();
    assert!(
        !PublicKey::from_pem(&other.public_pem())
            .unwrap()
            .verifies(b"payload", &sig)
    );
    assert!(format!("{key:?}").contains("***"));
}

#[test]
fn a_signature_artifact_is_cosigns_tag_form() {
    let (key, _) = SigningKey::generate().unwrap();
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        tag_for(&digest, "sig"),
        format!("sha256-{}.sig", "a".repeat(64))
    );
    let a = signature_artifact("registry.test:5000/demo/app", &digest, &key).unwrap();
    let m: Value = serde_json::from_slice(&a.manifest).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let layer = &m["layers"][0];
    assert_eq!(layer["mediaType"], SIMPLESIGNING);
    assert_eq!(layer["digest"], oci::digest(&a.layer));
    assert_eq!(m["config"]["digest"], oci::digest(&a.config));
    let public = PublicKey::from_pem(&key.public_pem()).unwrap();
    let signed = check_signature(
        &a.layer,
        layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap(),
        &public,
    )
    .unwrap();
    assert_eq!(signed, digest);
    let payload: Value = serde_json::from_slice(&a.layer).unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        "registry.test:5000/demo/app"
    );
    assert_eq!(
        payload["critical"]["type"],
        "cosign container image signature"
    );
}

#[test]
fn an_attestation_is_a_signed_dsse_envelope_of_the_provenance() {
    let (key, _) = SigningKey::generate().unwrap();
    let p = Provenance {
        gitlab: "https://gitlab.example.com".into(),
        project_path: "team-a/app".into(),
        project_id: "42".into(),
        pipeline: "7".into(),
        job: "99".into(),
        commit: "c0ffee".into(),
        git_ref: "main".into(),
        runnerx: "0.1.0".into(),
        ..Provenance::default()
    };
    let statement = p.statement(&[("registry.test/demo/app".into(), "sha256:abc".into())]);
    let a = attestation_artifact(&statement, &key).unwrap();
    let public = PublicKey::from_pem(&key.public_pem()).unwrap();
    let st = check_envelope(&a.layer, &public).unwrap();
    assert_eq!(st["predicateType"], SLSA_V1);
    assert_eq!(st["subject"][0]["digest"]["sha256"], "abc");
    assert_eq!(
        st["predicate"]["buildDefinition"]["externalParameters"]["commit"],
        "c0ffee"
    );
    let summary = provenance::summary(&st);
    assert!(
        summary
            .iter()
            .any(|(k, v)| k == "project" && v == "team-a/app (id 42)")
    );
    // PAE as the DSSE spec defines it.
    assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
    // Another key does not verify it; a changed envelope neither.
    let (other, _) = SigningKey::generate().unwrap();
    assert!(check_envelope(&a.layer, &PublicKey::from_pem(&other.public_pem()).unwrap()).is_err());
    let mut env: Value = serde_json::from_slice(&a.layer).unwrap();
    env["payloadType"] = "text/plain".into();
    assert!(check_envelope(&serde_json::to_vec(&env).unwrap(), &public).is_err());
}
