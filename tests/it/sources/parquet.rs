//! A source URL may name one Parquet file, a folder of files, or a Hive-partitioned folder
//! whose partition keys become columns; the files may come from different writers.

use crate::support::{
    AS_OF, COMPARED_OUTPUTS, Project, Size, assert_same_outputs, column_values, copy_dir,
    read_parquet, read_table, rows,
};

#[test]
fn single_files_and_hive_partitioned_folders_are_sources() {
    let project = Project::new(Size::Small);
    let hive = project.path().join("hive/orders");
    // The generated orders copied twice under region=… folders: each order appears once per
    // region, so counting by region must give the order count for each.
    for region in ["emea", "amer"] {
        copy_dir(
            &project.data().join("orders"),
            &hive.join(format!("region={region}")),
        );
    }
    std::fs::write(
        project.path().join("queries/by_region.sql"),
        "SELECT region, COUNT(*) AS orders, COUNT(DISTINCT c.customer_id) AS customers \
         FROM orders o LEFT JOIN customers c USING (customer_id) GROUP BY region ORDER BY region",
    )
    .unwrap();
    std::fs::write(
        project.path().join("pipelines/sources.yaml"),
        format!(
            "name: sources\n\
             sources:\n  \
               customers: {{ url: {customers}, columns: {{ customer_id: bigint }} }}\n  \
               orders: {{ url: {hive}, columns: {{ order_id: bigint, region: string }} }}\n\
             steps:\n  - {{ name: by_region, sql: ../queries/by_region.sql }}\n\
             outputs:\n  - {{ table: by_region, url: out/by_region/ }}\n",
            customers = project
                .data()
                .join("customers/part-00000.parquet")
                .display(),
            hive = hive.display(),
        ),
    )
    .unwrap();
    let outcome = project.segflow(&["run", "pipelines/sources.yaml", "--as-of", AS_OF]);
    assert_eq!(outcome.code, 0, "{outcome:?}");

    let manifest = project.manifest("by_region", AS_OF);
    let batches: Vec<_> = manifest
        .files
        .iter()
        .flat_map(|f| read_parquet(&project.out().join("by_region").join(&f.path)))
        .collect();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let orders = rows(&read_table(&project.data().join("orders")));
    assert!(
        text.contains(&format!("| amer   | {orders:<6} |")),
        "{text}"
    );
    assert!(
        text.contains(&format!("| emea   | {orders:<6} |")),
        "{text}"
    );
}

/// Customers and orders rewritten by other tools, the rows split into parts by pyarrow's
/// defaults, pyarrow set to write as Spark does (INT96 timestamps, dictionary strings),
/// large strings and lists, DuckDB and polars, side by side in one folder (`writers.py`): the
/// shipped pipeline publishes what it published from the generated files. Lists, structs and
/// maps whose parts each writer names its own way, with fields in another order or missing
/// from some files, read as one column, each value as written.
#[test]
fn files_that_other_tools_wrote_read_as_one_source() {
    let project = Project::new(Size::Small);
    let generated = project.run_nightly(AS_OF);
    assert_eq!(generated.code, 0, "{generated:?}");
    let from_generated = project.path().join("from_generated");
    std::fs::rename(project.out(), &from_generated).unwrap();

    let data = project.data().display().to_string();
    let written = crate::support::python_script("writers.py", &[&data]);
    assert_eq!(written.code, 0, "{written:?}");
    let expected: serde_json::Value = serde_json::from_str(&written.stdout).unwrap();
    let mixed = project.run_nightly(AS_OF);
    assert_eq!(mixed.code, 0, "{mixed:?}");
    assert_same_outputs(&from_generated, &project.out(), &COMPARED_OUTPUTS, AS_OF);

    std::fs::write(
        project.path().join("queries/nested.sql"),
        "SELECT customer_id, address['country_code'] AS country_code, \
                attributes['source'] AS source \
         FROM customers ORDER BY customer_id",
    )
    .unwrap();
    std::fs::write(
        project.path().join("pipelines/nested.yaml"),
        format!(
            "name: nested\n\
             sources:\n  customers: {{ url: {data}/customers/ }}\n\
             steps:\n  - {{ name: nested, sql: ../queries/nested.sql }}\n\
             outputs:\n  - {{ table: nested, url: {out}/nested/ }}\n",
            out = project.out().display()
        ),
    )
    .unwrap();
    let pipeline = project.path().join("pipelines/nested.yaml");
    let nested = project.segflow(&["run", pipeline.to_str().unwrap(), "--as-of", AS_OF]);
    assert_eq!(nested.code, 0, "{nested:?}");
    let column = |name| column_values(&project.out(), "nested", AS_OF, name);
    let customers = column("customer_id");
    let (countries, sources) = (column("country_code"), column("source"));
    assert_eq!(customers.len(), expected.as_object().unwrap().len());
    for (i, customer) in customers.iter().enumerate() {
        let want = &expected[customer.as_str()];
        assert_eq!(
            countries[i],
            want["country_code"].as_str().unwrap(),
            "{customer}"
        );
        assert_eq!(
            sources[i],
            want["source"].as_str().unwrap_or(""),
            "{customer}"
        );
    }
}

/// JSON held as text, as lakes and connectors write objects they have no schema for (a
/// REST-era Fivetran `total_price_set`, an Airbyte schemaless field): datafusion-functions-json
/// reads into it in a step, by function and by operator, and a value that is not JSON, or
/// lacks the path, is NULL rather than a failed night.
#[test]
fn json_text_columns_are_read_with_the_json_functions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("orders")).unwrap();
    let written = crate::support::run(std::process::Command::new("python3").args([
        "-c",
        r#"import sys, json, pyarrow as pa, pyarrow.parquet as pq
money = lambda shop, pres: json.dumps({"shop_money": {"amount": shop, "currency_code": "USD"},
                                       "presentment_money": {"amount": pres, "currency_code": "EUR"}})
pq.write_table(pa.table({
    "id": pa.array([1, 2, 3, 4], pa.int64()),
    "total_price_set": [money("12.30", "11.32"), money("7.05", "6.49"), "not json", None],
    "note_attributes": ['[{"name": "gift", "value": "yes"}]', '[]', '[{"name": "a"}, {"name": "b"}]', None],
}), sys.argv[1])"#,
        root.join("orders/part-0.parquet").to_str().unwrap(),
    ]));
    assert_eq!(written.code, 0, "{written:?}");
    std::fs::write(
        root.join("json.sql"),
        "SELECT id,\n\
         CAST(json_get_str(total_price_set, 'shop_money', 'amount') AS DECIMAL(12, 2)) AS amount,\n\
         total_price_set->'presentment_money'->>'currency_code' AS buyer_currency,\n\
         json_length(note_attributes) AS notes\n\
         FROM orders ORDER BY id",
    )
    .unwrap();
    std::fs::write(
        root.join("json.yaml"),
        "name: json\n\
         sources:\n  orders: { url: orders/ }\n\
         steps:\n  - { name: amounts, sql: json.sql }\n\
         outputs:\n  - { table: amounts, url: out/amounts/ }\n",
    )
    .unwrap();
    let ran = crate::support::run(crate::support::segflow().current_dir(root).args([
        "run",
        "json.yaml",
        "--as-of",
        AS_OF,
        "--state",
        "state",
    ]));
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = root.join("out");
    let column = |name| column_values(&out, "amounts", AS_OF, name);
    assert_eq!(column("amount"), ["12.30", "7.05", "", ""]);
    assert_eq!(column("buyer_currency"), ["EUR", "EUR", "", ""]);
    assert_eq!(column("notes"), ["1", "0", "2", ""]);
}
