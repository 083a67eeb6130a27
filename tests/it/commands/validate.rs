//! `validate` reaches the outputs and the state store, not only the sources, and storage
//! failures read as one line per cause with advice when credentials are missing.

use std::collections::BTreeSet;

use crate::support::s3::{KEY, SECRET, start_s3};
use crate::support::webhook::HttpRecorder;
use crate::support::{Outcome, Project, Size, run};

/// Every stderr line at most once: object stores wrap one cause in layers that repeat it.
fn assert_each_line_once(outcome: &Outcome) {
    let mut seen = BTreeSet::new();
    for line in outcome.stderr.lines() {
        assert!(seen.insert(line), "'{line}' printed twice: {outcome:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reaches_outputs_and_state_and_says_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let validate = |extra: &[&str]| {
        let mut command = project.command(&["validate", pipeline.to_str().unwrap()]);
        command
            .args(extra)
            .env("SEGFLOW_OUT", "s3://lake/marts")
            .env("AWS_ENDPOINT", format!("http://{addr}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        command
    };

    let reached = tokio::task::block_in_place(|| run(&mut validate(&[])));
    assert_eq!(reached.code, 0, "{reached:?}");
    assert!(
        reached
            .stdout
            .contains("outputs and the state store reached"),
        "{reached:?}"
    );

    // No credentials anywhere: object_store asks the instance metadata service, which
    // refuses here as it does off EC2.
    let metadata = HttpRecorder::start(403);
    let no_credentials = tokio::task::block_in_place(|| {
        run(validate(&[])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_METADATA_ENDPOINT", &metadata.url))
    });
    assert_eq!(no_credentials.code, 2, "{no_credentials:?}");
    assert!(
        no_credentials
            .stderr
            .starts_with("error: could not reach s3://lake/marts/customer_features/"),
        "{no_credentials:?}"
    );
    assert!(
        no_credentials
            .stderr
            .contains("hint: no AWS credentials were found: set AWS_ACCESS_KEY_ID"),
        "{no_credentials:?}"
    );
    assert_each_line_once(&no_credentials);
    assert!(
        metadata
            .requests()
            .iter()
            .any(|r| r.path == "/latest/api/token")
    );

    // Wrong credentials for the state store alone: the outputs pass, the state store is named.
    let state_denied = tokio::task::block_in_place(|| {
        let mut command = validate(&["--state", "s3://lake/state/"]);
        command.env("SEGFLOW_OUT", project.out());
        command.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
        run(&mut command)
    });
    assert_eq!(state_denied.code, 2, "{state_denied:?}");
    assert!(
        state_denied
            .stderr
            .starts_with("error: could not reach s3://lake/state/"),
        "{state_denied:?}"
    );
    assert!(!state_denied.stderr.contains("hint:"), "{state_denied:?}");
    assert_each_line_once(&state_denied);

    // --offline touches no storage: the same missing credentials pass, and nothing is asked.
    let asked = metadata.requests().len();
    let offline = tokio::task::block_in_place(|| {
        run(validate(&["--offline"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_METADATA_ENDPOINT", &metadata.url)
            .env("SEGFLOW_DATA", "s3://lake/nowhere"))
    });
    assert_eq!(offline.code, 0, "{offline:?}");
    assert!(
        offline.stdout.contains("storage not checked (--offline)"),
        "{offline:?}"
    );
    assert_eq!(metadata.requests().len(), asked);
}
