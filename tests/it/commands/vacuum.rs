//! `segflow vacuum` on Parquet outputs: what killed runs left (files in a partition that no
//! manifest lists, staged files) goes once older than the retention; nothing a manifest lists.

use crate::support::{AS_OF, Project, Size};

#[test]
fn vacuum_removes_what_killed_runs_left_and_nothing_published() {
    let project = Project::new(Size::Tiny);
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let rfm = project.out().join("rfm");
    let live = project.manifest("rfm", AS_OF).files[0].path.clone();
    // A run killed after moving its files, and one killed while staging.
    let stray = rfm.join(format!("as_of={AS_OF}/part-0killed0-00000.zstd.parquet"));
    let staged = rfm.join("_segflow/staging/0killed1/part_0.parquet");
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    for leftover in [&stray, &staged] {
        std::fs::copy(rfm.join(&live), leftover).unwrap();
    }
    // A file no run wrote, put in a partition by hand: not vacuum's to delete.
    let foreign = rfm.join(format!("as_of={AS_OF}/exported-by-hand.parquet"));
    std::fs::copy(rfm.join(&live), &foreign).unwrap();
    let published = project.snapshot();
    let pipeline = project.pipeline();
    let vacuum = |retain: &str, extra: &[&str]| {
        let mut args = vec!["vacuum", pipeline.to_str().unwrap(), "--retain", retain];
        args.extend(extra);
        crate::support::run(project.command(&args))
    };

    // Younger than the retention: kept (a run may still be writing them).
    let young = vacuum("1h", &[]);
    assert_eq!(young.code, 0, "{young:?}");
    assert!(young.stdout.contains("rfm: deleted 0 files"), "{young:?}");
    assert!(stray.exists() && staged.exists());

    let listed = vacuum("0s", &["--dry-run"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let files: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .collect();
    assert_eq!(files.len(), 2, "{listed:?}");
    assert!(
        stray.exists() && staged.exists(),
        "a dry run deletes nothing"
    );

    let vacuumed = vacuum("0s", &[]);
    assert_eq!(vacuumed.code, 0, "{vacuumed:?}");
    assert!(!stray.exists() && !staged.exists(), "{vacuumed:?}");
    assert!(foreign.exists(), "a file no run wrote stays: {vacuumed:?}");
    assert!(
        !rfm.join("_segflow/staging/0killed1").exists(),
        "the killed run's staging folder is gone, not left empty"
    );
    let mut expected = published;
    expected.retain(|path, _| !path.ends_with("part-0killed0-00000.zstd.parquet"));
    expected.retain(|path, _| !path.to_string_lossy().contains("0killed1"));
    let after = project.snapshot();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every published file stays"
    );
}
