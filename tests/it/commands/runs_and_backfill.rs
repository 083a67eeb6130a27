//! Run history: `segflow run` and `segflow backfill` record every run in the state store,
//! `segflow runs` lists them, and backfill skips dates that already succeeded.

use crate::support::{AS_OF, Project, Size};

#[test]
fn backfill_skips_what_succeeded_and_history_shows_failures() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");

    let backfill = project.segflow(&[
        "backfill",
        pipeline,
        "--from",
        "2026-03-30",
        "--to",
        "2026-04-01",
    ]);
    assert_eq!(backfill.code, 0, "{backfill:?}");
    let lines: Vec<&str> = backfill.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{backfill:?}");
    assert!(
        lines[0].starts_with("2026-03-30: published 11 outputs"),
        "{backfill:?}"
    );
    assert!(
        lines[1].starts_with("2026-03-31: already succeeded, skipped"),
        "{backfill:?}"
    );
    assert!(
        lines[2].starts_with("2026-04-01: published"),
        "{backfill:?}"
    );
    assert!(
        project
            .path()
            .join("out/rfm/_segflow/manifests/as_of=2026-03-30.json")
            .exists()
    );

    // A run that fails is recorded with its error, and stops the backfill.
    std::fs::remove_dir_all(project.data().join("orders")).unwrap();
    let failed = project.segflow(&[
        "backfill",
        pipeline,
        "--from",
        "2026-03-31",
        "--to",
        "2026-04-02",
        "--force",
    ]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains("source 'orders': no Parquet files"),
        "{failed:?}"
    );
    assert!(
        !failed.stdout.contains("2026-04-02"),
        "stopped at the first failure: {failed:?}"
    );

    let runs = project.segflow(&["runs", "nightly_segments"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    let rows: Vec<&str> = runs.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{runs:?}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(" succeeded ")).count(),
        3,
        "{runs:?}"
    );
    let failed_row = rows
        .iter()
        .find(|r| r.contains(" failed "))
        .expect("a failed run");
    assert!(
        failed_row.contains("2026-03-31") && failed_row.contains("no Parquet files"),
        "{runs:?}"
    );
    // The whole records, for tools: rows per output, and no slot for runs started by hand.
    let json = project.segflow(&["runs", "nightly_segments", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let records: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 4, "{json:?}");
    for record in &records {
        assert!(record["slot"].is_null(), "{record}");
        // The duration the table shows, from the record's own times.
        let started: chrono::DateTime<chrono::Utc> =
            record["started_at"].as_str().unwrap().parse().unwrap();
        let ended: chrono::DateTime<chrono::Utc> =
            record["ended_at"].as_str().unwrap().parse().unwrap();
        let seconds = record["seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("{record}"));
        assert!(
            (seconds - (ended - started).as_seconds_f64()).abs() < 1e-6,
            "{record}"
        );
        if record["status"] == "succeeded" {
            let rfm = record["rows"]["rfm"].as_u64().unwrap();
            assert!(rfm > 0, "{record}");
        }
    }
    assert!(rows.iter().all(|r| r.contains(" by hand ")), "{runs:?}");

    // A pipeline without runs, or a state location without history, is named, not an
    // empty table.
    let other = project.segflow(&["runs", "nightly_segment"]);
    assert_eq!(other.code, 1, "{other:?}");
    for token in [
        "no runs of pipeline 'nightly_segment'",
        "did you mean 'nightly_segments'",
        "pipelines with runs there: nightly_segments",
    ] {
        assert!(other.stderr.contains(token), "{token}: {other:?}");
    }
    let elsewhere = project.segflow(&["runs", "--state", "elsewhere"]);
    assert_eq!(elsewhere.code, 1, "{elsewhere:?}");
    assert!(
        elsewhere
            .stderr
            .contains("no runs are recorded in elsewhere"),
        "{elsewhere:?}"
    );
    // The table has one line per run, the first line of a multi-line error.
    assert_eq!(
        runs.stdout.lines().count(),
        5,
        "a header and four runs: {runs:?}"
    );

    // Dates after the last complete day are refused unless asked for.
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1)).to_string();
    let future = project.segflow(&[
        "backfill",
        pipeline,
        "--from",
        "2026-04-01",
        "--to",
        &tomorrow,
    ]);
    assert_eq!(future.code, 1, "{future:?}");
    assert!(
        future.stderr.contains("the last complete day in UTC"),
        "{future:?}"
    );
    assert!(future.stderr.contains("--allow-future"), "{future:?}");

    let reversed = project.segflow(&[
        "backfill",
        pipeline,
        "--from",
        "2026-04-02",
        "--to",
        "2026-04-01",
    ]);
    assert_eq!(reversed.code, 1, "{reversed:?}");
}

/// segment_changes of `as_of`: how many rows say `entered`.
fn entered(project: &Project, as_of: &str) -> usize {
    crate::support::column_values(&project.out(), "segment_changes", as_of, "change")
        .iter()
        .filter(|change| *change == "entered")
        .count()
}

#[test]
fn a_backfill_under_published_dates_says_so_and_through_latest_runs_them_again() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    // Nothing was published before: everyone in a segment entered it.
    let members =
        crate::support::column_values(&project.out(), "segment_membership", AS_OF, "segment").len();
    assert_eq!(entered(&project, AS_OF), members);
    let first_run = project.manifest("segment_changes", AS_OF).run_id;

    let backfill = [
        "backfill",
        pipeline,
        "--from",
        "2026-03-29",
        "--to",
        "2026-03-30",
    ];
    let warned = project.segflow(&backfill);
    assert_eq!(warned.code, 0, "{warned:?}");
    assert!(
        warned.stderr.contains(
            "warning: 1 later dates (2026-03-31 to 2026-03-31) were computed from the publications before this backfill"
        ),
        "{warned:?}"
    );
    assert!(warned.stderr.contains("--through-latest"), "{warned:?}");
    assert_eq!(project.manifest("segment_changes", AS_OF).run_id, first_run);

    let mut through = backfill.to_vec();
    through.extend(["--force", "--through-latest"]);
    let rerun = project.segflow(&through);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(!rerun.stderr.contains("warning"), "{rerun:?}");
    let last = rerun.stdout.lines().last().unwrap();
    assert!(
        last.starts_with("2026-03-31: re-published after the backfill"),
        "{rerun:?}"
    );
    assert_ne!(project.manifest("segment_changes", AS_OF).run_id, first_run);
    // Now compared with 2026-03-30's publication, most members stayed where they were.
    assert!(
        entered(&project, AS_OF) < members / 2,
        "{}",
        entered(&project, AS_OF)
    );
}
