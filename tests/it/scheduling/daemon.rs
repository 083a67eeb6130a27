//! The scheduler as real processes: two daemons on one state folder with a schedule due every
//! two seconds run every slot exactly once between them; a daemon killed mid-run is taken over;
//! SIGTERM lets a run finish within the grace period or cancels it cleanly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::daemon::{
    daemon_command, records, served_at, start_daemon, start_daemon_with, terminate,
};
use crate::support::s3::GatedShop;
use crate::support::{Project, Size, Spawned, gated_query, scheduled_pipeline, wait_for_log};

#[test]
fn two_daemons_run_every_slot_exactly_once() {
    let project = Project::new(Size::Tiny);
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

    let mut first = start_daemon(&project, 5);
    let mut second = start_daemon(&project, 5);
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
    let project = Project::new(Size::Tiny);
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
    // Broken files beside it are reported with file and line, and do not stop it; the exit
    // code tells cron that something needs fixing.
    // A second file of the same pipeline, and a pipeline writing its report where another
    // one does, are refused: the file loaded first keeps running.
    let nightly = std::fs::read_to_string(project.path().join("scheduled/nightly.yaml")).unwrap();
    let with_report = |name: &str| {
        let counts = project.path().join(format!("out/{name}/"));
        format!(
            "name: {name}\nsources:\n  customers: {{ url: {}/customers/ }}\n\
             steps:\n  - {{ name: counts, sql: ../queries/nightly.sql }}\n\
             outputs:\n  - {{ table: counts, url: {} }}\nreport: {{ url: shared.html }}\n",
            project.data().display(),
            counts.display()
        )
    };
    let broken = [
        (
            "bad_cron",
            "name: a\nschedule:\n  cron: 'every night'\n".to_string(),
            "bad_cron.yaml:3: 'every night' is not a cron expression",
        ),
        (
            "bad_zone",
            "name: b\nschedule:\n  cron: '0 2 * * *'\n  timezone: Europe/Olso\n".to_string(),
            "bad_zone.yaml:4: 'Europe/Olso' is not an IANA time zone",
        ),
        (
            "no_name",
            "schedule: { cron: '0 2 * * *' }\n".to_string(),
            "no_name.yaml:1: missing field `name`",
        ),
        (
            "twin",
            nightly,
            "twin.yaml: the pipeline name 'nightly' is taken by scheduled/nightly.yaml",
        ),
        (
            "report_two",
            with_report("report_two"),
            "report_two.yaml: report.url",
        ),
    ];
    std::fs::write(
        project.path().join("scheduled/report_one.yaml"),
        with_report("report_one"),
    )
    .unwrap();
    for (name, text, _) in &broken {
        std::fs::write(project.path().join(format!("scheduled/{name}.yaml")), text).unwrap();
    }
    let first = once();
    assert_eq!(first.code, 1, "{first:?}");
    for (_, _, message) in &broken {
        assert!(first.stderr.contains(message), "{message}\n{first:?}");
    }
    assert!(
        first.stderr.contains(
            "is where pipeline 'report_one' (scheduled/report_one.yaml) writes its report too"
        ),
        "{first:?}"
    );
    assert!(
        first.stderr.contains("5 pipeline files do not load"),
        "{first:?}"
    );
    for (name, _, _) in &broken {
        std::fs::remove_file(project.path().join(format!("scheduled/{name}.yaml"))).unwrap();
    }
    let records = || {
        std::fs::read_dir(project.path().join("state/runs/nightly"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(records(), 1, "the latest 02:00 slot ran: {first:?}");
    assert!(
        first.stdout.contains(
            "schedule --once: 1 scheduled runs published, 0 failed, 5 pipeline files do not load."
        ),
        "{first:?}"
    );
    let second = once();
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.contains("schedule --once: nothing was due."),
        "{second:?}"
    );
    assert_eq!(records(), 1, "nothing new was due");
    let missing = project.segflow(&["schedule", "--once", "--pipelines", "nowhere"]);
    assert_eq!(missing.code, 1, "{missing:?}");
}

#[test]
fn a_killed_daemons_slot_is_taken_over_after_its_lease_expires() {
    let project = Project::new(Size::Tiny);
    let shop = GatedShop::start_blocking();
    gated_query(
        &project,
        "slow",
        "{ cron: '0 * * * *', attempts: 1 }",
        &shop,
    );
    shop.close();
    let mut first = start_daemon(&project, 5);
    let log = first.follow_log();
    wait_for_log(&log, "Run started.");
    first.kill().unwrap(); // SIGKILL, mid-run: it waits at the gate
    first.exit_within(Duration::from_secs(60), "SIGKILL");
    shop.open();

    let mut second = start_daemon_with(&project, 5, &["--http", "127.0.0.1:0"]);
    let second_log = second.follow_log();
    let status_page = served_at(&second_log);
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
            "the second daemon did not run the slot within 90 s:\n{}",
            second_log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its metrics count the takeover and its own run, not the dead daemon's.
    let metrics = crate::support::daemon::get(&status_page, "/metrics").1;
    for sample in [
        "segflow_lease_takeovers_total{pipeline=\"slow\"} 1\n",
        "segflow_runs_total{pipeline=\"slow\",status=\"succeeded\"} 1\n",
    ] {
        assert!(metrics.contains(sample), "{sample}{metrics}");
    }
    assert!(!metrics.contains("abandoned"), "{metrics}");
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
    let statuses: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["abandoned", "succeeded"].into(),
        "the killed run is marked abandoned: {records:?}"
    );
    assert_eq!(records[0]["slot"], records[1]["slot"], "the same slot");
    let manifests = project.path().join("out/slow/_segflow/manifests");
    assert_eq!(
        std::fs::read_dir(manifests).unwrap().count(),
        1,
        "published once, completely"
    );
}

#[test]
fn sigterm_lets_a_run_finish_within_the_grace_period_or_cancels_it_cleanly() {
    let project = Project::new(Size::Tiny);
    // A daily slot two hours ago, so that the latest slot (and its logical date, the day
    // before it) stays the same for the whole test, even across midnight.
    let slot = chrono::Utc::now() - chrono::Duration::hours(2);
    let shop = GatedShop::start_blocking();
    let schedule = format!("{{ cron: '0 {} * * *', attempts: 1 }}", slot.format("%-H"));
    gated_query(&project, "slow", &schedule, &shop);
    shop.close();
    // Already published for the slot's logical date by a quicker pipeline.
    let as_of = (slot.date_naive() - chrono::Days::new(1)).to_string();
    std::fs::write(
        project.path().join("queries/seed.sql"),
        "SELECT COUNT(*) AS pairs FROM customers",
    )
    .unwrap();
    std::fs::write(
        project.path().join("seed.yaml"),
        format!(
            "name: seed\n\
             sources:\n  customers: {{ url: {}/customers/ }}\n\
             steps:\n  - {{ name: counts, sql: queries/seed.sql }}\n\
             outputs:\n  - {{ table: counts, url: {}/slow/ }}\n",
            project.data().display(),
            project.out().display()
        ),
    )
    .unwrap();
    let seeded = project.segflow(&["run", "seed.yaml", "--as-of", &as_of, "--state", "state"]);
    assert_eq!(seeded.code, 0, "{seeded:?}");
    let published = project.snapshot();
    let seed_run = project.manifest("slow", &as_of).run_id;

    // A one-second grace period: the run is cancelled, recorded so, and leaves no trace.
    let mut daemon = start_daemon(&project, 1);
    let log = daemon.follow_log();
    wait_for_log(&log, "Run started.");
    assert_eq!(terminate(&mut daemon), 0, "{}", log.lock().unwrap());
    // The log says what the record says: interrupted, not failed.
    {
        let log = log.lock().unwrap();
        assert!(log.contains("Run interrupted;"), "{log}");
        assert!(!log.contains("Run failed"), "{log}");
        let stopped = log
            .lines()
            .find(|l| l.contains("Scheduler stopped."))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            stopped.contains("published=0 failed=0 interrupted=1"),
            "{stopped}"
        );
    }
    let cancelled = records(&project, "slow");
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["status"], "interrupted", "{cancelled:?}");
    assert!(
        cancelled[0]["error"]
            .as_str()
            .unwrap()
            .contains("the shutdown grace period ended"),
        "{cancelled:?}"
    );
    assert_eq!(cancelled[0]["as_of"], as_of.as_str());
    assert!(
        project.snapshot() == published,
        "the earlier publication is untouched and nothing staged is left"
    );

    // A long grace period: the run finishes and publishes, then the daemon exits. (The
    // interrupted try did not use up the slot's one attempt.)
    let mut daemon = start_daemon(&project, 600);
    let log = daemon.follow_log();
    wait_for_log(&log, "Run started.");
    // Stopped while the run waits at the gate; the gate opens within the grace period.
    daemon.signal("-TERM");
    wait_for_log(&log, "Stop asked for");
    shop.open();
    assert_eq!(terminate(&mut daemon), 0, "{}", log.lock().unwrap());
    let log = log.lock().unwrap();
    assert!(log.contains("Stop asked for"), "{log}");
    let finished = records(&project, "slow");
    assert_eq!(
        finished
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count(),
        1,
        "{finished:?}"
    );
    let manifest = project.manifest("slow", &as_of);
    assert_ne!(manifest.run_id, seed_run, "the scheduled run replaced it");
    assert_eq!(manifest.rows, 1);
}

