//! Bad input a user would make: each gets exit 1, a message naming the file, line, table or
//! column, and leaves what was published exactly as it was.

use std::path::Path;

use crate::support::{AS_OF, Project, Size, copy_dir};

struct Case {
    name: &'static str,
    /// Breaks the project; returns extra `segflow run` arguments.
    break_it: fn(&Project) -> Vec<String>,
    /// Every piece must appear in stderr.
    expect: &'static [&'static str],
}

fn replace(project: &Project, file: &str, from: &str, to: &str) {
    project.edit(file, |text| {
        assert!(text.contains(from), "{file} has no '{from}'");
        text.replacen(from, to, 1)
    });
}

const PIPELINE: &str = "pipelines/nightly_segments.yaml";

/// The purchase model fitted (this small shop runs it pinned, see `restore_spec`), with
/// `from` replaced by `to` in its SQL.
fn fitted_purchase_model(project: &Project, from: &str, to: &str) {
    replace(
        project,
        PIPELINE,
        "queries/purchase_model_pinned.sql",
        "queries/purchase_model.sql",
    );
    replace(project, "queries/purchase_model.sql", from, to);
}
const RFM: &str = "queries/rfm.sql";

const CASES: &[Case] = &[
    Case {
        // A later run would read its own rfm files as orders, and vacuum delete orders.
        name: "an output is published into a source's folder",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "url: \"${SEGFLOW_OUT:-out}/rfm/\"",
                "url: \"${SEGFLOW_DATA:-data}/orders/\"",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "output 'rfm' is published to file://",
            "and source 'orders' is read from file://",
            "Give the output a folder of its own",
        ],
    },
    Case {
        name: "an output's folder holds the sources",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "url: \"${SEGFLOW_OUT:-out}/rfm/\"",
                "url: \"${SEGFLOW_DATA:-data}/\"",
            );
            vec![]
        },
        expect: &[
            "source 'customers' is read from",
            "source 'orders' is read from",
            "source 'checkouts' is read from",
        ],
    },
    Case {
        // Found as soon as the check's table is planned, before the steps after it run.
        name: "a check names a column its table does not have",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "column: r_score, min: 1",
                "column: r_scor, min: 1",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "check 'rfm_accepted_range_r_scor': 'r_scor' is not a column of 'rfm' (did you mean 'r_score'?)",
        ],
    },
    Case {
        name: "a relationships check points at a table that does not exist",
        break_it: |p| {
            replace(p, PIPELINE, "to: customers }", "to: customer }");
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "relationships to table 'customer', which is not a source or a step (did you mean 'customers'?)",
        ],
    },
    Case {
        name: "a freshness check on a text column",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "freshness: { column: ordered_at",
                "freshness: { column: status",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "freshness needs a timestamp or date column, and 'status' of 'orders' is a string",
        ],
    },
    Case {
        name: "a check's SQL file is missing",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "sql: ../queries/checks/winback_change.sql",
                "sql: ../queries/checks/winback_chnge.sql",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "check 'winback_size': cannot read SQL file",
            "winback_chnge.sql",
        ],
    },
    Case {
        // Each file's result is kept for later nights: it must not depend on the date.
        name: "an incremental step uses $as_of",
        break_it: |p| {
            replace(
                p,
                "queries/paid_orders.sql",
                "WHERE status = 'paid'",
                "WHERE status = 'paid' AND ordered_at < $as_of_end",
            );
            vec![]
        },
        expect: &[
            "step 'paid_orders'",
            "paid_orders.sql",
            "cannot use $as_of_end",
        ],
    },
    Case {
        name: "an incremental step uses current_date",
        break_it: |p| {
            replace(
                p,
                "queries/paid_orders.sql",
                "WHERE status = 'paid'",
                "WHERE status = 'paid' AND CAST(ordered_at AS DATE) < current_date",
            );
            vec![]
        },
        expect: &["step 'paid_orders'", "cannot use current_date()"],
    },
    Case {
        name: "an incremental step reads a table that is not its source",
        break_it: |p| {
            replace(
                p,
                "queries/paid_orders.sql",
                "FROM orders\n",
                "FROM orders\nWHERE customer_id IN (SELECT customer_id FROM customers)\n  AND ",
            );
            replace(
                p,
                "queries/paid_orders.sql",
                "WHERE status = 'paid'",
                "status = 'paid'",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "step 'paid_orders' is incremental over 'orders'",
            "it reads 'customers'",
        ],
    },
    Case {
        // Folds are read as the step's table: a column renamed would break every reader.
        name: "a fold returns other columns than its step",
        break_it: |p| {
            replace(
                p,
                "queries/customer_orders_fold.sql",
                "SUM(net_revenue) AS net_revenue",
                "SUM(net_revenue) AS revenue",
            );
            vec![]
        },
        expect: &[
            "step 'customer_orders'",
            "customer_orders_fold.sql",
            "the fold must return the step's columns in the step's order (customer_id, first_order_at, last_order_at, \
             first_order_day, last_order_day, paid_orders, net_revenue), but it returns \
             (customer_id, first_order_at, last_order_at, first_order_day, last_order_day, \
             paid_orders, revenue)",
        ],
    },
    Case {
        // What a fold makes is kept for later nights too.
        name: "a fold uses $as_of",
        break_it: |p| {
            replace(
                p,
                "queries/customer_orders_fold.sql",
                "FROM customer_orders\n",
                "FROM customer_orders\nWHERE first_order_at <= $as_of_end\n",
            );
            vec![]
        },
        expect: &[
            "step 'customer_orders'",
            "customer_orders_fold.sql",
            "cannot use $as_of",
        ],
    },
    Case {
        name: "a fold reads another table",
        break_it: |p| {
            replace(
                p,
                "queries/customer_orders_fold.sql",
                "FROM customer_orders\n",
                "FROM customer_orders JOIN customers USING (customer_id)\n",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "step 'customer_orders': the fold",
            "must read only 'customer_orders'",
            "but it reads 'customers'",
        ],
    },
    Case {
        name: "an incremental step's time column is not a timestamp",
        break_it: |p| {
            replace(p, PIPELINE, "time: ordered_at }", "time: order_id }");
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "incremental.time 'order_id' is a bigint column of 'orders'",
        ],
    },
    Case {
        name: "an incremental step names a source that does not exist",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "incremental: { source: orders,",
                "incremental: { source: order,",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "incremental.source 'order' is not a source (did you mean 'orders'?)",
        ],
    },
    Case {
        // Written while other outputs are being written: the run stops, and nothing of any
        // output is published.
        name: "an output's query fails while its rows are written",
        break_it: |p| {
            replace(
                p,
                "queries/winback_suppressed.sql",
                "       paid_orders,",
                "       paid_orders / (paid_orders - paid_orders) AS paid_orders,",
            );
            vec![]
        },
        expect: &["output 'winback_suppressed'", "Divide by zero"],
    },
    Case {
        name: "invalid YAML",
        break_it: |p| {
            replace(p, PIPELINE, "steps:\n", "steps: [\n");
            vec![]
        },
        expect: &["nightly_segments.yaml:"],
    },
    Case {
        name: "unknown key",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "    columns:\n      order_id",
                "    colums:\n      order_id",
            );
            vec![]
        },
        expect: &["nightly_segments.yaml:", "unknown field `colums`"],
    },
    Case {
        name: "missing SQL file",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "../queries/rfm.sql",
                "../queries/rfm_scores.sql",
            );
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "step 'rfm': cannot read SQL file",
            "rfm_scores.sql",
        ],
    },
    Case {
        name: "sql: names a file that is not SQL",
        break_it: |p| {
            replace(p, PIPELINE, "../queries/rfm.sql", "/etc/passwd");
            vec![]
        },
        expect: &[
            "nightly_segments.yaml:",
            "step 'rfm': `sql:` names /etc/passwd, which is not a .sql file",
        ],
    },
    Case {
        name: "SQL syntax error",
        break_it: |p| {
            replace(
                p,
                RFM,
                "SELECT b.customer_id,\n       'rm_quintiles_f_orders'",
                "SELEKT b.customer_id,\n       'rm_quintiles_f_orders'",
            );
            vec![]
        },
        expect: &["step 'rfm'", "rfm.sql", "not valid SQL"],
    },
    Case {
        name: "unknown table",
        break_it: |p| {
            replace(p, RFM, "FROM customer_features", "FROM customer_feature");
            vec![]
        },
        expect: &[
            "rfm.sql reads table 'customer_feature'",
            "did you mean 'customer_features'",
        ],
    },
    Case {
        name: "unknown column",
        break_it: |p| {
            replace(
                p,
                RFM,
                "paid_orders AS frequency",
                "paid_order AS frequency",
            );
            vec![]
        },
        expect: &["step 'rfm'", "rfm.sql", "paid_order"],
    },
    Case {
        name: "step cycle",
        break_it: |p| {
            replace(
                p,
                "queries/customer_features.sql",
                "FROM customers c",
                "FROM customers c JOIN rfm r USING (customer_id)",
            );
            vec![]
        },
        expect: &["cycle", "customer_features", "rfm"],
    },
    Case {
        name: "DDL in a step",
        break_it: |p| {
            std::fs::write(p.path().join(RFM), "DROP TABLE orders").unwrap();
            vec![]
        },
        expect: &["step 'rfm'", "`DROP TABLE` statement", "may only query"],
    },
    Case {
        name: "source URL with no files",
        break_it: |p| {
            std::fs::create_dir_all(p.path().join("empty/orders")).unwrap();
            replace(
                p,
                PIPELINE,
                "${SEGFLOW_DATA:-data}/orders/",
                "empty/orders/",
            );
            vec![]
        },
        expect: &[
            "source 'orders': no Parquet files at file://",
            "empty/orders/",
        ],
    },
    Case {
        name: "corrupt Parquet file",
        break_it: |p| {
            std::fs::write(
                p.data().join("orders/part-00000.parquet"),
                b"PAR1 this is not parquet",
            )
            .unwrap();
            vec![]
        },
        expect: &[
            "source 'orders':",
            "orders/part-00000.parquet is not a readable Parquet file",
        ],
    },
    Case {
        name: "corrupt page index",
        break_it: |p| {
            corrupt_column_index(&p.data().join("orders/part-00000.parquet"));
            vec![]
        },
        expect: &[
            "source 'orders':",
            "orders/part-00000.parquet is not a readable Parquet file",
        ],
    },
    Case {
        name: "corrupt data page",
        break_it: |p| {
            corrupt_data_page(&p.data().join("orders/part-00000.parquet"));
            vec![]
        },
        expect: &[
            "source 'orders': file://",
            "orders/part-00000.parquet cannot be read",
            "damaged",
        ],
    },
    Case {
        name: "missing declared column",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "      status: string\n",
                "      status: string\n      discount: decimal(12,2)\n",
            );
            vec![]
        },
        expect: &[
            "source 'orders':",
            "has no column 'discount' (declared as decimal(12,2))",
        ],
    },
    Case {
        name: "wrong column type",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "      status: string\n",
                "      status: bigint\n",
            );
            vec![]
        },
        expect: &[
            "source 'orders': column 'status' in file://",
            "is Utf8, but is declared as bigint",
        ],
    },
    Case {
        name: "files of a source disagree on a column's type",
        break_it: |p| {
            write_orders_with_numeric_channel(&p.data().join("orders/part-zz.parquet"));
            vec![]
        },
        expect: &[
            "source 'orders': column 'channel' is Utf8 in file://",
            "orders/part-00000.parquet but Int64 in file://",
            "orders/part-zz.parquet, which cannot be read as one type",
        ],
    },
    Case {
        // With `version:` a second delivery counts once (sources/versions.rs); without it,
        // repeated ids are refused, and the message says what to declare.
        name: "repeated customers of a source without versions",
        break_it: |p| {
            let customers = p.data().join("customers");
            std::fs::copy(
                customers.join("part-00000.parquet"),
                customers.join("part-again.parquet"),
            )
            .unwrap();
            replace(p, PIPELINE, "    version: updated_at\n", "");
            vec![]
        },
        expect: &[
            "source 'customers': 300 customer_id values are on more than one row (for example customer_id 1, on 2 rows); if the rows are versions of what the key names",
            "declare `version:`",
        ],
    },
    Case {
        name: "unknown time zone",
        break_it: |p| {
            replace(p, PIPELINE, "timezone: UTC ", "timezone: Europe/Olso ");
            vec![]
        },
        expect: &["nightly_segments.yaml:7: 'Europe/Olso' is not an IANA time zone"],
    },
    Case {
        name: "members table without the sign-up column",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "  created_at: created_at ",
                "  created_at: signed_up_at ",
            );
            vec![]
        },
        expect: &[
            "segments take their members from the table 'customers' (members.table), but it has no sign-up column 'signed_up_at'",
            "name it in members.created_at",
        ],
    },
    Case {
        name: "version without a key",
        break_it: |p| {
            replace(p, PIPELINE, "    key: customer_id\n", "");
            vec![]
        },
        expect: &["source 'customers': version needs a key, whose versions it orders"],
    },
    Case {
        name: "keep_latest_by, the name before version",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "    version: updated_at\n",
                "    keep_latest_by: updated_at\n",
            );
            vec![]
        },
        expect: &[
            "source 'customers': keep_latest_by is now `version: updated_at`, which keeps the version in force at the end of the as_of day",
        ],
    },
    Case {
        name: "a version column that is not there",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "    version: updated_at\n",
                "    version: updated\n",
            );
            vec![]
        },
        expect: &[
            "source 'customers': the version column 'updated' is not a column of the source (did you mean 'updated_at'?)",
        ],
    },
    Case {
        name: "var of the wrong type",
        break_it: |_| vec!["--var".into(), "lapse_days=ninety".into()],
        expect: &[
            "nightly_segments.yaml:",
            "--var lapse_days=ninety: 'ninety' is not an int",
        ],
    },
    Case {
        name: "unknown parameter in SQL",
        break_it: |p| {
            replace(
                p,
                RFM,
                "WHERE paid_orders > 0",
                "WHERE paid_orders > $min_orders",
            );
            vec![]
        },
        expect: &[
            "step 'rfm'",
            "rfm.sql",
            "$min_orders, which is not a pipeline var",
        ],
    },
    Case {
        name: "parameter used as the wrong type",
        break_it: |p| {
            replace(
                p,
                PIPELINE,
                "lapse_days: 120",
                "lapse_days: { type: date, value: 2024-01-01 }",
            );
            vec![]
        },
        expect: &[
            "one_time_lapsed.sql",
            "uses $lapse_days where it expects Int64, but lapse_days is a date",
        ],
    },
    Case {
        name: "a prediction given a column where the fit goes",
        break_it: |p| {
            replace(
                p,
                "queries/customer_predictions.sql",
                "bgnbd_p_alive(m.fit, h.x,",
                "bgnbd_p_alive(h.x, h.x,",
            );
            vec![]
        },
        expect: &[
            "step 'customer_predictions'",
            "customer_predictions.sql",
            "bgnbd_p_alive(fit, x, t_x, T): fit is Int64, not the result of bgnbd_fit",
        ],
    },
    Case {
        // Fitted, not pinned, on the one-time buyers alone.
        name: "a model fitted without repeat buyers",
        break_it: |p| {
            fitted_purchase_model(
                p,
                "FROM purchase_histories",
                "FROM purchase_histories WHERE x = 0",
            );
            vec![]
        },
        expect: &[
            "step 'purchase_model'",
            "purchase_model.sql",
            "the BG/NBD model needs at least 10 repeat buyers",
            "its input has 0 among",
        ],
    },
    Case {
        name: "a model's inputs in the wrong order",
        break_it: |p| {
            fitted_purchase_model(p, r#"bgnbd_fit(x, t_x, "T")"#, r#"bgnbd_fit(x, "T", t_x)"#);
            vec![]
        },
        expect: &[
            "step 'purchase_model'",
            "the BG/NBD model's input has x = 0, t_x = ",
            "breaks 0 ≤ x and 0 ≤ t_x ≤ T",
        ],
    },
];

