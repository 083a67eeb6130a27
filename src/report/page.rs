//! The report as one HTML file: inline CSS, SVG and a few lines of script (sorting, and a
//! flag the browser tests read), so that it opens from a bucket or a mail with no network.
//! Built with maud, which escapes every value it writes.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::format::{NO_VALUE, count, decimal, duration, integer, money, money_rounded, percent};
use super::model::{Predictions, Report, Section, Segments, Table, Value, ValueKind, Winback};
use super::svg;
use crate::history::{RunRecord, RunStatus};
use crate::run::CheckStatus;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) fn render(report: &Report) -> String {
    let currency = report.currency.as_deref();
    let title = match report.as_of {
        Some(date) => format!("{} · segments as of {date}", report.pipeline),
        None => format!("{} · no publications yet", report.pipeline),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "segflow " (VERSION) };
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (header(report))
                @match report.as_of {
                    None => section #nothing {
                        h2 { "Nothing published yet" }
                        p {
                            (report.pipeline) " has not published any of the tables this \
                            report reads. Run it (" code { "segflow run " (report.pipeline) }
                            ") or wait for its schedule; the run health below shows what its \
                            runs did."
                        }
                    },
                    Some(_) => {
                        (grids(report, currency))
                        (segments(&report.segments))
                        (portrait(&report.portrait, currency))
                        (winback(&report.winback))
                        (predictions(&report.predictions, currency))
                    },
                }
                (runs(&report.runs))
                section #lineage {
                    h2 { "Lineage" }
                    p.note {
                        "Sources, steps, segments and outputs, each step where it can read \
                        what it reads; rows from the run that published this date. Also as \
                        text: " code { "segflow graph" } "."
                    }
                    div.scroll { (svg::lineage(&report.lineage)) }
                }
                footer {
                    "Made by segflow " (VERSION) " on "
                    (report.generated_at.format("%Y-%m-%d %H:%M"))
                    " UTC from the published tables and the run history."
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    let mut text = page.into_string();
    text.push('\n');
    text
}

