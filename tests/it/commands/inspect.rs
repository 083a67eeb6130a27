//! Looking at a pipeline without publishing: `segflow render` (a step's SQL with its
//! parameters bound), `segflow show` (a step's first rows), `run --select` (part of a
//! pipeline, into a preview), and the per-step timings a run records.

use std::path::Path;

use crate::support::{
    AS_OF, COMPARED_OUTPUTS, Project, Size, assert_same_outputs, snapshot_of, table_text,
};

/// A zone far from UTC, so that an instant rendered without its zone would shift the day.
const ZONE: &str = "Asia/Kolkata";

fn project_in_zone() -> Project {
    let project = Project::new(Size::Small);
    project.edit("pipelines/nightly_segments.yaml", |text| {
        text.replace("timezone: UTC", &format!("timezone: {ZONE}"))
    });
    project
}

/// Every SQL file of the project, relative to it.
fn sql_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Check queries are not steps: the checks run them (checks.rs). A landing's mapping
        // is a step of its own pipeline (`init --from`, layouts.rs), not the shipped one.
        if path.is_dir() && !path.ends_with("checks") && !path.ends_with("layouts") {
            files.extend(sql_files(&path));
        } else if path.is_file() && path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn rendered_sql_computes_what_the_step_computes() {
    let project = project_in_zone();
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let baseline = project.run_nightly(AS_OF);
    assert_eq!(baseline.code, 0, "{baseline:?}");

    // Every SQL file replaced by its rendered text: no parameter is left to bind, so a run
    // computes the same tables only if every literal (dates, instants in the pipeline's
    // zone, lists, floats, strings) means what the bound parameter meant.
    let mut rendered_files = 0;
    for file in sql_files(&project.path().join("queries")) {
        let step = file.file_stem().unwrap().to_str().unwrap();
        let rendered = project.segflow(&["render", pipeline, step, "--as-of", AS_OF]);
        if rendered.stderr.contains("no step or segment named") {
            // The other RFM methods, the models' pinned parameters and the conversion of
            // currencies, which the shipped pipeline does not use; a step's fold, which
            // binds no parameter.
            let alternative = step.starts_with("rfm_")
                || step.ends_with("_pinned")
                || step == "paid_orders_converted"
                || step == "customer_orders_fold";
            assert!(alternative, "{rendered:?}");
            continue;
        }
        assert_eq!(rendered.code, 0, "{step}: {rendered:?}");
        let (header, sql) = rendered.stdout.split_once('\n').unwrap();
        assert!(header.starts_with("-- "), "{header}");
        assert!(header.contains(step) && header.contains(AS_OF), "{header}");
        let original = std::fs::read_to_string(&file).unwrap();
        if original.contains("$as_of_end") {
            assert!(
                sql.contains(r#"Timestamp(µs, "Asia/Kolkata")"#),
                "{step}: the instant keeps its zone:\n{sql}"
            );
        }
        let code = sql
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!code.contains('$'), "{step} still has a parameter:\n{code}");
        std::fs::write(&file, sql).unwrap();
        rendered_files += 1;
    }
    assert!(rendered_files > 30, "{rendered_files} SQL files");

    let again = tempfile::tempdir().unwrap();
    let rerun = project.segflow(&[
        "run",
        pipeline,
        "--as-of",
        AS_OF,
        "--preview",
        again.path().to_str().unwrap(),
    ]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_same_outputs(again.path(), &project.out(), &COMPARED_OUTPUTS, AS_OF);
}

#[test]
fn render_names_what_it_cannot_render() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let typo = project.segflow(&["render", pipeline, "winback_candidate"]);
    assert_eq!(typo.code, 1, "{typo:?}");
    assert!(
        typo.stderr
            .contains("no step or segment named 'winback_candidate'")
            && typo.stderr.contains("did you mean 'winback_candidates'?"),
        "{typo:?}"
    );
    let source = project.segflow(&["render", pipeline, "orders"]);
    assert_eq!(source.code, 1, "{source:?}");
    assert!(source.stderr.contains("'orders' is a source"), "{source:?}");
    project.edit("queries/segments/recent_buyers.sql", |sql| {
        sql.replace("$recent_days", "$recent_dayz")
    });
    let unknown = project.segflow(&["render", pipeline, "recent_buyers"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("recent_buyers.sql")
            && unknown.stderr.contains("$recent_dayz")
            && unknown.stderr.contains("did you mean 'recent_days'?"),
        "{unknown:?}"
    );
}

/// The data rows of `segflow show`'s table: the lines between its header and its end.
fn shown_rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| line.starts_with("| "))
        .skip(1)
        .collect()
}

