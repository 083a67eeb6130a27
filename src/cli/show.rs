//! `segflow show`: a step's first rows, computed as a run would and published nowhere.

use datafusion::arrow::util::pretty::pretty_format_batches;

use segflow::run::{self, RunRequest};

use super::args::ShowArgs;
use super::{Failure, load_with_values};

pub(super) async fn show_command(args: ShowArgs) -> Result<(), Failure> {
    let (pipeline, as_of) = load_with_values(&args.pipeline, args.values)?;
    let request = RunRequest {
        run_id: "show".to_string(),
        ..RunRequest::new(as_of)
    };
    let rows = run::show_table(&pipeline, &request, &args.table, args.limit).await?;
    let shown: usize = rows.iter().map(|batch| batch.num_rows()).sum();
    let table = pretty_format_batches(&rows)
        .map_err(|e| Failure::Environment(anyhow::anyhow!("cannot print the rows: {e}")))?;
    say!("{table}");
    let more = if shown == args.limit {
        format!(" (the first {shown}; --limit for more)")
    } else {
        String::new()
    };
    say!(
        "{} as of {as_of}: {shown} rows{more}",
        args.table.to_lowercase()
    );
    Ok(())
}
