//! Segments: who may be a member, the table segflow builds from them (`segment_membership`,
//! one row per segment and customer) and the list of declared segments (`segment_catalog`),
//! and the SQL of segments defined by combining others (`all_of` / `any_of` / `none_of`).
//! The pipeline spec declares segments; this module says what they mean.

/// Who may be a segment member: the customers of `table` (key `customer_id`) whose
/// `created_at` is before the end of the as_of day, or unknown. `segment_membership` keeps
/// only them, whatever a segment's SQL returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub table: String,
    pub created_at: String,
}

impl Default for Members {
    fn default() -> Self {
        Members {
            table: "customers".to_string(),
            created_at: "created_at".to_string(),
        }
    }
}

/// The column every segment returns and members are known by.
pub const CUSTOMER_ID: &str = "customer_id";

/// The long table of who is in which segment, which segflow builds from the segments.
pub const SEGMENT_MEMBERSHIP: &str = "segment_membership";
/// One row per declared segment, so that an empty segment is still listed.
pub const SEGMENT_CATALOG: &str = "segment_catalog";

/// A segment defined as a set operation, as SQL: the intersection of `all_of`, intersected
/// with the union of `any_of`, minus the union of `none_of`. Names are validated
/// identifiers, so they can stand in the text.
pub(crate) fn combination_sql(all_of: &[String], any_of: &[String], none_of: &[String]) -> String {
    let select = |names: &[String], op: &str| {
        names
            .iter()
            .map(|n| format!("SELECT customer_id FROM {n}"))
            .collect::<Vec<_>>()
            .join(&format!(" {op} "))
    };
    let mut parts = Vec::new();
    if !all_of.is_empty() {
        parts.push(format!(
            "SELECT customer_id FROM ({}) AS all_of",
            select(all_of, "INTERSECT")
        ));
    }
    if !any_of.is_empty() {
        parts.push(format!(
            "SELECT customer_id FROM ({}) AS any_of",
            select(any_of, "UNION")
        ));
    }
    let mut sql = parts.join(" INTERSECT ");
    if !none_of.is_empty() {
        sql = format!(
            "SELECT customer_id FROM ({sql}) AS kept EXCEPT SELECT customer_id FROM ({}) AS none_of",
            select(none_of, "UNION")
        );
    }
    sql
}

/// `segment_membership`: one row per (segment, customer), with the run's date. The engine
/// keeps only known customers' rows of it (see [`Members`]).
pub(crate) fn membership_sql(segments: &[String]) -> String {
    let union = segments
        .iter()
        .map(|n| {
            format!(
                "SELECT '{n}' AS segment, {CUSTOMER_ID} \
                 FROM (SELECT DISTINCT {CUSTOMER_ID} FROM {n}) AS {n}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!("SELECT CAST($as_of AS DATE) AS as_of, segment, {CUSTOMER_ID} FROM ({union}) AS chosen")
}

/// `segment_catalog`: each declared segment with its YAML position and definition.
pub(crate) fn catalog_sql(segments: &[(String, String)]) -> String {
    let rows = segments
        .iter()
        .enumerate()
        .map(|(i, (name, definition))| {
            format!(
                "({}, '{name}', '{}')",
                i + 1,
                definition.replace('\'', "''")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT CAST(position AS INT) AS position, segment, definition \
         FROM (VALUES {rows}) AS declared(position, segment, definition)"
    )
}

/// The segment portraits of a published `segment_summary` (its files), largest segment first,
/// as a text table for a terminal.
pub async fn summary_text(
    files: Vec<String>,
) -> Result<String, datafusion::error::DataFusionError> {
    let ctx = datafusion::prelude::SessionContext::new();
    let published = ctx.read_parquet(files, Default::default()).await?;
    ctx.register_table("summary", published.into_view())?;
    let table = ctx
        .sql(
            "SELECT segment, customers, round(100 * share_of_customers, 1) AS \"share %\", \
             buyers, revenue, average_order_value AS aov, \
             round(100 * repurchase_rate, 1) AS \"repurchase %\", \
             median_days_since_last_order AS \"median days since order\", \
             reachable_by_email AS email, reachable_by_sms AS sms \
             FROM summary ORDER BY customers DESC, segment",
        )
        .await?
        .collect()
        .await?;
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(&table)?.to_string())
}
