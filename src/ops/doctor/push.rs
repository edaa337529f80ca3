//! `runnerx doctor`'s write checks on a registry: whether a login may push to a
//! repository (images, the build cache), and Harbor's own state (version, read-only).

use reqwest::Method;

use super::Report;
use crate::registry::auth::{Challenge, jwt_actions};
use crate::registry::client::{Auth, Client};
use crate::settings::Registry;

/// Whether `reg`'s login may push to `repo` (`what`: the check's name).
pub(super) async fn push_check(
    reg: &Registry,
    repo: &str,
    what: &str,
    client: &Client,
    challenge: Option<&Challenge>,
    r: &mut Report,
) {
    let token = match challenge {
        Some(Challenge::Bearer { realm, service }) => {
            let scope = format!("repository:{repo}:pull,push");
            match client
                .token(realm, service.as_deref(), std::slice::from_ref(&scope))
                .await
            {
                Ok(t) => {
                    let actions = jwt_actions(&t, repo);
                    if !actions.is_empty() && !actions.iter().any(|a| a == "push" || a == "*") {
                        r.fail(
                            what,
                            format!("denied: requested access to the resource is denied (token grants {repo}: {})", actions.join(",")),
                            format!("give {} push permission on {repo}", reg.credentials.as_ref().map_or("the account", |c| c.username.as_str())),
                        );
                        return;
                    }
                    Some(t)
                }
                Err(_) => {
                    r.fail(what, "failed to fetch a push token", "fix the login first");
                    return;
                }
            }
        }
        _ => None,
    };
    let auth = match &token {
        Some(t) => Auth::Bearer(t),
        None if reg.credentials.is_some() => Auth::Basic,
        None => Auth::None,
    };
    match client.send(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), auth).await {
        Ok(a) if a.status == 202 => {
            if let Some(loc) = a.location {
                let _ = client.send(Method::DELETE, &loc, auth).await;
            }
            r.ok(what, format!("may push to {repo} (upload opened and cancelled)"));
        }
        Ok(a) if a.status == 401 || a.status == 403 => r.fail(
            what,
            format!("denied: requested access to the resource is denied ({} on POST /v2/{repo}/blobs/uploads/)", a.status),
            format!("give {} push permission on {repo}", reg.credentials.as_ref().map_or("the account", |c| c.username.as_str())),
        ),
        Ok(a) => r.fail(what, format!("POST /v2/{repo}/blobs/uploads/ answered {}", a.status), "check that the project exists and is not read-only"),
        Err(e) => r.fail(what, e.cause(), "check the registry"),
    }
}

pub(super) async fn harbor_check(client: &Client, r: &mut Report) {
    let Ok(a) = client
        .send(Method::GET, "/api/v2.0/systeminfo", Auth::Basic)
        .await
    else {
        return;
    };
    if a.status != 200 {
        r.note(
            "harbor",
            "no /api/v2.0/systeminfo: not Harbor (plain OCI registry)",
        );
        return;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&a.bytes) else {
        r.note("harbor", "no Harbor systeminfo JSON: not Harbor");
        return;
    };
    match v["harbor_version"].as_str() {
        Some(ver) => {
            let major: u32 = ver
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 2 {
                r.fail(
                    "harbor",
                    format!("Harbor {ver}: manifest lists are not supported before 2.0"),
                    "upgrade Harbor to 2.x",
                );
            } else if v["read_only"].as_bool() == Some(true) {
                r.fail(
                    "harbor",
                    format!("Harbor {ver} is in read-only mode: pushes fail"),
                    "turn off read-only in Harbor's configuration",
                );
            } else {
                r.ok("harbor", format!("Harbor {ver}, writable"));
            }
        }
        None => r.note(
            "harbor",
            "Harbor found; its version is shown only to logged-in users",
        ),
    }
}
