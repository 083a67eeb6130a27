//! What a finished run prints.

use segflow::run::{self, CheckResult, CheckStatus, RunReport};

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
    say!("\nSegments as of {}:\n{text}", summary.committed.as_of);
    Ok(())
}

pub(super) fn print_report(report: &RunReport) {
    say!(
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
    say!("  {:<width$}  {:>10}  location", "table", "rows");
    for output in &report.outputs {
        say!(
            "  {:<width$}  {:>10}  {}as_of={}/",
            output.committed.table,
            output.committed.rows,
            output.url,
            report.as_of
        );
    }
    if !report.checks.is_empty() {
        print_checks(&report.checks);
    }
}

/// A line of counts, then one line per check that did not pass or had something to say.
pub(super) fn print_checks(checks: &[CheckResult]) {
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let failed = count(CheckStatus::Failed);
    let failed = if failed > 0 {
        format!(", {failed} failed")
    } else {
        String::new()
    };
    say!(
        "Checks: {} passed, {} warned{failed}.",
        count(CheckStatus::Passed),
        count(CheckStatus::Warned)
    );
    for check in checks {
        match check.status {
            CheckStatus::Failed => say!("  failed: {}", check.summary()),
            CheckStatus::Warned => say!("  warning: {}", check.summary()),
            CheckStatus::Passed if !check.found.is_empty() => say!(
                "  note: check '{}' on '{}' passed: {}",
                check.name,
                check.table,
                check.found
            ),
            CheckStatus::Passed => {}
        }
    }
}
