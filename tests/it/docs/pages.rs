//! The docs (README.md and docs/**/*.md) as written: their examples applied and run, every
//! command block run by a test here or marked with why it cannot be, every relative link and
//! anchor resolving, and the CLI reference naming every option `--help` prints. So the docs
//! cannot drift from what segflow does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::{AS_OF, Outcome, Project, Size, run, segflow, table_text};

/// The repository, where the pages are.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages: README.md and every Markdown file under docs/, relative to the repository.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    let mut found = vec![PathBuf::from("README.md")];
    walk(&root().join("docs"), &mut found);
    found.sort();
    found
}

/// A fenced block of a page.
struct Block {
    /// The heading line it is under (`## Adding a step`), or "" before the first one.
    heading: String,
    /// What follows the opening fence: `sh`, `yaml`, or "" for none.
    language: String,
    /// The line of its opening fence, from 1.
    line: usize,
    /// Its text, less the indent of its fence (a block in a list item is indented as the item).
    text: String,
    /// The reason of a `<!-- not run: REASON -->` comment on the line before its fence.
    not_run: Option<String>,
}

/// A page's text, with the lines inside fenced blocks marked.
fn lines_of(text: &str) -> Vec<(&str, bool)> {
    let mut fenced = false;
    text.lines()
        .map(|line| {
            let fence = line.trim_start().starts_with("```");
            let inside = fenced || fence;
            if fence {
                fenced = !fenced;
            }
            (line, inside)
        })
        .collect()
}

/// Every fenced block of `page`, in order.
fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join(page)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut heading = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with('#') {
            heading = line.to_string();
        }
        if let Some(language) = line.trim_start().strip_prefix("```") {
            let indent = line.len() - line.trim_start().len();
            let open = i;
            i += 1;
            let mut body = String::new();
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body += lines[i].get(indent..).unwrap_or("").trim_end();
                body.push('\n');
                i += 1;
            }
            assert!(
                i < lines.len(),
                "{}:{}: a fence that is never closed",
                page.display(),
                open + 1
            );
            let before = lines[..open].iter().rev().find(|l| !l.trim().is_empty());
            let not_run = before
                .and_then(|l| l.trim().strip_prefix("<!-- not run:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(|reason| reason.trim().to_string());
            found.push(Block {
                heading: heading.clone(),
                language: language.trim().to_string(),
                line: open + 1,
                text: body,
                not_run,
            });
        }
        i += 1;
    }
    found
}

