//! When a run's checks run: each is planned as soon as its tables are (a check naming a
//! column that does not exist fails before the steps after it are computed); those on
//! sources alone run before any step; the others run on the staged outputs, before the
//! publication is decided.

use std::collections::BTreeSet;

use crate::engine::{CheckInputs, Engine};
use crate::pipeline::{Check, CheckRule, Pipeline, Severity};
use crate::progress::Progress;
use crate::publish::{self, Publication};
use crate::storage::Storage;

use super::earlier::register_published;
use super::error::RunError;
use super::{CheckResult, CheckStatus, RunRequest};

/// Plans each check of `pending` whose tables are all `ready` against their schemas,
/// reading no data, and takes it off `pending`: a run plans each check as soon as its
/// tables are, so that a check naming a column its table does not have, or a value the
/// column cannot hold, fails before the steps after it are computed.
pub(super) async fn plan_ready_checks(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    pending: &mut Vec<&Check>,
    ready: &BTreeSet<&str>,
) -> Result<(), RunError> {
    let params = request.params(pipeline);
    let (now, later): (Vec<&Check>, Vec<&Check>) = pending
        .iter()
        .partition(|check| check.reads().iter().all(|table| ready.contains(table)));
    *pending = later;
    for check in now {
        if let CheckRule::Sql(step) = &check.rule {
            register_published(pipeline, engine, storage, step, request.as_of).await?;
        }
        engine.plan_check(check, &params).await?;
    }
    Ok(())
}

/// The checks that read sources only (they can run before any step is computed), or the
/// others.
fn checks_on_sources(pipeline: &Pipeline, only_sources: bool) -> Vec<&Check> {
    let on_sources = |check: &&Check| {
        check
            .reads()
            .iter()
            .all(|table| pipeline.sources.iter().any(|s| s.name == *table))
    };
    pipeline
        .checks
        .iter()
        .filter(|check| on_sources(check) == only_sources)
        .collect()
}

/// Whether an `error` check failed, which fails the run.
fn any_failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == CheckStatus::Failed)
}

/// Runs the checks that read sources only, before any step is computed: a night whose
/// export has not landed fails in seconds, not after the night's work (and so does each of
/// its retries).
pub(super) async fn check_sources(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let checks = checks_on_sources(pipeline, true);
    let results = evaluate_checks(pipeline, request, (engine, storage), &checks, progress).await?;
    if any_failed(&results) {
        return Err(RunError::ChecksFailed(results));
    }
    Ok(results)
}

/// Runs the other checks on what the run is about to publish: an output's staged files
/// (read as the output's table from here on, so that nothing is computed twice), or the
/// registered table. A failed `error` check fails the run (its publications are then
/// discarded); a failed `warn` one is logged. Returns every check's outcome, `on_sources`'
/// too, in the spec's order.
pub(super) async fn check_staged(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    publications: &[Publication],
    on_sources: Vec<CheckResult>,
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let checks = checks_on_sources(pipeline, false);
    if checks.is_empty() {
        return Ok(on_sources);
    }
    for (output, publication) in pipeline.outputs.iter().zip(publications) {
        let staged = std::slice::from_ref(&publication.staging().folder);
        engine
            .read_table_from(&output.table, staged, &output.options)
            .await?;
    }
    let staged = evaluate_checks(pipeline, request, (engine, storage), &checks, progress).await?;
    let mut results: Vec<CheckResult> = on_sources.into_iter().chain(staged).collect();
    let position = |name: &str| pipeline.checks.iter().position(|c| c.name == name);
    results.sort_by_key(|result| position(&result.name));
    if any_failed(&results) {
        return Err(RunError::ChecksFailed(results));
    }
    Ok(results)
}

/// Runs `checks` on the tables as `engine` has them, each outcome logged.
pub(super) async fn evaluate_checks(
    pipeline: &Pipeline,
    request: &RunRequest,
    (engine, storage): (&Engine, &Storage),
    checks: &[&Check],
    progress: &Progress,
) -> Result<Vec<CheckResult>, RunError> {
    let params = request.params(pipeline);
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        progress.message(format!("check {}", check.name));
        let previous = match &check.rule {
            CheckRule::Sql(step) => {
                register_published(pipeline, engine, storage, step, request.as_of).await?;
                None
            }
            CheckRule::Anomaly { .. } => match pipeline.earlier_publications_of(&check.table) {
                Some(earlier) => {
                    publish::sink(storage, &earlier)
                        .latest_before(request.as_of)
                        .await?
                }
                None => None,
            },
            _ => None,
        };
        let inputs = CheckInputs {
            params: &params,
            previous: previous.as_ref().map(|p| p.files.as_slice()),
        };
        let outcome = engine.check(check, &inputs).await?;
        let status = match (outcome.offending, check.severity) {
            (0, _) => CheckStatus::Passed,
            (_, Severity::Warn) => CheckStatus::Warned,
            (_, Severity::Error) => CheckStatus::Failed,
        };
        let result = CheckResult {
            name: check.name.clone(),
            table: check.table.clone(),
            rule: check.rule.to_string(),
            found: outcome.found,
            status,
            offending: outcome.offending,
            examples: outcome.examples,
        };
        match status {
            CheckStatus::Passed if result.found.is_empty() => {
                tracing::info!(pipeline = %pipeline.name, check = %check.name, table = %check.table, "Check passed.")
            }
            CheckStatus::Passed => {
                tracing::info!(pipeline = %pipeline.name, check = %check.name, table = %check.table, note = %result.found, "Check passed.")
            }
            _ => {
                tracing::warn!(pipeline = %pipeline.name, check = %check.name, table = %check.table, offending = outcome.offending, status = ?status, "{}", result.summary())
            }
        }
        results.push(result);
    }
    Ok(results)
}
