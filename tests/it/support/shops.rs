//! The shops the tests run on: three sizes of `segflow generate`'s shop, each generated once
//! per test process into a read-only cache and copied into every project that asks for it,
//! and the edits tests make to a shop's files.
//!
//! A test picks the smallest size that shows what it tests. Projects on shops under
//! [`super::project::PINNED_BELOW`] customers run the models with pinned parameters.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::record_batch::RecordBatch;

use super::process::{run, segflow};
use super::project::END;
use super::published::read_parquet;

/// The sizes of generated shop (seed 42, ending at [`END`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 50 customers and 150 orders: for what a run does, not what it computes. Models pinned.
    Tiny,
    /// 300 customers and 900 orders: every RFM score and most segments have members. Models
    /// pinned.
    Small,
    /// 4,000 customers and 16,000 orders: the models fit their parameters, and the shop
    /// outgrows small buffers and folders.
    Large,
}

impl Size {
    pub const fn customers(self) -> u64 {
        match self {
            Size::Tiny => 50,
            Size::Small => 300,
            Size::Large => 4_000,
        }
    }

    pub const fn orders(self) -> u64 {
        match self {
            Size::Tiny => 150,
            Size::Small => 900,
            Size::Large => 16_000,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The generated shop of `size`: its folder, made on first use in this test process and
/// shared by every test after. Read-only: copy it ([`copy_shop`]) to change it.
pub fn generated(size: Size) -> &'static Path {
    static SHOPS: [OnceLock<PathBuf>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    SHOPS[size.index()].get_or_init(|| {
        let shop = cache().join(format!("{size:?}").to_lowercase());
        generate_shop(size.customers(), size.orders(), &shop, &[]);
        for file in super::published::walk_files(&shop) {
            let mut permissions = std::fs::metadata(&file).unwrap().permissions();
            permissions.set_readonly(true);
            std::fs::set_permissions(&file, permissions).unwrap();
        }
        shop
    })
}

/// This process's folder of generated shops, under Cargo's scratch folder for the tests.
/// Those of test processes that have ended are removed when it is made.
fn cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shops");
        std::fs::create_dir_all(&root).unwrap();
        for entry in std::fs::read_dir(&root).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ended = name
                .strip_prefix("process-")
                .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
            if ended {
                let _ = make_writable_and_remove(&entry.path());
            }
        }
        let mine = root.join(format!("process-{}", std::process::id()));
        let _ = make_writable_and_remove(&mine);
        std::fs::create_dir_all(&mine).unwrap();
        mine
    })
}

fn make_writable_and_remove(dir: &Path) -> std::io::Result<()> {
    for file in super::published::walk_files(dir) {
        let mut permissions = std::fs::metadata(&file)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)] // removing our own files
        permissions.set_readonly(false);
        std::fs::set_permissions(&file, permissions)?;
    }
    std::fs::remove_dir_all(dir)
}

/// Copies the generated shop of `size` into `to`, writable: tests change, add and remove
/// its files.
pub fn copy_shop(size: Size, to: &Path) {
    copy_writable(generated(size), to);
}

fn copy_writable(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_writable(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut permissions = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)] // the copy is the test's own
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions).unwrap();
        }
    }
}

/// `segflow generate` of a shop ending at [`END`] into `out`, with `extra` flags (how a
/// connector lands it: `--reexport-changes`, `--duplicates`).
pub fn generate_shop(customers: u64, orders: u64, out: &Path, extra: &[&str]) {
    let generated = run(segflow()
        .args([
            "generate",
            "--customers",
            &customers.to_string(),
            "--orders",
            &orders.to_string(),
            "--end",
            END,
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra));
    assert_eq!(generated.code, 0, "{generated:?}");
}

/// Writes `path`: one paid order of 50.00 in the generator's schema, as a late export
/// would bring it.
pub fn write_order(path: &Path, order_id: i64, customer_id: i64, ordered_at: &str) {
    write_orders(path, &[(order_id, customer_id, ordered_at, 5000)]);
}

/// Writes `path`: paid orders (order_id, customer_id, ordered_at, total in cents) in the
/// generator's schema.
pub fn write_orders(path: &Path, orders: &[(i64, i64, &str, i128)]) {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    let micros: Vec<i64> = orders
        .iter()
        .map(|o| {
            o.2.parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .timestamp_micros()
        })
        .collect();
    let times = || -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC"))
    };
    let money = |cents: Vec<i128>| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(cents)
                .with_precision_and_scale(12, 2)
                .unwrap(),
        )
    };
    let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; orders.len()])) };
    let ids = |pick: fn(&(i64, i64, &str, i128)) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(
            orders.iter().map(pick).collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_from_iter([
        ("order_id", ids(|o| o.0)),
        ("customer_id", ids(|o| o.1)),
        ("ordered_at", times()),
        ("total_amount", money(orders.iter().map(|o| o.3).collect())),
        ("currency", text("USD")),
        ("status", text("paid")),
        ("refunded_amount", money(vec![0; orders.len()])),
        ("channel", text("web")),
        ("updated_at", times()),
    ])
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Rewrites each Parquet file of a generated table with only the rows `keep` selects.
pub fn keep_rows(
    dir: &Path,
    keep: impl Fn(&RecordBatch) -> datafusion::arrow::array::BooleanArray,
) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let batches = read_parquet(&path);
        let schema = batches[0].schema();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        for batch in &batches {
            let kept =
                datafusion::arrow::compute::filter_record_batch(batch, &keep(batch)).unwrap();
            writer.write(&kept).unwrap();
        }
        writer.close().unwrap();
    }
}