/// The first fenced block of `language` in `page`'s section under `heading` (the heading line
/// as written, `## Adding a step`).
fn doc_block(page: &str, heading: &str, language: &str) -> String {
    blocks(Path::new(page))
        .into_iter()
        .find(|b| b.heading == heading && b.language == language)
        .unwrap_or_else(|| panic!("{page} has no {language} block under '{heading}'"))
        .text
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

/// Applies a docs example as written: its SQL file (named on its first line) and its YAML,
/// whose `vars` replace or join the pipeline's and whose list entries join the pipeline's lists.
fn apply_example(project: &Project, page: &str, section: &str) -> serde_json::Value {
    let sql = doc_block(page, section, "sql");
    let yaml = doc_block(page, section, "yaml");
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
fn the_segment_example_validates_runs_and_means_what_it_says() {
    let project = Project::new(Size::Large);
    let example = apply_example(&project, "docs/segments.md", "## Adding a segment");
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
fn the_step_example_validates_runs_and_publishes_what_it_says() {
    let project = Project::new(Size::Large);
    let example = apply_example(&project, "docs/pipelines.md", "## Adding a step");
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
    let block = doc_block("docs/pipelines.md", "## Adding a step", "sh");
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

/// The reference spec of docs/pipelines.md uses only keys and settings segflow knows: validating
/// it reports missing files and tables (it names a shop that is not here), never a key.
#[test]
fn the_reference_pipeline_has_only_known_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let spec = dir.path().join("pipelines/reference.yaml");
    std::fs::write(&spec, doc_block("docs/pipelines.md", "# Pipelines", "yaml")).unwrap();
    let validated = crate::support::run(crate::support::segflow().current_dir(dir.path()).args([
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

/// Runs the DuckDB and pyarrow recipes of docs/outputs.md as written, from the demo's folder, as
/// the page says to. Each DuckDB query must return rows, `as_of` must come back as a date.
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
fn the_recipes_for_reading_outputs_run_as_written_after_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("segflow-demo");
    let made = crate::support::small_demo(&demo);
    assert_eq!(made.code, 0, "{made:?}");
    let (page, section) = ("docs/outputs.md", "## Reading the outputs");
    let sql = dir.path().join("recipes.sql");
    let python = dir.path().join("recipes.py");
    std::fs::write(&sql, doc_block(page, section, "sql")).unwrap();
    std::fs::write(&python, doc_block(page, section, "python")).unwrap();
    let ran = crate::support::run(
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
        "the recipes of docs/outputs.md failed (bash .ci/run installs duckdb and pyarrow): {ran:?}"
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
    let mut sha256sum = std::process::Command::new("sha256sum");
    sha256sum
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut hashing = crate::support::Spawned::start(&mut sha256sum, "sha256sum");
    use std::io::Write;
    hashing.stdin.take().unwrap().write_all(&text).unwrap();
    let now = hashing
        .output_within(crate::support::COMMAND_DEADLINE)
        .stdout;
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

/// The command blocks a test here runs, by page and heading ("" for every block of the page),
/// with the test that runs them. Every other command block says why it is not run.
const RUN_BY: &[(&str, &str, &str)] = &[
    (
        "docs/getting-started.md",
        "",
        "the_getting_started_page_runs_as_written",
    ),
    (
        "docs/pipelines.md",
        "## Adding a step",
        "the_step_example_validates_runs_and_publishes_what_it_says",
    ),
];

/// The languages of blocks a reader pastes into a shell.
const COMMAND_LANGUAGES: [&str; 4] = ["sh", "bash", "console", "shell"];

#[test]
fn every_command_block_is_run_by_a_test_or_says_why_not() {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for page in pages() {
        let name = page.to_str().unwrap();
        for block in blocks(&page) {
            let at = format!("{name}:{}", block.line);
            if block.language.is_empty() {
                problems.push(format!(
                    "{at}: a fence without a language (`sh` for commands, `text` for output)"
                ));
            }
            if !COMMAND_LANGUAGES.contains(&block.language.as_str()) {
                continue;
            }
            let runner = RUN_BY
                .iter()
                .position(|(p, h, _)| *p == name && (h.is_empty() || *h == block.heading));
            match (runner, &block.not_run) {
                (Some(i), None) => {
                    used.insert(i);
                }
                (None, Some(reason)) if !reason.is_empty() => {}
                (None, Some(_)) => problems.push(format!("{at}: `not run:` gives no reason")),
                (Some(i), Some(_)) => problems.push(format!(
                    "{at}: marked `not run`, but {} runs it",
                    RUN_BY[i].2
                )),
                (None, None) => problems.push(format!(
                    "{at}: a {} block under '{}' that no test runs: run it in a test (and list \
                     it in RUN_BY) or put `<!-- not run: why -->` on the line before it",
                    block.language, block.heading
                )),
            }
        }
    }
    for (i, (page, heading, test)) in RUN_BY.iter().enumerate() {
        if !used.contains(&i) {
            problems.push(format!(
                "RUN_BY: {test} runs the blocks of {page} '{heading}', which has none"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A heading's anchor as GitHub makes it: lower case, letters, digits, `-` and `_` kept,
/// spaces made `-`, everything else dropped.
fn slug(heading: &str) -> String {
    let text = heading.trim_start_matches('#').trim();
    // A link in a heading is its text.
    let mut plain = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        plain += &rest[..open];
        let after = &rest[open + 1..];
        match (after.find("]("), after.find(')')) {
            (Some(close), Some(end)) if close < end => {
                plain += &after[..close];
                rest = &after[end + 1..];
            }
            _ => {
                plain.push('[');
                rest = after;
            }
        }
    }
    plain += rest;
    plain
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a page's headings, the second of a name with `-1` as GitHub numbers them.
fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = BTreeSet::new();
    for (line, fenced) in lines_of(&text) {
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line);
        let count = seen.entry(base.clone()).or_insert(0);
        found.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    found
}

/// The targets of a paragraph's Markdown links and images, outside code spans.
fn link_targets(paragraph: &str) -> Vec<String> {
    // Code spans are not links: drop them first.
    let mut prose = String::new();
    for (i, part) in paragraph.split('`').enumerate() {
        if i % 2 == 0 {
            prose += part;
        }
    }
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &after[end..];
    }
    targets
}

/// A page's paragraphs outside fenced blocks (a table row or a heading is one), each with the
/// line it starts on.
fn paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (number, (line, fenced)) in lines_of(text).into_iter().enumerate() {
        let alone = line.starts_with('#') || line.starts_with('|');
        if fenced || line.trim().is_empty() || alone {
            open = false;
            if alone && !fenced {
                found.push((number + 1, line.to_string()));
            }
            continue;
        }
        match found.last_mut() {
            Some((_, paragraph)) if open => {
                paragraph.push('\n');
                paragraph.push_str(line);
            }
            _ => found.push((number + 1, line.to_string())),
        }
        open = true;
    }
    found
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let path = root().join(&page);
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, paragraph) in paragraphs(&text) {
            for target in link_targets(&paragraph) {
                let at = format!("{}:{number}: {target}", page.display());
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let linked = if file.is_empty() {
                    path.clone()
                } else {
                    path.parent().unwrap().join(file)
                };
                if !linked.exists() {
                    problems.push(format!("{at}: no such file"));
                    continue;
                }
                // The book is built from docs/ alone: what a page there links to must be in it.
                let in_docs = linked
                    .canonicalize()
                    .unwrap()
                    .starts_with(root().join("docs").canonicalize().unwrap());
                if page.starts_with("docs") && !in_docs {
                    problems.push(format!(
                        "{at}: outside docs/, so not in the book: name the file as code instead"
                    ));
                }
                if !anchor.is_empty() {
                    let is_page = linked.extension().is_some_and(|e| e == "md");
                    if !is_page || !anchors(&linked).contains(anchor) {
                        problems.push(format!("{at}: no heading has the anchor #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links were found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_slugs_are_githubs() {
    assert_eq!(slug("## Guarantees, and how"), "guarantees-and-how");
    assert_eq!(slug("## 1. The demo"), "1-the-demo");
    assert_eq!(
        slug("## segflow cluster scheduler"),
        "segflow-cluster-scheduler"
    );
    assert_eq!(
        slug("## `model_fits` and [links](x.md)"),
        "model_fits-and-links"
    );
}

/// The long options `segflow ARGS --help` prints, `--help` and `--version` aside.
fn help_options(args: &[&str]) -> BTreeSet<String> {
    let help = run(segflow().args(args).arg("--help"));
    assert_eq!(help.code, 0, "{args:?}: {help:?}");
    help.stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            // `-h, --help`: the long form follows the short one.
            let line = match line.split_once(", ") {
                Some((short, long)) if short.len() == 2 && short.starts_with('-') => long,
                _ => line,
            };
            let option: String = line
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{option}"))
        })
        .filter(|option| option != "--help" && option != "--version")
        .collect()
}

/// The subcommands `segflow ARGS --help` lists, `help` aside.
fn help_commands(args: &[&str]) -> Vec<String> {
    let help = run(segflow().args(args).arg("--help"));
    assert_eq!(help.code, 0, "{args:?}: {help:?}");
    help.stdout
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .map(str::to_string)
        .collect()
}

/// Whether `text` names `option` as a whole (`--state` is not in `--state-dir`).
fn names_option(text: &str, option: &str) -> bool {
    text.match_indices(option).any(|(at, _)| {
        !text[at + option.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// docs/cli.md has a section per command `segflow --help` lists (per service of `cluster`),
/// whose synopsis names only options the command has and whose table names every one.
#[test]
fn the_cli_reference_has_every_command_and_option() {
    let page = std::fs::read_to_string(root().join("docs/cli.md")).unwrap();
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (line, fenced) in lines_of(&page) {
        if !fenced && line.starts_with("## ") {
            current = line.strip_prefix("## segflow ").map(str::to_string);
            if let Some(command) = &current {
                sections.insert(command.clone(), String::new());
            }
        } else if let Some(command) = &current {
            let section = sections.get_mut(command).unwrap();
            section.push_str(line);
            section.push('\n');
        }
    }
    let mut commands = Vec::new();
    for command in help_commands(&[]) {
        let subcommands = help_commands(&[command.as_str()]);
        // A command with subcommands has a section of its own too when it takes options
        // itself (`serve`, beside `serve passwd`; not `cluster`).
        if subcommands.is_empty() || !help_options(&[command.as_str()]).is_empty() {
            commands.push(command.clone());
        }
        commands.extend(subcommands.iter().map(|sub| format!("{command} {sub}")));
    }
    let mut problems = Vec::new();
    let listed: BTreeSet<&String> = sections.keys().collect();
    let known: BTreeSet<&String> = commands.iter().collect();
    for command in listed.difference(&known) {
        problems.push(format!(
            "docs/cli.md has '## segflow {command}', a command segflow lacks"
        ));
    }
    for command in &commands {
        let Some(section) = sections.get(command) else {
            problems.push(format!("docs/cli.md has no '## segflow {command}'"));
            continue;
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        let options = help_options(&words);
        let synopsis = section
            .split("```text\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap_or_else(|| panic!("'segflow {command}' has no ```text synopsis"));
        let table: String = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .collect::<Vec<_>>()
            .join("\n");
        for option in &options {
            if !names_option(synopsis, option) {
                problems.push(format!("segflow {command}: the synopsis lacks {option}"));
            }
            if !names_option(&table, option) {
                problems.push(format!(
                    "segflow {command}: the options table lacks {option}"
                ));
            }
        }
        for word in synopsis.split(|c: char| c.is_whitespace() || c == '[' || c == ']') {
            if let Some(option) = word.strip_prefix("--") {
                let option: String = format!(
                    "--{}",
                    option
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect::<String>()
                );
                if !options.contains(&option) {
                    problems.push(format!(
                        "segflow {command}: the synopsis names {option}, which it does not have"
                    ));
                }
            }
        }
    }
    assert!(commands.len() >= 15, "{commands:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// docs/getting-started.md as a reader follows it: its command blocks in order, as one shell
/// script, in an empty folder, with the segflow under test first on the PATH.
#[test]
fn the_getting_started_page_runs_as_written() {
    let script: String = blocks(Path::new("docs/getting-started.md"))
        .into_iter()
        .filter(|b| b.language == "sh")
        .map(|b| b.text)
        .collect::<Vec<_>>()
        .join("\n");
    for command in [
        "segflow demo",
        "segflow init",
        "segflow run",
        "segflow report",
        "duckdb",
    ] {
        assert!(script.contains(command), "the page runs {command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_segflow")).parent().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let mut bash = std::process::Command::new("bash");
    bash.current_dir(dir.path())
        .env("PATH", format!("{}:{path}", bin.display()))
        .env("SEGFLOW_LOG", "warn")
        .args(["-euo", "pipefail", "-c", &script]);
    // As on a reader's machine: no setting of the test's environment steers segflow.
    for (name, _) in std::env::vars() {
        if name.starts_with("SEGFLOW_") && name != "SEGFLOW_LOG" {
            bash.env_remove(name);
        }
    }
    let ran: Outcome = run(bash);
    assert_eq!(ran.code, 0, "the page's commands:\n{script}\n{ran:?}");
    let project = dir.path().join("my-shop");
    // The edit took: render shows it, and the published summary counts the wider segment.
    assert!(ran.stdout.contains("BETWEEN 61 AND 180"), "{ran:?}");
    assert!(ran.stdout.contains("soft_lapse"), "{ran:?}");
    for made in [
        dir.path().join("segflow-demo/report.html"),
        dir.path().join("try/segment_summary"),
        project.join("out/segment_summary"),
        project.join("report.html"),
    ] {
        assert!(made.exists(), "{} was made: {ran:?}", made.display());
    }
}

/// mdBook as `.ci/run` installs it, or the one `SEGFLOW_MDBOOK` names.
fn mdbook() -> PathBuf {
    let path = std::env::var_os("SEGFLOW_MDBOOK").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/segflow/tools/bin/mdbook")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run .ci/run, which installs mdBook there, or point SEGFLOW_MDBOOK at an \
         mdbook binary",
        path.display()
    );
    path
}

/// The values of `attribute="..."` in an HTML page, `&amp;` and the like undone.
fn attribute_values(html: &str, attribute: &str) -> Vec<String> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let value = &html[at + needle.len()..];
            Some(value[..value.find('"')?].to_string())
        })
        .map(|value| {
            value
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The docs build into a book with mdBook (docs/book.toml), every page in its table of
/// contents, and every link of its HTML pages reaches a file of the book and an id there.
#[test]
fn the_book_builds_with_every_page_and_its_links_resolve() {
    let summary = std::fs::read_to_string(root().join("docs/SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = paragraphs(&summary)
        .into_iter()
        .flat_map(|(_, paragraph)| link_targets(&paragraph))
        .collect();
    for page in pages() {
        let Ok(inside) = page.strip_prefix("docs") else {
            continue;
        };
        let inside = inside.to_str().unwrap();
        if inside != "SUMMARY.md" {
            assert!(
                listed.contains(inside),
                "docs/SUMMARY.md does not list {inside}, so the book leaves it out"
            );
        }
    }

    let book = tempfile::tempdir().unwrap();
    let built = run(std::process::Command::new(mdbook())
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(book.path()));
    assert_eq!(built.code, 0, "{built:?}");
    assert!(
        !built.stderr.contains("WARN") && !built.stderr.contains("ERROR"),
        "{built:?}"
    );

    fn html_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                html_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "html") {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    html_files(book.path(), &mut files);
    let mut ids: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let html = std::fs::read_to_string(file).unwrap();
        let canonical = file.canonicalize().unwrap();
        ids.insert(
            canonical,
            attribute_values(&html, "id").into_iter().collect(),
        );
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let html = std::fs::read_to_string(file).unwrap();
        let name = file
            .strip_prefix(book.path())
            .unwrap()
            .display()
            .to_string();
        let links = attribute_values(&html, "href")
            .into_iter()
            .chain(attribute_values(&html, "src"));
        for link in links {
            // Another site, or a path from the root of whatever site serves the book (404.html).
            let scheme = link
                .split_once(':')
                .is_some_and(|(s, _)| s.chars().all(|c| c.is_ascii_alphabetic()));
            if scheme || link.starts_with('/') {
                continue;
            }
            checked += 1;
            let (target, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let mut target = if target.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(target)
            };
            if target.is_dir() {
                target = target.join("index.html");
            }
            if !target.exists() {
                problems.push(format!("{name}: {link}: no such file in the book"));
                continue;
            }
            let target = target.canonicalize().unwrap();
            if !anchor.is_empty() {
                let known = ids.get(&target).is_some_and(|ids| ids.contains(anchor));
                if !known {
                    problems.push(format!("{name}: {link}: no element has the id {anchor}"));
                }
            }
        }
    }
    assert!(checked > 200, "only {checked} links were found in the book");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
