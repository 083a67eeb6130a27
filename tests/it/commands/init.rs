//! `segflow init DIR`: a project that runs with `segflow run` from inside it, and that a
//! second `init` does not undo.

use crate::support::{Size, run, segflow};

#[test]
fn init_makes_a_project_that_runs_from_inside_it_and_keeps_edits() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    // init generates its sample shop itself, at the small shop's size.
    let (customers, orders) = (Size::Small.customers(), Size::Small.orders());
    let init = |extra: &[&str]| {
        let mut command = segflow();
        command
            .args(["init", project.to_str().unwrap()])
            .args(["--customers", &customers.to_string()])
            .args(["--orders", &orders.to_string()])
            .args(extra);
        run(&mut command)
    };
    let made = init(&[]);
    assert_eq!(made.code, 0, "{made:?}");
    for file in [
        "pipelines/nightly_segments.yaml",
        "queries/customer_features.sql",
        "data/customers",
        "data/orders",
    ] {
        assert!(project.join(file).exists(), "{file} is missing: {made:?}");
    }
    let ignored = std::fs::read_to_string(project.join(".gitignore")).unwrap();
    for folder in ["/out/", "/segflow-state/", "/report.html", "/data/"] {
        assert!(ignored.lines().any(|l| l == folder), "{ignored}");
    }

    let inside = |args: &[&str]| run(segflow().current_dir(&project).args(args));
    let validated = inside(&["validate", "pipelines/nightly_segments.yaml"]);
    assert_eq!(validated.code, 0, "{validated:?}");
    let ran = inside(&["run", "pipelines/nightly_segments.yaml"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let manifests = std::fs::read_dir(project.join("out/rfm/_segflow/manifests")).unwrap();
    assert_eq!(manifests.count(), 1, "one date published into out/");
    let runs = inside(&["runs"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    assert!(runs.stdout.contains("nightly_segments"), "{runs:?}");
    assert!(runs.stdout.contains("succeeded"), "{runs:?}");

    // A second init keeps the edited query, says so, and keeps the data.
    let query = project.join("queries/customer_features.sql");
    let edited = std::fs::read_to_string(&query).unwrap() + "-- my change\n";
    std::fs::write(&query, &edited).unwrap();
    let again = init(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains(&format!("Keeping your edited {}", query.display())),
        "{again:?}"
    );
    assert!(
        again.stdout.contains("Keeping the data already in"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&query).unwrap(), edited);
}

#[test]
fn init_without_sample_data_says_where_the_exports_go() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("mine");
    let made = run(segflow().args(["init", project.to_str().unwrap(), "--no-sample-data"]));
    assert_eq!(made.code, 0, "{made:?}");
    assert!(!project.join("data").exists());
    assert!(
        made.stdout
            .contains("data/{customers,orders,order_items,checkouts}/"),
        "{made:?}"
    );
    assert!(made.stdout.contains("SEGFLOW_DATA"), "{made:?}");
    assert!(project.join("pipelines/nightly_segments.yaml").exists());
}

/// `init --from LANDING`: the shipped pipeline with the landing's members, sources, mapping
/// steps and freshness check in place of the generic ones, and everything from
/// customer_features on as shipped; the landing's mapping SQL and no other's; no sample shop
/// (the landing's files go where it says). The spec checks offline.
#[test]
fn init_from_a_landing_keeps_the_shipped_pipeline_after_its_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("landing");
    let made = run(segflow().args([
        "init",
        project.to_str().unwrap(),
        "--from",
        "airbyte-shopify",
    ]));
    assert_eq!(made.code, 0, "{made:?}");
    assert!(!project.join("data").exists());
    assert!(
        made.stdout.contains(
            "data/{orders,customers,abandoned_checkouts,collection_products}/ (one folder per stream)"
        ),
        "{made:?}"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("pipelines/nightly_segments.yaml")).unwrap();
    let part = std::fs::read_to_string(root.join("layouts/airbyte_shopify.yaml")).unwrap();
    let written = std::fs::read_to_string(project.join("pipelines/nightly_segments.yaml")).unwrap();
    let head = &shipped[..shipped.find("\nmembers:").unwrap() + 1];
    let tail = &shipped[shipped.find("\n  - { name: customer_features").unwrap() + 1..];
    let (shipped_fresh, landing_fresh) = (
        "{ table: orders, freshness: { column: ordered_at, max_age: 36h } }",
        "{ table: airbyte_orders, freshness: { column: created_at, max_age: 36h } }",
    );
    assert_eq!(tail.matches(shipped_fresh).count(), 1);
    let expected = format!(
        "{head}{part}{}",
        tail.replacen(shipped_fresh, landing_fresh, 1)
    );
    assert_eq!(written, expected);
    for file in ["customers", "orders", "order_items", "checkouts"] {
        let sql = project.join(format!("queries/layouts/airbyte_shopify/{file}.sql"));
        assert!(sql.is_file(), "{}", sql.display());
    }
    assert_eq!(
        std::fs::read_dir(project.join("queries/layouts"))
            .unwrap()
            .count(),
        1,
        "only the landing's own mapping"
    );
    let checked = run(segflow().current_dir(&project).args([
        "validate",
        "pipelines/nightly_segments.yaml",
        "--offline",
    ]));
    assert_eq!(checked.code, 0, "{checked:?}");

    // The generic project has no landing's mapping.
    let generic = dir.path().join("generic");
    let made = run(segflow().args(["init", generic.to_str().unwrap(), "--no-sample-data"]));
    assert_eq!(made.code, 0, "{made:?}");
    assert!(!generic.join("queries/layouts").exists());
}
