//! The daemon's decisions against a clock the test moves: which missed slots each catch-up
//! policy runs, when retries happen, and a time limit that cancels a run, all checked at exact
//! instants. The daemon runs in this process (the library's `daemon::run`) over real
//! pipelines, real Parquet and a real state folder; only time belongs to the test.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use segflow::clock::{Clock, ManualClock};
use segflow::daemon::{self, DaemonConfig, Tally};
use segflow::history::{RunHistory, RunRecord, RunStatus};
use segflow::lease::Leases;
use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::progress::Progress;
use segflow::runner::{Order, Runner};
use segflow::storage::{Location, Storage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::s3::GatedShop;
use crate::support::{Project, Size, gated_query, scheduled_pipeline};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn state(project: &Project) -> Location {
    Location::parse(&format!("{}/state/", project.path().display())).unwrap()
}

fn config(project: &Project, clock: &ManualClock, once: bool) -> DaemonConfig {
    DaemonConfig {
        pipelines: project.path().join("scheduled"),
        state: state(project),
        once,
        grace: seconds(10),
        lease_ttl: seconds(30),
        tick: seconds(1),
        clock: Clock::Manual(clock.clone()),
        single_writer: false,
        roots: Vec::new(),
    }
}

fn history(project: &Project) -> RunHistory {
    RunHistory::new(Storage::new(), state(project))
}

/// A daemon running in the background until `stop`.
struct Daemon {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Tally>,
}

impl Daemon {
    fn start(config: DaemonConfig) -> Daemon {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(daemon::run(config, async {
            let _ = stopped.await;
        }));
        Daemon { stop, task }
    }

    /// Asks the daemon to stop; its tally. Gives up after its grace period and a margin.
    async fn stop(self) -> Tally {
        self.stop.send(()).unwrap();
        tokio::time::timeout(seconds(60), self.task)
            .await
            .expect("the daemon did not stop within 60 s of being asked to")
            .unwrap()
    }
}

/// `schedule --once` in this process: runs what is due at the clock's time and returns its
/// tally; gives up after two minutes.
async fn once(config: DaemonConfig) -> Tally {
    let run = daemon::run(config, std::future::pending());
    tokio::time::timeout(seconds(120), run)
        .await
        .expect("the daemon's --once pass did not end within 120 s")
}

/// Polls `check` until it gives a value; the daemon works in real time between clock moves.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + seconds(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pipeline's records written by the daemon (not the seeded ones), oldest first.
async fn scheduled_runs(history: &RunHistory, pipeline: &str) -> Vec<RunRecord> {
    let mut records: Vec<RunRecord> = history
        .list(Some(pipeline))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.run_id != "seeded")
        .collect();
    records.sort_by_key(|r| (r.slot, r.attempt));
    records
}

/// Waits until the pipeline has a run going and the daemon waits for `instant` (a renewal or
/// a time limit).
async fn until_running_and_waiting_for(
    history: &RunHistory,
    clock: &ManualClock,
    pipeline: &str,
    instant: DateTime<Utc>,
) {
    until("a run to be going", || async {
        let running = scheduled_runs(history, pipeline)
            .await
            .iter()
            .any(|r| r.status == RunStatus::Running);
        (running && clock.wakeups().contains(&instant)).then_some(())
    })
    .await;
}

/// Waits for the pipeline's first run that has ended, however.
async fn until_ended(history: &RunHistory, pipeline: &str) -> RunRecord {
    until("a run to end", || async {
        scheduled_runs(history, pipeline)
            .await
            .into_iter()
            .find(|r| r.status != RunStatus::Running)
    })
    .await
}

/// Another daemon's leases, on the same state and clock.
fn leases_of(project: &Project, clock: &ManualClock, holder: &str) -> Leases {
    Leases::new(
        Storage::new(),
        &state(project),
        holder.to_string(),
        seconds(30),
        Clock::Manual(clock.clone()),
    )
}