/// Overwrites the first column index of a Parquet file (its footer stays intact), as a
/// writer that died while writing it, or a bad disk, would leave it.
fn corrupt_column_index(path: &Path) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let column = reader.metadata().row_group(0).column(0);
    let offset = column.column_index_offset().expect("a column index") as usize;
    let length = column.column_index_length().expect("a column index") as usize;
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..offset + length].fill(0xff);
    std::fs::write(path, bytes).unwrap();
}

/// Overwrites bytes inside the first data page of a Parquet file (its footer and page headers
/// stay intact), as a bad disk or a bad copy would.
fn corrupt_data_page(path: &Path) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let column = reader.metadata().row_group(0).column(0);
    let chunk_start = column
        .dictionary_page_offset()
        .unwrap_or(column.data_page_offset());
    let chunk_end = (chunk_start + column.compressed_size()) as usize;
    let start = column.data_page_offset() as usize + 64;
    let end = (start + 2000).min(chunk_end);
    assert!(start < end, "the first data page is too small to damage");
    let mut bytes = std::fs::read(path).unwrap();
    bytes[start..end].fill(0xff);
    std::fs::write(path, bytes).unwrap();
}

/// An orders file whose channel (a column the pipeline does not declare) is a number, where
/// the generated files have text.
fn write_orders_with_numeric_channel(path: &Path) {
    use datafusion::arrow::array::{
        ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use std::sync::Arc;
    let money = || -> ArrayRef {
        Arc::new(
            Decimal128Array::from(vec![1000])
                .with_precision_and_scale(12, 2)
                .unwrap(),
        )
    };
    let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter([
        (
            "order_id",
            Arc::new(Int64Array::from(vec![1_000_000])) as ArrayRef,
        ),
        ("customer_id", Arc::new(Int64Array::from(vec![1]))),
        (
            "ordered_at",
            Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC")),
        ),
        ("total_amount", money()),
        ("currency", Arc::new(StringArray::from(vec!["USD"]))),
        ("channel", Arc::new(Int64Array::from(vec![7]))),
        ("status", Arc::new(StringArray::from(vec!["paid"]))),
        ("refunded_amount", money()),
        (
            "updated_at",
            Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC")),
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn restore_spec(project: &Project) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        let _ = std::fs::remove_dir_all(project.path().join(folder));
        copy_dir(&root.join(folder), &project.path().join(folder));
    }
    crate::support::let_orders_age(project.path());
    crate::support::pin_models(project.path());
}

fn restore(project: &Project, pristine_data: &Path) {
    restore_spec(project);
    let _ = std::fs::remove_dir_all(project.data());
    copy_dir(pristine_data, &project.data());
}

#[test]
fn bad_input_fails_clearly_and_loses_nothing() {
    let project = Project::new(Size::Small);
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    let published = project.snapshot();
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(&project.data(), pristine.path());

    let mut failures = Vec::new();
    let mut messages = String::new();
    for case in CASES {
        restore(&project, pristine.path());
        let extra = (case.break_it)(&project);
        let pipeline = project.pipeline();
        let mut args = vec!["run", pipeline.to_str().unwrap(), "--as-of", AS_OF];
        args.extend(extra.iter().map(String::as_str));
        let outcome = project.segflow(&args);
        let missing: Vec<&&str> = case
            .expect
            .iter()
            .filter(|e| !outcome.stderr.contains(**e))
            .collect();
        if outcome.code != 1 || !missing.is_empty() || !outcome.stderr.starts_with("error: ") {
            failures.push(format!("{}: missing {missing:?}\n{outcome:?}", case.name));
        }
        if project.snapshot() != published {
            failures.push(format!("{}: published outputs changed", case.name));
        }
        messages.push_str(&format!(
            "## {}\n{}\n",
            case.name,
            user_message(&outcome.stderr, project.path())
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // What the user reads, word for word: a change of message is a reviewed diff of
    // tests/it/commands/snapshots/ (`cargo insta review`, or INSTA_UPDATE=always).
    insta::assert_snapshot!("bad_input_messages", messages);
}

/// The error as printed, without log lines, with the project folder as `[project]`.
fn user_message(stderr: &str, project: &Path) -> String {
    stderr
        .lines()
        .filter(|line| line.starts_with("error: ") || line.starts_with(' '))
        .map(|line| line.replace(&project.display().to_string(), "[project]"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A memory limit too small for what a step's operators must hold at once (a Parquet
/// writer's buffers, here) is the environment's (exit 2); the message names the step, the
/// limit and the two settings to change, and nothing published changes.
#[test]
fn a_step_that_cannot_fit_in_the_memory_limit_says_which_and_what_to_change() {
    let project = Project::new(Size::Small);
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    let published = project.snapshot();
    let pipeline = project.pipeline();
    let mut spec = std::fs::read_to_string(&pipeline).unwrap();
    spec.push_str("\nengine:\n  memory_limit: 64KiB\n");
    std::fs::write(&pipeline, spec).unwrap();
    let starved = project.run_nightly(AS_OF);
    assert_eq!(starved.code, 2, "{starved:?}");
    for token in [
        "error: step '",
        "needed more memory than the engine may use (0.1 MiB)",
        "Raise engine.memory_limit, or lower engine.target_partitions",
    ] {
        assert!(starved.stderr.contains(token), "{token}: {starved:?}");
    }
    assert_eq!(project.snapshot(), published);
}

/// Out of disk is the environment's (exit 2), and the message says which folder filled up and
/// how to move it. The scratch folder is a 16 KiB tmpfs, mounted in a private mount
/// namespace (`unshare`) so that nothing outside the run sees it.
#[test]
fn a_full_scratch_disk_names_the_folder_and_how_to_move_it() {
    let project = Project::new(Size::Large);
    let first = project.run_nightly(AS_OF);
    assert_eq!(first.code, 0, "{first:?}");
    let published = project.snapshot();
    let tiny = project.path().join("tiny-tmp");
    let full = run_on_a_tiny_disk(&project, &tiny, "16k", &[("TMPDIR", &tiny)]);
    assert_eq!(full.code, 2, "{full:?}");
    for token in [
        "no space left on device",
        &format!("scratch folder {}", tiny.display()),
        "TMPDIR",
    ] {
        assert!(full.stderr.contains(token), "{token}: {full:?}");
    }
    assert!(!full.stderr.contains("the outputs"), "{full:?}");
    assert_eq!(project.snapshot(), published, "published outputs changed");
}

/// The same with the outputs on the full disk: the error names them and their folder, not
/// the scratch folder, which has room.
#[test]
fn a_full_output_disk_names_the_outputs_and_their_folder() {
    let project = Project::new(Size::Small);
    let tiny = project.path().join("tiny-out");
    let full = run_on_a_tiny_disk(&project, &tiny, "64k", &[("SEGFLOW_OUT", &tiny)]);
    assert_eq!(full.code, 2, "{full:?}");
    for token in [
        "no space left on device",
        "the outputs customer_features, rfm",
        &format!("under {} (", tiny.display()),
    ] {
        assert!(full.stderr.contains(token), "{token}: {full:?}");
    }
    assert!(!full.stderr.contains("the scratch folder"), "{full:?}");
}

/// The shipped pipeline's run, with a tmpfs of `size` mounted at `tiny` in a private mount
/// namespace (`unshare`), and `env`, in which `tiny` names where the run writes.
fn run_on_a_tiny_disk(
    project: &Project,
    tiny: &Path,
    size: &str,
    env: &[(&str, &Path)],
) -> crate::support::Outcome {
    std::fs::create_dir(tiny).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={size} tmpfs {tiny} && exec {segflow} run {pipeline} --as-of {AS_OF}",
        tiny = tiny.display(),
        segflow = env!("CARGO_BIN_EXE_segflow"),
        pipeline = project.pipeline().display(),
    );
    crate::support::run(
        std::process::Command::new("unshare")
            .args(["--map-root-user", "--mount", "sh", "-c", &script])
            .current_dir(project.path())
            .env("SEGFLOW_DATA", project.data())
            .env("SEGFLOW_OUT", project.out())
            .env("SEGFLOW_LOG", "warn")
            .envs(env.iter().copied()),
    )
}

#[test]
fn command_line_mistakes_exit_1_and_name_the_flag() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", pipeline, "--as-of", "2026-13-45"],
            "invalid value '2026-13-45' for '--as-of <AS_OF>': '2026-13-45' is not a date",
        ),
        (
            &["run", pipeline, "--as-of", "2999-01-01"],
            "2999-01-01 is outside the dates segflow runs for, 1900-01-01 to 2261-12-31",
        ),
        (
            &[
                "backfill",
                pipeline,
                "--from",
                "1850-01-01",
                "--to",
                "2026-01-01",
            ],
            "1850-01-01 is outside the dates segflow runs for",
        ),
        (
            &["run", pipeline, "--var", "lapse_days"],
            "invalid value 'lapse_days' for '--var <VARS>': 'lapse_days' is not name=value",
        ),
        (
            &["run", pipeline, "--as-off", AS_OF],
            "unexpected argument '--as-off'",
        ),
    ];
    for (args, expect) in cases {
        let outcome = project.segflow(args);
        assert_eq!(outcome.code, 1, "{args:?}: {outcome:?}");
        assert!(outcome.stderr.contains(expect), "{args:?}: {outcome:?}");
    }
    assert!(project.snapshot().is_empty(), "nothing ran");
    let help = project.segflow(&["run", "--help"]);
    assert_eq!(help.code, 0, "{help:?}");
}

#[test]
fn validate_lists_every_problem_at_once() {
    let project = Project::new(Size::Tiny);
    replace(
        &project,
        PIPELINE,
        "../queries/rfm.sql",
        "../queries/rfm_scores.sql",
    );
    replace(&project, PIPELINE, "table: rfm,", "table: rfmm,");
    let outcome = project.segflow(&["validate", project.pipeline().to_str().unwrap()]);
    assert_eq!(outcome.code, 1, "{outcome:?}");
    assert!(outcome.stderr.contains("2 problems"), "{outcome:?}");
    assert!(
        outcome.stderr.contains("output names table 'rfmm'"),
        "{outcome:?}"
    );

    restore_spec(&project);
    let outcome = project.segflow(&["validate", project.pipeline().to_str().unwrap()]);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    assert!(outcome.stdout.contains(": ok ("), "{outcome:?}");
}

/// Each cause once, with its own line: every unknown key in one pass with a guess, store
/// settings checked by name, no complaint about an output whose step is broken, every SQL
/// file that does not plan, and the values a run will use (`--as-of`, `--var`).
#[test]
fn validation_reports_each_cause_once_at_its_line() {
    let project = Project::new(Size::Tiny);
    let spec = project.path().join("typos.yaml");
    std::fs::write(
        project.path().join("a.sql"),
        "SELECT customer_id FROM customers",
    )
    .unwrap();
    let write = |text: &str| std::fs::write(&spec, text).unwrap();
    let validate = |extra: &[&str]| {
        let mut args = vec!["validate", spec.to_str().unwrap()];
        args.extend(extra);
        project.segflow(&args)
    };
    let problems = |outcome: &crate::support::Outcome| -> Vec<String> {
        outcome
            .stderr
            .lines()
            .filter_map(|line| line.trim().strip_prefix(spec.to_str().unwrap()))
            .map(str::to_string)
            .collect()
    };
    write(
        "name: t\n\
         sources:\n  customers:\n    url: s3://lake/customers/\n    options: { aws_endpiont: 'http://x' }\n\
         steps:\n  - { name: a, sq: a.sql }\n\
         outputs:\n  - { tabel: a, url: out/a/ }\n\
         schedule: { cronn: '0 2 * * *' }\n",
    );
    let typos = validate(&[]);
    assert_eq!(typos.code, 1, "{typos:?}");
    assert_eq!(
        problems(&typos),
        [
            ":7: unknown field `sq` (did you mean 'sql'?), expected one of name, sql, incremental",
            ":9: unknown field `tabel` (did you mean 'table'?), expected one of table, url, format, options",
            ":10: unknown field `cronn` (did you mean 'cron'?), expected one of cron, timezone, catchup, max_catchup, attempts, retry_delay, timeout",
        ],
        "{typos:?}"
    );
    write(
        "name: t\n\
         sources:\n  customers:\n    url: s3://lake/customers/\n    options: { aws_endpiont: 'http://x' }\n\
         steps:\n  - { name: a, sql: missing.sql }\n\
         outputs:\n  - { table: a, url: out/a/ }\n",
    );
    let next = validate(&[]);
    assert_eq!(
        problems(&next)
            .iter()
            .map(|p| &p[..p.find(' ').unwrap()])
            .collect::<Vec<_>>(),
        [":5:", ":7:"],
        "the option and the missing file, and nothing about the output of the broken step: {next:?}"
    );
    assert!(
        next.stderr.contains(
            "'aws_endpiont' is not a setting of the store of s3://lake/customers/ (did you mean 'aws_endpoint'?)"
        ),
        "{next:?}"
    );

    // Two SQL files that do not plan: both are reported.
    replace(
        &project,
        RFM,
        "paid_orders AS frequency",
        "paid_order AS frequency",
    );
    replace(
        &project,
        "queries/segments/one_time_lapsed.sql",
        "WHERE paid_orders = 1",
        "WHERE paid_ordrs = 1",
    );
    let pipeline = project.pipeline();
    let both = project.segflow(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(both.code, 1, "{both:?}");
    for token in [
        "2 steps do not plan",
        "rfm.sql",
        "paid_order",
        "one_time_lapsed.sql",
        "paid_ordrs",
    ] {
        assert!(both.stderr.contains(token), "{token}: {both:?}");
    }
    restore_spec(&project);

    // The values a run would use.
    let pipeline = pipeline.to_str().unwrap();
    let wrong = project.segflow(&["validate", pipeline, "--var", "lapse_days=ninety"]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("--var lapse_days=ninety: 'ninety' is not an int"),
        "{wrong:?}"
    );
    let right = project.segflow(&[
        "validate",
        pipeline,
        "--var",
        "lapse_days=60",
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(right.code, 0, "{right:?}");
    assert!(
        right.stdout.contains(" steps and ") && right.stdout.contains(" segments planned;"),
        "{right:?}"
    );
}

/// Run from a folder without the data and without SEGFLOW_DATA: the message names the URL
/// as the spec writes it, so the variable to set is in plain sight.
#[test]
fn a_missing_source_built_from_the_environment_names_the_variable() {
    let project = Project::new(Size::Tiny);
    let elsewhere = tempfile::tempdir().unwrap();
    let pipeline = project.pipeline();
    let outcome = crate::support::run(
        crate::support::segflow()
            .current_dir(elsewhere.path())
            .args(["run", pipeline.to_str().unwrap(), "--as-of", AS_OF]),
    );
    assert_eq!(outcome.code, 1, "{outcome:?}");
    assert!(
        outcome.stderr.contains("no Parquet files at")
            && outcome
                .stderr
                .contains("the spec writes `${SEGFLOW_DATA:-data}/")
            && outcome.stderr.contains("set the variables it names"),
        "{outcome:?}"
    );
}

/// A state store or scratch folder given on the command line (or by the environment) inside
/// a source folder: run, validate and the daemon refuse it before writing anything there,
/// naming both, and the source folder is left as it was.
#[test]
fn state_or_scratch_inside_a_source_is_refused_before_anything_is_written() {
    let project = Project::new(Size::Tiny);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let data = crate::support::snapshot_of(&project.data());
    let inside = |folder: &str| project.data().join(folder).display().to_string();
    let (state, scratch) = (inside("customers/state"), inside("orders/scratch"));
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", pipeline, "--as-of", AS_OF, "--state", &state],
            "the state store at file://",
        ),
        (
            &["validate", pipeline, "--as-of", AS_OF, "--state", &state],
            "the state store at file://",
        ),
        (
            &["run", pipeline, "--as-of", AS_OF, "--scratch", &scratch],
            "engine.scratch at file://",
        ),
        (
            &["validate", pipeline, "--scratch", &scratch],
            "engine.scratch at file://",
        ),
    ];
    for (args, names) in cases {
        let refused = project.segflow(args);
        assert_eq!(refused.code, 1, "{args:?}: {refused:?}");
        for token in [names, "the run would write where it reads", "and source '"] {
            assert!(refused.stderr.contains(token), "{token}: {refused:?}");
        }
    }
    // The daemon does not load such a pipeline, and says why.
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::copy(
        project.pipeline(),
        project.path().join("scheduled/nightly_segments.yaml"),
    )
    .unwrap();
    let daemon = project.segflow(&[
        "schedule",
        "--pipelines",
        "scheduled",
        "--once",
        "--state",
        &state,
    ]);
    assert_eq!(daemon.code, 1, "{daemon:?}");
    assert!(
        daemon.stderr.contains("the state store at file://"),
        "{daemon:?}"
    );
    assert!(
        daemon.stderr.contains("pipeline files do not load"),
        "{daemon:?}"
    );
    assert_eq!(
        crate::support::snapshot_of(&project.data()),
        data,
        "nothing was written into the sources"
    );
}

/// A daemon confined to roots (`--root`) does not load a pipeline that reads or writes
/// elsewhere, naming each place outside, and loads it once every place is inside.
#[test]
fn a_daemon_confined_to_roots_loads_no_pipeline_that_reaches_outside_them() {
    let project = Project::new(Size::Tiny);
    std::fs::create_dir_all(project.path().join("scheduled")).unwrap();
    std::fs::copy(
        project.pipeline(),
        project.path().join("scheduled/nightly_segments.yaml"),
    )
    .unwrap();
    let data = project.data().display().to_string();
    let out = project.out().display().to_string();
    let report = project.out().join("report.html");
    let daemon = |roots: &[&str]| {
        let mut args = vec![
            "schedule",
            "--pipelines",
            "scheduled",
            "--once",
            "--state",
            "state",
        ];
        for root in roots {
            args.extend(["--root", root]);
        }
        crate::support::run(
            project
                .command(&args)
                .env("SEGFLOW_REPORT", &report)
                .env("SEGFLOW_LOG", "error"),
        )
    };
    let confined = daemon(&[&data]);
    assert_eq!(confined.code, 1, "{confined:?}");
    for token in [
        "outside the roots this daemon confines its pipelines to",
        &format!("output 'customer_features' at file://{out}/customer_features/"),
        &format!("report.url at file://{}", report.display()),
        "pipeline files do not load",
    ] {
        assert!(confined.stderr.contains(token), "{token}: {confined:?}");
    }
    assert!(!confined.stderr.contains("source 'orders'"), "{confined:?}");
    assert!(crate::support::snapshot_of(&project.out()).is_empty());

    let inside = daemon(&[&data, &out]);
    assert!(
        !inside.stderr.contains("outside the roots"),
        "every place is inside a root: {inside:?}"
    );
}