#[test]
fn show_computes_a_table_and_publishes_nothing() {
    let project = project_in_zone();
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let outputs = project.snapshot();
    let history = snapshot_of(&project.path().join("segflow-state"));

    let all = project.segflow(&[
        "show",
        pipeline,
        "segment_summary",
        "--as-of",
        AS_OF,
        "--limit",
        "1000",
    ]);
    assert_eq!(all.code, 0, "{all:?}");
    let published = table_text(&project.out(), "segment_summary", AS_OF, &[]);
    let shown = shown_rows(&all.stdout);
    assert_eq!(shown.len(), published.len() - 1, "{all:?}");
    assert!(
        all.stdout.contains(&format!(
            "segment_summary as of {AS_OF}: {} rows\n",
            shown.len()
        )),
        "{all:?}"
    );
    // The same segments, each with its published size.
    for row in &published[1..] {
        let segment = row
            .split(" | ")
            .find_map(|pair| pair.strip_prefix("segment="))
            .unwrap();
        let members = row
            .split(" | ")
            .find_map(|pair| pair.strip_prefix("customers="))
            .unwrap();
        assert!(
            shown.iter().any(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                cells.contains(&segment) && cells.contains(&members)
            }),
            "{segment} with {members} customers is not shown:\n{}",
            all.stdout
        );
    }

    // segment_changes reads previous_segment_membership, of which nothing is published
    // before AS_OF: it takes segment_membership's columns, so that step is computed too.
    let changes = project.segflow(&["show", pipeline, "segment_changes", "--as-of", AS_OF]);
    assert_eq!(changes.code, 0, "{changes:?}");
    assert!(changes.stdout.contains("| segment "), "{changes:?}");

    let few = project.segflow(&["show", pipeline, "winback_candidates", "--limit", "3"]);
    assert_eq!(few.code, 0, "{few:?}");
    assert_eq!(shown_rows(&few.stdout).len(), 3, "{few:?}");
    assert!(
        few.stdout.contains("(the first 3; --limit for more)"),
        "{few:?}"
    );

    let typo = project.segflow(&["show", pipeline, "customer_profil"]);
    assert_eq!(typo.code, 1, "{typo:?}");
    assert!(
        typo.stderr.contains("did you mean 'customer_profile'?"),
        "{typo:?}"
    );

    assert_eq!(project.snapshot(), outputs, "show changed the outputs");
    assert_eq!(
        snapshot_of(&project.path().join("segflow-state")),
        history,
        "show changed the run history"
    );
}

#[test]
fn select_runs_part_of_a_pipeline_into_a_preview_only() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let outputs = project.snapshot();

    let unpreviewed = project.segflow(&["run", pipeline, "--as-of", AS_OF, "--select", "rfm"]);
    assert_eq!(unpreviewed.code, 1, "{unpreviewed:?}");
    assert!(
        unpreviewed.stderr.contains("--select needs --preview"),
        "{unpreviewed:?}"
    );
    let nothing = tempfile::tempdir().unwrap();
    let no_output = project.segflow(&[
        "run",
        pipeline,
        "--as-of",
        AS_OF,
        "--select",
        "paid_orders",
        "--preview",
        nothing.path().to_str().unwrap(),
    ]);
    assert_eq!(no_output.code, 1, "{no_output:?}");
    assert!(
        no_output.stderr.contains("publishes no output"),
        "{no_output:?}"
    );

    // The win-back list alone: its cooldown still reads the real history of the list.
    let preview = tempfile::tempdir().unwrap();
    let selected = project.segflow(&[
        "run",
        pipeline,
        "--as-of",
        AS_OF,
        "--select",
        "winback_list",
        "--select",
        "rfm_cutpoints+",
        "--preview",
        preview.path().to_str().unwrap(),
    ]);
    assert_eq!(selected.code, 0, "{selected:?}");
    let mut published: Vec<String> = std::fs::read_dir(preview.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "state")
        .collect();
    published.sort();
    // The report of the preview's publications is the preview's, beside them.
    assert_eq!(
        published,
        ["report.html", "rfm_cutpoints", "winback_list"],
        "{selected:?}"
    );
    assert_same_outputs(
        preview.path(),
        &project.out(),
        &["rfm_cutpoints", "winback_list"],
        AS_OF,
    );
    assert_eq!(
        project.snapshot(),
        outputs,
        "a selected preview changed the outputs"
    );
}

