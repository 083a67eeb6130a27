//! The report's pictures as inline SVG, so that the page needs nothing from the network.
//! Colours come from palettes readable with the common colour-vision deficiencies:
//! ColorBrewer's sequential Blues for amounts, Okabe and Ito's eight colours for kinds.
//! Built with maud, as the page is; empty SVG elements are closed with an end tag, which
//! HTML's parser reads as it reads `<rect/>`.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::format::{count, money_rounded, percent};
use super::model::{Bin, Grid};
use crate::lineage::{Lineage, NodeKind};

/// ColorBrewer Blues, light to dark.
const BLUES: [&str; 7] = [
    "#eff3ff", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#084594",
];
/// Okabe and Ito's colour-blind-safe palette, by use.
pub(super) const BLUE: &str = "#0072B2";
pub(super) const ORANGE: &str = "#E69F00";
pub(super) const SKY: &str = "#56B4E9";
pub(super) const GREEN: &str = "#009E73";
pub(super) const VERMILLION: &str = "#D55E00";
pub(super) const PURPLE: &str = "#CC79A7";
pub(super) const GREY: &str = "#999999";

/// A 5×5 score grid as a heatmap: R from 5 (top) to 1, the other score from 1 (left) to
/// 5; each cell with its buyers, their share and revenue, shaded by buyers; the areas
/// whose customers share a label outlined, each named once.
pub(super) fn heatmap(grid: &Grid, currency: Option<&str>) -> Markup {
    const LEFT: f64 = 40.0;
    const TOP: f64 = 6.0;
    const CELL_W: f64 = 104.0;
    const CELL_H: f64 = 80.0;
    let width = LEFT + 5.0 * CELL_W + 6.0;
    let height = TOP + 5.0 * CELL_H + 44.0;
    let buyers: u64 = grid.cells.iter().map(|c| c.customers).sum();
    let most = grid
        .cells
        .iter()
        .map(|c| c.customers)
        .max()
        .unwrap_or(0)
        .max(1);
    let at: BTreeMap<(i64, i64), &super::model::Cell> =
        grid.cells.iter().map(|c| ((c.down, c.across), c)).collect();
    // A cell's area: its label, or the cell alone when it has none.
    let area = |down: i64, across: i64| -> Option<String> {
        if !(1..=5).contains(&down) || !(1..=5).contains(&across) {
            return None;
        }
        Some(
            match at.get(&(down, across)).and_then(|c| c.label.clone()) {
                Some(label) => label,
                None => format!("\u{0}{down},{across}"),
            },
        )
    };
    let x_of = |across: i64| LEFT + (across - 1) as f64 * CELL_W;
    let y_of = |down: i64| TOP + (5 - down) as f64 * CELL_H;
    let mut named = std::collections::BTreeSet::new();
    let mut cells = Vec::with_capacity(25);
    for down in (1..=5).rev() {
        for across in 1..=5 {
            let (x, y) = (x_of(across), y_of(down));
            let cell = at.get(&(down, across));
            let customers = cell.map_or(0, |c| c.customers);
            let revenue = cell.map_or(0.0, |c| c.revenue);
            let label = cell.and_then(|c| c.label.clone()).unwrap_or_default();
            let shade = if customers == 0 {
                0
            } else {
                1 + ((customers as f64 / most as f64) * (BLUES.len() - 2) as f64).round() as usize
            };
            let ink = if shade >= 4 { "#ffffff" } else { "#1a1a1a" };
            let share = if buyers > 0 {
                customers as f64 / buyers as f64
            } else {
                0.0
            };
            let key = area(down, across);
            let first_of_its_label = !label.is_empty() && named.insert(label.clone());
            // Outline the side where the next cell is another area.
            let edges: Vec<(f64, f64, f64, f64)> = [
                (1, 0, x, y, x + CELL_W, y),
                (-1, 0, x, y + CELL_H, x + CELL_W, y + CELL_H),
                (0, -1, x, y, x, y + CELL_H),
                (0, 1, x + CELL_W, y, x + CELL_W, y + CELL_H),
            ]
            .into_iter()
            .filter(|&(d_down, d_across, ..)| area(down + d_down, across + d_across) != key)
            .map(|(_, _, x1, y1, x2, y2)| (x1, y1, x2, y2))
            .collect();
            cells.push(html! {
                g.cell data-down=(down) data-across=(across) data-customers=(customers)
                    data-revenue=(format_args!("{revenue:.2}")) data-label=(label) {
                    title {
                        (grid.down) " " (down) ", " (grid.across) " " (across) ": "
                        (count(customers)) " buyers (" (percent(share)) "), "
                        (money_rounded(revenue, currency)) " net revenue"
                        @if !label.is_empty() { "; " (label) }
                    }
                    rect x=(x) y=(y) width=(CELL_W) height=(CELL_H)
                        fill=(BLUES[shade.min(BLUES.len() - 1)]) stroke="#ffffff"
                        stroke-width="1" {}
                    @if first_of_its_label {
                        text x=(x + 6.0) y=(y + 16.0) class="area" fill=(ink) { (label) }
                    }
                    text x=(x + CELL_W / 2.0) y=(y + CELL_H / 2.0 + 8.0) class="n" fill=(ink)
                        text-anchor="middle" { (count(customers)) }
                    text x=(x + CELL_W / 2.0) y=(y + CELL_H - 10.0) class="money" fill=(ink)
                        text-anchor="middle" { (money_rounded(revenue, currency)) }
                }
                @for (x1, y1, x2, y2) in edges {
                    line.edge x1=(x1) y1=(y1) x2=(x2) y2=(y2) {}
                }
            });
        }
    }
    html! {
        svg.heatmap viewBox={ "0 0 " (width) " " (height) } role="img"
            aria-label={ (grid.title) " grid of buyers" } data-buyers=(buyers) {
            @for cell in &cells { (cell) }
            @for i in 1..=5 {
                text x=(x_of(i) + CELL_W / 2.0) y=(TOP + 5.0 * CELL_H + 20.0) class="axis"
                    text-anchor="middle" { (grid.across) " " (i) }
                text x=(LEFT - 6.0) y=(y_of(i) + CELL_H / 2.0 + 4.0) class="axis"
                    text-anchor="end" { (grid.down) " " (i) }
            }
            text x=(LEFT + 2.5 * CELL_W) y=(height - 4.0) class="axis" text-anchor="middle" {
                (grid.across) " score → (5 best); " (grid.down) " score ↑"
            }
        }
    }
}

