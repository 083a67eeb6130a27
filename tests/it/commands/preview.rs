//! `segflow run --preview DIR`: what tonight's run would publish, computed from the real
//! history, written where nothing that runs, reads or campaigns looks.

use crate::support::{AS_OF, Project, Size, assert_same_outputs, snapshot_of, table_text};

#[test]
fn a_preview_reads_the_real_history_and_changes_none_of_it() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let before = project.run_nightly("2026-03-30");
    assert_eq!(before.code, 0, "{before:?}");
    let outputs = project.snapshot();
    let history = snapshot_of(&project.path().join("segflow-state"));
    assert!(!history.is_empty());

    let scratch = tempfile::tempdir().unwrap();
    let preview_dir = scratch.path().join("try");
    let preview = project.segflow(&[
        "run",
        pipeline,
        "--as-of",
        AS_OF,
        "--preview",
        preview_dir.to_str().unwrap(),
    ]);
    assert_eq!(preview.code, 0, "{preview:?}");
    assert!(preview.stdout.contains("Preview into"), "{preview:?}");
    assert_eq!(project.snapshot(), outputs, "a preview changed the outputs");
    assert_eq!(
        snapshot_of(&project.path().join("segflow-state")),
        history,
        "a preview changed the run history"
    );
    assert!(
        preview_dir.join("state").exists(),
        "the preview keeps its own record"
    );

    // The preview saw the real 2026-03-30 publication: most members stayed where they were.
    let changes = table_text(&preview_dir, "segment_changes", AS_OF, &[]);
    let members = table_text(&preview_dir, "segment_membership", AS_OF, &[]);
    assert!(
        changes.len() < members.len() / 2,
        "{} changes",
        changes.len()
    );

    // Tonight's real run publishes exactly what the preview showed.
    let real = project.run_nightly(AS_OF);
    assert_eq!(real.code, 0, "{real:?}");
    let tables = [
        "segment_membership",
        "segment_changes",
        "winback_list",
        "customer_profile",
    ];
    assert_same_outputs(&preview_dir, &project.out(), &tables, AS_OF);
}
