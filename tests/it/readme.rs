//! The README's examples, applied as written, so that the docs cannot drift from what
//! segflow does.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{AS_OF, Project, table_text};

/// The fenced block of `language` in the README section under `heading`.
fn readme_block(heading: &str, language: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no section '{heading}'"));
    let section = &readme[start + heading.len() + 2..];
    // The next heading (`##` or deeper) ends it; a `# comment` inside a block does not.
    let section = &section[..section.find("\n##").unwrap_or(section.len())];
    let fence = format!("```{language}\n");
    let open = section
        .find(&fence)
        .unwrap_or_else(|| panic!("'{heading}' has no {language} block"));
    let block = &section[open + fence.len()..];
    let block = &block[..block.find("```").unwrap()];
    // A block inside a numbered list is indented as the list item is.
    let indent = block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .lines()
        .map(|line| line.get(indent..).unwrap_or("").to_string() + "\n")
        .collect()
}

/// One output's rows for `AS_OF`, each as its columns by name.
fn rows_of(out: &std::path::Path, table: &str) -> Vec<BTreeMap<String, String>> {
    table_text(out, table, AS_OF, &[])
        .into_iter()
        .skip(1)
        .map(|row| {
            row.split(" | ")
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Applies a README example as written: its SQL file (named on its first line) and its YAML,
/// whose `vars` replace or join the pipeline's and whose list entries join the pipeline's lists.
fn apply_example(project: &Project, section: &str) -> serde_json::Value {
    let sql = readme_block(section, "sql");
    let yaml = readme_block(section, "yaml");
    // Its first line names its file: `-- queries/segments/vip_country.sql: ...`.
    let file = sql
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("-- "))
        .and_then(|line| line.split(':').next())
        .unwrap();
    std::fs::write(project.path().join(file), &sql).unwrap();
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let example: serde_json::Value = serde_saphyr::from_str_with_options(&yaml, options).unwrap();
    project.edit("pipelines/nightly_segments.yaml", |text| {
        let mut text = text;
        for (key, value) in example.as_object().unwrap() {
            let header = format!("\n{key}:\n");
            assert!(text.contains(&header), "the pipeline has a {key} block");
            if let Some(vars) = value.as_object() {
                for (name, value) in vars {
                    let value = value.to_string().trim_matches('"').to_string();
                    let declared = text
                        .lines()
                        .find(|line| line.starts_with(&format!("  {name}:")))
                        .map(str::to_string);
                    text = match declared {
                        Some(line) => text.replace(&line, &format!("  {name}: {value}")),
                        None => text.replacen(&header, &format!("{header}  {name}: {value}\n"), 1),
                    };
                }
            }
            for entry in value.as_array().into_iter().flatten() {
                let entry = serde_json::to_string(entry).unwrap();
                text = text.replacen(&header, &format!("{header}  - {entry}\n"), 1);
            }
        }
        text
    });
    example
}

#[test]
fn the_readme_segment_example_validates_runs_and_means_what_it_says() {
    let project = Project::new(2_000, 8_000);
    let example = apply_example(&project, "### Adding a segment");
    let vars = example["vars"].as_object().unwrap();
    let pipeline = project.pipeline();
    let validated = project.segflow(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(validated.code, 0, "{validated:?}");
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");

    // What the example says it finds: customers in $vip_country whose RF segment is
    // Champions or Loyal, from the published profile.
    let country = vars["vip_country"].as_str().unwrap();
    let expected: BTreeSet<String> = rows_of(&project.out(), "customer_profile")
        .into_iter()
        .filter(|row| row["country"] == country)
        .filter(|row| ["Champions", "Loyal"].contains(&row["rf_segment"].as_str()))
        .map(|row| row["customer_id"].clone())
        .collect();
    let members: BTreeSet<String> = rows_of(&project.out(), "segment_membership")
        .into_iter()
        .filter(|row| row["segment"] == "vip_country")
        .map(|row| row["customer_id"].clone())
        .collect();
    assert!(!expected.is_empty(), "the shop has VIPs in {country}");
    assert_eq!(members, expected);
    let summary = rows_of(&project.out(), "segment_summary");
    assert!(summary.iter().any(|row| row["segment"] == "vip_country"));
}

#[test]
fn the_readme_step_example_validates_runs_and_publishes_what_it_says() {
    let project = Project::new(2_000, 8_000);
    let example = apply_example(&project, "### Adding a step");
    let validated = project.segflow(&["validate", project.pipeline().to_str().unwrap()]);
    assert_eq!(validated.code, 0, "{validated:?}");
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");

    // "buyers whose last paid order is more than $lapse_days days before as_of"
    let lapse_days = example["vars"]["lapse_days"].as_i64().unwrap();
    let expected: BTreeSet<String> = rows_of(&project.out(), "customer_features")
        .into_iter()
        .filter(|row| row["paid_orders"] != "0")
        .filter(|row| row["days_since_last_order"].parse::<i64>().unwrap() > lapse_days)
        .map(|row| row["customer_id"].clone())
        .collect();
    let published: BTreeSet<String> = rows_of(&project.out(), "lapsed")
        .into_iter()
        .map(|row| row["customer_id"].clone())
        .collect();
    assert!(!expected.is_empty(), "the shop has lapsed buyers");
    assert_eq!(published, expected);

    // The commands that check, show and try the step, from the project folder, as written
    // but for the preview folder, which is a private one here.
    let preview = tempfile::tempdir().unwrap();
    let preview = preview.path().join("try");
    let block = readme_block("### Adding a step", "sh");
    for line in block.lines().filter(|line| !line.trim().is_empty()) {
        let line = line.replace("/tmp/try", preview.to_str().unwrap());
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "segflow", "{line}");
        let outcome = project.segflow(&words[1..]);
        assert_eq!(outcome.code, 0, "{line}: {outcome:?}");
        match words[1] {
            "render" => assert!(
                outcome
                    .stdout
                    .contains(&format!("days_since_last_order > {lapse_days}")),
                "{line}: {outcome:?}"
            ),
            "show" => assert!(
                outcome.stdout.contains("lapsed as of ")
                    && outcome.stdout.contains("| customer_id ")
                    && outcome
                        .stdout
                        .lines()
                        .filter(|l| l.starts_with("| "))
                        .count()
                        <= 6,
                "{line}: {outcome:?}"
            ),
            _ => {}
        }
    }
    let tried: Vec<String> = std::fs::read_dir(&preview)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "state" && name != "report.html")
        .collect();
    assert_eq!(tried, ["lapsed"]);
}

/// The reference spec under "## Pipelines" uses only keys and settings segflow knows: validating
/// it reports missing files and tables (it names a shop that is not here), never a key.
#[test]
fn the_readme_reference_pipeline_has_only_known_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let spec = dir.path().join("pipelines/reference.yaml");
    std::fs::write(&spec, readme_block("## Pipelines", "yaml")).unwrap();
    let validated = crate::common::run(crate::common::segflow().current_dir(dir.path()).args([
        "validate",
        "--offline",
        spec.to_str().unwrap(),
    ]));
    assert_eq!(validated.code, 1, "{validated:?}");
    assert!(
        validated.stderr.contains("reference.yaml:"),
        "{validated:?}"
    );
    for word in ["unknown field", "is not a setting"] {
        assert!(
            !validated.stderr.to_lowercase().contains(word),
            "{validated:?}"
        );
    }
}

