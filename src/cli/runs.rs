//! `segflow runs`: the run history, as a table or as JSON lines.

use super::Failure;
use super::args::RunsArgs;
use super::hand_runner::open_history;

pub(super) async fn runs_command(args: RunsArgs) -> Result<(), Failure> {
    let history = open_history(&args.state)?;
    let records = history.list(args.pipeline.as_deref()).await?;
    if args.json {
        for record in &records {
            println!(
                "{}",
                serde_json::to_string(record).expect("a run record serialises")
            );
        }
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<16} {:>7} {:<11} {:<20} {:>8} {:>10}  {:<32}  error",
        "pipeline",
        "as_of",
        "slot (UTC)",
        "attempt",
        "status",
        "started (UTC)",
        "seconds",
        "rows",
        "run id"
    );
    for r in records {
        let seconds = r
            .ended_at
            .map(|end| format!("{:.1}", (end - r.started_at).as_seconds_f64()))
            .unwrap_or_default();
        let status = format!("{:?}", r.status).to_lowercase();
        let slot = r.slot.map_or_else(
            || "by hand".to_string(),
            |slot| slot.format("%Y-%m-%d %H:%M").to_string(),
        );
        println!(
            "{:<20} {:<10} {:<16} {:>7} {:<11} {:<20} {:>8} {:>10}  {:<32}  {}",
            r.pipeline,
            r.as_of,
            slot,
            r.attempt,
            status,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            seconds,
            r.rows.values().sum::<u64>(),
            r.run_id,
            r.error.unwrap_or_default()
        );
    }
    Ok(())
}
