//! BI tools read the published outputs: DuckDB and pyarrow (installed by `.ci/run`) read them
//! both ways the README documents, and agree with the manifest on rows and totals.

use std::process::Command;

use crate::support::{AS_OF, Project, Size};

const READER: &str = r#"
import json, sys
import duckdb, pyarrow.parquet as pq, pyarrow.dataset as ds, pyarrow.compute as pc

out, as_of = sys.argv[1], sys.argv[2]

def one(query, con=duckdb):
    return con.sql(query).fetchall()[0][0]

for table in ["customer_features", "rfm"]:
    manifest = json.load(open(f"{out}/{table}/_segflow/manifests/as_of={as_of}.json"))
    files = [f"{out}/{table}/{f['path']}" for f in manifest["files"]]

    # The atomic way: exactly the files the manifest lists.
    arrow_rows = pq.read_table(files).num_rows
    duck_rows = one(f"SELECT count(*) FROM read_parquet({files!r})")
    # The README's DuckDB-only recipe for the same thing.
    con = duckdb.connect()
    con.execute(
        f"SET VARIABLE files = (SELECT list('{out}/{table}/' || f.path) FROM "
        f"(SELECT unnest(files) AS f FROM read_json('{out}/{table}/_segflow/manifests/as_of={as_of}.json')))")
    duck_recipe = one("SELECT count(*) FROM read_parquet(getvariable('files'))", con)
    assert duck_recipe == duck_rows, (duck_recipe, duck_rows)

    # The glob way, with the as_of partition as a column.
    glob = f"{out}/{table}/as_of=*/*.parquet"
    duck_glob = one(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
        f"WHERE as_of = DATE '{as_of}'")
    dataset = ds.dataset(f"{out}/{table}", format="parquet", partitioning="hive",
                         exclude_invalid_files=False)
    arrow_glob = dataset.to_table(filter=pc.field("as_of") == as_of).num_rows

    if table == "customer_features":
        duck_sum = one(f"SELECT sum(net_revenue) FROM read_parquet({files!r})")
        arrow_sum = pc.sum(pq.read_table(files)["net_revenue"]).as_py()
        assert duck_sum == arrow_sum, (duck_sum, arrow_sum)
        types = {row[0]: row[1] for row in
                 duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet({files!r})").fetchall()}
        assert types["net_revenue"] == "DECIMAL(14,2)", types
        assert types["last_order_at"] == "TIMESTAMP WITH TIME ZONE", types
    print(table, manifest["rows"], arrow_rows, duck_rows, duck_glob, arrow_glob)

# segflow computes with string views; every published file has plain strings, which
# readers older than string views (pyarrow < 16, Spark, Trino) read too.
import os, pyarrow as pa
for table in sorted(os.listdir(out)):
    manifest = json.load(open(f"{out}/{table}/_segflow/manifests/as_of={as_of}.json"))
    schema = pq.read_schema(f"{out}/{table}/{manifest['files'][0]['path']}")
    for field in schema:
        kind = field.type.value_type if pa.types.is_list(field.type) else field.type
        assert not pa.types.is_string_view(kind), (table, field)
    listed = {c["name"]: c["data_type"] for c in manifest["schema"]}
    assert "Utf8View" not in str(listed), (table, listed)
"#;

#[test]
fn duckdb_and_pyarrow_read_the_outputs() {
    let project = Project::new(Size::Large);
    for as_of in [AS_OF, "2026-04-30"] {
        let outcome = project.run_nightly(as_of);
        assert_eq!(outcome.code, 0, "{outcome:?}");
    }
    let result = crate::support::run(Command::new("python3").args([
        "-c",
        READER,
        project.out().to_str().unwrap(),
        AS_OF,
    ]));
    assert_eq!(
        result.code, 0,
        "the readers failed (bash .ci/run installs duckdb and pyarrow): {result:?}"
    );
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{result:?}");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let counts = &fields[1..];
        assert!(
            counts.iter().all(|c| c == &counts[0]),
            "readers disagree: {line}"
        );
        assert_ne!(counts[0], "0", "{line}");
    }
}
