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
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let fence = format!("```{language}\n");
    let open = section
        .find(&fence)
        .unwrap_or_else(|| panic!("'{heading}' has no {language} block"));
    let block = &section[open + fence.len()..];
    block[..block.find("```").unwrap()].to_string()
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

#[test]
fn the_readme_segment_example_validates_runs_and_means_what_it_says() {
    let project = Project::new(2_000, 8_000);
    let sql = readme_block("### Adding a segment", "sql");
    let yaml = readme_block("### Adding a segment", "yaml");
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
    let vars = example["vars"].as_object().unwrap();
    let segments = example["segments"].as_array().unwrap();
    project.edit("pipelines/nightly_segments.yaml", |text| {
        let mut text = text;
        for (name, value) in vars {
            let line = format!("vars:\n  {name}: {}\n", value.as_str().unwrap());
            text = text.replacen("vars:\n", &line, 1);
        }
        for segment in segments {
            let line = format!(
                "segments:\n  - {{ name: {}, sql: {} }}\n",
                segment["name"].as_str().unwrap(),
                segment["sql"].as_str().unwrap()
            );
            text = text.replacen("segments:\n", &line, 1);
        }
        text
    });
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
