//! `segflow schedule --http`: the status page, /healthz and /metrics of a real daemon
//! process. The page is read in headless Chromium and the metrics with prometheus_client's
//! parser (status.py), both against the run history; /healthz fails while the state store
//! (an S3 server on loopback) stops answering.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::daemon::{get, records, served_at, start_daemon_with, terminate};
use crate::support::s3::{GatedShop, KEY, SECRET};
use crate::support::{Project, Size, Spawned, segflow, wait_for_log};

/// A pipeline counting the shop's customers, due daily at `due` (UTC), with a report.
fn once_a_day(project: &Project, name: &str, due: chrono::NaiveTime, extra: &str) {
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::write(
        project.path().join(format!("queries/{name}.sql")),
        "SELECT COUNT(*) AS customers FROM customers",
    )
    .unwrap();
    let cron = due.format("%-S %-M %-H * * *");
    std::fs::write(
        project.path().join(format!("scheduled/{name}.yaml")),
        format!(
            "name: {name}\n\
             schedule: {{ cron: '{cron}', catchup: latest, attempts: 2, retry_delay: 1s }}\n\
             sources:\n  customers: {{ url: {data}/customers/ }}\n\
             steps:\n  - {{ name: counts, sql: ../queries/{name}.sql }}\n\
             outputs:\n  - {{ table: counts, url: {out}/{name}/ }}\n\
             report: {{ url: {out}/{name}.html }}\n{extra}",
            data = project.data().display(),
            out = project.out().display(),
        ),
    )
    .unwrap();
}

fn ended_runs(project: &Project, pipeline: &str) -> Vec<serde_json::Value> {
    records(project, pipeline)
        .into_iter()
        .filter(|r| r["status"] != "running")
        .collect()
}

#[test]
fn the_status_page_and_metrics_match_the_run_history() {
    let project = Project::new(Size::Tiny);
    // Due once a day, last two minutes ago: a daemon's first start runs that missed slot,
    // and then nothing is due until tomorrow.
    let due = (chrono::Utc::now() - chrono::Duration::minutes(2)).time();
    once_a_day(&project, "good", due, "");
    // Its check fails both tries: two failed runs, each with a check failure.
    once_a_day(
        &project,
        "bad",
        due,
        "checks:\n  - { name: enough, table: counts, row_count: { min: 2 } }\n",
    );
    // A file that does not load: the page names it, with the line and why.
    std::fs::write(
        project.path().join("scheduled/broken.yaml"),
        "name: broken\nschedule: { cron: '0 3 * * *' }\nsteps:\n  - { name: a, sql: a.sql, colour: blue }\n",
    )
    .unwrap();
    let mut daemon = start_daemon_with(
        &project,
        5,
        &["--http", "127.0.0.1:0", "--health-seconds", "1"],
    );
    let log = daemon.follow_log();
    let page = served_at(&log);

    let deadline = Instant::now() + Duration::from_secs(90);
    while ended_runs(&project, "good").is_empty() || ended_runs(&project, "bad").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the runs did not end:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // bad's task is done when it gives the slot up.
    wait_for_log(&log, "slot stays missed");

    let (status, body) = get(&page, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(&page, "/nowhere");
    assert_eq!(status, 404, "{body}");
    let (status, report) = get(&page, "/report/good");
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("data-status=\"succeeded\""), "{report}");
    let (status, body) = get(&page, "/report/bad");
    assert_eq!(
        status, 404,
        "bad never succeeded, so it has no report: {body}"
    );
    assert!(body.contains("a successful run writes it"), "{body}");

    let runs = project.segflow(&["runs", "--json", "--state", "state"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    let runs_file = project.path().join("runs.jsonl");
    std::fs::write(&runs_file, &runs.stdout).unwrap();
    let checked = crate::support::run(
        Command::new("python3")
            .arg(crate::support::oracle("status.py"))
            .arg(&page)
            .arg(&runs_file)
            .arg(due.format("%H:%M:%S").to_string()),
    );
    assert_eq!(checked.code, 0, "{checked:?}");
    assert_eq!(terminate(&mut daemon), 0);
}

#[test]
fn healthz_fails_while_the_state_store_does_not_answer() {
    let project = Project::new(Size::Tiny);
    let shop = GatedShop::start_blocking();
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    let mut command = segflow();
    command
        .current_dir(project.path())
        .env("SEGFLOW_LOG", "info")
        .env("AWS_ENDPOINT", format!("http://{}", shop.addr()))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .args([
            "schedule",
            "--pipelines",
            "scheduled",
            "--state",
            "s3://lake/gated-state/",
            "--http",
            "127.0.0.1:0",
            "--health-seconds",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut daemon = Spawned::start(&mut command, "the daemon on a state store in S3");
    let log = daemon.follow_log();
    let page = served_at(&log);
    let healthz = |expected: u16| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = get(&page, "/healthz");
            if status == expected {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz stays {status}: {body}\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    healthz(200);
    shop.close();
    let why = healthz(503);
    assert!(
        why.starts_with("unhealthy: the state store last answered"),
        "{why}"
    );
    let metrics = get(&page, "/metrics").1;
    assert!(metrics.contains("\nsegflow_healthy 0\n"), "{metrics}");
    shop.open();
    assert_eq!(healthz(200), "ok\n");
    assert_eq!(terminate(&mut daemon), 0);
}
