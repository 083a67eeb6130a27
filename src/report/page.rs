//! The report as one HTML file: inline CSS, SVG and a few lines of script (sorting, and a
//! flag the browser tests read), so that it opens from a bucket or a mail with no network.

use std::fmt::Write;

use super::format::{
    NO_VALUE, count, decimal, duration, escape, integer, money, money_rounded, percent,
};
use super::model::{Predictions, Report, Section, Segments, Table, Value, ValueKind, Winback};
use super::svg;
use crate::history::{RunRecord, RunStatus};
use crate::run::CheckStatus;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

pub(super) fn render(report: &Report) -> String {
    let currency = report.currency.as_deref();
    let mut html = String::with_capacity(256 * 1024);
    let title = match report.as_of {
        Some(date) => format!("{} · segments as of {date}", report.pipeline),
        None => format!("{} · no publications yet", report.pipeline),
    };
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"segflow {}\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        env!("CARGO_PKG_VERSION"),
        escape(&title)
    );
    header(&mut html, report);
    match report.as_of {
        None => {
            let _ = write!(
                html,
                "<section id=\"nothing\"><h2>Nothing published yet</h2><p>{} has not \
                 published any of the tables this report reads. Run it \
                 (<code>segflow run {}</code>) or wait for its schedule; the run health \
                 below shows what its runs did.</p></section>",
                escape(&report.pipeline),
                escape(&report.pipeline),
            );
        }
        Some(_) => {
            grids(&mut html, report, currency);
            segments(&mut html, &report.segments);
            portrait(&mut html, &report.portrait, currency);
            winback(&mut html, &report.winback);
            predictions(&mut html, &report.predictions, currency);
        }
    }
    runs(&mut html, &report.runs);
    let _ = write!(
        html,
        "<section id=\"lineage\"><h2>Lineage</h2><p class=\"note\">Sources, steps, segments \
         and outputs, each step where it can read what it reads; rows from the run that \
         published this date. Also as text: <code>segflow graph</code>.</p>\
         <div class=\"scroll\">{}</div></section>",
        svg::lineage(&report.lineage)
    );
    let _ = writeln!(
        html,
        "<footer>Made by segflow {} on {} UTC from the published tables and the run \
         history.</footer><script>{SCRIPT}</script></body></html>",
        env!("CARGO_PKG_VERSION"),
        report.generated_at.format("%Y-%m-%d %H:%M"),
    );
    html
}

fn header(html: &mut String, report: &Report) {
    let _ = write!(html, "<header><h1>{}</h1>", escape(&report.pipeline));
    if let Some(description) = &report.description {
        let _ = write!(html, "<p class=\"description\">{}</p>", escape(description));
    }
    if let Some(date) = report.as_of {
        let _ = write!(
            html,
            "<p class=\"meta\">Segments as of <b id=\"as-of\">{date}</b></p>"
        );
    }
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
    html.push_str("<div class=\"tiles\">");
    for (label, value, id) in tiles {
        let _ = write!(
            html,
            "<div class=\"tile\" id=\"tile-{id}\"><span class=\"label\">{}</span>\
             <span class=\"value\">{}</span></div>",
            escape(&label),
            escape(&value)
        );
    }
    html.push_str("</div></header>");
}

fn unavailable(html: &mut String, id: &str, title: &str, why: &str) {
    let _ = write!(
        html,
        "<section id=\"{id}\"><h2>{}</h2><p class=\"unavailable\">Not shown: {}.</p></section>",
        escape(title),
        escape(why)
    );
}

fn grids(html: &mut String, report: &Report, currency: Option<&str>) {
    let grids = match &report.grids {
        Section::Shown(grids) => grids,
        Section::Unavailable(why) => {
            return unavailable(html, "rfm", "Where buyers sit on the RFM grids", why);
        }
    };
    html.push_str(
        "<section id=\"rfm\"><h2>Where buyers sit on the RFM grids</h2><p class=\"note\">\
         Each cell counts buyers (customers with a paid order) by their scores, 5 best, \
         with their net revenue; darker is more buyers. Outlines mark the areas whose \
         customers share a label.</p><div class=\"pair\">",
    );
    for grid in grids {
        let _ = write!(
            html,
            "<figure class=\"grid\" data-label-column=\"{}\"><figcaption>{} \
             <span class=\"note\">(labels: {})</span></figcaption>{}",
            escape(&grid.label_column),
            escape(&grid.title),
            escape(&grid.label_column),
            svg::heatmap(grid, currency)
        );
        let total: u64 = grid.groups.iter().map(|g| g.customers).sum();
        html.push_str(
            "<table class=\"groups\"><thead><tr><th>Label</th><th>Customers</th><th>Share</th>\
             <th>Net revenue</th></tr></thead><tbody>",
        );
        for group in &grid.groups {
            let _ = write!(
                html,
                "<tr data-label=\"{}\" data-customers=\"{}\"><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&group.label),
                group.customers,
                escape(&group.label),
                count(group.customers),
                percent(group.customers as f64 / total.max(1) as f64),
                money(group.revenue, currency)
            );
        }
        html.push_str("</tbody></table></figure>");
    }
    html.push_str("</div></section>");
}

