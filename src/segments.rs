//! Segments: who may be a member, the table segflow builds from them (`segment_membership`,
//! one row per segment and customer) and the list of declared segments (`segment_catalog`),
//! and the SQL of segments defined by combining others (`all_of` / `any_of` / `none_of`).
//! The pipeline spec declares segments; this module says what they mean.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::{DataFrame, JoinType};

use crate::hint::did_you_mean;

/// Who may be a segment member: the customers of `table` (key `customer_id`) whose
/// `created_at` is before the end of the as_of day, or unknown. `segment_membership` keeps
/// only them, whatever a segment's SQL returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub table: String,
    pub created_at: String,
    /// The tables whose rows without a known customer each run counts (the run record's
    /// `unmatched`); `None`, every source with a customer_id column. A pipeline that maps a
    /// landing's raw tables in steps names its mapped ones: the raw tables' own customer
    /// columns may be empty by design (Airbyte's top-level `customer_id`).
    pub matched: Option<Vec<String>>,
}

impl Default for Members {
    fn default() -> Self {
        Members {
            table: "customers".to_string(),
            created_at: "created_at".to_string(),
            matched: None,
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

/// Rows of a source that belong to no known customer, reported with each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Unmatched {
    /// Rows whose customer_id is NULL.
    pub without_customer: u64,
    /// Rows whose customer_id is not in the members table.
    pub unknown_customer: u64,
}

/// Counts the `rows` that no known customer placed: a NULL customer_id, or one missing from
/// `members`. None for rows without a customer_id column.
pub async fn unmatched(
    rows: DataFrame,
    members: DataFrame,
) -> Result<Option<Unmatched>, DataFusionError> {
    if rows
        .schema()
        .field_with_unqualified_name(CUSTOMER_ID)
        .is_err()
    {
        return Ok(None);
    }
    let without_customer = rows
        .clone()
        .filter(col(CUSTOMER_ID).is_null())?
        .count()
        .await?;
    let known = members.select(vec![col(CUSTOMER_ID).alias(KNOWN_ID)])?;
    let unknown_customer = rows
        .select(vec![col(CUSTOMER_ID)])?
        .filter(col(CUSTOMER_ID).is_not_null())?
        .join(known, JoinType::LeftAnti, &[CUSTOMER_ID], &[KNOWN_ID], None)?
        .count()
        .await?;
    Ok(Some(Unmatched {
        without_customer: without_customer as u64,
        unknown_customer: unknown_customer as u64,
    }))
}

/// Why a segment's result cannot be a set of customers, if it cannot.
pub fn check_segment_result(schema: &DFSchema) -> Option<String> {
    schema
        .field_with_unqualified_name(CUSTOMER_ID)
        .is_err()
        .then(|| format!("a segment's query must return a {CUSTOMER_ID} column"))
}

/// Why the members table cannot say who is a member.
pub enum MembersProblem {
    /// The table does not fit the rule: the message says how.
    Rule(String),
    Plan(DataFusionError),
}

/// The members' customer_id, renamed apart from the segment's for the semi-join.
const KNOWN_ID: &str = "__segflow_known_customer_id";

/// The rows of `memberships` whose customer is a known member: in `members` (the members
/// table), signed up by the end of the as_of day or at an unknown time. Whatever a segment's
/// SQL returns, NULL ids, ids missing from the members table and later sign-ups are dropped.
/// `as_of_end` bounds a timestamp sign-up column, `as_of` a date one. A plan; nothing is read.
pub fn known_only(
    memberships: DataFrame,
    members: DataFrame,
    rule: &Members,
    as_of: ScalarValue,
    as_of_end: ScalarValue,
) -> Result<DataFrame, MembersProblem> {
    let created_at = rule.created_at.as_str();
    let schema = members.schema().clone();
    if schema.field_with_unqualified_name(CUSTOMER_ID).is_err() {
        return Err(MembersProblem::Rule(format!(
            "it has no {CUSTOMER_ID} column"
        )));
    }
    let signed_up = col(Column::new_unqualified(created_at));
    let before_end = match schema.field_with_unqualified_name(created_at) {
        Ok(field) => match field.data_type() {
            DataType::Timestamp(..) => signed_up.clone().lt(lit(as_of_end)),
            DataType::Date32 | DataType::Date64 => signed_up.clone().lt_eq(lit(as_of)),
            other => {
                return Err(MembersProblem::Rule(format!(
                    "its sign-up column '{created_at}' is {other}, not a timestamp or a date"
                )));
            }
        },
        Err(_) => {
            let names = schema.fields().iter().map(|f| f.name().as_str());
            let hint = did_you_mean(created_at, names);
            return Err(MembersProblem::Rule(format!(
                "it has no sign-up column '{created_at}'{hint}; name it in members.created_at"
            )));
        }
    };
    let known = members
        .filter(signed_up.is_null().or(before_end))
        .and_then(|m| m.select(vec![col(CUSTOMER_ID).alias(KNOWN_ID)]))
        .map_err(MembersProblem::Plan)?;
    memberships
        .join(known, JoinType::LeftSemi, &[CUSTOMER_ID], &[KNOWN_ID], None)
        .map_err(MembersProblem::Plan)
}