/// Runs the README's DuckDB and pyarrow recipes as written, from the demo's folder, as the
/// README says to. Each DuckDB query must return rows, `as_of` must come back as a date.
const RUN_RECIPES: &str = r#"
import sys
import duckdb

sql, python = open(sys.argv[1]).read(), open(sys.argv[2]).read()
con = duckdb.connect()
for statement in [s for s in sql.split(";") if s.strip()]:
    code = " ".join(l for l in statement.splitlines() if not l.strip().startswith("--")).strip()
    result = con.sql(statement)
    if code.upper().startswith("SELECT"):
        rows = result.fetchall()
        assert rows, statement
        if "as_of" in result.columns:
            assert str(result.types[result.columns.index("as_of")]) == "DATE", result.types
        print("duckdb", len(rows))
scope = {}
exec(python, scope)
assert scope["table"].num_rows > 0
assert str(scope["every_day"].schema.field("as_of").type) == "date32[day]"
print("pyarrow", scope["table"].num_rows, scope["every_day"].num_rows)
"#;

#[test]
fn the_readme_recipes_for_reading_outputs_run_as_written_after_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("segflow-demo");
    let made = crate::common::small_demo(&demo);
    assert_eq!(made.code, 0, "{made:?}");
    let section = "## Outputs and how to read them";
    let sql = dir.path().join("recipes.sql");
    let python = dir.path().join("recipes.py");
    std::fs::write(&sql, readme_block(section, "sql")).unwrap();
    std::fs::write(&python, readme_block(section, "python")).unwrap();
    let ran = crate::common::run(
        std::process::Command::new("python3")
            .current_dir(&demo)
            .args([
                "-c",
                RUN_RECIPES,
                sql.to_str().unwrap(),
                python.to_str().unwrap(),
            ]),
    );
    assert_eq!(
        ran.code, 0,
        "the README's recipes failed (bash .ci/run installs duckdb and pyarrow): {ran:?}"
    );
    assert_eq!(ran.stdout.matches("duckdb ").count(), 2, "{ran:?}");
    assert!(ran.stdout.contains("pyarrow "), "{ran:?}");
}

/// The README's picture of the report (docs/report.png) was made from the report's code as
/// it is: a change to the report without `bash docs/screenshot.sh` fails here.
#[test]
fn the_readme_picture_of_the_report_shows_the_report_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("![The report of the demo shop"),
        "README shows the picture"
    );
    let picture = std::fs::read(root.join("docs/report.png")).unwrap();
    assert!(
        picture.starts_with(b"\x89PNG\r\n\x1a\n"),
        "docs/report.png is a PNG"
    );
    let mut sources: Vec<std::path::PathBuf> = Vec::new();
    for folder in ["src/report", "src/report/sql"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let kept = ["rs", "css", "js", "sql"]
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext));
            if kept {
                sources.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    // As the script names them: sorted by path, byte order.
    sources.sort_by(|a, b| {
        a.to_str()
            .unwrap()
            .as_bytes()
            .cmp(b.to_str().unwrap().as_bytes())
    });
    let mut text = Vec::new();
    for source in &sources {
        text.extend(std::fs::read(root.join(source)).unwrap());
    }
    let mut hashing = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hashing.stdin.take().unwrap().write_all(&text).unwrap();
    let hashed = hashing.wait_with_output().unwrap();
    let now = String::from_utf8(hashed.stdout).unwrap();
    let now = now.split_whitespace().next().unwrap();
    let pictured = std::fs::read_to_string(root.join("docs/report.png.sha256")).unwrap();
    assert_eq!(
        pictured.trim(),
        now,
        "the report's code changed since docs/report.png was made ({} files): run \
         `bash docs/screenshot.sh` and commit the new picture",
        sources.len()
    );
}