fn segments(html: &mut String, section: &Section<Segments>) {
    let segments = match section {
        Section::Shown(segments) => segments,
        Section::Unavailable(why) => return unavailable(html, "segments", "Segments", why),
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
    let changes = if segments.changes {
        "<span class=\"in\">+ entered</span> and <span class=\"out\">− left</span> since the \
         previous publication (segment_changes)"
    } else {
        "no segment_changes published, so no entered and left"
    };
    let _ = write!(
        html,
        "<section id=\"segments\"><h2>Segments</h2><p class=\"note\">Members of each \
         segment, largest first; {changes}; {since}.</p><ol class=\"bars\">"
    );
    for line in &segments.lines {
        let width = line.customers as f64 / largest as f64 * 100.0;
        let moves = if segments.changes {
            format!(
                "<span class=\"in\" title=\"entered\">+{}</span> \
                 <span class=\"out\" title=\"left\">−{}</span>",
                count(line.entered),
                count(line.exited)
            )
        } else {
            String::new()
        };
        let _ = write!(
            html,
            "<li class=\"segment\" data-segment=\"{}\" data-customers=\"{}\" \
             data-entered=\"{}\" data-exited=\"{}\"><span class=\"name\">{}</span>\
             <span class=\"bar\"><span style=\"width:{width:.1}%\"></span></span>\
             <span class=\"n\">{}</span><span class=\"moves\">{moves}</span>{}</li>",
            escape(&line.segment),
            line.customers,
            line.entered,
            line.exited,
            escape(&line.segment),
            count(line.customers),
            svg::sparkline(&line.sizes, &segments.dates),
        );
    }
    html.push_str("</ol></section>");
}

fn portrait(html: &mut String, section: &Section<Table>, currency: Option<&str>) {
    let table = match section {
        Section::Shown(table) => table,
        Section::Unavailable(why) => {
            return unavailable(html, "portrait", "Segment portraits", why);
        }
    };
    html.push_str(
        "<section id=\"portrait\"><h2>Segment portraits</h2><p class=\"note\">\
         segment_summary as published; click a heading to sort.</p><div class=\"scroll\">\
         <table class=\"sortable\" id=\"portrait-table\"><thead><tr>",
    );
    for column in &table.columns {
        let numeric = column.kind != ValueKind::Text;
        let _ = write!(
            html,
            "<th data-column=\"{}\" data-type=\"{}\" aria-sort=\"none\" tabindex=\"0\">{}</th>",
            escape(&column.name),
            if numeric { "number" } else { "text" },
            escape(&column.name.replace('_', " "))
        );
    }
    html.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        html.push_str("<tr>");
        for (column, value) in table.columns.iter().zip(row) {
            let (sort, shown) = match value {
                Value::Null => (String::new(), NO_VALUE.to_string()),
                Value::Text(text) => (text.clone(), text.clone()),
                Value::Number(n) => (
                    n.to_string(),
                    match column.kind {
                        ValueKind::Count => integer(n.round() as i64),
                        ValueKind::Money => money(*n, currency),
                        ValueKind::Share => percent(*n),
                        ValueKind::Number | ValueKind::Text => decimal(*n, 2),
                    },
                ),
            };
            let class = if column.kind == ValueKind::Text {
                ""
            } else {
                " class=\"num\""
            };
            let _ = write!(
                html,
                "<td{class} data-column=\"{}\" data-sort=\"{}\">{}</td>",
                escape(&column.name),
                escape(&sort),
                escape(&shown)
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></div></section>");
}

/// Horizontal bars of counts with their share of `total`.
fn count_bars(html: &mut String, class: &str, rows: &[(String, u64, &str)], total: u64) {
    let largest = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let _ = write!(html, "<ol class=\"bars {class}\">");
    for (label, n, colour) in rows {
        let _ = write!(
            html,
            "<li data-value=\"{}\" data-customers=\"{n}\"><span class=\"name\">{}</span>\
             <span class=\"bar\"><span style=\"width:{:.1}%;background:{colour}\"></span></span>\
             <span class=\"n\">{}</span><span class=\"moves\">{}</span></li>",
            escape(label),
            escape(label),
            *n as f64 / largest as f64 * 100.0,
            count(*n),
            percent(*n as f64 / total.max(1) as f64)
        );
    }
    html.push_str("</ol>");
}

fn winback(html: &mut String, section: &Section<Winback>) {
    let winback = match section {
        Section::Shown(winback) => winback,
        Section::Unavailable(why) => return unavailable(html, "winback", "Win-back", why),
    };
    let suppressed: u64 = winback.suppressed.iter().map(|(_, n)| n).sum();
    let qualified = winback.listed + suppressed;
    let _ = write!(
        html,
        "<section id=\"winback\"><h2>Win-back</h2><p class=\"note\"><b>{}</b> customers \
         on tonight's list, by the R-F group that puts them there; <b>{}</b> more qualified \
         and were left out. Shares are of all {} who qualified.</p><div class=\"pair\">\
         <div><h3>On the list</h3>",
        count(winback.listed),
        count(suppressed),
        count(qualified)
    );
    let listed: Vec<(String, u64, &str)> = winback
        .by_group
        .iter()
        .map(|(label, n)| (label.clone(), *n, svg::BLUE))
        .collect();
    count_bars(html, "listed", &listed, qualified);
    html.push_str("</div><div><h3>Left out, and why</h3>");
    if winback.suppressed.is_empty() {
        html.push_str("<p class=\"note\">Nobody was left out.</p>");
    } else {
        let left_out: Vec<(String, u64, &str)> = winback
            .suppressed
            .iter()
            .map(|(label, n)| (label.clone(), *n, svg::ORANGE))
            .collect();
        count_bars(html, "suppressed", &left_out, qualified);
    }
    html.push_str("</div></div></section>");
}

fn predictions(html: &mut String, section: &Section<Predictions>, currency: Option<&str>) {
    let predictions = match section {
        Section::Shown(predictions) => predictions,
        Section::Unavailable(why) => {
            return unavailable(html, "predictions", "Predictions", why);
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
    let _ = write!(
        html,
        "<section id=\"predictions\"><h2>Predictions</h2><p class=\"note\">From \
         customer_predictions (BG/NBD and Gamma-Gamma, README \"Predictions\"): {} buyers; \
         predicted 12-month CLV {} in all, median {}{}.</p><div class=\"pair\">\
         <div><h3>Churn risk</h3>",
        count(buyers),
        money_rounded(predictions.clv_total, currency),
        predictions
            .clv_median
            .map_or(NO_VALUE.to_string(), |m| money(m, currency)),
        match predictions.clv_not_finite {
            0 => String::new(),
            n => format!(
                "; {} buyers' CLV is no number (NaN or infinite) and left out",
                count(n)
            ),
        },
    );
    count_bars(html, "churn", &churn, buyers);
    html.push_str(
        "</div><div><h3>Predicted 12-month CLV</h3><p class=\"note\">Buyers per bin, on a \
         log scale: each bin spans the same ratio of values.</p>",
    );
    html.push_str(&svg::histogram(&predictions.clv, currency));
    html.push_str("</div></div></section>");
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

fn runs(html: &mut String, runs: &[RunRecord]) {
    html.push_str("<section id=\"runs\"><h2>Run health</h2>");
    if runs.is_empty() {
        html.push_str("<p class=\"note\">No runs recorded in this state store.</p></section>");
        return;
    }
    let _ = write!(
        html,
        "<p class=\"note\">{}, newest first (times in UTC).</p>\
         <div class=\"scroll\"><table id=\"runs-table\"><thead><tr><th>as_of</th>\
         <th>Status</th><th>Started</th><th>Took</th><th>Rows published</th><th>Checks</th>\
         <th>Note</th></tr></thead><tbody>",
        match runs.len() {
            1 => "The last run".to_string(),
            n => format!("The last {n} runs"),
        }
    );
    for run in runs {
        let took = run
            .ended_at
            .map(|end| duration((end - run.started_at).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| NO_VALUE.to_string());
        let rows: u64 = run.rows.values().sum();
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
        let note = run
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let status = run.status.as_str();
        let _ = write!(
            html,
            "<tr data-run=\"{}\" data-status=\"{status}\" data-as-of=\"{}\"><td>{}</td>\
             <td class=\"status {status}\">{}</td><td>{}</td><td class=\"num\">{took}</td>\
             <td class=\"num\">{}</td><td>{checks}</td><td class=\"error\" title=\"{}\">{}</td></tr>",
            escape(&run.run_id),
            run.as_of,
            run.as_of,
            status_text(run.status),
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            if run.rows.is_empty() {
                NO_VALUE.to_string()
            } else {
                count(rows)
            },
            escape(run.error.as_deref().unwrap_or_default()),
            escape(&truncate(&note, 160)),
        );
    }
    html.push_str("</tbody></table></div></section>");
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars).collect();
    cut.push('…');
    cut
}
