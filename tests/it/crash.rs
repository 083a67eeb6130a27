//! A run killed with SIGKILL at any moment, including mid-publish, leaves the previous
//! publication complete and readable through its manifest; the next run succeeds.

use std::time::Instant;

use crate::common::{AS_OF, Project, read_parquet};

fn assert_publication_complete(project: &Project, context: &str) {
    for table in ["customer_features", "rfm"] {
        let manifest = project.manifest(table, AS_OF);
        let mut rows = 0;
        for file in &manifest.files {
            let path = project.out().join(table).join(&file.path);
            assert!(
                path.exists(),
                "{context}: {table}'s manifest lists {} which is gone",
                file.path
            );
            rows += read_parquet(&path)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
        }
        assert_eq!(
            rows as u64, manifest.rows,
            "{context}: {table} is incomplete"
        );
    }
}

#[test]
fn sigkill_during_a_run_loses_nothing() {
    let project = Project::new(40_000, 160_000);
    let baseline = project.run_nightly(AS_OF);
    assert_eq!(baseline.code, 0, "{baseline:?}");

    let pipeline = project.pipeline();
    let args = ["run", pipeline.to_str().unwrap(), "--as-of", AS_OF];
    let started = Instant::now();
    let timed = project.segflow(&args);
    assert_eq!(timed.code, 0, "{timed:?}");
    let duration = started.elapsed();

    let mut killed = 0;
    for percent in [15, 35, 55, 70, 80, 90, 95] {
        let mut child = project.command(&args).spawn().unwrap();
        std::thread::sleep(duration * percent / 100);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            killed += 1;
        }
        child.wait().unwrap();
        assert_publication_complete(&project, &format!("killed at {percent}% of a run"));
    }
    assert!(
        killed >= 3,
        "only {killed} runs were still going when killed; the test needs a slower run"
    );

    let after = project.run_nightly(AS_OF);
    assert_eq!(after.code, 0, "{after:?}");
    assert_publication_complete(&project, "the run after the kills");
    let partition = project.out().join(format!("rfm/as_of={AS_OF}"));
    let files = std::fs::read_dir(partition).unwrap().count();
    assert_eq!(
        files,
        project.manifest("rfm", AS_OF).files.len(),
        "leftovers of killed runs remain"
    );
}