/// A segment's size over its last publications: a line, and a dot on the newest.
pub(super) fn sparkline(sizes: &[Option<u64>], dates: &[chrono::NaiveDate]) -> Markup {
    const W: f64 = 120.0;
    const H: f64 = 26.0;
    let known: Vec<(usize, u64)> = sizes
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    let high = known.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let low = known.iter().map(|(_, s)| *s).min().unwrap_or(0);
    let span = (high - low).max(1) as f64;
    let step = if sizes.len() > 1 {
        (W - 4.0) / (sizes.len() - 1) as f64
    } else {
        0.0
    };
    let point = |i: usize, s: u64| {
        (
            2.0 + step * i as f64,
            H - 3.0 - (s - low) as f64 / span * (H - 6.0),
        )
    };
    let points: Vec<String> = known
        .iter()
        .map(|&(i, s)| {
            let (x, y) = point(i, s);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let title: Vec<String> = dates
        .iter()
        .zip(sizes)
        .filter_map(|(d, s)| s.map(|s| format!("{d}: {}", count(s))))
        .collect();
    let data: Vec<String> = sizes
        .iter()
        .map(|s| s.map_or(String::new(), |s| s.to_string()))
        .collect();
    let newest = known.last().map(|&(i, s)| point(i, s));
    html! {
        svg.spark viewBox={ "0 0 " (W) " " (H) } data-sizes=(data.join(",")) {
            title { (title.join("\n")) }
            polyline fill="none" stroke=(BLUE) stroke-width="1.5" points=(points.join(" ")) {}
            @if let Some((x, y)) = newest {
                circle cx=(format_args!("{x:.1}")) cy=(format_args!("{y:.1}")) r="2.2"
                    fill=(BLUE) {}
            }
        }
    }
}

/// A histogram of money amounts: one bar per bin, the axis in whole currency units.
pub(super) fn histogram(bins: &[Bin], currency: Option<&str>) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 180.0;
    const BOTTOM: f64 = 28.0;
    let most = bins.iter().map(|b| b.customers).max().unwrap_or(0).max(1);
    let bar = W / bins.len().max(1) as f64;
    let axis = match (bins.first(), bins.last()) {
        (Some(first), Some(last)) => vec![
            (0.0, "start", first.from),
            (W / 2.0, "middle", bins[bins.len() / 2].from),
            (W, "end", last.to),
        ],
        _ => Vec::new(),
    };
    html! {
        svg.histogram viewBox={ "0 0 " (W) " " (H) } role="img" {
            @for (i, bin) in bins.iter().enumerate() {
                @let height = bin.customers as f64 / most as f64 * (H - BOTTOM - 16.0);
                rect.bin x=(format_args!("{:.1}", i as f64 * bar + 1.0))
                    y=(format_args!("{:.1}", H - BOTTOM - height))
                    width=(format_args!("{:.1}", bar - 2.0)) height=(format_args!("{height:.1}"))
                    fill=(BLUE) data-from=(format_args!("{:.2}", bin.from))
                    data-to=(format_args!("{:.2}", bin.to)) data-customers=(bin.customers) {
                    title {
                        (money_rounded(bin.from, currency)) " to " (money_rounded(bin.to, currency))
                        ": " (count(bin.customers)) " buyers"
                    }
                }
            }
            @for (x, anchor, value) in axis {
                text x=(x) y=(H - 8.0) class="axis" text-anchor=(anchor) {
                    (money_rounded(value, currency))
                }
            }
        }
    }
}

/// The end of a path or URL, as much as a node has room for: `rfm.sql`, `customers/`.
fn last_part(detail: &str) -> String {
    let trimmed = detail.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let name = if trimmed.len() < detail.len() {
        format!("{name}/")
    } else {
        name.to_string()
    };
    if name.chars().count() > 30 {
        let tail: String = name.chars().skip(name.chars().count() - 29).collect();
        format!("…{tail}")
    } else {
        name
    }
}

/// The lineage graph laid out in columns, as `dbt docs` draws it: each node one column
/// right of the furthest node it reads, outputs in the last column.
pub(super) fn lineage(graph: &Lineage) -> Markup {
    const NODE_W: f64 = 200.0;
    const NODE_H: f64 = 54.0;
    const COLUMN: f64 = 250.0;
    const ROW: f64 = 64.0;
    const MARGIN: f64 = 10.0;
    let mut column: BTreeMap<&str, usize> = BTreeMap::new();
    // Steps come after what they read (the pipeline's order), so one pass places them.
    for node in &graph.nodes {
        let reads = graph
            .edges
            .iter()
            .filter(|(_, to)| to == &node.id)
            .filter_map(|(from, _)| column.get(from.as_str()))
            .max();
        let placed = match node.kind {
            NodeKind::Source => 0,
            _ => reads.map_or(0, |c| c + 1),
        };
        column.insert(&node.id, placed);
    }
    let last = column.values().copied().max().unwrap_or(0);
    for node in graph.nodes.iter().filter(|n| n.kind == NodeKind::Output) {
        column.insert(&node.id, last);
    }
    let mut rows_in: BTreeMap<usize, usize> = BTreeMap::new();
    let mut position: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for node in &graph.nodes {
        let c = column[node.id.as_str()];
        let r = rows_in.entry(c).or_insert(0);
        position.insert(
            &node.id,
            (MARGIN + c as f64 * COLUMN, MARGIN + *r as f64 * ROW),
        );
        *r += 1;
    }
    let tallest = rows_in.values().copied().max().unwrap_or(0);
    let width = MARGIN * 2.0 + last as f64 * COLUMN + NODE_W;
    let height = MARGIN * 2.0 + tallest as f64 * ROW;
    let links: Vec<_> = graph
        .edges
        .iter()
        .filter_map(|(from, to)| {
            let &(x1, y1) = position.get(from.as_str())?;
            let &(x2, y2) = position.get(to.as_str())?;
            Some((
                from,
                to,
                (x1 + NODE_W, y1 + NODE_H / 2.0, x2, y2 + NODE_H / 2.0),
            ))
        })
        .collect();
    html! {
        svg.lineage viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height)
            role="img" aria-label="lineage" {
            @for (from, to, (x1, y1, x2, y2)) in links {
                @let bend = (x2 - x1).abs() / 2.0;
                path.link data-from=(from) data-to=(to)
                    d={ "M" (x1) "," (y1) " C" (x1 + bend) "," (y1) " " (x2 - bend) "," (y2) " "
                        (x2) "," (y2) } {}
            }
            @for node in &graph.nodes {
                @let (x, y) = position[node.id.as_str()];
                @let (colour, kind) = match node.kind {
                    NodeKind::Source => (SKY, "source"),
                    NodeKind::Step => (ORANGE, "step"),
                    NodeKind::Segment => (GREEN, "segment"),
                    NodeKind::Built => (PURPLE, "built"),
                    NodeKind::Output => (BLUE, "output"),
                };
                g.node data-id=(node.id) data-kind=(kind)
                    data-rows=(node.rows.map_or(String::new(), |n| n.to_string())) {
                    title { (node.name) " (" (kind) "): " (node.detail) }
                    rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" fill="#ffffff"
                        stroke=(colour) stroke-width="2" {}
                    rect x=(x) y=(y) width="6" height=(NODE_H) fill=(colour) {}
                    text x=(x + 12.0) y=(y + 17.0) class="name" { (node.name) }
                    text x=(x + 12.0) y=(y + 32.0) class="file" { (last_part(&node.detail)) }
                    text x=(x + 12.0) y=(y + 47.0) class="rows" {
                        (kind)
                        @if let Some(n) = node.rows {
                            " · " (count(n)) " row" @if n != 1 { "s" }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Cell;

    #[test]
    fn areas_are_outlined_where_labels_change_and_named_once() {
        let cells = (1..=5)
            .flat_map(|down| (1..=5).map(move |across| (down, across)))
            .map(|(down, across)| Cell {
                down,
                across,
                customers: (down * across) as u64,
                revenue: 10.0,
                label: Some(if across <= 2 { "Low" } else { "High" }.to_string()),
            })
            .collect();
        let grid = Grid {
            title: "R × F".into(),
            down: "R".into(),
            across: "F".into(),
            label_column: "rf_segment".into(),
            cells,
            groups: Vec::new(),
        };
        let svg = heatmap(&grid, None).into_string();
        // The 20 sides of the grid's edge, and the boundary between columns 2 and 3, drawn
        // by the cells on both of its sides.
        assert_eq!(svg.matches("class=\"edge\"").count(), 20 + 2 * 5);
        assert_eq!(svg.matches(">Low</text>").count(), 1);
        assert_eq!(svg.matches(">High</text>").count(), 1);
        assert_eq!(svg.matches("class=\"cell\"").count(), 25);
        assert!(svg.contains("data-buyers=\"225\""), "1+..+5 squared");
    }

    #[test]
    fn nodes_show_the_end_of_their_file_or_url() {
        assert_eq!(
            last_part("../queries/segments/rfm_loyal.sql"),
            "rfm_loyal.sql"
        );
        assert_eq!(last_part("file:///tmp/out/customers/"), "customers/");
        assert_eq!(
            last_part("s3://lake/a_table_name_that_is_far_too_long_for_a_node/"),
            "…t_is_far_too_long_for_a_node/"
        );
    }
}