#[test]
fn the_run_record_times_every_step_and_output() {
    let project = Project::new(Size::Tiny);
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let runs = project.segflow(&["runs", "--json"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    let record: serde_json::Value = serde_json::from_str(runs.stdout.trim()).unwrap();
    let steps = record["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let position = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(
        position("paid_orders") < position("customer_features"),
        "{names:?}"
    );
    assert!(
        position("rfm") < position("segment_membership"),
        "{names:?}"
    );
    assert!(
        names.contains(&"winback_list") && names.contains(&"recent_buyers"),
        "{names:?}"
    );
    assert!(steps.iter().all(|s| s["seconds"].as_f64().unwrap() >= 0.0));
    // customer_profile is read by later steps and published: computed once, counted.
    let profile = &steps[position("customer_profile")];
    let published = crate::support::rows(&project.published("customer_profile", AS_OF));
    assert_eq!(
        profile["rows"].as_u64(),
        Some(published as u64),
        "{profile}"
    );

    let writes = record["writes"].as_array().unwrap();
    let rows = record["rows"].as_object().unwrap();
    assert_eq!(writes.len(), rows.len(), "{record}");
    for write in writes {
        let table = write["name"].as_str().unwrap();
        assert_eq!(write["rows"], rows[table], "{table}: {record}");
    }
}

#[test]
fn a_var_with_more_decimal_places_than_its_column_is_refused() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    // net_revenue is a decimal with 2 places: 50.005 would be rounded to 50.01 by the cast.
    let validated = project.segflow(&[
        "validate",
        pipeline.to_str().unwrap(),
        "--var",
        "winback_min_spend=50.005",
    ]);
    assert_eq!(validated.code, 1, "{validated:?}");
    assert!(
        validated.stderr.contains("winback_candidates.sql")
            && validated.stderr.contains("$winback_min_spend")
            && validated.stderr.contains("2 decimal places")
            && validated.stderr.contains("50.005"),
        "{validated:?}"
    );
    let fits = project.segflow(&[
        "validate",
        pipeline.to_str().unwrap(),
        "--var",
        "winback_min_spend=50.01",
    ]);
    assert_eq!(fits.code, 0, "{fits:?}");
}

/// `segflow graph`: every source, step, segment and output of the shipped pipeline, what
/// each step reads as its SQL says, and the rows the last run recorded.
#[test]
fn graph_draws_the_pipeline_with_the_last_runs_rows() {
    let project = Project::new(Size::Small);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let before = project.segflow(&["graph", pipeline]);
    assert_eq!(before.code, 0, "{before:?}");
    assert!(
        !before.stdout.contains(" rows"),
        "no run yet: {}",
        before.stdout
    );

    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let mermaid = project.segflow(&["graph", pipeline]);
    assert_eq!(mermaid.code, 0, "{mermaid:?}");
    let text = &mermaid.stdout;
    assert!(text.starts_with("flowchart LR\n"), "{text}");
    // Reads taken from the SQL files: paid_orders reads orders, customer_orders reads it;
    // the predictions read the
    // histories; a segment reads customer_predictions; membership reads every segment; an
    // output is its step's.
    for edge in [
        "source_orders --> step_paid_orders",
        "step_paid_orders --> step_customer_orders",
        "step_customer_orders --> step_customer_features",
        "step_purchase_histories --> step_customer_predictions",
        "step_customer_predictions --> step_likely_to_churn",
        "step_likely_to_churn --> step_segment_membership",
        "step_customer_profile --> output_customer_profile",
    ] {
        assert!(text.contains(&format!("  {edge}\n")), "{edge}:\n{text}");
    }
    // Every output with the rows `segflow runs` recorded for it.
    let runs = project.segflow(&["runs", "--json"]);
    let record: serde_json::Value =
        serde_json::from_str(runs.stdout.lines().last().unwrap()).unwrap();
    let rows = record["rows"].as_object().unwrap();
    assert_eq!(rows.len(), crate::support::SHIPPED_OUTPUTS.len());
    for (table, count) in rows {
        let count = count.as_u64().unwrap();
        let unit = if count == 1 { "row" } else { "rows" };
        let node = text
            .lines()
            .find(|line| line.starts_with(&format!("  output_{table}[/")))
            .unwrap_or_else(|| panic!("no output node {table}:\n{text}"));
        assert!(
            node.ends_with(&format!("<br/>{count} {unit}\"/]")),
            "{node}"
        );
    }
    let steps = text
        .lines()
        .filter(|l| l.trim_start().starts_with("step_") && !l.contains("-->"));
    let segments = text.lines().filter(|l| l.contains("([\"")).count();
    assert_eq!(segments, 38, "the shipped segments:\n{text}");
    assert!(steps.count() > segments, "{text}");

    // DOT: the same nodes and edges.
    let dot = project.segflow(&["graph", pipeline, "--format", "dot"]);
    assert_eq!(dot.code, 0, "{dot:?}");
    assert!(
        dot.stdout.starts_with("digraph \"nightly_segments\" {"),
        "{}",
        dot.stdout
    );
    assert_eq!(
        dot.stdout.matches(" -> ").count(),
        text.matches(" --> ").count()
    );
    let nodes = text.lines().count() - 1 - text.matches(" --> ").count();
    assert_eq!(dot.stdout.matches(", shape=").count(), nodes);
    // Graphviz draws it: every node and edge.
    let mut dot_command = std::process::Command::new("dot");
    dot_command
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let what = "Graphviz's dot (.ci/run installs it)";
    let mut drawing = crate::support::Spawned::start(&mut dot_command, what);
    use std::io::Write;
    drawing
        .stdin
        .take()
        .unwrap()
        .write_all(dot.stdout.as_bytes())
        .unwrap();
    let svg = drawing.output_within(crate::support::COMMAND_DEADLINE);
    assert_eq!(svg.code, 0, "{svg:?}");
    assert!(svg.stderr.is_empty(), "{}", svg.stderr);
    assert_eq!(svg.stdout.matches("<g id=\"node").count(), nodes);
    assert_eq!(
        svg.stdout.matches("<g id=\"edge").count(),
        text.matches(" --> ").count()
    );

    // Mermaid itself (the npm package, which .ci/run installs) draws the Mermaid text in
    // Chromium, every node and edge.
    let mermaid_js = std::env::var("SEGFLOW_MERMAID_JS").unwrap_or_else(|_| {
        format!(
            "{}/.cache/segflow/mermaid/node_modules/mermaid/dist/mermaid.min.js",
            std::env::var("HOME").unwrap()
        )
    });
    let graph = project.path().join("lineage.mmd");
    std::fs::write(&graph, text).unwrap();
    let drawn = crate::support::run(
        std::process::Command::new("python3")
            .arg(crate::support::oracle("mermaid.py"))
            .arg(&graph)
            .arg(&mermaid_js)
            .arg(project.path()),
    );
    assert_eq!(
        drawn.code, 0,
        "Mermaid at {mermaid_js} (bash .ci/run installs it) did not draw the graph: {drawn:?}"
    );
}

/// A reader that stops reading (`segflow graph ... | head -1`) ends the output quietly, as
/// it ends `cat`: no panic about a broken pipe, exit 0.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let mut graph = project.command(&["graph", pipeline.to_str().unwrap()]);
    graph
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = crate::support::Spawned::start(&mut graph, "segflow graph");
    // Closed before segflow has loaded the pipeline, so its first write finds no reader.
    drop(child.stdout.take());
    let ended = child.output_within(crate::support::COMMAND_DEADLINE);
    assert_eq!(ended.code, 0, "{ended:?}");
    assert!(ended.stderr.is_empty(), "{ended:?}");
}
