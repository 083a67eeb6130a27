//! `segflow init DIR`: a project of one's own, made from the shipped pipeline. Its paths are
//! the pipeline's defaults (`data/`, `out/`, `segflow-state/`), so `segflow run` works from
//! inside the folder with no flags or variables.

use segflow::generate::{self, ShopSize};
use segflow::progress::Progress;
use segflow::storage::{Location, Storage};

use super::args::InitArgs;
use super::shipped::write_shipped;
use super::{Failure, yesterday};

/// What a project keeps out of version control: what runs produce, and data.
const GITIGNORE: &str = "\
# Outputs, run history, the report and data are produced or exported, not written by hand.
/out/
/segflow-state/
/report.html
/data/
";

/// The sources the shipped pipeline reads, each a folder under `data/`.
const SOURCES: [&str; 4] = ["customers", "orders", "order_items", "checkouts"];

pub(super) async fn init_command(args: InitArgs) -> Result<(), Failure> {
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Failure::User(anyhow::anyhow!("cannot use {}: {e}", args.dir.display())))?;
    for file in write_shipped(&dir, args.from)? {
        say!("Keeping your edited {}", file.display());
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, GITIGNORE).map_err(|e| {
            Failure::Environment(anyhow::anyhow!("cannot write {}: {e}", gitignore.display()))
        })?;
    }
    let data = dir.join("data");
    if let Some(layout) = args.from {
        say!(
            "The pipeline reads what {layout} lands: put it in {data}/{{{folders}}}/ (one \
             folder per stream), or set SEGFLOW_DATA to where it is (a folder or an s3:// \
             URL). {page} says what to land where and how each trap is handled.",
            layout = clap::ValueEnum::to_possible_value(&layout)
                .expect("every layout is a value")
                .get_name(),
            data = data.display(),
            folders = layout.folders().join(","),
            page = layout.page(),
        );
    } else if args.no_sample_data {
        say!(
            "No sample data: put your Parquet exports in {}/{{{}}}/, or set SEGFLOW_DATA to \
             where they are (a folder or an s3:// URL).",
            data.display(),
            SOURCES.join(",")
        );
    } else if data.exists() {
        say!("Keeping the data already in {}", data.display());
    } else {
        say!("Generating a sample shop in {} ...", data.display());
        let size = ShopSize {
            customers: args.customers,
            orders: args.orders,
            seed: 42,
            end: yesterday(chrono_tz::Tz::UTC),
            exports: generate::Exports::LANDED,
        };
        let location = Location::parse(&format!("{}/", data.display()))?;
        generate::generate(&size, &location, &Storage::new(), &Progress::for_terminal()).await?;
    }
    say!(
        "\nThe project is in {dir}. From there:\n  \
         segflow validate pipelines/nightly_segments.yaml\n  \
         segflow run pipelines/nightly_segments.yaml      # yesterday's segments, into out/\n  \
         segflow runs                                     # the history, in segflow-state/\n\n\
         Each run writes report.html, a page of its segments to open in a browser.",
        dir = dir.display()
    );
    Ok(())
}
