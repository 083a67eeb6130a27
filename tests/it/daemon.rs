//! The scheduler as real processes: two daemons on one state folder with a schedule due every
//! two seconds run every slot exactly once between them, and stop cleanly on SIGTERM.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Project, segflow};

/// Writes `scheduled/<name>.yaml`: a one-step pipeline counting the project's customers.
fn scheduled_pipeline(project: &Project, name: &str, schedule: &str) {
    scheduled_query(
        project,
        name,
        schedule,
        "SELECT COUNT(*) AS customers FROM customers",
    );
}

/// Writes `scheduled/<name>.yaml`: a pipeline whose one step is `sql` over the customers.
fn scheduled_query(project: &Project, name: &str, schedule: &str, sql: &str) {
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::write(project.path().join(format!("queries/{name}.sql")), sql).unwrap();
    std::fs::write(
        project.path().join(format!("scheduled/{name}.yaml")),
        format!(
            "name: {name}\n\
             schedule: {schedule}\n\
             sources:\n  customers: {{ url: {}/customers/ }}\n\
             steps:\n  - {{ name: counts, sql: ../queries/{name}.sql }}\n\
             outputs:\n  - {{ table: counts, url: out/{name}/ }}\n",
            project.data().display()
        ),
    )
    .unwrap();
}

fn start_daemon(project: &Project) -> Child {
    segflow()
        .current_dir(project.path())
        .env("SEGFLOW_LOG", "info")
        .args([
            "schedule",
            "--pipelines",
            "scheduled",
            "--state",
            "state",
            "--lease-seconds",
            "3",
            "--grace-seconds",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon starts")
}

fn terminate(child: &mut Child) -> i32 {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop within 20s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_daemons_run_every_slot_exactly_once() {
    let project = Project::new(50, 150);
    scheduled_pipeline(
        &project,
        "tick",
        "{ cron: '*/2 * * * * *', catchup: latest, attempts: 1 }",
    );
    // A broken pipeline beside it is reported and does not stop the other.
    std::fs::write(
        project.path().join("scheduled/broken.yaml"),
        "name: broken\nschedule: { cron: 'every night' }\n",
    )
    .unwrap();

    let mut first = start_daemon(&project);
    let mut second = start_daemon(&project);
    std::thread::sleep(Duration::from_secs(9));
    let codes = (terminate(&mut first), terminate(&mut second));
    let mut logs = String::new();
    for child in [&mut first, &mut second] {
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut logs)
            .unwrap();
    }
    assert_eq!(codes, (0, 0), "{logs}");
    assert!(
        logs.contains("Pipeline does not load") && logs.contains("broken.yaml"),
        "{logs}"
    );

    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(project.path().join("state/runs/tick")).unwrap() {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        assert_ne!(
            record["status"], "running",
            "no run left unfinished: {record}"
        );
        if record["status"] == "succeeded" {
            *succeeded
                .entry(record["slot"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(succeeded.len() >= 3, "slots run: {succeeded:?}\n{logs}");
    assert!(
        succeeded.values().all(|&n| n == 1),
        "a slot ran twice: {succeeded:?}"
    );
    let slots: Vec<chrono::DateTime<chrono::Utc>> =
        succeeded.keys().map(|s| s.parse().unwrap()).collect();
    for pair in slots.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            2,
            "a slot was missed: {slots:?}"
        );
    }
}

#[test]
fn once_runs_what_is_due_and_exits() {
    let project = Project::new(50, 150);
    scheduled_pipeline(
        &project,
        "nightly",
        "{ cron: '0 2 * * *', timezone: Europe/Oslo }",
    );
    let once = || {
        project.segflow(&[
            "schedule",
            "--once",
            "--pipelines",
            "scheduled",
            "--state",
            "state",
        ])
    };
    let first = once();
    assert_eq!(first.code, 0, "{first:?}");
    let records = || {
        std::fs::read_dir(project.path().join("state/runs/nightly"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(records(), 1, "the latest 02:00 slot ran: {first:?}");
    let second = once();
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(records(), 1, "nothing new was due");
    let missing = project.segflow(&["schedule", "--once", "--pipelines", "nowhere"]);
    assert_eq!(missing.code, 1, "{missing:?}");
}

#[test]
fn a_killed_daemons_slot_is_taken_over_after_its_lease_expires() {
    use std::io::{BufRead, BufReader};
    let project = Project::new(50_000, 100_000);
    // Seconds of work: 2.5 billion pairs of customers.
    scheduled_query(
        &project,
        "slow",
        "{ cron: '0 * * * *', attempts: 1 }",
        "SELECT COUNT(*) AS pairs FROM customers a CROSS JOIN customers b \
         WHERE (a.customer_id * b.customer_id) % 7 = 3",
    );
    let mut first = start_daemon(&project);
    let lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Lease taken.") {
            break;
        }
    }
    assert!(seen.contains("Lease taken."), "{seen}");
    std::thread::sleep(Duration::from_millis(800));
    first.kill().unwrap(); // SIGKILL, mid-run
    first.wait().unwrap();

    let mut second = start_daemon(&project);
    let runs = project.path().join("state/runs/slow");
    let succeeded = || {
        std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|text| text.contains("\"succeeded\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while succeeded() == 0 {
        assert!(
            Instant::now() < deadline,
            "the second daemon never ran the slot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(terminate(&mut second), 0);
    let records: Vec<serde_json::Value> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        2,
        "the killed run and the one that took over: {records:?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count(),
        1
    );
    assert_eq!(records[0]["slot"], records[1]["slot"], "the same slot");
    let manifests = project.path().join("out/slow/_segflow/manifests");
    assert_eq!(
        std::fs::read_dir(manifests).unwrap().count(),
        1,
        "published once, completely"
    );
}