/// A successful run of `slot` recorded before the test, as if an earlier daemon had run it.
async fn seed_success(history: &RunHistory, pipeline: &str, slot: DateTime<Utc>) {
    let as_of = slot.date_naive().pred_opt().unwrap();
    let record = RunRecord {
        slot: Some(slot),
        ended_at: Some(slot),
        status: RunStatus::Succeeded,
        ..RunRecord::started(pipeline, as_of, "seeded", slot)
    };
    history.save(&record).await.unwrap();
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_catchup_policy_runs_its_own_missed_slots() {
    let project = Project::new(Size::Tiny);
    let policies = [
        ("skips", "none"),
        ("newest", "latest"),
        ("every", "all, max_catchup: 3"),
    ];
    let history = history(&project);
    for (name, catchup) in policies {
        scheduled_pipeline(
            &project,
            name,
            &format!("{{ cron: '0 2 * * *', catchup: {catchup} }}"),
        );
        seed_success(&history, name, at("2030-03-01T02:00:00Z")).await;
    }

    // Down from the 1st until an hour after the 6 March slot: five slots were missed.
    let clock = ManualClock::starting_at(at("2030-03-06T03:00:00Z"));
    let tally = once(config(&project, &clock, true)).await;
    assert_eq!(tally.failed, 0);
    assert_eq!(tally.published, 4);
    let slots = |records: Vec<RunRecord>| -> Vec<(DateTime<Utc>, NaiveDate, RunStatus)> {
        records
            .into_iter()
            .map(|r| (r.slot.unwrap(), r.as_of, r.status))
            .collect()
    };
    let succeeded = |slot: &str, as_of: &str| (at(slot), day(as_of), RunStatus::Succeeded);
    assert_eq!(slots(scheduled_runs(&history, "skips").await), []);
    assert_eq!(
        slots(scheduled_runs(&history, "newest").await),
        [succeeded("2030-03-06T02:00:00Z", "2030-03-05")]
    );
    assert_eq!(
        slots(scheduled_runs(&history, "every").await),
        [
            succeeded("2030-03-04T02:00:00Z", "2030-03-03"),
            succeeded("2030-03-05T02:00:00Z", "2030-03-04"),
            succeeded("2030-03-06T02:00:00Z", "2030-03-05"),
        ]
    );
    // Oldest first: each catch-up run committed its publication after the one before.
    let committed: Vec<DateTime<Utc>> = ["2030-03-03", "2030-03-04", "2030-03-05"]
        .iter()
        .map(|as_of| project.manifest("every", as_of).committed_at)
        .collect();
    assert!(committed.is_sorted(), "{committed:?}");

    // At the next slot every policy runs it, `none` included, since it is due now.
    clock.advance(Duration::from_secs(23 * 3600 + 10));
    let tally = once(config(&project, &clock, true)).await;
    assert_eq!(tally.published, 3);
    for (name, _) in policies {
        let runs = slots(scheduled_runs(&history, name).await);
        assert_eq!(
            runs.last(),
            Some(&succeeded("2030-03-07T02:00:00Z", "2030-03-06")),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_retry_with_backoff_and_again_at_the_next_catchup() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(
        &project,
        "flaky",
        "{ cron: '0 2 * * *', catchup: all, attempts: 3, retry_delay: 60s }",
    );
    let history = history(&project);
    seed_success(&history, "flaky", at("2030-03-05T02:00:00Z")).await;
    // The upstream export has not landed yet.
    let customers = project.data().join("customers");
    let late = project.data().join("customers.late");
    std::fs::rename(&customers, &late).unwrap();

    let start = at("2030-03-06T02:00:00Z");
    let clock = ManualClock::starting_at(start);
    let daemon = Daemon::start(config(&project, &clock, false));
    let failed_attempts = |n: usize| {
        let history = &history;
        move || async move {
            let runs = scheduled_runs(history, "flaky").await;
            let failed: Vec<RunRecord> = runs
                .into_iter()
                .filter(|r| r.status == RunStatus::Failed)
                .collect();
            (failed.len() == n).then_some(failed)
        }
    };
    let waiting_for = |wakeups: [DateTime<Utc>; 2]| {
        let clock = &clock;
        move || async move { (clock.wakeups() == wakeups).then_some(()) }
    };

    let first = until("attempt 1", failed_attempts(1)).await;
    assert_eq!((first[0].attempt, first[0].started_at), (1, start));
    assert!(
        first[0].error.as_deref().unwrap().contains("customers/"),
        "{first:?}"
    );
    // Idle, the daemon waits for its next tick and for the retry, a minute after the failure.
    let retry = start + chrono::Duration::seconds(60);
    let tick = start + chrono::Duration::seconds(1);
    until("the first retry to be planned", waiting_for([tick, retry])).await;
    let free = leases_of(&project, &clock, "other")
        .acquire("flaky")
        .await
        .unwrap();
    free.expect("no lease is held while waiting to retry")
        .release()
        .await
        .unwrap();
    clock.advance(seconds(60));
    let second = until("attempt 2", failed_attempts(2)).await;
    assert_eq!((second[1].attempt, second[1].started_at), (2, retry));

    // The delay doubles.
    let tick = retry + chrono::Duration::seconds(1);
    let retry = retry + chrono::Duration::seconds(120);
    until("the second retry to be planned", waiting_for([tick, retry])).await;
    clock.advance(seconds(120));
    let third = until("attempt 3", failed_attempts(3)).await;
    assert_eq!((third[2].attempt, third[2].started_at), (3, retry));
    // Out of attempts: only the daemon's own tick is left to wake.
    let tick = clock.now() + chrono::Duration::seconds(1);
    until("the retries to end", || async {
        (clock.wakeups() == [tick]).then_some(())
    })
    .await;

    // The export lands; the next slot's catch-up runs the failed slot, then its own.
    std::fs::rename(&late, &customers).unwrap();
    let next = at("2030-03-07T02:00:00Z");
    clock.advance((next - clock.now()).to_std().unwrap());
    let succeeded = until("the catch-up", || async {
        let runs: Vec<RunRecord> = scheduled_runs(&history, "flaky")
            .await
            .into_iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .collect();
        (runs.len() == 2).then_some(runs)
    })
    .await;
    let slots: Vec<_> = succeeded
        .iter()
        .map(|r| (r.slot.unwrap(), r.started_at))
        .collect();
    assert_eq!(slots, [(start, next), (next, next)]);
    assert_eq!(
        daemon.stop().await,
        Tally {
            published: 2,
            failed: 1,
            interrupted: 0,
            unloadable: 0
        }
    );
}

/// A daemon on a manual clock at 02:00 UTC whose one pipeline, `slow`, runs on `schedule` a
/// query that waits at a closed gate: a run under way for as long as the test needs.
struct GatedNight {
    project: Project,
    /// The S3 server whose gate holds the run; it serves as long as this lives.
    _shop: GatedShop,
    history: RunHistory,
    start: DateTime<Utc>,
    clock: ManualClock,
    daemon: Daemon,
}

impl GatedNight {
    async fn start(schedule: &str) -> GatedNight {
        let project = Project::new(Size::Tiny);
        let shop = GatedShop::start().await;
        gated_query(&project, "slow", schedule, &shop);
        shop.close();
        let history = history(&project);
        let start = at("2030-03-06T02:00:00Z");
        let clock = ManualClock::starting_at(start);
        let daemon = Daemon::start(config(&project, &clock, false));
        GatedNight {
            project,
            _shop: shop,
            history,
            start,
            clock,
            daemon,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_time_limit_is_cancelled_and_publishes_nothing() {
    let GatedNight {
        project,
        _shop,
        history,
        start,
        clock,
        daemon,
    } = GatedNight::start("{ cron: '0 2 * * *', attempts: 1, timeout: 30s }").await;

    let limit = start + chrono::Duration::seconds(30);
    until_running_and_waiting_for(&history, &clock, "slow", limit).await;
    // Ten seconds at a time, the way the lease is renewed (every third of its 30 s); one
    // leap over the whole lease would look like a stalled daemon that lost it.
    for renewal in [10, 20, 30] {
        clock.advance(seconds(10));
        if renewal < 30 {
            let next = start + chrono::Duration::seconds(renewal + 10);
            until("the lease renewal", || async {
                clock.wakeups().contains(&next).then_some(())
            })
            .await;
        }
    }
    let run = until_ended(&history, "slow").await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.ended_at, Some(limit));
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("timed out after 30s"),
        "{run:?}"
    );
    assert!(
        !project.out().join("slow/_segflow/manifests").exists(),
        "nothing was published"
    );
    assert_eq!(daemon.stop().await.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lease_stops_and_leaves_the_slot_to_the_new_holder() {
    let GatedNight {
        project,
        _shop,
        history,
        start,
        clock,
        daemon,
    } = GatedNight::start("{ cron: '0 2 * * *', attempts: 3, retry_delay: 60s }").await;
    let first_renewal = start + chrono::Duration::seconds(10);
    until_running_and_waiting_for(&history, &clock, "slow", first_renewal).await;

    // The daemon stalls past its lease (30 s) before renewing it; another takes it over.
    clock.advance(seconds(31));
    let mut taken = leases_of(&project, &clock, "thief")
        .acquire("slow")
        .await
        .unwrap()
        .expect("the stalled lease expired");
    let run = until_ended(&history, "slow").await;
    assert_eq!(run.status, RunStatus::Interrupted, "{run:?}");
    assert!(
        run.error.as_deref().unwrap().contains("the lease was lost"),
        "{run:?}"
    );
    // No retry: the slot belongs to the new holder now. Only the tick is left to wake.
    let tick = clock.now() + chrono::Duration::seconds(1);
    until("the slot to be given up", || async {
        (clock.wakeups() == [tick]).then_some(())
    })
    .await;
    assert_eq!(scheduled_runs(&history, "slow").await.len(), 1);
    assert!(
        taken.renew().await.unwrap(),
        "the daemon wrote nothing over the new holder's lease"
    );
    assert!(!project.out().join("slow/_segflow/manifests").exists());
    let tally = daemon.stop().await;
    assert_eq!((tally.failed, tally.interrupted), (0, 1), "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_fixed_by_adding_its_sql_file_loads_without_a_restart() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(&project, "late_sql", "{ cron: '0 2 * * *' }");
    let sql = project.path().join("queries/late_sql.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    std::fs::remove_file(&sql).unwrap();
    let history = history(&project);
    let clock = ManualClock::starting_at(at("2030-03-06T02:00:00Z"));
    let daemon = Daemon::start(config(&project, &clock, false));
    // The daemon looks at its folder every tick; give it a few with the file missing. Each
    // time, wait for it to be asleep again, so that it never reads a half-written file.
    let asleep = || async {
        let tick = clock.now() + chrono::Duration::seconds(1);
        until("the daemon to sleep until its next tick", || async {
            (clock.wakeups() == [tick]).then_some(())
        })
        .await;
    };
    for _ in 0..3 {
        asleep().await;
        clock.advance(seconds(1));
    }
    asleep().await;
    assert!(scheduled_runs(&history, "late_sql").await.is_empty());

    std::fs::write(&sql, text).unwrap();
    clock.advance(seconds(1));
    let run = until("the fixed pipeline to run", || async {
        scheduled_runs(&history, "late_sql")
            .await
            .into_iter()
            .find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert_eq!(run.slot, Some(at("2030-03-06T02:00:00Z")));
    let tally = daemon.stop().await;
    assert_eq!((tally.published, tally.unloadable), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_the_count_and_backoff_of_another_daemons_tries() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(
        &project,
        "shared",
        "{ cron: '0 2 * * *', attempts: 3, retry_delay: 60s }",
    );
    std::fs::remove_dir_all(project.data().join("customers")).unwrap();
    let history = history(&project);
    // Another daemon's first try of the 02:00 slot failed at 02:00:00.
    let start = at("2030-03-06T02:00:00Z");
    history
        .save(&RunRecord {
            slot: Some(start),
            ended_at: Some(start),
            status: RunStatus::Failed,
            error: Some("no Parquet files".to_string()),
            ..RunRecord::started("shared", day("2030-03-05"), "elsewhere", start)
        })
        .await
        .unwrap();

    let now = start + chrono::Duration::seconds(5);
    let clock = ManualClock::starting_at(now);
    let daemon = Daemon::start(config(&project, &clock, false));
    let tick = now + chrono::Duration::seconds(1);
    let retry = start + chrono::Duration::seconds(60);
    until("the daemon to wait out the other's backoff", || async {
        (clock.wakeups() == [tick, retry]).then_some(())
    })
    .await;
    clock.advance((retry - now).to_std().unwrap());
    let tries = |n: usize| {
        let history = &history;
        move || async move {
            let runs: Vec<(u32, DateTime<Utc>)> = scheduled_runs(history, "shared")
                .await
                .into_iter()
                .filter(|r| r.status == RunStatus::Failed && r.run_id != "elsewhere")
                .map(|r| (r.attempt, r.started_at))
                .collect();
            (runs.len() == n).then_some(runs)
        }
    };
    until("attempt 2", tries(1)).await;
    let third = retry + chrono::Duration::seconds(120);
    until("the second backoff", || async {
        clock.wakeups().contains(&third).then_some(())
    })
    .await;
    clock.advance(seconds(120));
    assert_eq!(until("attempt 3", tries(2)).await, [(2, retry), (3, third)]);
    let tick = third + chrono::Duration::seconds(1);
    until("the slot to be given up", || async {
        (clock.wakeups() == [tick]).then_some(())
    })
    .await;
    assert_eq!(daemon.stop().await.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_their_count_when_the_next_slot_comes_due_meanwhile() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(
        &project,
        "often",
        "{ cron: '*/5 * * * *', attempts: 3, retry_delay: 2m }",
    );
    std::fs::remove_dir_all(project.data().join("customers")).unwrap();
    let history = history(&project);
    let start = at("2030-03-06T02:00:00Z");
    let clock = ManualClock::starting_at(start);
    let daemon = Daemon::start(config(&project, &clock, false));
    let minutes = |n: i64| start + chrono::Duration::minutes(n);
    let tries_of_the_first_slot = |n: usize| {
        let history = &history;
        move || async move {
            let tries: Vec<(u32, DateTime<Utc>)> = scheduled_runs(history, "often")
                .await
                .into_iter()
                .filter(|r| r.slot == Some(start) && r.status == RunStatus::Failed)
                .map(|r| (r.attempt, r.started_at))
                .collect();
            (tries.len() == n).then_some(tries)
        }
    };
    until("attempt 1", tries_of_the_first_slot(1)).await;
    until("the first backoff", || async {
        clock.wakeups().contains(&minutes(2)).then_some(())
    })
    .await;
    clock.advance(seconds(120));
    until("attempt 2", tries_of_the_first_slot(2)).await;
    until("the second backoff", || async {
        clock.wakeups().contains(&minutes(6)).then_some(())
    })
    .await;
    // The 02:05 slot comes due during this wait; the 02:00 slot's count goes on regardless.
    clock.advance(seconds(240));
    assert_eq!(
        until("attempt 3", tries_of_the_first_slot(3)).await,
        [(1, start), (2, minutes(2)), (3, minutes(6))]
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_published_before_its_daemon_died_is_settled_as_succeeded() {
    let project = Project::new(Size::Tiny);
    scheduled_pipeline(&project, "settled", "{ cron: '0 2 * * *' }");
    let history = history(&project);
    let slot = at("2030-03-06T02:00:00Z");
    // A daemon published the 02:00 slot and died before recording its outcome.
    let pipeline = Pipeline::load(
        &project.path().join("scheduled/settled.yaml"),
        &LoadOptions::default(),
    )
    .unwrap();
    let dead_daemon_leases = leases_of(&project, &ManualClock::starting_at(slot), "dead-daemon");
    let runner = Runner::new(Storage::new(), &state(&project), dead_daemon_leases, false);
    let order = Order {
        slot: Some(slot),
        ..Order::by_hand(day("2030-03-05"), false)
    };
    let leased = runner
        .lease(&pipeline)
        .await
        .unwrap()
        .expect("nobody holds the lease");
    let never = segflow::cancel::Cancel::new();
    leased
        .run(order, &Progress::hidden(), &never)
        .await
        .result
        .unwrap();
    let mut record = scheduled_runs(&history, "settled").await.pop().unwrap();
    record.status = RunStatus::Running;
    record.ended_at = None;
    record.rows.clear();
    history.save(&record).await.unwrap();

    let clock = ManualClock::starting_at(slot + chrono::Duration::minutes(5));
    let tally = once(config(&project, &clock, true)).await;
    assert_eq!((tally.published, tally.failed), (0, 0), "not run again");
    let runs = scheduled_runs(&history, "settled").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:?}");
    assert_eq!(runs[0].rows.get("counts"), Some(&1));
    assert_eq!(
        runs[0].ended_at,
        Some(project.manifest("settled", "2030-03-05").committed_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freshness_failure_is_a_failed_try_and_a_retry_publishes_once_the_orders_land() {
    let project = Project::new(Size::Tiny);
    let name = "fresh";
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::write(
        project.path().join(format!("queries/{name}.sql")),
        "SELECT COUNT(*) AS orders FROM orders WHERE ordered_at < $as_of_end",
    )
    .unwrap();
    std::fs::write(
        project.path().join(format!("scheduled/{name}.yaml")),
        format!(
            "name: {name}\n\
             schedule: {{ cron: '0 2 * * *', attempts: 3, retry_delay: 60s }}\n\
             sources:\n  orders: {{ url: {}/orders/ }}\n\
             steps:\n  - {{ name: counts, sql: ../queries/{name}.sql }}\n\
             outputs:\n  - {{ table: counts, url: {}/{name}/ }}\n\
             checks:\n  - {{ table: orders, {} }}\n",
            project.data().display(),
            project.out().display(),
            crate::support::SHIPPED_FRESHNESS,
        ),
    )
    .unwrap();
    let history = history(&project);
    seed_success(&history, name, at("2030-03-05T02:00:00Z")).await;

    // The shop's orders end years before the night of 5 March 2030: the export is late.
    let start = at("2030-03-06T02:00:00Z");
    let clock = ManualClock::starting_at(start);
    let daemon = Daemon::start(config(&project, &clock, false));
    let first = until("attempt 1", || async {
        let runs = scheduled_runs(&history, name).await;
        runs.into_iter().find(|r| r.status == RunStatus::Failed)
    })
    .await;
    assert_eq!((first.attempt, first.started_at), (1, start));
    assert!(
        first
            .error
            .as_deref()
            .unwrap()
            .contains("check 'orders_freshness_ordered_at' on 'orders'"),
        "{first:?}"
    );
    assert_eq!(first.checks[0].status, segflow::run::CheckStatus::Failed);
    assert!(!project.out().join(name).join("_segflow/manifests").exists());

    // The export lands before the retry, a minute later.
    crate::support::write_order(
        &project.data().join("orders/late.parquet"),
        1_000_000,
        1,
        "2030-03-05T21:30:00Z",
    );
    let retry = start + chrono::Duration::seconds(60);
    until("the retry to be planned", || async {
        clock.wakeups().contains(&retry).then_some(())
    })
    .await;
    clock.advance(seconds(60));
    let second = until("attempt 2", || async {
        let runs = scheduled_runs(&history, name).await;
        runs.into_iter().find(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert_eq!((second.attempt, second.started_at), (2, retry));
    assert_eq!(second.checks[0].status, segflow::run::CheckStatus::Passed);
    let published = crate::support::table_text(&project.out(), name, "2030-03-05", &[]);
    let orders = crate::support::rows(&crate::support::read_table(&project.data().join("orders")));
    assert!(
        published
            .iter()
            .any(|row| row.contains(&format!("orders={orders}"))),
        "{published:?}"
    );
    assert_eq!(
        daemon.stop().await,
        Tally {
            published: 1,
            failed: 0,
            interrupted: 0,
            unloadable: 0
        }
    );
}
