//! `segflow runs`: the run history, as a table or as JSON lines.

use std::collections::BTreeSet;

use segflow::hint::did_you_mean;
use segflow::history::RunHistory;

use super::Failure;
use super::args::RunsArgs;
use super::hand_runner::open_history;

pub(super) async fn runs_command(args: RunsArgs) -> Result<(), Failure> {
    let history = open_history(&args.state)?;
    let records = history.list(args.pipeline.as_deref()).await?;
    if records.is_empty() {
        return Err(Failure::User(nothing_recorded(&history, &args).await?));
    }
    if args.json {
        for record in &records {
            // The record as stored, with the duration the table shows.
            let mut line = serde_json::to_value(record).expect("a run record serialises");
            line["seconds"] = record.seconds().into();
            say!("{line}");
        }
        return Ok(());
    }
    say!(
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
            .seconds()
            .map(|seconds| format!("{seconds:.1}"))
            .unwrap_or_default();
        let status = format!("{:?}", r.status).to_lowercase();
        let slot = r.slot.map_or_else(
            || "by hand".to_string(),
            |slot| slot.format("%Y-%m-%d %H:%M").to_string(),
        );
        say!(
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
            // One line per run; `--json` has the whole error.
            r.error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Why nothing is listed: a pipeline with no runs (naming those that have some), or a state
/// location with no history at all, most often not the one the runs used.
async fn nothing_recorded(history: &RunHistory, args: &RunsArgs) -> Result<anyhow::Error, Failure> {
    let state = &args.state.url;
    let Some(pipeline) = &args.pipeline else {
        return Ok(anyhow::anyhow!(
            "no runs are recorded in {state}; runs record themselves where --state (or \
             SEGFLOW_STATE) points: is this the state location they used?"
        ));
    };
    let known: BTreeSet<String> = history
        .list(None)
        .await?
        .into_iter()
        .map(|record| record.pipeline)
        .collect();
    let listed: Vec<&str> = known.iter().map(String::as_str).collect();
    let hint = did_you_mean(pipeline, listed.iter().copied());
    let others = match listed.is_empty() {
        true => "; no pipeline has runs recorded there".to_string(),
        false => format!("; pipelines with runs there: {}", listed.join(", ")),
    };
    Ok(anyhow::anyhow!(
        "no runs of pipeline '{pipeline}' are recorded in {state}{hint}{others}"
    ))
}