/// segflow starts itself again with glibc's malloc asking for huge pages (src/main.rs), as the
/// same process: the daemon's own environment says so once it logs, and an operator's
/// `GLIBC_TUNABLES` is kept as given.
#[test]
fn the_daemon_runs_with_huge_pages_for_malloc_unless_the_operator_set_glibc_tunables() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(&project, "nightly", "{ cron: '0 0 3 * * *' }");
    for (given, expected) in [
        (None, "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"),
        (
            Some("glibc.malloc.arena_max=2"),
            "GLIBC_TUNABLES=glibc.malloc.arena_max=2",
        ),
    ] {
        let mut command = daemon_command(&project, 1, &[]);
        match given {
            None => command.env_remove("GLIBC_TUNABLES"),
            Some(value) => command.env("GLIBC_TUNABLES", value),
        };
        let mut daemon = Spawned::start(&mut command, "the daemon");
        let log = daemon.follow_log();
        wait_for_log(&log, "Scheduler started.");
        let environment = std::fs::read(format!("/proc/{}/environ", daemon.id()))
            .expect("the daemon's environment is readable while it runs");
        let tunables: Vec<String> = environment
            .split(|byte| *byte == 0)
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .filter(|entry| entry.starts_with("GLIBC_TUNABLES="))
            .collect();
        assert_eq!(tunables, [expected], "given {given:?}");
        assert_eq!(terminate(&mut daemon), 0, "{}", log.lock().unwrap());
    }
}
