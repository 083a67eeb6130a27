//! The shop built by hand, row by row, with known answers for the shipped segments, RFM rules
//! and set operations (`results/known_answers.rs`): refunds (partial, full, NULL), cancellations, orders after as_of, an order in
//! the last microsecond of the as_of day and one in the first after it, customers with no
//! orders, checkouts abandoned with and without a later order or completed only after as_of,
//! and dirty keys: orders without a customer or with an unknown one, a customer who signs up
//! after as_of, one with no known sign-up time, blank contact fields and repeated customers.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use parquet::arrow::ArrowWriter;

use super::project::{copy_dir, let_orders_age, pin_models};

fn micros(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn ts(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            values
                .into_iter()
                .map(|v| v.map(micros))
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

fn money(values: Vec<i128>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(12, 2)
            .unwrap(),
    )
}

fn write(dir: &Path, table: &str, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(dir.join(table)).unwrap();
    write_file(&dir.join(table).join("part-0.parquet"), columns);
}

pub fn write_file(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn ints(values: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

fn maybe_ints(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

fn maybe_money(values: &[Option<i128>]) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(12, 2)
            .unwrap(),
    )
}

fn maybe_strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn bools(values: &[Option<bool>]) -> ArrayRef {
    Arc::new(BooleanArray::from(values.to_vec()))
}

/// The fixture's customers; `updated_at` stamps each row as a version of its customer.
pub fn customers(rows: &[Customer]) -> Vec<(&'static str, ArrayRef)> {
    vec![
        (
            "customer_id",
            ints(&rows.iter().map(|c| c.id).collect::<Vec<_>>()),
        ),
        (
            "email",
            maybe_strings(&rows.iter().map(|c| c.email).collect::<Vec<_>>()),
        ),
        (
            "phone",
            maybe_strings(&rows.iter().map(|c| c.phone).collect::<Vec<_>>()),
        ),
        ("created_at", ts(rows.iter().map(|c| c.created).collect())),
        ("country", strings(&vec!["US"; rows.len()])),
        (
            "email_subscribed",
            bools(&rows.iter().map(|c| c.email_ok).collect::<Vec<_>>()),
        ),
        (
            "sms_subscribed",
            bools(&rows.iter().map(|c| c.sms_ok).collect::<Vec<_>>()),
        ),
        (
            "updated_at",
            ts(rows.iter().map(|c| Some(c.updated)).collect()),
        ),
    ]
}

pub struct Customer {
    pub id: i64,
    pub email: Option<&'static str>,
    pub phone: Option<&'static str>,
    pub created: Option<&'static str>,
    pub email_ok: Option<bool>,
    pub sms_ok: Option<bool>,
    pub updated: &'static str,
}

pub const CREATED: &str = "2025-01-01 00:00:00";

pub fn customer(id: i64, email: &'static str, created: Option<&'static str>) -> Customer {
    Customer {
        id,
        email: Some(email),
        phone: None,
        created,
        email_ok: Some(true),
        sms_ok: Some(false),
        updated: CREATED,
    }
}

/// c1 orders in the last microsecond of as_of; c2 never orders, and its checkout is
/// completed only after as_of; c3 has two paid orders (one partly refunded), a cancelled one
/// and one just after as_of; c4 one paid order and one fully refunded; c5 signs up after
/// as_of but has an order and a checkout before it; c6 abandons a checkout; c7 abandons one
/// and then orders; c8 has no known sign-up time and an order with a NULL refund; c9's email
/// and phone are blank; c10's only paid order was refunded in full. c3's marketing consent is
/// unknown (NULL). One order has no
/// customer, one belongs to customer 99, who is not in customers; one checkout has no
/// customer.
fn write_shop(data: &Path) {
    let mut rows = vec![
        customer(1, "c1@x", Some(CREATED)),
        customer(2, "c2@x", Some(CREATED)),
        customer(3, "c3@x", Some(CREATED)),
        customer(4, "c4@x", Some(CREATED)),
        customer(5, "c5@x", Some("2026-04-05 00:00:00")),
        customer(6, "c6@x", Some("2026-03-01 00:00:00")),
        customer(7, "c7@x", Some("2026-01-01 00:00:00")),
        customer(8, "c8@x", None),
        customer(9, "   ", Some(CREATED)),
        customer(10, "c10@x", Some(CREATED)),
    ];
    rows[0].phone = Some("+1");
    rows[0].sms_ok = Some(true);
    rows[2].email_ok = None;
    rows[2].sms_ok = None;
    rows[7].email_ok = Some(false);
    rows[8].phone = Some("");
    rows[8].sms_ok = Some(true);
    rows[9].email_ok = Some(false);
    write(data, "customers", customers(&rows));
    // (order, customer, placed, total, status, refunded, product, collection)
    #[allow(clippy::type_complexity)]
    let orders: &[(i64, Option<i64>, &str, i128, &str, Option<i128>, i64, &str)] = &[
        (
            1,
            Some(1),
            "2026-03-31 23:59:59.999999",
            10000,
            "paid",
            Some(0),
            1,
            "outerwear",
        ),
        (
            2,
            Some(3),
            "2025-06-01 10:00:00",
            5000,
            "paid",
            Some(0),
            5,
            "knitwear",
        ),
        (
            3,
            Some(3),
            "2025-07-01 10:00:00",
            7000,
            "paid",
            Some(2000),
            5,
            "knitwear",
        ),
        (
            4,
            Some(3),
            "2025-08-01 10:00:00",
            99900,
            "cancelled",
            Some(0),
            5,
            "knitwear",
        ),
        (
            5,
            Some(3),
            "2026-04-01 00:00:00",
            50000,
            "paid",
            Some(0),
            5,
            "knitwear",
        ),
        (
            6,
            Some(4),
            "2025-12-15 10:00:00",
            30000,
            "paid",
            Some(0),
            2,
            "outerwear",
        ),
        (
            7,
            Some(4),
            "2026-01-10 10:00:00",
            8000,
            "refunded",
            Some(8000),
            2,
            "outerwear",
        ),
        (
            8,
            Some(7),
            "2026-03-30 10:00:00",
            4000,
            "paid",
            Some(0),
            9,
            "knitwear",
        ),
        (
            9,
            Some(5),
            "2026-03-25 10:00:00",
            20000,
            "paid",
            Some(0),
            1,
            "outerwear",
        ),
        (
            10,
            Some(8),
            "2026-03-20 10:00:00",
            1000,
            "paid",
            None,
            9,
            "knitwear",
        ),
        (
            11,
            Some(9),
            "2025-10-01 10:00:00",
            10000,
            "paid",
            Some(0),
            5,
            "knitwear",
        ),
        (
            12,
            Some(10),
            "2026-03-15 10:00:00",
            6000,
            "paid",
            Some(6000),
            1,
            "outerwear",
        ),
        (
            13,
            None,
            "2026-03-30 12:00:00",
            60000,
            "paid",
            Some(0),
            1,
            "outerwear",
        ),
        (
            14,
            Some(99),
            "2026-03-30 12:00:00",
            60000,
            "paid",
            Some(0),
            1,
            "outerwear",
        ),
    ];
    write(
        data,
        "orders",
        vec![
            (
                "order_id",
                ints(&orders.iter().map(|o| o.0).collect::<Vec<_>>()),
            ),
            (
                "customer_id",
                maybe_ints(&orders.iter().map(|o| o.1).collect::<Vec<_>>()),
            ),
            ("ordered_at", ts(orders.iter().map(|o| Some(o.2)).collect())),
            ("total_amount", money(orders.iter().map(|o| o.3).collect())),
            ("currency", strings(&vec!["USD"; orders.len()])),
            (
                "status",
                strings(&orders.iter().map(|o| o.4).collect::<Vec<_>>()),
            ),
            (
                "refunded_amount",
                maybe_money(&orders.iter().map(|o| o.5).collect::<Vec<_>>()),
            ),
            ("channel", strings(&vec!["online_store"; orders.len()])),
            ("updated_at", ts(orders.iter().map(|o| Some(o.2)).collect())),
        ],
    );
    write(
        data,
        "order_items",
        vec![
            (
                "order_id",
                ints(&orders.iter().map(|o| o.0).collect::<Vec<_>>()),
            ),
            (
                "product_id",
                ints(&orders.iter().map(|o| o.6).collect::<Vec<_>>()),
            ),
            (
                "collection",
                strings(&orders.iter().map(|o| o.7).collect::<Vec<_>>()),
            ),
            (
                "quantity",
                Arc::new(Int32Array::from(vec![1; orders.len()])) as ArrayRef,
            ),
            ("unit_price", money(orders.iter().map(|o| o.3).collect())),
        ],
    );
    write(
        data,
        "checkouts",
        vec![
            ("checkout_id", ints(&[1, 2, 3, 4, 5])),
            (
                "customer_id",
                maybe_ints(&[Some(6), Some(7), Some(2), Some(5), None]),
            ),
            (
                "created_at",
                ts(vec![
                    Some("2026-03-28 12:00:00"),
                    Some("2026-03-29 12:00:00"),
                    Some("2026-03-29 12:00:00"),
                    Some("2026-03-30 12:00:00"),
                    Some("2026-03-30 12:00:00"),
                ]),
            ),
            (
                "completed_at",
                ts(vec![None, None, Some("2026-04-02 09:00:00"), None, None]),
            ),
        ],
    );
}

/// A scratch folder with the shipped pipeline and queries, and the fixture shop in `data/`.
pub fn fixture_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["pipelines", "queries"] {
        copy_dir(&root.join(folder), &dir.path().join(folder));
    }
    let_orders_age(dir.path());
    pin_models(dir.path());
    write_shop(&dir.path().join("data"));
    dir
}
