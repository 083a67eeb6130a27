//! A run killed with SIGKILL at any moment, including mid-publish, leaves the previous
//! publication complete and readable through its manifest; the next run succeeds and leaves
//! nothing of the killed runs behind.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{AS_OF, COMMAND_DEADLINE, Project, Size, Spawned, read_parquet, run};

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

/// Past the expiry of a killed run's one-second lease.
const LEASE_EXPIRY: Duration = Duration::from_millis(1200);

#[test]
fn sigkill_during_a_run_loses_nothing() {
    let project = Project::new(Size::Large);
    let baseline = project.run_nightly(AS_OF);
    assert_eq!(baseline.code, 0, "{baseline:?}");

    let pipeline = project.pipeline();
    // A killed run's lease expires after a second, instead of the default 30.
    let args = [
        "run",
        pipeline.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--lease-seconds",
        "1",
    ];
    let timed = run(project.command(&args).env("SEGFLOW_LOG", "info"));
    assert_eq!(timed.code, 0, "{timed:?}");
    let steps = timed.stderr.matches("Step ready.").count();
    let outputs = timed.stderr.matches("Output published.").count();
    assert!(steps > 10 && outputs > 4, "{timed:?}");

    // Killed at moments the run's own log marks: planning, staging (after the last step is
    // ready, outputs stream into staging), and between two commits.
    let moments = [
        ("Run started.", 1),
        ("Step ready.", steps / 2),
        ("Step ready.", steps),
        ("Output published.", 1),
        ("Output published.", outputs / 2),
    ];
    // The killed runs' temporary folders land here, where the test can see what is left.
    let temp = tempfile::tempdir().unwrap();
    let mut killed = 0;
    for (event, nth) in moments {
        let mut command = project.command(&args);
        command
            .env("TMPDIR", temp.path())
            .env("SEGFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Spawned::start(&mut command, "a run to kill");
        if child.kill_at(event, nth, COMMAND_DEADLINE) == nth {
            killed += 1;
        }
        std::thread::sleep(LEASE_EXPIRY);
        let moment = format!("killed after {event} #{nth}");
        assert_publication_complete(&project, &moment);
    }
    assert_eq!(
        killed,
        moments.len(),
        "every run was killed before it ended"
    );

    let after = project.run_with_env(AS_OF, &[("TMPDIR", temp.path().to_str().unwrap())]);
    assert_eq!(after.code, 0, "{after:?}");
    assert_publication_complete(&project, "the run after the kills");
    let history = project.segflow(&["runs"]);
    let decided = moments
        .iter()
        .filter(|(event, _)| *event == "Output published.")
        .count();
    assert_eq!(
        history.stdout.matches(" abandoned ").count(),
        killed - decided,
        "every run killed before it decided its publication is settled abandoned: {history:?}"
    );
    assert_eq!(
        history.stdout.matches(" succeeded ").count(),
        decided + 3,
        "the runs killed between their commits are settled succeeded (their publications \
         completed), beside the first, the timed run and the one after the kills: {history:?}"
    );
    // The next run settles the killed runs, completes the publication of those killed
    // between their commits, and removes their staging folders and any files they moved but
    // never listed.
    crate::support::assert_consistent(&project.out(), AS_OF, "the run after the kills");
    // ... and the intermediate results each killed run left in its scratch folder.
    let left: Vec<String> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("segflow-run-"))
        .collect();
    assert!(
        left.is_empty(),
        "the killed runs' scratch folders are removed when they are settled: {left:?}"
    );
}
