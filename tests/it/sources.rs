//! A source URL may name one Parquet file, a folder of files, or a Hive-partitioned folder
//! whose partition keys become columns.

use crate::common::{AS_OF, Project, copy_dir, read_parquet};

#[test]
fn single_files_and_hive_partitioned_folders_are_sources() {
    let project = Project::new(400, 1_200);
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
    assert!(text.contains("| amer   | 1200   |"), "{text}");
    assert!(text.contains("| emea   | 1200   |"), "{text}");
}
