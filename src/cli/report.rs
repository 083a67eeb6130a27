//! What a finished run prints.

use segflow::run::{self, CheckStatus, RunReport};

use super::Failure;

/// The demo's closing view: each segment's portrait, largest first.
pub(super) async fn print_segment_summary(summary: &run::PublishedOutput) -> Result<(), Failure> {
    let files: Vec<String> = summary
        .committed
        .files
        .iter()
        .map(ToString::to_string)
        .collect();
    let text = segflow::segments::summary_text(files).await.map_err(|e| {
        Failure::Environment(anyhow::anyhow!("cannot read back the segment summary: {e}"))
    })?;
    println!("\nSegments as of {}:\n{text}", summary.committed.as_of);
    Ok(())
}

pub(super) fn print_report(report: &RunReport) {
    println!(
        "Published {} for as_of {} (run {}) in {:.1}s:",
        report.pipeline,
        report.as_of,
        report.run_id,
        report.elapsed.as_secs_f64()
    );
    let width = report
        .outputs
        .iter()
        .map(|o| o.committed.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("  {:<width$}  {:>10}  location", "table", "rows");
    for output in &report.outputs {
        println!(
            "  {:<width$}  {:>10}  {}as_of={}/",
            output.committed.table, output.committed.rows, output.url, report.as_of
        );
    }
    if !report.checks.is_empty() {
        let warned: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Warned)
            .collect();
        println!(
            "Checks: {} passed, {} warned.",
            report.checks.len() - warned.len(),
            warned.len()
        );
        for check in warned {
            println!("  warning: {}", check.summary());
        }
    }
}
