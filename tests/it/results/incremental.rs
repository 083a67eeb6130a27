//! Incremental steps publish what a full run publishes. Orders are exported one file per
//! month (each month's timestamps stored another way), and nights go by: a day's file appears
//! after the night it belongs to, an old month is rewritten by refunds, a month's file is
//! deleted, the SQL of an incremental step changes, a var it uses changes and changes back.
//! Besides the shipped `paid_orders`, the pipeline gets an incremental step of its own that
//! reads `paid_orders` on each file and is published as it is (a row per customer and file).
//! Each night runs twice on the same files: reusing what earlier nights kept, and with
//! `--full` into another state and other outputs; every output must have the same rows. The
//! run history says how many files each night computed, which shows the reuse is real.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    ANOMALY_AS_WARNING, AS_OF, Project, SHIPPED_ANOMALY, SHIPPED_OUTPUTS, Size,
    assert_same_outputs, latest_record, run,
};

/// Changes the shop's orders with `incremental.py` (see its usage).
fn change_orders(project: &Project, args: &[&str]) {
    let script = crate::support::oracle("incremental.py");
    let changed = crate::support::run(
        Command::new("python3")
            .arg(&script)
            .arg(args[0])
            .arg(project.data())
            .args(&args[1..]),
    );
    assert_eq!(changed.code, 0, "{args:?}: {changed:?}");
}

/// The months of the order files (`month=YYYY-MM` folders) before `month`.
fn months_before(project: &Project, month: &str) -> usize {
    std::fs::read_dir(project.data().join("orders"))
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().into_string().ok())
        .filter(|name| name.strip_prefix("month=").is_some_and(|m| m < month))
        .count()
}

