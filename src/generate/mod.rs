//! Sample shop data: deterministic for a given seed, size and end date, shaped like a real
//! shop (most customers buy once, spend follows a Pareto curve, customers churn, November and
//! December sell more, a few orders are refunded or cancelled, about three years of history).
//! With [`Exports`], the orders export repeats rows as connectors land them: an order
//! refunded or cancelled later is exported again then, and some rows arrive twice.
//!
//! Every customer draws from its own random stream, seeded from the run seed and its id, so
//! chunks of customers are generated in parallel and the result does not depend on the
//! number of threads.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveTime};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod columns;

use crate::progress::Progress;
use crate::storage::{Location, Storage, StorageError};
use columns::{CheckoutColumns, CustomerColumns, ItemColumns, OrderColumns, OrderRow};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not write {file}")]
    Write {
        file: String,
        #[source]
        source: object_store::Error,
    },
    #[error("could not encode {table} as Parquet")]
    Encode {
        table: &'static str,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("a generator thread failed: {0}")]
    Thread(String),
}

impl GenerateError {
    pub fn fault(&self) -> crate::fault::Fault {
        match self {
            GenerateError::Storage(e) => e.fault(),
            _ => crate::fault::Fault::Environment,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShopSize {
    pub customers: u64,
    pub orders: u64,
    pub seed: u64,
    /// The last day of history; orders run up to its end.
    pub end: NaiveDate,
    pub exports: Exports,
}

/// How the orders export repeats rows (docs/development.md, "Sample data"). The orders themselves do not
/// change: the same seed and sizes give the same orders with any of these.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exports {
    /// An order refunded or cancelled after it was placed is exported as placed (paid,
    /// stamped then) and again when it changed, in a later file (`orders/changes-*`), as
    /// Airbyte's and Fivetran's Shopify sources export it. Without it each order is one row
    /// as it stands at the end.
    pub reexport_changes: bool,
    /// This share of orders (0 to 1) is delivered a second time, alike, in another file
    /// (`orders/duplicates-*`): at-least-once delivery.
    pub duplicates: f64,
}

impl Exports {
    /// As a connector's incremental syncs land a shop: what changed exported again, and 1 %
    /// of rows delivered twice. The demo's and `init`'s shops.
    pub const LANDED: Exports = Exports {
        reexport_changes: true,
        duplicates: 0.01,
    };
}

#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub customers: u64,
    pub orders: u64,
    pub order_items: u64,
    pub checkouts: u64,
    /// Rows of orders exported again (changes and duplicates), beyond one per order.
    pub reexported: u64,
}

const HISTORY_DAYS: i64 = 3 * 365;
const CHUNK_CUSTOMERS: u64 = 50_000;
const PRODUCTS: i64 = 500;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Share of customers who have ordered; the rest are prospects (signed up, never bought).
const BUYER_SHARE: f64 = 0.72;
/// Share of buyers who never come back after their first order.
const ONE_TIME_SHARE: f64 = 0.58;
/// Pareto shape of repeat buyers' order counts: about 80 % of repeat orders come from 20 %
/// of repeat buyers.
const PARETO_ALPHA: f64 = 1.16;
const MAX_WEIGHT: f64 = 400.0;

const COLLECTIONS: [&str; 12] = [
    "new-arrivals",
    "bestsellers",
    "outerwear",
    "knitwear",
    "shirts",
    "trousers",
    "shoes",
    "accessories",
    "bags",
    "home",
    "beauty",
    "sale",
];
const COUNTRIES: [(&str, f64); 10] = [
    ("US", 0.38),
    ("GB", 0.12),
    ("DE", 0.10),
    ("CA", 0.08),
    ("FR", 0.07),
    ("AU", 0.06),
    ("NL", 0.05),
    ("SE", 0.05),
    ("NO", 0.04),
    ("JP", 0.05),
];
const CHANNELS: [(&str, f64); 4] = [
    ("online_store", 0.68),
    ("mobile_app", 0.22),
    ("pos", 0.07),
    ("marketplace", 0.03),
];
const TAGS: [&str; 4] = ["vip", "wholesale", "newsletter", "influencer"];

/// What every customer will get, decided in one cheap pass so that ids can be numbered
/// consecutively across chunks generated in parallel.
struct Plan {
    orders: Vec<u32>,
    abandoned: Vec<u16>,
}

pub async fn generate(
    size: &ShopSize,
    out: &Location,
    storage: &Storage,
    progress: &Progress,
) -> Result<Generated, GenerateError> {
    let store = storage.store(out, &Default::default())?;
    let plan = Arc::new(plan(size));
    let chunks = size.customers.div_ceil(CHUNK_CUSTOMERS) as usize;
    let mut order_offsets = vec![0u64; chunks + 1];
    let mut checkout_offsets = vec![0u64; chunks + 1];
    for chunk in 0..chunks {
        let (start, end) = chunk_range(chunk, size.customers);
        let range = start as usize..end as usize;
        let orders: u64 = plan.orders[range.clone()].iter().map(|&n| n as u64).sum();
        let abandoned: u64 = plan.abandoned[range].iter().map(|&n| n as u64).sum();
        order_offsets[chunk + 1] = order_offsets[chunk] + orders;
        checkout_offsets[chunk + 1] = checkout_offsets[chunk] + orders + abandoned;
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut totals = Generated::default();
    let mut done = 0usize;
    let mut results = futures::stream::iter(0..chunks)
        .map(|chunk| {
            let plan = Arc::clone(&plan);
            let size = size.clone();
            let first_order = order_offsets[chunk] + 1;
            let first_checkout = checkout_offsets[chunk] + 1;
            let store = Arc::clone(&store);
            let out = out.clone();
            async move {
                let files = tokio::task::spawn_blocking(move || {
                    build_chunk(&size, &plan, chunk, first_order, first_checkout)
                })
                .await
                .map_err(|e| GenerateError::Thread(e.to_string()))??;
                let mut counts = Generated::default();
                for file in files {
                    let location =
                        out.join(&format!("{}/{}-{chunk:05}.parquet", file.table, file.name));
                    store
                        .put(&location.path(), PutPayload::from(file.bytes))
                        .await
                        .map_err(|source| GenerateError::Write {
                            file: location.to_string(),
                            source,
                        })?;
                    match (file.table, file.name) {
                        ("customers", _) => counts.customers += file.rows,
                        ("orders", CHANGES_FILE | DUPLICATES_FILE) => {
                            counts.reexported += file.rows
                        }
                        ("orders", _) => counts.orders += file.rows,
                        ("order_items", _) => counts.order_items += file.rows,
                        _ => counts.checkouts += file.rows,
                    }
                }
                Ok::<_, GenerateError>(counts)
            }
        })
        .buffer_unordered(threads);
    while let Some(counts) = results.next().await {
        let counts = counts?;
        totals.customers += counts.customers;
        totals.orders += counts.orders;
        totals.order_items += counts.order_items;
        totals.checkouts += counts.checkouts;
        totals.reexported += counts.reexported;
        done += 1;
        progress.message(format!(
            "generating: {done}/{chunks} chunks, {} customers, {} orders",
            totals.customers, totals.orders
        ));
    }
    progress.finish();
    Ok(totals)
}

fn chunk_range(chunk: usize, customers: u64) -> (u64, u64) {
    let start = chunk as u64 * CHUNK_CUSTOMERS;
    (start, (start + CHUNK_CUSTOMERS).min(customers))
}

/// The random stream of one customer (or one product) of a seed.
fn rng_for(seed: u64, stream: u64, id: u64) -> SmallRng {
    SmallRng::seed_from_u64(splitmix(
        seed ^ splitmix(stream.wrapping_add(id.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
    ))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const PLAN_STREAM: u64 = 1;
const CUSTOMER_STREAM: u64 = 2;
const PRODUCT_STREAM: u64 = 3;
const DUPLICATE_STREAM: u64 = 0xD0B1_E000;

/// Decides each customer's number of orders (summing to exactly `size.orders`) and of
/// abandoned checkouts.
fn plan(size: &ShopSize) -> Plan {
    let n = size.customers as usize;
    let mut weights = vec![0f64; n];
    let mut buyer = vec![false; n];
    let buyer_share = if size.customers == 0 {
        0.0
    } else {
        BUYER_SHARE.min(size.orders as f64 / size.customers as f64)
    };
    for id in 0..n {
        let mut rng = rng_for(size.seed, PLAN_STREAM, id as u64);
        buyer[id] = rng.random::<f64>() < buyer_share;
        if buyer[id] && rng.random::<f64>() >= ONE_TIME_SHARE {
            let u: f64 = rng.random::<f64>().max(1e-12);
            weights[id] = (u.powf(-1.0 / PARETO_ALPHA) - 1.0).min(MAX_WEIGHT) + 0.05;
        }
    }
    let mut buyers = buyer.iter().filter(|&&b| b).count() as u64;
    // Randomness may pick more buyers than there are orders; the last ones become prospects.
    for id in (0..n).rev() {
        if buyers <= size.orders {
            break;
        }
        if buyer[id] {
            buyer[id] = false;
            weights[id] = 0.0;
            buyers -= 1;
        }
    }
    let extra = size.orders - buyers;
    let total_weight: f64 = weights.iter().sum();
    let mut orders = vec![0u32; n];
    let mut fractions: Vec<(f64, usize)> = Vec::new();
    let mut assigned = buyers;
    for id in 0..n {
        if !buyer[id] {
            continue;
        }
        let share = if total_weight > 0.0 {
            extra as f64 * weights[id] / total_weight
        } else {
            0.0
        };
        let whole = share.floor();
        orders[id] = 1 + whole as u32;
        assigned += whole as u64;
        if share > whole {
            fractions.push((share - whole, id));
        }
    }
    // Largest remainders get the orders that rounding down left over.
    let mut left = (size.orders - assigned) as usize;
    if left > 0 {
        fractions.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, id) in fractions.iter().take(left) {
            orders[id] += 1;
            left -= 1;
        }
        // With no repeat buyers at all, the rest go round-robin to buyers.
        let buyer_ids: Vec<usize> = (0..n).filter(|&id| buyer[id]).collect();
        for (i, _) in (0..left).enumerate() {
            orders[buyer_ids[i % buyer_ids.len()]] += 1;
        }
    }
    let abandoned = (0..n)
        .map(|id| {
            let mut rng = rng_for(size.seed, PLAN_STREAM + 100, id as u64);
            let expected = 0.35 + 0.15 * (orders[id] as f64).min(10.0);
            let mut count = 0u16;
            let mut p = rng.random::<f64>();
            while p < expected / (1.0 + expected) && count < 20 {
                count += 1;
                p = rng.random::<f64>();
            }
            count
        })
        .collect();
    Plan { orders, abandoned }
}

struct Product {
    collection: &'static str,
    price_cents: i128,
}

fn products(seed: u64) -> Vec<Product> {
    (1..=PRODUCTS)
        .map(|id| {
            let mut rng = rng_for(seed, PRODUCT_STREAM, id as u64);
            let normal: f64 = rng.sample(rand_distr::StandardNormal);
            let dollars = (38.0 * (0.7 * normal).exp()).clamp(4.0, 480.0);
            Product {
                collection: COLLECTIONS
                    [(id as usize * 7 + rng.random_range(0..3)) % COLLECTIONS.len()],
                price_cents: (dollars * 100.0).round() as i128 - 1, // prices end in .99
            }
        })
        .collect()
}

/// The file name, before the chunk number, of each table's rows, and of the orders exported
/// again after they changed, or delivered twice.
const PART_FILE: &str = "part";
const CHANGES_FILE: &str = "changes";
const DUPLICATES_FILE: &str = "duplicates";

struct EncodedFile {
    table: &'static str,
    name: &'static str,
    rows: u64,
    bytes: Vec<u8>,
}

fn pick<'a>(rng: &mut SmallRng, weighted: &[(&'a str, f64)]) -> &'a str {
    let mut u: f64 = rng.random::<f64>() * weighted.iter().map(|w| w.1).sum::<f64>();
    for (value, weight) in weighted {
        if u < *weight {
            return value;
        }
        u -= weight;
    }
    weighted[weighted.len() - 1].0
}

