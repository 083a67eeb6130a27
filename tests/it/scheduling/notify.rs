//! `notify:` webhooks: one POST per finished run to the URL its outcome asks for, received by
//! a real HTTP server on loopback.

use crate::support::webhook::HttpRecorder;
use crate::support::{AS_OF, Project, Size};

fn with_webhooks(project: &Project) {
    project.edit("pipelines/nightly_segments.yaml", |text| {
        text + "\nnotify:\n  on_failure: ${FAILED_HOOK}\n  on_success: ${PUBLISHED_HOOK}\n"
    });
}

fn run_with(project: &Project, failed: &str, published: &str) -> crate::support::Outcome {
    let pipeline = project.pipeline();
    crate::support::run(
        project
            .command(&["run", pipeline.to_str().unwrap(), "--as-of", AS_OF])
            .env("FAILED_HOOK", failed)
            .env("PUBLISHED_HOOK", published),
    )
}

#[test]
fn each_run_posts_its_outcome_to_its_webhook() {
    let project = Project::new(Size::Small);
    with_webhooks(&project);
    let failed = HttpRecorder::start(200);
    let published = HttpRecorder::start(200);

    let ok = run_with(
        &project,
        &format!("{}/failed", failed.url),
        &format!("{}/ok", published.url),
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(failed.requests().is_empty());
    let posts = published.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        (posts[0].method.as_str(), posts[0].path.as_str()),
        ("POST", "/ok")
    );
    assert_eq!(posts[0].content_type.as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["pipeline"], "nightly_segments");
    assert_eq!(body["as_of"], AS_OF);
    let features = project.manifest("customer_features", AS_OF);
    assert_eq!(body["rows"]["customer_features"], features.rows);
    assert_eq!(body["run_id"], features.run_id.as_str());
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("segflow: nightly_segments as of {AS_OF}")),
        "{text}"
    );
    assert!(body["error"].is_null());

    // The orders export is missing: the run fails, and the failure hook hears why.
    std::fs::remove_dir_all(project.data().join("orders")).unwrap();
    let broken = run_with(
        &project,
        &format!("{}/failed", failed.url),
        &format!("{}/ok", published.url),
    );
    assert_eq!(broken.code, 1, "{broken:?}");
    assert_eq!(published.requests().len(), 1);
    let posts = failed.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["status"], "failed");
    assert!(body["error"].as_str().unwrap().contains("orders"), "{body}");
    assert!(
        body["text"].as_str().unwrap().contains("failed: "),
        "{body}"
    );
}

#[test]
fn a_failing_webhook_is_logged_without_its_token_and_the_run_stands() {
    let project = Project::new(Size::Small);
    with_webhooks(&project);
    let refusing = HttpRecorder::start(500);
    let hook = format!("{}/services/T0KEN-SECRET", refusing.url);
    let ok = run_with(&project, &hook, &hook);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(refusing.requests().len(), 1);
    assert!(
        ok.stderr.contains("Could not post the run's notification"),
        "{ok:?}"
    );
    assert!(
        !ok.stderr.contains("T0KEN"),
        "the webhook's token leaked: {ok:?}"
    );
}

#[test]
fn a_misspelt_or_non_http_webhook_is_a_spec_error_with_its_line() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let validate = || project.segflow(&["validate", "--offline", pipeline.to_str().unwrap()]);
    project.edit("pipelines/nightly_segments.yaml", |text| {
        text + "\nnotify:\n  on_sucess: ftp://hooks.example/x\n"
    });
    let lines = std::fs::read_to_string(&pipeline).unwrap().lines().count();
    let misspelt = validate();
    assert_eq!(misspelt.code, 1, "{misspelt:?}");
    let expected = format!(
        "nightly_segments.yaml:{lines}: unknown field `on_sucess` (did you mean 'on_success'?)"
    );
    assert!(misspelt.stderr.contains(&expected), "{misspelt:?}");

    project.edit("pipelines/nightly_segments.yaml", |text| {
        text.replace("on_sucess", "on_success")
    });
    let not_http = validate();
    assert_eq!(not_http.code, 1, "{not_http:?}");
    let expected = format!(
        "nightly_segments.yaml:{lines}: notify.on_success 'ftp://hooks.example/x' is not an \
         http:// or https:// URL"
    );
    assert!(not_http.stderr.contains(&expected), "{not_http:?}");
}