/// Every order file.
fn order_files(project: &Project) -> usize {
    walk(&project.data().join("orders"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Adds `customer_file_facts`, incremental over orders, reading `paid_orders` on each file,
/// and publishes it.
fn add_facts_step(project: &Project) {
    std::fs::write(
        project.path().join("queries/customer_file_facts.sql"),
        "SELECT customer_id, MIN(ordered_at) AS first_order_at, COUNT(*) AS paid_orders,\n       \
         SUM(net_amount) AS net_revenue\nFROM paid_orders\nGROUP BY customer_id\n",
    )
    .unwrap();
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        let step = "  - name: customer_file_facts\n    sql: ../queries/customer_file_facts.sql\n    \
                    incremental: { source: orders, time: ordered_at }\n";
        let output = "  - { table: customer_file_facts, url: \"${SEGFLOW_OUT:-out}/customer_file_facts/\" }\n";
        spec.replacen("  - { name: customer_features,", &format!("{step}  - {{ name: customer_features,"), 1)
            .replacen("outputs:\n", &format!("outputs:\n{output}"), 1)
    });
}

/// Files an incremental step computed and reused in a night, from the run history.
#[derive(Debug, PartialEq)]
struct Files {
    computed: u64,
    reused: u64,
}

/// One night, run both ways; the outputs must agree. Returns how the incremental run had
/// the files of paid_orders, of customer_file_facts, and of the shipped customer_orders,
/// whose settled files fold into one kept result.
fn night(project: &Project, as_of: &str, extra: &[&str]) -> [Files; 3] {
    let pipeline = project.pipeline();
    let mut files = Vec::new();
    for (flavour, full) in [("incremental", false), ("full", true)] {
        let state = project.path().join(format!("state-{flavour}"));
        let out = project.path().join(format!("out-{flavour}"));
        let mut args = vec![
            "run",
            pipeline.to_str().unwrap(),
            "--as-of",
            as_of,
            "--state",
            state.to_str().unwrap(),
        ];
        args.extend(extra);
        if full {
            args.push("--full");
        }
        let ran = run(project.command(&args).env("SEGFLOW_OUT", &out));
        assert_eq!(ran.code, 0, "{flavour} run of {as_of}: {ran:?}");
        let latest = latest_record("nightly_segments", &state, as_of);
        let of = |step: &str| {
            let timing = latest["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == step)
                .unwrap_or_else(|| panic!("{step} in {latest}"));
            Files {
                computed: timing["files"]["computed"].as_u64().unwrap(),
                reused: timing["files"]["reused"].as_u64().unwrap(),
            }
        };
        let [paid, facts, folded] =
            ["paid_orders", "customer_file_facts", "customer_orders"].map(of);
        let all = order_files(project) as u64;
        if full {
            // --full reads nothing kept.
            for had in [&paid, &facts, &folded] {
                assert_eq!(
                    had,
                    &Files {
                        computed: all,
                        reused: 0
                    },
                    "{as_of}, --full"
                );
            }
        } else {
            files = vec![paid, facts, folded];
        }
    }
    assert_same_outputs(
        &project.path().join("out-incremental"),
        &project.path().join("out-full"),
        &[SHIPPED_OUTPUTS, &["customer_file_facts"]].concat(),
        as_of,
    );
    files.try_into().unwrap()
}

/// Every incremental step computed and reused these files.
fn all_three(computed: usize, reused: usize) -> [Files; 3] {
    [0, 1, 2].map(|_| Files {
        computed: computed as u64,
        reused: reused as u64,
    })
}

/// The steps kept per file computed and reused these; the folded one computed every file,
/// since a file its kept fold covers changed or went.
fn folded_again(computed: usize, reused: usize) -> [Files; 3] {
    let [paid, facts, _] = all_three(computed, reused);
    [
        paid,
        facts,
        Files {
            computed: (computed + reused) as u64,
            reused: 0,
        },
    ]
}

#[test]
fn incremental_nights_publish_what_full_runs_publish() {
    assert_eq!(AS_OF, "2026-03-31", "the nights below are counted from it");
    let project = Project::new(Size::Small);
    // The nights below rewrite months of orders: segments move far more than overnight.
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        spec.replacen(SHIPPED_ANOMALY, ANOMALY_AS_WARNING, 1)
    });
    add_facts_step(&project);
    change_orders(&project, &["split"]);
    // Orders placed on April 1st are exported before the night of March 31st runs: they must
    // count for April 1st and later only.
    change_orders(&project, &["append", "2026-04-01"]);
    let all = order_files(&project);
    let before_april = months_before(&project, "2026-04");
    assert!(
        before_april >= 6 && all == before_april + 4,
        "{all} {before_april}"
    );

    // The first night computes every file and keeps those wholly before its end.
    assert_eq!(night(&project, AS_OF, &[]), all_three(all, 0));
    // April's files have rows after each night of early April: computed every night. The
    // day file of April 1st is kept from that night on.
    assert_eq!(
        night(&project, "2026-04-01", &[]),
        all_three(all - before_april, before_april)
    );
    let april_and_later = all - before_april - 1;

    // A refund rewrites February's file: it alone is computed again, and the settled files
    // fold again.
    change_orders(&project, &["refund", "2026-02"]);
    assert_eq!(
        night(&project, "2026-04-02", &[]),
        folded_again(april_and_later + 1, before_april)
    );

    // A month's file is deleted: nothing is computed for it, and its kept result goes; the
    // kept fold that covered it is not used.
    change_orders(&project, &["delete", "2026-01"]);
    assert_eq!(
        night(&project, "2026-04-03", &[]),
        folded_again(april_and_later, before_april)
    );
    let kept: Vec<PathBuf> = walk(
        &project
            .path()
            .join("state-incremental/cache/nightly_segments/paid_orders"),
    )
    .into_iter()
    .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
    .collect();
    assert_eq!(kept.len(), before_april, "{kept:?}");

    // paid_orders' SQL changes to use a var: both steps compute every file again, since
    // customer_file_facts is computed from paid_orders on each file.
    project.edit("queries/paid_orders.sql", |sql| {
        sql.replace(
            "WHERE status = 'paid'",
            "WHERE status = 'paid' AND total_amount >= $min_order_total",
        )
    });
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        spec.replace("vars:\n", "vars:\n  min_order_total: 20.0\n")
    });
    let files = order_files(&project);
    assert_eq!(night(&project, "2026-04-04", &[]), all_three(files, 0));
    // Another value of the var for one night: every file again ...
    let other = ["--var", "min_order_total=80.0"];
    assert_eq!(night(&project, "2026-04-05", &other), all_three(files, 0));
    // ... and back to the pipeline's value, whose results were kept.
    assert_eq!(
        night(&project, "2026-04-06", &[]),
        all_three(april_and_later, before_april)
    );

    // Versions of the SQL and vars that no run used for a week go: the marks of the two
    // versions before (the SQL before its change, the one-night var value) are made 8 days
    // old, and the next night deletes their results.
    let paid_orders = project
        .path()
        .join("state-incremental/cache/nightly_segments/paid_orders");
    let folded = project
        .path()
        .join("state-incremental/cache/nightly_segments/customer_orders");
    let versions = |step: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(step)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        found.sort();
        found
    };
    let used = |version: &Path| {
        std::fs::metadata(version.join("_used"))
            .and_then(|m| m.modified())
            .unwrap()
    };
    let week_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 24 * 3600);
    let mut latest = Vec::new();
    for step in [&paid_orders, &folded] {
        let mut by_use = versions(step);
        assert_eq!(by_use.len(), 3, "{by_use:?}");
        by_use.sort_by_key(|version| used(version));
        for older in &by_use[..2] {
            std::fs::File::options()
                .write(true)
                .open(older.join("_used"))
                .unwrap()
                .set_modified(week_ago)
                .unwrap();
        }
        // Folds replaced in the version in use are kept an hour, for runs of other dates;
        // so is the data of a fold whose run died before writing its list.
        if step == &folded {
            let orphan = by_use[2].join("fold/00000000000000000000000000000000.parquet");
            std::fs::write(orphan, b"a run died here").unwrap();
        }
        for fold in walk(&by_use[2].join("fold")) {
            let file = std::fs::File::options().write(true).open(&fold).unwrap();
            file.set_modified(week_ago).unwrap();
        }
        latest.push(by_use[2].clone());
    }
    assert_eq!(
        night(&project, "2026-04-07", &[]),
        all_three(april_and_later, before_april)
    );
    assert_eq!(versions(&paid_orders), vec![latest[0].clone()]);
    assert_eq!(versions(&folded), vec![latest[1].clone()]);
    // One settled fold is kept: its data and the list of the files it covers.
    let mut kept: Vec<String> = walk(&latest[1])
        .iter()
        .filter_map(|path| path.extension()?.to_str().map(str::to_string))
        .collect();
    kept.sort();
    assert_eq!(kept, ["files", "parquet"], "{:?}", walk(&latest[1]));
}
