//! What a report shows, as the page draws it: sections, each with its figures or the
//! reason it is missing. Gathered in `gather`, drawn in `page`.

use chrono::NaiveDate;

use crate::history::RunRecord;
use crate::lineage::Lineage;

/// Each segment's size is drawn over this many publications, the report's own included.
pub const SIZE_HISTORY: usize = 30;

/// The run health table lists this many runs, newest first.
pub const RECENT_RUNS: usize = 10;

/// A part of the report: drawn, or the reason it cannot be.
#[derive(Debug, Clone)]
pub enum Section<T> {
    Shown(T),
    Unavailable(String),
}

/// Everything one report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub pipeline: String,
    pub description: Option<String>,
    /// The publication shown; None when the pipeline has published nothing yet.
    pub as_of: Option<NaiveDate>,
    pub generated_at: chrono::DateTime<chrono::Utc>,
    /// The currency every customer's money is in, when `customer_profile` says.
    pub currency: Option<String>,
    pub grids: Section<Vec<Grid>>,
    pub segments: Section<Segments>,
    pub portrait: Section<Table>,
    pub winback: Section<Winback>,
    pub predictions: Section<Predictions>,
    /// The pipeline's last runs, newest first.
    pub runs: Vec<RunRecord>,
    pub lineage: Lineage,
}

/// A 5×5 grid of two scores (R down, another across) with each cell's buyers and revenue.
#[derive(Debug, Clone)]
pub struct Grid {
    pub title: String,
    pub down: String,
    pub across: String,
    /// The column whose values label the areas of the grid.
    pub label_column: String,
    pub cells: Vec<Cell>,
    /// Every label's customers and revenue, those outside the grid (Prospects) included.
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub down: i64,
    pub across: i64,
    pub customers: u64,
    pub revenue: f64,
    /// What the cell's customers are labelled, when they all carry the same label.
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub customers: u64,
    pub revenue: f64,
}

#[derive(Debug, Clone)]
pub struct Segments {
    /// Largest first.
    pub lines: Vec<SegmentLine>,
    /// The dates of the sizes each line carries, oldest first; the last is the report's.
    pub dates: Vec<NaiveDate>,
    /// Whether `segment_changes` was published for the date (else no entered / exited).
    pub changes: bool,
}

#[derive(Debug, Clone)]
pub struct SegmentLine {
    pub segment: String,
    pub customers: u64,
    pub entered: u64,
    pub exited: u64,
    /// The segment's size at each of [`Segments::dates`]; None where it was not published.
    pub sizes: Vec<Option<u64>>,
}

/// A published table as the report prints it: columns with how to show them, and rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Count,
    Money,
    Share,
    Number,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone)]
pub struct Winback {
    pub listed: u64,
    /// The list by the R-F group that puts each customer on it.
    pub by_group: Vec<(String, u64)>,
    /// Who qualified and was left out, by why.
    pub suppressed: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct Predictions {
    /// Buyers by churn risk; the None key holds one-time buyers, whom the model cannot rate.
    pub churn: Vec<(Option<String>, u64)>,
    pub clv: Vec<Bin>,
    /// Buyers whose predicted CLV is no number (NaN or infinite): counted, not drawn.
    pub clv_not_finite: u64,
    pub clv_total: f64,
    pub clv_median: Option<f64>,
}

/// Customers whose value is in `[from, to)` (the last bin includes its end).
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub from: f64,
    pub to: f64,
    pub customers: u64,
}
