//! The shipped pipeline and SQL, embedded in the binary so that `segflow demo` and
//! `segflow init` work from any folder and from an installed binary; and the landings a
//! project may start from (`segflow init --from`), each the shipped pipeline with its sources
//! replaced by the landing's and steps that map them to the tables the segments read.

use std::path::{Path, PathBuf};

use super::Failure;

static SHIPPED_PIPELINES: include_dir::Dir =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/pipelines");
static SHIPPED_QUERIES: include_dir::Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/queries");
/// Each landing's part of the pipeline, named after its mapping SQL's folder.
static LAYOUTS: include_dir::Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/layouts");

/// The shipped pipeline's file, which a landing's project gets in its own version.
const NIGHTLY: &str = "nightly_segments.yaml";
/// Where each landing's mapping SQL lives under `queries/`.
const LAYOUT_QUERIES: &str = "layouts";
/// The shipped pipeline's check that the night's orders have landed: a landing checks its
/// own raw table instead, before any step computes (freshness reads sources only).
const SHIPPED_FRESHNESS: &str =
    "{ table: orders, freshness: { column: ordered_at, max_age: 36h } }";

/// A landing a project reads as it lands (docs/sources.md, "Landings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Layout {
    /// Airbyte's Shopify source through its S3 destination, Parquet or JSON lines.
    AirbyteShopify,
    /// Shopify admin's orders and customers CSV exports.
    ShopifyCsv,
    /// Fivetran's Shopify connector, landed as Delta Lake tables (its managed data lake).
    FivetranShopify,
}

impl Layout {
    /// The landing's part of the pipeline: `members`, `sources` and the steps up to and
    /// including `paid_orders`, which replace the shipped pipeline's.
    fn pipeline_part(self) -> &'static str {
        LAYOUTS
            .get_file(format!("{}.yaml", self.queries()))
            .and_then(|file| file.contents_utf8())
            .expect("every layout has its part in layouts/")
    }

    /// Its check that the night's orders have landed, in place of the shipped one.
    fn freshness(self) -> &'static str {
        match self {
            Layout::AirbyteShopify => {
                "{ table: airbyte_orders, freshness: { column: created_at, max_age: 36h } }"
            }
            Layout::ShopifyCsv => {
                "{ table: shopify_orders, freshness: { column: Created at, max_age: 36h } }"
            }
            Layout::FivetranShopify => {
                "{ table: fivetran_order, freshness: { column: created_at, max_age: 36h } }"
            }
        }
    }

    /// The folder of its mapping SQL under `queries/layouts/`.
    fn queries(self) -> &'static str {
        match self {
            Layout::AirbyteShopify => "airbyte_shopify",
            Layout::ShopifyCsv => "shopify_csv",
            Layout::FivetranShopify => "fivetran_shopify",
        }
    }

    /// The folders under the data folder that the landing fills, one per source.
    pub(crate) fn folders(self) -> &'static [&'static str] {
        match self {
            Layout::AirbyteShopify => &[
                "orders",
                "customers",
                "abandoned_checkouts",
                "collection_products",
            ],
            Layout::ShopifyCsv => &["orders_export", "customers_export", "product_collections"],
            Layout::FivetranShopify => &[
                "order",
                "order_line",
                "refund",
                "customer",
                "customer_address",
                "customer_tag",
                "abandoned_checkout",
                "collection_product",
                "collection",
            ],
        }
    }

    /// Its page of the documentation.
    pub(crate) fn page(self) -> &'static str {
        match self {
            Layout::AirbyteShopify => "docs/layouts/airbyte-shopify.md",
            Layout::ShopifyCsv => "docs/layouts/shopify-csv.md",
            Layout::FivetranShopify => "docs/layouts/fivetran-shopify.md",
        }
    }
}

/// The shipped pipeline's text for `layout`: from its `members:` line up to its first step
/// after `paid_orders`, the landing's part takes the place of the shipped one, and its
/// freshness check that of the shipped one, so that the rest (features, segments, outputs,
/// the other checks, schedule) stays the shipped pipeline's.
fn pipeline_text(shipped: &str, layout: Option<Layout>) -> String {
    let Some(layout) = layout else {
        return shipped.to_string();
    };
    let start = shipped
        .find("\nmembers:")
        .expect("the shipped pipeline has a members block")
        + 1;
    let end = shipped
        .find("\n  - { name: customer_features")
        .expect("the shipped pipeline's steps go on with customer_features")
        + 1;
    format!(
        "{}{}{}",
        &shipped[..start],
        layout.pipeline_part(),
        shipped[end..].replacen(SHIPPED_FRESHNESS, layout.freshness(), 1)
    )
}

/// Writes the shipped files that `dir` does not have yet, the pipeline as `layout` reads
/// (the generic layout when `None`); a file already there is left as it is, edited or not,
/// so that a second demo never undoes a user's changes. Returns the files kept that differ
/// from the shipped ones.
pub(super) fn write_shipped(dir: &Path, layout: Option<Layout>) -> Result<Vec<PathBuf>, Failure> {
    let failed = |e: std::io::Error| {
        Failure::Environment(anyhow::anyhow!(
            "cannot write the project files to {}: {e}",
            dir.display()
        ))
    };
    let mut kept = Vec::new();
    for (folder, tree) in [
        ("pipelines", &SHIPPED_PIPELINES),
        ("queries", &SHIPPED_QUERIES),
    ] {
        for file in files_of(tree) {
            let path = file.path();
            if let Ok(within) = path.strip_prefix(LAYOUT_QUERIES)
                && layout.is_none_or(|l| !within.starts_with(l.queries()))
            {
                continue;
            }
            let contents = if folder == "pipelines" && path == Path::new(NIGHTLY) {
                let shipped = file.contents_utf8().expect("the shipped pipeline is UTF-8");
                pipeline_text(shipped, layout).into_bytes()
            } else {
                file.contents().to_vec()
            };
            let target = dir.join(folder).join(path);
            match std::fs::read(&target) {
                Ok(existing) if existing != contents => kept.push(target),
                Ok(_) => {}
                Err(_) => {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(failed)?;
                    }
                    std::fs::write(&target, contents).map_err(failed)?;
                }
            }
        }
    }
    Ok(kept)
}

fn files_of<'a>(dir: &'a include_dir::Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut files: Vec<_> = dir.files().collect();
    for sub in dir.dirs() {
        files.extend(files_of(sub));
    }
    files
}