/// Demand by month: more in November and December, less after the holidays.
fn season_weight(micros: i64) -> f64 {
    let date = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    match date.month() {
        11 => 1.6,
        12 => 1.8,
        1 | 2 => 0.75,
        _ => 1.0,
    }
}

fn build_chunk(
    size: &ShopSize,
    plan: &Plan,
    chunk: usize,
    first_order: u64,
    first_checkout: u64,
) -> Result<Vec<EncodedFile>, GenerateError> {
    let catalog = products(size.seed);
    let end_micros = size
        .end
        .and_time(NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
        + MICROS_PER_DAY
        - 1;
    // Midnight, HISTORY_DAYS before the end.
    let start_micros = end_micros + 1 - HISTORY_DAYS * MICROS_PER_DAY;
    let (first_customer, last_customer) = chunk_range(chunk, size.customers);

    let mut customers = CustomerColumns::default();
    let mut orders = OrderColumns::default();
    let mut items = ItemColumns::default();
    let mut checkouts = CheckoutColumns::default();
    let mut next_order = first_order as i64;
    let mut next_checkout = first_checkout as i64;

    let mut changes = OrderColumns::default();
    let mut duplicates = OrderColumns::default();
    for index in first_customer..last_customer {
        let customer_id = index as i64 + 1;
        let mut rng = rng_for(size.seed, CUSTOMER_STREAM, index);
        // Sign-ups grow over time: more recent customers are more likely.
        let mut joined = start_micros
            + ((end_micros - start_micros) as f64 * rng.random::<f64>().powf(0.7)) as i64;
        let order_count = plan.orders[index as usize];
        // First order soon after sign-up; repeat orders spread over the customer's active
        // life, which ends at churn (exponential, mean 18 months). A life that would run past
        // the end date starts earlier instead (one longer than the history began before
        // it), and a first order due after it falls in the days left: squeezing them into
        // the last days would pile orders onto them.
        let delay = (rng.random::<f64>().powi(3) * 20.0 * MICROS_PER_DAY as f64) as i64;
        let life = match order_count {
            0 | 1 => 0,
            _ => ((-rng.random::<f64>().max(1e-9).ln() * 540.0 * MICROS_PER_DAY as f64) as i64)
                .max(MICROS_PER_DAY),
        };
        let room = end_micros - life - joined;
        let (first, last) = if room >= 0 {
            let first = joined + delay % (room + 1);
            (first, first + life)
        } else if life <= end_micros - start_micros {
            (end_micros - life, end_micros)
        } else {
            (start_micros + delay, end_micros)
        };
        joined = joined.min(first);
        let country = pick(&mut rng, &COUNTRIES);
        let has_phone = rng.random::<f64>() < 0.62;
        customers.id.append_value(customer_id);
        customers
            .email
            .append_value(format!("customer{customer_id}@example.com"));
        if has_phone {
            customers
                .phone
                .append_value(format!("+1555{:07}", rng.random_range(0..10_000_000)));
        } else {
            customers.phone.append_null();
        }
        customers.created_at.append_value(joined);
        customers.country.append_value(country);
        customers
            .email_subscribed
            .append_value(rng.random::<f64>() < 0.64);
        customers
            .sms_subscribed
            .append_value(has_phone && rng.random::<f64>() < 0.4);
        for tag in TAGS {
            if rng.random::<f64>() < 0.03 {
                customers.tags.values().append_value(tag);
            }
        }
        customers.tags.append(true);
        customers.updated_at.append_value(joined);

        let mut times = Vec::with_capacity(order_count as usize);
        if order_count > 0 {
            times.push(first);
            while times.len() < order_count as usize {
                let t = first + (rng.random::<f64>() * (last - first) as f64) as i64;
                if rng.random::<f64>() * 1.8 < season_weight(t) {
                    times.push(t);
                }
            }
            times.sort_unstable();
        }
        let basket_scale = (0.45 * rng.sample::<f64, _>(rand_distr::StandardNormal)).exp();
        for &ordered_at in &times {
            let order_id = next_order;
            next_order += 1;
            let lines = 1 + (-(rng.random::<f64>().max(1e-9)).ln() * 0.9 * basket_scale) as usize;
            let mut total = 0i128;
            for _ in 0..lines.min(8) {
                // Popular products sell more: squaring the draw favours low ids.
                let product_id = 1 + (rng.random::<f64>().powi(2) * PRODUCTS as f64) as i64;
                let product = &catalog[(product_id - 1) as usize];
                let quantity = match rng.random::<f64>() {
                    u if u < 0.82 => 1,
                    u if u < 0.96 => 2,
                    _ => 3,
                };
                total += product.price_cents * quantity as i128;
                items.order_id.append_value(order_id);
                items.product_id.append_value(product_id);
                items.collection.append_value(product.collection);
                items.quantity.append_value(quantity);
                items.unit_price.append_value(product.price_cents);
            }
            let (status, refunded) = match rng.random::<f64>() {
                u if u < 0.035 => ("cancelled", 0),
                u if u < 0.075 => ("refunded", total),
                u if u < 0.095 => ("paid", (total as f64 * rng.random_range(0.1..0.6)) as i128),
                _ => ("paid", 0),
            };
            // A refund or cancellation comes 1 to 29 days later and stamps the order's
            // version then (drawn from the id, so that the customer's stream stays as it was).
            let changed = match status {
                "paid" if refunded == 0 => None,
                _ => Some(
                    (ordered_at + (1 + splitmix(order_id as u64) % 29) as i64 * MICROS_PER_DAY)
                        .min(end_micros),
                ),
            };
            let row = OrderRow {
                id: order_id,
                customer_id,
                ordered_at,
                total_cents: total,
                status,
                refunded_cents: refunded,
                channel: pick(&mut rng, &CHANNELS),
                updated_at: changed.unwrap_or(ordered_at),
            };
            match changed {
                Some(_) if size.exports.reexport_changes => {
                    orders.push(&OrderRow {
                        status: "paid",
                        refunded_cents: 0,
                        updated_at: ordered_at,
                        ..row
                    });
                    changes.push(&row);
                }
                _ => orders.push(&row),
            }
            // Drawn from the id too: duplicates leave every other value as it was.
            let draw = splitmix(order_id as u64 ^ DUPLICATE_STREAM) as f64 / u64::MAX as f64;
            if draw < size.exports.duplicates {
                duplicates.push(&row);
            }

            checkouts.id.append_value(next_checkout);
            next_checkout += 1;
            checkouts.customer_id.append_value(customer_id);
            checkouts
                .created_at
                .append_value(ordered_at - rng.random_range(60_000_000..3_600_000_000));
            checkouts.completed_at.append_value(ordered_at);
        }
        for _ in 0..plan.abandoned[index as usize] {
            let created = joined + (rng.random::<f64>() * (end_micros - joined) as f64) as i64;
            checkouts.id.append_value(next_checkout);
            next_checkout += 1;
            checkouts.customer_id.append_value(customer_id);
            checkouts.created_at.append_value(created);
            checkouts.completed_at.append_null();
        }
    }

    let mut files = vec![
        encode("customers", PART_FILE, customers.finish())?,
        encode("orders", PART_FILE, orders.finish())?,
        encode("order_items", PART_FILE, items.finish())?,
        encode("checkouts", PART_FILE, checkouts.finish())?,
    ];
    for (name, rows) in [(CHANGES_FILE, changes), (DUPLICATES_FILE, duplicates)] {
        if !rows.is_empty() {
            files.push(encode("orders", name, rows.finish())?);
        }
    }
    Ok(files)
}

fn encode(
    table: &'static str,
    name: &'static str,
    batch: RecordBatch,
) -> Result<EncodedFile, GenerateError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let encode_err = |source| GenerateError::Encode { table, source };
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).map_err(encode_err)?;
    writer.write(&batch).map_err(encode_err)?;
    writer.close().map_err(encode_err)?;
    Ok(EncodedFile {
        table,
        name,
        rows: batch.num_rows() as u64,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(customers: u64, orders: u64) -> ShopSize {
        ShopSize {
            customers,
            orders,
            seed: 7,
            end: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
            exports: Exports::default(),
        }
    }

    /// The orders files of the first chunk: (file name, rows).
    fn orders_of(size: &ShopSize) -> Vec<(&'static str, RecordBatch)> {
        let files = build_chunk(size, &plan(size), 0, 1, 1).unwrap();
        files
            .into_iter()
            .filter(|f| f.table == "orders")
            .map(|f| {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                        bytes::Bytes::from(f.bytes),
                    )
                    .unwrap()
                    .build()
                    .unwrap();
                let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
                let batch =
                    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)
                        .unwrap();
                (f.name, batch)
            })
            .collect()
    }

    fn micros(batch: &RecordBatch, column: &str) -> Vec<i64> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::TimestampMicrosecondType;
        let column = batch.column_by_name(column).unwrap();
        column
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec()
    }

    #[test]
    fn orders_spread_through_the_days_up_to_the_end_at_a_steady_rate() {
        let size = size(20_000, 80_000);
        let orders = orders_of(&size);
        let end_day = size
            .end
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_micros()
            / MICROS_PER_DAY;
        let mut per_day = std::collections::BTreeMap::new();
        for at in micros(&orders[0].1, "ordered_at") {
            *per_day.entry(at.div_euclid(MICROS_PER_DAY)).or_insert(0u32) += 1;
            assert!(
                at.rem_euclid(MICROS_PER_DAY) != MICROS_PER_DAY - 1,
                "an order at 23:59:59.999999"
            );
        }
        assert_eq!(
            *per_day.keys().last().unwrap(),
            end_day,
            "orders up to the end day"
        );
        let mean = |days: std::ops::Range<i64>| {
            days.clone()
                .map(|d| per_day.get(&(end_day - d)).copied().unwrap_or(0) as f64)
                .sum::<f64>()
                / days.count() as f64
        };
        // The last week against the four weeks before it, and the end day alone.
        let (last_week, before) = (mean(0..7), mean(7..35));
        assert!(
            last_week < 1.25 * before,
            "{last_week} a day in the last week, {before} before"
        );
        assert!(
            mean(0..1) < 1.5 * before,
            "{} on the end day, {before} before",
            mean(0..1)
        );
    }

    #[test]
    fn exports_repeat_changed_and_duplicated_orders_in_a_later_file() {
        let plain = orders_of(&size(3_000, 12_000));
        let landed = orders_of(&ShopSize {
            exports: Exports {
                reexport_changes: true,
                duplicates: 0.05,
            },
            ..size(3_000, 12_000)
        });
        let ids = |batch: &RecordBatch| {
            use datafusion::arrow::array::AsArray;
            use datafusion::arrow::datatypes::Int64Type;
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(plain.len(), 1, "one file without exports");
        let [
            (_, placed),
            (CHANGES_FILE, changed),
            (DUPLICATES_FILE, again),
        ] = &landed[..]
        else {
            panic!("three orders files")
        };
        // The same orders, each once in the first file; the others repeat some.
        assert_eq!(ids(placed), ids(&plain[0].1));
        let stamps = micros(changed, "updated_at")
            .into_iter()
            .zip(micros(changed, "ordered_at"));
        assert!(
            stamps
                .into_iter()
                .all(|(updated, ordered)| updated > ordered),
            "changed later"
        );
        let rows = plain[0].1.num_rows() as f64;
        assert!(
            changed.num_rows() as f64 > 0.05 * rows,
            "{} of {rows} changed",
            changed.num_rows()
        );
        let duplicated = again.num_rows() as f64;
        assert!(
            (duplicated - 0.05 * rows).abs() < 0.02 * rows,
            "{duplicated} duplicates"
        );
        // Every row of the later files is an order's final row (changed or alike).
        let finals: std::collections::HashSet<String> = (0..plain[0].1.num_rows())
            .map(|i| format!("{:?}", plain[0].1.slice(i, 1).columns()))
            .collect();
        for batch in [changed, again] {
            for i in 0..batch.num_rows() {
                let row = format!("{:?}", batch.slice(i, 1).columns());
                assert!(finals.contains(&row), "{row}");
            }
        }
    }
}
