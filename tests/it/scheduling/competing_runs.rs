//! A date is one run's whole publication, with real processes: runs of one pipeline and date
//! started together publish one after the other (local folder and S3-protocol server); a run
//! waiting too long for the lease names its holder; a daemon stopped (SIGSTOP) past its lease
//! before it decided cannot publish over the daemon that took its slot over, and one stopped
//! between its commits has them completed by it; two runs stopped at their first commits and
//! resumed leave one run's whole publication.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::daemon::{records, records_in, start_daemon, terminate};
use crate::support::{
    AS_OF, COMMAND_DEADLINE, Project, Size, Spawned, assert_consistent, many_outputs, wait_for_log,
    walk_files,
};

fn statuses(records: &[serde_json::Value]) -> Vec<String> {
    let mut statuses: Vec<String> = records
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    statuses.sort();
    statuses
}

const PAIRS: usize = 20;

/// `segflow run PIPELINE` for the fixtures' date, with the state in the project's `state/`.
fn hand_run(pipeline: &Path) -> Vec<String> {
    let pipeline = pipeline.display().to_string();
    ["run", &pipeline, "--as-of", AS_OF, "--state", "state"]
        .map(String::from)
        .to_vec()
}

#[test]
fn runs_started_together_publish_one_after_the_other() {
    let project = Project::new(Size::Small);
    let pipeline = project.path().join("pipelines/race.yaml");
    let data = project.data().display().to_string();
    let out = project.out().display().to_string();
    many_outputs(&pipeline, "race", 3, &data, &out, "");
    let args = hand_run(&pipeline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for pair in 0..PAIRS {
        let children: Vec<Spawned> = (0..2)
            .map(|_| {
                let mut run = project.command(&args);
                run.stdout(Stdio::piped()).stderr(Stdio::piped());
                Spawned::start(&mut run, &format!("a run of pair {pair}"))
            })
            .collect();
        for child in children {
            let done = child.output_within(COMMAND_DEADLINE);
            assert_eq!(done.code, 0, "pair {pair}: {done:?}");
        }
        let run_ids = assert_consistent(&project.out(), AS_OF, &format!("pair {pair}"));
        assert!(
            run_ids.windows(2).all(|w| w[0] == w[1]),
            "pair {pair}: every output is from the same run: {run_ids:?}"
        );
    }
    let history = records(&project, "race");
    assert_eq!(history.len(), 2 * PAIRS);
    assert!(
        statuses(&history).iter().all(|s| s == "succeeded"),
        "{history:?}"
    );

    // A manifest that no longer parses does not block the run that repairs it.
    let manifest = project
        .out()
        .join(format!("t000/_segflow/manifests/as_of={AS_OF}.json"));
    std::fs::write(&manifest, "{ \"format\": 1, \"files\": [").unwrap();
    let repaired = project.segflow(&args);
    assert_eq!(repaired.code, 0, "{repaired:?}");
    assert_consistent(&project.out(), AS_OF, "after repairing a manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_together_publish_one_after_the_other_on_s3() {
    let (root, addr) = crate::support::s3::small_shop_on_s3().await;
    let pipeline = root.path().join("pipelines/race.yaml");
    many_outputs(&pipeline, "race", 3, "s3://lake/raw", "s3://lake/marts", "");
    let args = ["run", pipeline.to_str().unwrap(), "--as-of", AS_OF];
    for pair in 0..PAIRS {
        let (a, b) = tokio::join!(
            crate::support::s3::segflow_s3(addr, &args),
            crate::support::s3::segflow_s3(addr, &args)
        );
        assert_eq!(a.code, 0, "pair {pair}: {a:?}");
        assert_eq!(b.code, 0, "pair {pair}: {b:?}");
        let run_ids = assert_consistent(
            &root.path().join("lake/marts"),
            AS_OF,
            &format!("pair {pair}"),
        );
        assert!(
            run_ids.windows(2).all(|w| w[0] == w[1]),
            "pair {pair}: every output is from the same run: {run_ids:?}"
        );
    }
    let runs = crate::support::s3::segflow_s3(addr, &["runs", "race"]).await;
    assert_eq!(
        runs.stdout.matches(" succeeded ").count(),
        2 * PAIRS,
        "{runs:?}"
    );

    // A store that says it cannot write conditionally is refused before any work, unless the
    // user promises a single writer.
    std::fs::create_dir(root.path().join("unfenced")).unwrap();
    let unfenced = root.path().join("pipelines/unfenced.yaml");
    many_outputs(
        &unfenced,
        "unfenced",
        1,
        "s3://lake/raw",
        "s3://unfenced/marts",
        "",
    );
    let text = std::fs::read_to_string(&unfenced).unwrap().replace(
        "url: s3://unfenced/marts/t000/ }",
        "url: s3://unfenced/marts/t000/, options: { aws_conditional_put: disabled } }",
    );
    std::fs::write(&unfenced, text).unwrap();
    let args = ["run", unfenced.to_str().unwrap(), "--as-of", AS_OF];
    let refused = crate::support::s3::segflow_s3(addr, &args).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    for token in [
        "output 't000'",
        "s3://unfenced/marts/t000/",
        "--single-writer",
    ] {
        assert!(refused.stderr.contains(token), "{token}: {refused:?}");
    }
    assert!(
        !root
            .path()
            .join("unfenced/marts/t000/_segflow/manifests")
            .exists()
    );
    let mut single = args.to_vec();
    single.push("--single-writer");
    let allowed = crate::support::s3::segflow_s3(addr, &single).await;
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_consistent(&root.path().join("unfenced/marts"), AS_OF, "single writer");
}

#[test]
fn a_run_that_waits_too_long_for_the_lease_names_its_holder() {
    let project = Project::new(Size::Tiny);
    let shop = crate::support::s3::GatedShop::start_blocking();
    crate::support::gated_query(&project, "slow", "{ cron: '0 0 1 1 *' }", &shop);
    shop.close();
    let pipeline = project.path().join("scheduled/slow.yaml");
    let args = hand_run(&pipeline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = |what: &str, extra: &[&str]| {
        let mut run = project.command(&args);
        run.args(extra)
            .env("SEGFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Spawned::start(&mut run, what);
        let log = child.follow_log();
        wait_for_log(&log, "Run started.");
        (child, log)
    };
    let (mut holder, holder_log) = start("the lease's holder", &[]);
    let mut waiting = args.to_vec();
    waiting.extend(["--wait-for-lease", "1"]);
    let refused = project.segflow(&waiting);
    assert_eq!(refused.code, 2, "{refused:?}");
    let host = segflow::lease::hostname();
    for token in [
        "pipeline 'slow'".to_string(),
        format!("process {} on {host}", holder.id()),
        "--wait-for-lease".to_string(),
    ] {
        assert!(refused.stderr.contains(&token), "{token}: {refused:?}");
    }

    // Ctrl-C cancels the holder cleanly and gives the lease back at once: the next run
    // starts without waiting for it to expire.
    holder.signal("-INT");
    let limit = Duration::from_secs(60);
    assert_eq!(holder.exit_within(limit, "SIGINT"), 2);
    assert!(
        holder_log.lock().unwrap().contains("SIGINT"),
        "{}",
        holder_log.lock().unwrap()
    );
    let (mut next, _) = start("the next run", &["--wait-for-lease", "0"]);
    next.signal("-INT");
    assert_eq!(next.exit_within(limit, "SIGINT"), 2);
    assert_eq!(
        statuses(&records(&project, "slow")),
        ["interrupted", "interrupted"],
        "the refused run never started, so it has no record"
    );
    assert!(
        walk_files(&project.out().join("slow")).is_empty(),
        "cancelled runs leave nothing behind"
    );
}

/// Whether the process holds a file lock (`flock`), as the kernel lists them.
fn holds_a_lock(child: &std::process::Child) -> bool {
    let pid = child.id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|line| line.contains("FLOCK") && line.split_whitespace().nth(4) == Some(pid.as_str()))
}

const STALL_OUTPUTS: usize = 100;
const STALL_SCHEDULE: &str = "schedule: { cron: '0 * * * *', attempts: 1 }\n";

/// A project whose scheduled pipeline `stall` publishes STALL_OUTPUTS outputs every hour.
fn stall_project() -> Project {
    let project = Project::new(Size::Small);
    let data = project.data().display().to_string();
    let out = project.out().display().to_string();
    let pipeline = project.path().join("scheduled/stall.yaml");
    many_outputs(
        &pipeline,
        "stall",
        STALL_OUTPUTS,
        &data,
        &out,
        STALL_SCHEDULE,
    );
    project
}

#[test]
fn a_daemon_stopped_past_its_lease_before_deciding_cannot_publish_over_its_successor() {
    let project = stall_project();
    a_frozen_daemon_is_overtaken(
        || start_daemon(&project, 5),
        &project.path().join("state/runs/stall"),
        &project.out(),
        assert_consistent,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_past_its_lease_before_deciding_cannot_publish_over_its_successor_on_s3() {
    a_daemon_stopped_on_s3("marts", Format::Parquet).await;
}

/// The same with every output a Delta table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_past_its_lease_cannot_commit_over_its_successor_in_delta_on_s3() {
    a_daemon_stopped_on_s3("delta", Format::Delta).await;
}

/// Writes at `pipeline` a pipeline of `outputs` outputs (with `extra` YAML) over the S3 test
/// server's shop, published under `s3://lake/<folder_name>` in `format`; the check that
/// every output under that folder is one run's whole publication.
fn many_outputs_on_s3(
    pipeline: &Path,
    (outputs, extra): (usize, &str),
    folder_name: &str,
    format: Format,
) -> fn(&Path, &str, &str) -> Vec<String> {
    let name = pipeline.file_stem().unwrap().to_str().unwrap();
    let out = format!("s3://lake/{folder_name}");
    many_outputs(pipeline, name, outputs, "s3://lake/raw", &out, extra);
    match format {
        Format::Parquet => assert_consistent,
        Format::Delta => {
            crate::support::delta::outputs_as_delta(pipeline);
            crate::support::delta::delta_runs
        }
    }
}

enum Format {
    Parquet,
    Delta,
}

/// Two daemons of the `stall` pipeline on the S3 test server, publishing under
/// `s3://lake/<folder>` in `format` (see [`a_frozen_daemon_is_overtaken`]).
async fn a_daemon_stopped_on_s3(folder_name: &'static str, format: Format) {
    let (root, addr) = crate::support::s3::small_shop_on_s3().await;
    let folder = root.path().to_path_buf();
    let pipeline = folder.join("scheduled/stall.yaml");
    let outputs = (STALL_OUTPUTS, STALL_SCHEDULE);
    let consistent = many_outputs_on_s3(&pipeline, outputs, folder_name, format);
    // The scenario waits on processes; the server keeps this runtime's threads.
    tokio::task::spawn_blocking(move || {
        let start = || {
            let mut daemon = crate::support::s3::segflow_on_s3(addr);
            daemon
                .current_dir(&folder)
                .env("SEGFLOW_LOG", "info")
                .args([
                    "schedule",
                    "--pipelines",
                    "scheduled",
                    "--lease-seconds",
                    "3",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Spawned::start(&mut daemon, "a daemon")
        };
        let state = folder.join("lake/state/runs/stall");
        let out = folder.join("lake").join(folder_name);
        a_frozen_daemon_is_overtaken(start, &state, &out, consistent);
    })
    .await
    .unwrap();
}

/// A daemon frozen between two commits has decided its publication: the daemon that takes
/// its lease over completes the commits it left, while it is still frozen, and counts the
/// slot as done. The frozen daemon, resumed, finds its outputs committed and records its run
/// succeeded. The date is that run's whole publication all along after the takeover.
#[test]
fn a_daemon_frozen_between_its_commits_has_its_publication_completed_by_its_successor() {
    let project = stall_project();
    let mut first = start_daemon(&project, 5);
    let first_log = first.follow_log();
    wait_for_log(&first_log, "Output published.");
    stop_between_commits(&first);
    let mut second = start_daemon(&project, 5);
    let second_log = second.follow_log();
    wait_for_log(&second_log, "Slot already ran elsewhere.");
    let completed = second_log
        .lock()
        .unwrap()
        .matches("Completing the date's last decided publication")
        .count();
    assert!(completed > 0, "{}", second_log.lock().unwrap());
    let history = records(&project, "stall");
    assert_eq!(statuses(&history), ["succeeded"], "{history:?}");
    let run_id = history[0]["run_id"].as_str().unwrap().to_string();
    let as_of = history[0]["as_of"].as_str().unwrap().to_string();
    let while_frozen = assert_consistent(&project.out(), &as_of, "while the first is frozen");
    assert_eq!(while_frozen.len(), STALL_OUTPUTS);
    assert!(
        while_frozen.iter().all(|id| *id == run_id),
        "{while_frozen:?}"
    );

    first.signal("-CONT");
    wait_for_log(&first_log, "Run published.");
    assert_eq!(terminate(&mut first), 0);
    assert_eq!(terminate(&mut second), 0);
    let history = records(&project, "stall");
    assert_eq!(statuses(&history), ["succeeded"], "{history:?}");
    let after = assert_consistent(&project.out(), &as_of, "after the first resumed");
    assert_eq!(after, while_frozen);
}

/// Two daemons started by `start`: the first is frozen (SIGSTOP) once it has claimed its
/// date, before it decides its publication; the second takes the slot over once the lease
/// has expired and publishes it, then the first resumes and must publish nothing. `runs`
/// and `out` are the run records and the outputs on disk.
fn a_frozen_daemon_is_overtaken(
    start: impl Fn() -> Spawned,
    runs: &Path,
    out: &Path,
    consistent: fn(&Path, &str, &str) -> Vec<String>,
) {
    let mut first = start();
    let first_log = first.follow_log();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first_log.lock().unwrap().contains("Publications begun") {
        assert!(Instant::now() < deadline, "{}", first_log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(1));
    }
    stop_between_commits(&first);

    let mut second = start();
    let second_log = second.follow_log();
    wait_for_log(&second_log, "Run published.");
    first.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let history = loop {
        let history = records_in(runs);
        let settled: Vec<String> = statuses(&history);
        if settled.contains(&"interrupted".to_string()) {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed daemon never recorded its run: {settled:?}\n{}",
            first_log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(terminate(&mut first), 0);
    assert_eq!(terminate(&mut second), 0);

    assert!(
        !first_log.lock().unwrap().contains("Output published."),
        "the overtaken daemon published:\n{}",
        first_log.lock().unwrap()
    );
    assert_eq!(
        statuses(&history),
        ["interrupted", "succeeded"],
        "the slot is recorded succeeded once, the overtaken run interrupted: {history:?}"
    );
    let interrupted = history
        .iter()
        .find(|r| r["status"] == "interrupted")
        .unwrap();
    let error = interrupted["error"].as_str().unwrap();
    assert!(
        ["lease was lost", "took over"]
            .iter()
            .any(|reason| error.contains(reason)),
        "{error}"
    );
    let as_of = history[0]["as_of"].as_str().unwrap().to_string();
    let winner = history.iter().find(|r| r["status"] == "succeeded").unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run_ids = consistent(out, &as_of, "after the stalled daemon resumed");
    assert_eq!(run_ids.len(), STALL_OUTPUTS);
    assert!(
        run_ids.iter().all(|id| *id == winner),
        "every output is the successor's"
    );
}

/// How the two stalled runs of [`stalled_at_their_first_commits`] are resumed.
#[derive(Clone, Copy, Debug)]
enum Resume {
    /// The overtaken run first, to its end, then its successor: the overtaken run has every
    /// chance to commit over a date its successor is publishing.
    OvertakenFirst,
    /// Both at once.
    Together,
}

/// Stops `child` (SIGSTOP) between two commits: a process frozen inside a commit on a local
/// disk holds that folder's lock, which would hold up the other run's commit of the output.
/// Gives up after a minute of catching it inside one.
fn stop_between_commits(child: &Spawned) {
    let deadline = Instant::now() + Duration::from_secs(60);
    child.signal("-STOP");
    while holds_a_lock(child) {
        assert!(
            Instant::now() < deadline,
            "process {} was inside a commit each time it was stopped for 60 s",
            child.id()
        );
        child.signal("-CONT");
        std::thread::sleep(Duration::from_millis(1));
        child.signal("-STOP");
    }
}

/// Two hand runs of one date started by `start` together, under a 3 s lease. Each is
/// stopped (SIGSTOP) right after its first commit: the holder at once, the other once it has
/// taken the lease over (about 3 s later) and committed too. Both are then resumed. The date
/// must end as one run's whole publication, and that run must be recorded succeeded.
fn stalled_at_their_first_commits(
    start: impl Fn() -> Spawned,
    (runs, out): (&Path, &Path),
    consistent: fn(&Path, &str, &str) -> Vec<String>,
    resume: Resume,
) {
    let mut children = [start(), start()];
    let logs = children.each_mut().map(|child| child.follow_log());
    let published = |i: usize| logs[i].lock().unwrap().contains("Output published.");
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(i) = (0..2).find(|&i| published(i)) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "neither run published within 60s:\n{}\n{}",
            logs[0].lock().unwrap(),
            logs[1].lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    stop_between_commits(&children[first]);
    let second = 1 - first;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !published(second) {
        assert!(
            Instant::now() < deadline,
            "the second run did not take the lease over and publish within 60s:\n{}",
            logs[second].lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    stop_between_commits(&children[second]);

    let mut codes = [0; 2];
    match resume {
        Resume::OvertakenFirst => {
            for i in [first, second] {
                children[i].signal("-CONT");
                codes[i] = children[i].exit_within(Duration::from_secs(60), "SIGCONT");
            }
        }
        Resume::Together => {
            for child in &children {
                child.signal("-CONT");
            }
            for i in [first, second] {
                codes[i] = children[i].exit_within(Duration::from_secs(60), "SIGCONT");
            }
        }
    }

    let run_ids = consistent(out, AS_OF, &format!("{resume:?}"));
    assert!(
        run_ids.windows(2).all(|w| w[0] == w[1]),
        "{resume:?}: the date is torn between runs: {run_ids:?}\n{}\n{}",
        logs[first].lock().unwrap(),
        logs[second].lock().unwrap()
    );
    let history = records_in(runs);
    let publisher = history
        .iter()
        .find(|r| r["run_id"] == run_ids[0].as_str())
        .unwrap_or_else(|| panic!("no record of run {}: {history:?}", run_ids[0]));
    assert_eq!(
        publisher["status"], "succeeded",
        "{resume:?}: the run whose publication the date is: {history:?}"
    );
    for (i, code) in codes.iter().enumerate() {
        assert!(
            [0, 2].contains(code),
            "{resume:?}: exit {code}:\n{}",
            logs[i].lock().unwrap()
        );
    }
}

const STALLED_OUTPUTS: usize = 10;

#[test]
fn two_runs_stalled_at_their_first_commits_leave_one_runs_whole_publication() {
    let project = Project::new(Size::Small);
    let pipeline = project.path().join("pipelines/race.yaml");
    let data = project.data().display().to_string();
    let out = project.out().display().to_string();
    many_outputs(&pipeline, "race", STALLED_OUTPUTS, &data, &out, "");
    let pipeline = pipeline.display().to_string();
    let args = [
        "run",
        &pipeline,
        "--as-of",
        AS_OF,
        "--state",
        "state",
        "--lease-seconds",
        "3",
    ];
    let start = || {
        let mut run = project.command(&args);
        run.env("SEGFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Spawned::start(&mut run, "a run of the race")
    };
    for resume in [
        Resume::OvertakenFirst,
        Resume::Together,
        Resume::OvertakenFirst,
        Resume::Together,
    ] {
        let runs = project.path().join("state/runs/race");
        let at = (runs.as_path(), project.out());
        stalled_at_their_first_commits(start, (at.0, &at.1), assert_consistent, resume);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_stalled_at_their_first_commits_leave_one_runs_whole_publication_on_s3() {
    stalled_pairs_on_s3("marts", Format::Parquet).await;
}

/// The same with every output a Delta table: each commit carries the decision's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_stalled_at_their_first_commits_leave_one_runs_whole_delta_publication_on_s3() {
    stalled_pairs_on_s3("delta", Format::Delta).await;
}

/// [`stalled_at_their_first_commits`] on the S3 test server, outputs under
/// `s3://lake/<folder>` in `format`, resumed in either order.
async fn stalled_pairs_on_s3(folder_name: &'static str, format: Format) {
    let (root, addr) = crate::support::s3::small_shop_on_s3().await;
    let folder = root.path().to_path_buf();
    let pipeline = folder.join("pipelines/race.yaml");
    let consistent = many_outputs_on_s3(&pipeline, (STALLED_OUTPUTS, ""), folder_name, format);
    // The scenario waits on processes; the server keeps this runtime's threads.
    tokio::task::spawn_blocking(move || {
        let pipeline = pipeline.display().to_string();
        let start = || {
            let mut run = crate::support::s3::segflow_on_s3(addr);
            run.current_dir(&folder)
                .env("SEGFLOW_LOG", "info")
                .args(["run", &pipeline, "--as-of", AS_OF, "--lease-seconds", "3"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Spawned::start(&mut run, "a run of the race")
        };
        let runs = folder.join("lake/state/runs/race");
        let out = folder.join("lake").join(folder_name);
        for resume in [Resume::OvertakenFirst, Resume::Together] {
            stalled_at_their_first_commits(start, (&runs, &out), consistent, resume);
        }
    })
    .await
    .unwrap();
}
