//! `segflow report`: the page opened in headless Chromium, its figures checked against the
//! published tables, the raw data and the run history (report.py); a pipeline with nothing
//! published, and a date without a publication.

use std::process::Command;

use crate::support::{AS_OF, Project, Size};

// Over the win-back cooldown (30 days) before AS_OF, so that its list is not empty.
const PREVIOUS: &str = "2026-02-28";

#[test]
fn report_shows_the_publication_in_a_browser() {
    let project = Project::new(Size::Small);
    // Money in the shop's currency, USD as shipped (named in customer_profile): the report
    // shows its symbol.
    for as_of in [PREVIOUS, AS_OF] {
        let run = project.run_nightly(as_of);
        assert_eq!(run.code, 0, "{run:?}");
    }
    // The shipped pipeline's `report:` wrote the page of the newest publication.
    let written = std::fs::read_to_string(project.path().join("report.html")).unwrap();
    assert!(
        written.contains(&format!("<b id=\"as-of\">{AS_OF}</b>")),
        "{written}"
    );
    let pipeline = project.pipeline();
    let page = project.path().join("asked.html");
    let report = project.segflow(&[
        "report",
        pipeline.to_str().unwrap(),
        "--out",
        page.to_str().unwrap(),
    ]);
    assert_eq!(report.code, 0, "{report:?}");
    assert!(
        report.stdout.contains(&format!("as of {AS_OF}")),
        "{report:?}"
    );
    let runs = project.segflow(&["runs", "--json"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    let runs_file = project.path().join("runs.jsonl");
    std::fs::write(&runs_file, &runs.stdout).unwrap();
    let shots = project.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let checked = crate::support::run(
        Command::new("python3")
            .arg(crate::support::oracle("report.py"))
            .args([&page, &project.out(), &project.data()])
            .args([AS_OF, PREVIOUS])
            .args([&runs_file, &shots]),
    );
    assert_eq!(checked.code, 0, "{checked:?}");
}

#[test]
fn a_report_says_when_nothing_is_published_and_names_a_missing_date() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let page = project.path().join("report.html");
    let page = page.to_str().unwrap();

    // A first night that failed: the page says nothing is published, and shows the run.
    project.edit("queries/segments/prospects.sql", |sql| {
        sql.replacen("SELECT", "SELECT no_such_column,", 1)
    });
    let failed = project.run_nightly(AS_OF);
    assert_eq!(failed.code, 1, "{failed:?}");
    let empty = project.segflow(&["report", pipeline, "--out", page]);
    assert_eq!(empty.code, 0, "{empty:?}");
    assert!(empty.stdout.contains("published nothing yet"), "{empty:?}");
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("<h2>Nothing published yet</h2>"), "{html}");
    assert!(!html.contains("class=\"heatmap\""));
    assert!(html.contains("data-status=\"failed\""), "{html}");
    assert!(
        html.contains("no_such_column"),
        "the failed run's error is shown"
    );

    let missing = project.segflow(&["report", pipeline, "--as-of", "2026-03-01", "--out", page]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains(
            "error: nightly_segments has nothing published for as_of 2026-03-01 (it has \
             published nothing yet)"
        ),
        "{missing:?}"
    );

    project.edit("queries/segments/prospects.sql", |sql| {
        sql.replacen("SELECT no_such_column,", "SELECT", 1)
    });
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let before = std::fs::read(page).unwrap();
    let missing = project.segflow(&["report", pipeline, "--as-of", "2026-03-01", "--out", page]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains(&format!(
            "nothing published for as_of 2026-03-01 (its latest publication is {AS_OF}"
        )),
        "{missing:?}"
    );
    assert_eq!(
        std::fs::read(page).unwrap(),
        before,
        "a failed report writes nothing"
    );
    let shown = project.segflow(&["report", pipeline, "--as-of", AS_OF, "--out", page]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let html = std::fs::read_to_string(page).unwrap();
    assert_eq!(html.matches("class=\"heatmap\"").count(), 2);
    assert_eq!(
        html.matches("<tr data-run=").count(),
        2,
        "the failed run and the good one"
    );

    // A report that cannot be written (its folder is a file) leaves the run a success.
    let blocked = project.path().join("blocked");
    std::fs::write(&blocked, "a file, not a folder").unwrap();
    let rerun = project.run_with_env(
        AS_OF,
        &[(
            "SEGFLOW_REPORT",
            blocked.join("report.html").to_str().unwrap(),
        )],
    );
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(
        rerun.stdout.contains("Published nightly_segments"),
        "{rerun:?}"
    );
    assert!(
        rerun
            .stderr
            .contains("Could not write the report; the run published all the same."),
        "{rerun:?}"
    );

    // Without an output a part reads, that part says why; the rest is drawn.
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        let line = spec
            .lines()
            .find(|l| l.contains("table: customer_predictions"))
            .unwrap()
            .to_string();
        spec.replacen(&format!("{line}\n"), "", 1)
    });
    let partial = project.segflow(&["report", pipeline, "--out", page]);
    assert_eq!(partial.code, 0, "{partial:?}");
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        html.contains("Not shown: the pipeline has no output named customer_predictions."),
        "{html}"
    );
    assert_eq!(html.matches("class=\"heatmap\"").count(), 2);
}