fn header(report: &Report) -> Markup {
    let mut tiles: Vec<(String, String, &str)> = Vec::new();
    if let Section::Shown(grids) = &report.grids
        && let Some(grid) = grids.first()
    {
        let customers: u64 = grid.groups.iter().map(|g| g.customers).sum();
        let buyers: u64 = grid.cells.iter().map(|c| c.customers).sum();
        let revenue: f64 = grid.groups.iter().map(|g| g.revenue).sum();
        tiles.push(("Customers".into(), count(customers), "customers"));
        tiles.push(("Buyers".into(), count(buyers), "buyers"));
        tiles.push((
            "Net revenue".into(),
            money_rounded(revenue, report.currency.as_deref()),
            "revenue",
        ));
    }
    if let Section::Shown(segments) = &report.segments {
        tiles.push((
            "Segments".into(),
            count(segments.lines.len() as u64),
            "segments",
        ));
    }
    if let Section::Shown(winback) = &report.winback {
        tiles.push((
            "On the win-back list".into(),
            count(winback.listed),
            "winback",
        ));
    }
    if let Some(last) = report.runs.first() {
        tiles.push((
            format!("Last run ({})", last.as_of),
            status_text(last.status).to_string(),
            "last-run",
        ));
    }
    html! {
        header {
            h1 { (report.pipeline) }
            @if let Some(description) = &report.description {
                p.description { (description) }
            }
            @if let Some(date) = report.as_of {
                p.meta { "Segments as of " b #as-of { (date) } }
            }
            div.tiles {
                @for (label, value, id) in &tiles {
                    div.tile id={ "tile-" (id) } {
                        span.label { (label) }
                        span.value { (value) }
                    }
                }
            }
        }
    }
}

fn unavailable(id: &str, title: &str, why: &str) -> Markup {
    html! {
        section id=(id) {
            h2 { (title) }
            p.unavailable { "Not shown: " (why) "." }
        }
    }
}

fn grids(report: &Report, currency: Option<&str>) -> Markup {
    let grids = match &report.grids {
        Section::Shown(grids) => grids,
        Section::Unavailable(why) => {
            return unavailable("rfm", "Where buyers sit on the RFM grids", why);
        }
    };
    html! {
        section #rfm {
            h2 { "Where buyers sit on the RFM grids" }
            p.note {
                "Each cell counts buyers (customers with a paid order) by their scores, 5 \
                best, with their net revenue; darker is more buyers. Outlines mark the areas \
                whose customers share a label."
            }
            div.pair {
                @for grid in grids {
                    @let total: u64 = grid.groups.iter().map(|g| g.customers).sum();
                    figure.grid data-label-column=(grid.label_column) {
                        figcaption {
                            (grid.title) " "
                            span.note { "(labels: " (grid.label_column) ")" }
                        }
                        (svg::heatmap(grid, currency))
                        table.groups {
                            thead { tr {
                                th { "Label" } th { "Customers" } th { "Share" }
                                th { "Net revenue" }
                            } }
                            tbody {
                                @for group in &grid.groups {
                                    tr data-label=(group.label) data-customers=(group.customers) {
                                        td { (group.label) }
                                        td.num { (count(group.customers)) }
                                        td.num {
                                            (percent(group.customers as f64 / total.max(1) as f64))
                                        }
                                        td.num { (money(group.revenue, currency)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn segments(section: &Section<Segments>) -> Markup {
    let segments = match section {
        Section::Shown(segments) => segments,
        Section::Unavailable(why) => return unavailable("segments", "Segments", why),
    };
    let largest = segments
        .lines
        .iter()
        .map(|l| l.customers)
        .max()
        .unwrap_or(0)
        .max(1);
    let since = match segments.dates.len() {
        0 | 1 => "this is the first publication".to_string(),
        n => format!(
            "the line shows the last {n} publications, {} to {}",
            segments.dates[0],
            segments.dates[n - 1]
        ),
    };
    html! {
        section #segments {
            h2 { "Segments" }
            p.note {
                "Members of each segment, largest first; "
                @if segments.changes {
                    span.in { "+ entered" } " and " span.out { "− left" }
                    " since the previous publication (segment_changes)"
                } @else {
                    "no segment_changes published, so no entered and left"
                }
                "; " (since) "."
            }
            ol.bars {
                @for line in &segments.lines {
                    @let width = line.customers as f64 / largest as f64 * 100.0;
                    li.segment data-segment=(line.segment) data-customers=(line.customers)
                        data-entered=(line.entered) data-exited=(line.exited) {
                        span.name { (line.segment) }
                        span.bar { span style={ "width:" (format!("{width:.1}")) "%" } {} }
                        span.n { (count(line.customers)) }
                        span.moves {
                            @if segments.changes {
                                span.in title="entered" { "+" (count(line.entered)) }
                                " "
                                span.out title="left" { "−" (count(line.exited)) }
                            }
                        }
                        (svg::sparkline(&line.sizes, &segments.dates))
                    }
                }
            }
        }
    }
}

fn portrait(section: &Section<Table>, currency: Option<&str>) -> Markup {
    let table = match section {
        Section::Shown(table) => table,
        Section::Unavailable(why) => {
            return unavailable("portrait", "Segment portraits", why);
        }
    };
    html! {
        section #portrait {
            h2 { "Segment portraits" }
            p.note { "segment_summary as published; click a heading to sort." }
            div.scroll { table.sortable #portrait-table {
                thead { tr {
                    @for column in &table.columns {
                        @let kind = if column.kind == ValueKind::Text { "text" } else { "number" };
                        th data-column=(column.name) data-type=(kind) aria-sort="none"
                            tabindex="0" { (column.name.replace('_', " ")) }
                    }
                } }
                tbody {
                    @for row in &table.rows {
                        tr {
                            @for (column, value) in table.columns.iter().zip(row) {
                                @let (sort, shown) = cell(column.kind, value, currency);
                                td class=[(column.kind != ValueKind::Text).then_some("num")]
                                    data-column=(column.name) data-sort=(sort) { (shown) }
                            }
                        }
                    }
                }
            } }
        }
    }
}

/// A portrait cell's sort key and its text.
fn cell(kind: ValueKind, value: &Value, currency: Option<&str>) -> (String, String) {
    match value {
        Value::Null => (String::new(), NO_VALUE.to_string()),
        Value::Text(text) => (text.clone(), text.clone()),
        Value::Number(n) => (
            n.to_string(),
            match kind {
                ValueKind::Count => integer(n.round() as i64),
                ValueKind::Money => money(*n, currency),
                ValueKind::Share => percent(*n),
                ValueKind::Number | ValueKind::Text => decimal(*n, 2),
            },
        ),
    }
}

/// Horizontal bars of counts with their share of `total`.
fn count_bars(class: &str, rows: &[(String, u64, &str)], total: u64) -> Markup {
    let largest = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    html! {
        ol class={ "bars " (class) } {
            @for (label, n, colour) in rows {
                @let width = *n as f64 / largest as f64 * 100.0;
                li data-value=(label) data-customers=(n) {
                    span.name { (label) }
                    span.bar {
                        span style={ "width:" (format!("{width:.1}")) "%;background:" (colour) } {}
                    }
                    span.n { (count(*n)) }
                    span.moves { (percent(*n as f64 / total.max(1) as f64)) }
                }
            }
        }
    }
}

fn winback(section: &Section<Winback>) -> Markup {
    let winback = match section {
        Section::Shown(winback) => winback,
        Section::Unavailable(why) => return unavailable("winback", "Win-back", why),
    };
    let suppressed: u64 = winback.suppressed.iter().map(|(_, n)| n).sum();
    let qualified = winback.listed + suppressed;
    let listed: Vec<(String, u64, &str)> = winback
        .by_group
        .iter()
        .map(|(label, n)| (label.clone(), *n, svg::BLUE))
        .collect();
    let left_out: Vec<(String, u64, &str)> = winback
        .suppressed
        .iter()
        .map(|(label, n)| (label.clone(), *n, svg::ORANGE))
        .collect();
    html! {
        section #winback {
            h2 { "Win-back" }
            p.note {
                b { (count(winback.listed)) } " customers on tonight's list, by the R-F group \
                that puts them there; " b { (count(suppressed)) } " more qualified and were \
                left out. Shares are of all " (count(qualified)) " who qualified."
            }
            div.pair {
                div {
                    h3 { "On the list" }
                    (count_bars("listed", &listed, qualified))
                }
                div {
                    h3 { "Left out, and why" }
                    @if left_out.is_empty() {
                        p.note { "Nobody was left out." }
                    } @else {
                        (count_bars("suppressed", &left_out, qualified))
                    }
                }
            }
        }
    }
}

fn predictions(section: &Section<Predictions>, currency: Option<&str>) -> Markup {
    let predictions = match section {
        Section::Shown(predictions) => predictions,
        Section::Unavailable(why) => {
            return unavailable("predictions", "Predictions", why);
        }
    };
    let buyers: u64 = predictions.churn.iter().map(|(_, n)| n).sum();
    let order = |risk: &Option<String>| match risk.as_deref() {
        Some("high") => 0,
        Some("medium") => 1,
        Some("low") => 2,
        Some(_) => 3,
        None => 4,
    };
    let mut churn = predictions.churn.clone();
    churn.sort_by_key(|(risk, _)| order(risk));
    let churn: Vec<(String, u64, &str)> = churn
        .iter()
        .map(|(risk, n)| match risk.as_deref() {
            Some("high") => ("high".to_string(), *n, svg::VERMILLION),
            Some("medium") => ("medium".to_string(), *n, svg::ORANGE),
            Some("low") => ("low".to_string(), *n, svg::BLUE),
            Some(other) => (other.to_string(), *n, svg::PURPLE),
            None => ("not rated (one order)".to_string(), *n, svg::GREY),
        })
        .collect();
    let median = predictions
        .clv_median
        .map_or(NO_VALUE.to_string(), |m| money(m, currency));
    html! {
        section #predictions {
            h2 { "Predictions" }
            p.note {
                "From customer_predictions (BG/NBD and Gamma-Gamma, docs/shipped-pipeline.md \
                \"Predictions\"): " (count(buyers)) " buyers; predicted 12-month CLV "
                (money_rounded(predictions.clv_total, currency)) " in all, median " (median)
                @if predictions.clv_not_finite > 0 {
                    "; " (count(predictions.clv_not_finite)) " buyers' CLV is no number (NaN or \
                    infinite) and left out"
                }
                "."
            }
            div.pair {
                div {
                    h3 { "Churn risk" }
                    (count_bars("churn", &churn, buyers))
                }
                div {
                    h3 { "Predicted 12-month CLV" }
                    p.note {
                        "Buyers per bin, on a log scale: each bin spans the same ratio of values."
                    }
                    (svg::histogram(&predictions.clv, currency))
                }
            }
        }
    }
}

fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "● running",
        RunStatus::Succeeded => "✓ succeeded",
        RunStatus::Failed => "✗ failed",
        RunStatus::Interrupted => "◌ interrupted",
        RunStatus::Abandoned => "◌ abandoned",
    }
}

fn runs(runs: &[RunRecord]) -> Markup {
    let newest = match runs.len() {
        1 => "The last run".to_string(),
        n => format!("The last {n} runs"),
    };
    html! {
        section #runs {
            h2 { "Run health" }
            @if runs.is_empty() {
                p.note { "No runs recorded in this state store." }
            } @else {
                p.note { (newest) ", newest first (times in UTC)." }
                div.scroll { table #runs-table {
                    thead { tr {
                        th { "as_of" } th { "Status" } th { "Started" } th { "Took" }
                        th { "Rows published" } th { "Checks" } th { "Note" }
                    } }
                    tbody { @for run in runs { (run_row(run)) } }
                } }
            }
        }
    }
}

fn run_row(run: &RunRecord) -> Markup {
    let took = run
        .ended_at
        .map(|end| duration((end - run.started_at).num_milliseconds() as f64 / 1000.0))
        .unwrap_or_else(|| NO_VALUE.to_string());
    let rows = if run.rows.is_empty() {
        NO_VALUE.to_string()
    } else {
        count(run.rows.values().sum())
    };
    let failed = run
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .count();
    let warned = run
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Warned)
        .count();
    let passed = run.checks.len() - failed - warned;
    let checks = match (run.checks.len(), failed, warned) {
        (0, _, _) => NO_VALUE.to_string(),
        (_, 0, 0) => format!("{passed} passed"),
        _ => format!("{passed} passed, {warned} warned, {failed} failed"),
    };
    let error = run.error.as_deref().unwrap_or_default();
    let note = error.lines().next().unwrap_or_default();
    let status = run.status.as_str();
    html! {
        tr data-run=(run.run_id) data-status=(status) data-as-of=(run.as_of) {
            td { (run.as_of) }
            td class={ "status " (status) } { (status_text(run.status)) }
            td { (run.started_at.format("%Y-%m-%d %H:%M:%S")) }
            td.num { (took) }
            td.num { (rows) }
            td { (checks) }
            td.error title=(error) { (truncate(note, 160)) }
        }
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::{Lineage, Node, NodeKind};

    /// Whatever a pipeline, a run or a file is called, it reaches the page as text: a name
    /// that is markup shows as written and runs nothing.
    #[test]
    fn names_that_are_markup_are_shown_as_text() {
        let markup = "<script>alert(\"x\")</script>&";
        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let mut run = RunRecord::started(markup, as_of, markup, chrono::Utc::now());
        run.error = Some(markup.to_string());
        let report = Report {
            pipeline: markup.to_string(),
            description: Some(markup.to_string()),
            as_of: None,
            generated_at: chrono::Utc::now(),
            currency: None,
            grids: Section::Unavailable(markup.to_string()),
            segments: Section::Unavailable(markup.to_string()),
            portrait: Section::Unavailable(markup.to_string()),
            winback: Section::Unavailable(markup.to_string()),
            predictions: Section::Unavailable(markup.to_string()),
            runs: vec![run],
            lineage: Lineage {
                nodes: vec![Node {
                    id: markup.to_string(),
                    kind: NodeKind::Step,
                    name: markup.to_string(),
                    detail: markup.to_string(),
                    rows: None,
                }],
                edges: vec![(markup.to_string(), markup.to_string())],
            },
        };
        let page = render(&report);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"));
        // The page's own script is still there, once.
        assert_eq!(page.matches("<script>").count(), 1);
    }
}
