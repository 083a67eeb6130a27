//! `segflow generate`: a sample shop, written as Parquet.

use segflow::generate::{self, Exports, ShopSize};
use segflow::progress::Progress;
use segflow::storage::{Location, Storage};

use super::args::GenerateArgs;
use super::{Failure, yesterday};

pub(super) async fn generate_command(args: GenerateArgs) -> Result<(), Failure> {
    let out = Location::parse(&args.out)?.as_folder();
    let size = ShopSize {
        customers: args.customers,
        orders: args.orders,
        seed: args.seed,
        end: args.end.unwrap_or_else(|| yesterday(chrono_tz::Tz::UTC)),
        exports: Exports {
            reexport_changes: args.reexport_changes,
            duplicates: args.duplicates,
        },
    };
    let started = std::time::Instant::now();
    let made = generate::generate(&size, &out, &Storage::new(), &Progress::for_terminal()).await?;
    let again = match made.reexported {
        0 => String::new(),
        rows => format!(" (and {rows} rows of them exported again)"),
    };
    say!(
        "Wrote {} customers, {} orders{again}, {} order items and {} checkouts to {out} in {:.1}s.",
        made.customers,
        made.orders,
        made.order_items,
        made.checkouts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
