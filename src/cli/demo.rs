//! `segflow demo`: the shipped pipeline on a generated shop, in a folder of its own.

use segflow::cancel::Cancel;
use segflow::generate::{self, ShopSize};
use segflow::lease::Leases;
use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::progress::Progress;
use segflow::runner::{Order, Runner};
use segflow::storage::{Location, Storage};

use super::args::DemoArgs;
use super::outcome::{print_report, print_segment_summary};
use super::shipped::write_shipped;
use super::{Failure, yesterday};

pub(super) async fn demo_command(args: DemoArgs) -> Result<(), Failure> {
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Failure::User(anyhow::anyhow!("cannot use {}: {e}", args.dir.display())))?;
    let kept = write_shipped(&dir, None)?;
    for file in &kept {
        say!("Keeping your edited {}", file.display());
    }
    let data = dir.join("data");
    let out = dir.join("out");
    let as_of = yesterday(chrono_tz::Tz::UTC);
    say!("Generating a sample shop in {} ...", data.display());
    let size = ShopSize {
        customers: args.customers,
        orders: args.orders,
        seed: 42,
        end: as_of,
        exports: generate::Exports::LANDED,
    };
    let data_location = Location::parse(&format!("{}/", data.display()))?;
    generate::generate(
        &size,
        &data_location,
        &Storage::new(),
        &Progress::for_terminal(),
    )
    .await?;

    let env_data = data.display().to_string();
    let env_out = out.display().to_string();
    let env_report = dir.join("report.html").display().to_string();
    let env = move |name: &str| match name {
        "SEGFLOW_DATA" => Some(env_data.clone()),
        "SEGFLOW_OUT" => Some(env_out.clone()),
        "SEGFLOW_REPORT" => Some(env_report.clone()),
        _ => std::env::var(name).ok(),
    };
    let options = LoadOptions {
        env: &env,
        ..LoadOptions::default()
    };
    let pipeline_file = dir.join("pipelines/nightly_segments.yaml");
    let pipeline = Pipeline::load(&pipeline_file, &options)?;
    say!("Running {} for as_of {as_of} ...", pipeline_file.display());
    // Recorded like any run, under the pipeline's lease, in the demo folder's own state.
    let storage = Storage::new();
    let state = dir.join("state");
    let state_location = Location::parse(&format!("{}/", state.display()))?;
    let leases = Leases::new(
        storage.clone(),
        &state_location,
        segflow::lease::unique_holder(),
        std::time::Duration::from_secs(30),
        segflow::clock::Clock::System,
    );
    let runner = Runner::new(storage, &state_location, leases, false);
    let Some(leased) = runner.lease(&pipeline).await? else {
        return Err(Failure::Environment(anyhow::anyhow!(
            "another process is running the demo in {}; wait for it to finish",
            dir.display()
        )));
    };
    let order = Order::by_hand(as_of, false);
    let report = leased
        .run(order, &Progress::for_terminal(), &Cancel::new())
        .await
        .result?;
    print_report(&report);
    if let Some(summary) = report
        .outputs
        .iter()
        .find(|o| o.committed.table == "segment_summary")
    {
        print_segment_summary(summary).await?;
    }
    let first = report
        .outputs
        .first()
        .map(|o| o.committed.table.clone())
        .unwrap_or_default();
    say!(
        "\nThe run is recorded: segflow runs --state {}",
        state.display()
    );
    if let Some(page) = pipeline
        .report
        .as_ref()
        .and_then(|r| r.location.local_path())
    {
        say!("The report, to open in a browser: {}", page.display());
    }
    let query = format!(
        "SELECT * FROM read_parquet('out/{first}/as_of=*/*.parquet', hive_partitioning = true) LIMIT 10"
    );
    say!(
        "\nQuery the result from {dir}, with the DuckDB CLI:\n  duckdb -c \"{query}\"\n\
         or from Python (pip install duckdb):\n  python3 -c \"import duckdb; duckdb.sql(\\\"{query}\\\").show()\"\n\
         More recipes: docs/outputs.md.",
        dir = dir.display()
    );
    Ok(())
}
