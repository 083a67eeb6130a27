//! Read-only by construction: every statement a client sends is sorted here before anything
//! else sees it. Queries go to segflow's own path (planned against the served tables, checked
//! again as a plan), the session statements clients send on connecting go to
//! datafusion-postgres's hooks, which keep them per connection, and everything else is
//! refused. Nothing reaches DataFusion's statement execution, where DDL, `COPY` and
//! `SET datafusion.*` (which would change every connection's engine) are allowed.

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SQLOptions;
use datafusion::sql::sqlparser::ast::{ObjectName, Set, Statement};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

/// What becomes of one statement.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// A query (or EXPLAIN of one): planned and run against the served tables.
    Query,
    /// A session statement that datafusion-postgres's hooks answer per connection: SET of a
    /// setting they keep, SHOW, transactions, cursors.
    Hook,
    /// Answered with this command tag and otherwise ignored: settings of PostgreSQL's that
    /// mean nothing here (`SET standard_conforming_strings`), `DISCARD ALL` from a pool.
    Ignore(&'static str),
    /// Refused, with the reason.
    Refuse(String),
}

/// The session settings datafusion-postgres's SET hook keeps per connection.
const HOOK_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

pub(super) fn judge(statement: &Statement) -> Verdict {
    match statement {
        Statement::Query(_) => Verdict::Query,
        Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {
            Verdict::Query
        }
        // DataFusion plans these as queries of information_schema.
        Statement::ShowTables { .. } | Statement::ShowColumns { .. } => Verdict::Query,
        Statement::Set(set) => judge_set(set),
        Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Verdict::Hook,
        Statement::Discard { .. } => Verdict::Ignore("DISCARD ALL"),
        Statement::Deallocate { .. } => Verdict::Ignore("DEALLOCATE"),
        // Nothing is written, so there is nothing to roll back to (SQLAlchemy sets one up).
        Statement::Savepoint { .. } => Verdict::Ignore("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Verdict::Ignore("RELEASE"),
        other => Verdict::Refuse(refusal(&command_of(other))),
    }
}

pub(super) fn refusal(command: &str) -> String {
    format!(
        "{command} is refused: segflow serve is read-only, and runs only queries (SELECT, \
         WITH, EXPLAIN) and the session statements clients send (SET, SHOW, BEGIN, cursors)"
    )
}

/// The first word of `sql` when it begins a statement that writes or defines, whether or not
/// the rest parses.
pub(super) fn writing_keyword(sql: &str) -> Option<&'static str> {
    const WRITING: &[&str] = &[
        "ALTER", "COPY", "CREATE", "DELETE", "DROP", "GRANT", "INSERT", "MERGE", "REVOKE",
        "TRUNCATE", "UPDATE", "VACUUM",
    ];
    let first = sql.split_whitespace().next()?.to_ascii_uppercase();
    WRITING.iter().copied().find(|k| *k == first)
}

fn judge_set(set: &Set) -> Verdict {
    let names: Vec<&ObjectName> = match set {
        Set::SingleAssignment { variable, .. } => vec![variable],
        Set::ParenthesizedAssignments { variables, .. } => variables.iter().collect(),
        Set::MultipleAssignments { assignments } => assignments.iter().map(|a| &a.name).collect(),
        Set::SetTimeZone { local: false, .. } => return Verdict::Hook,
        _ => return Verdict::Ignore("SET"),
    };
    // Engine settings are dotted (`datafusion.execution.target_partitions`), as are
    // extensions' (`segflow.*` would be too); PostgreSQL's own settings are not.
    if let Some(engine) = names
        .iter()
        .find(|n| n.0.len() > 1 || n.to_string().contains('.'))
    {
        return Verdict::Refuse(format!(
            "SET {engine} is refused: engine settings are the server's, the same for every \
             connection; set a session's statement_timeout, time zone, DateStyle or \
             application_name instead"
        ));
    }
    match names.as_slice() {
        [one] if HOOK_SETTINGS.contains(&one.to_string().to_lowercase().as_str()) => Verdict::Hook,
        _ => Verdict::Ignore("SET"),
    }
}

/// The statement's leading keywords, as a user would name it: `CREATE EXTERNAL TABLE`,
/// `INSERT INTO`, `COPY`.
fn command_of(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(3)
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase()))
        .collect();
    if words.is_empty() {
        "this statement".to_string()
    } else {
        words.join(" ")
    }
}

/// A planned query, checked once more as a plan: whatever the SQL was, the plan reads.
pub(super) fn verify(plan: &LogicalPlan) -> Result<(), PgWireError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| refused(&format!("{e}: segflow serve is read-only")))
}

/// SQLSTATE 25006, read_only_sql_transaction: what PostgreSQL answers a write in a
/// read-only transaction, which clients show as such.
pub(super) fn refused(reason: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "25006".to_string(),
        reason.to_string(),
    )))
}

#[cfg(test)]
mod tests {
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    fn verdict(sql: &str) -> Verdict {
        let mut statements = PostgresCompatibilityParser::new().parse(sql).unwrap();
        judge(&statements.remove(0))
    }

    #[test]
    fn only_queries_and_session_statements_pass() {
        assert_eq!(verdict("SELECT 1"), Verdict::Query);
        assert_eq!(
            verdict("WITH a AS (SELECT 1) SELECT * FROM a"),
            Verdict::Query
        );
        assert_eq!(verdict("EXPLAIN SELECT 1"), Verdict::Query);
        assert_eq!(verdict("SHOW TABLES"), Verdict::Query);
        assert_eq!(verdict("SET statement_timeout = 1000"), Verdict::Hook);
        assert_eq!(verdict("SET TIME ZONE 'Europe/Berlin'"), Verdict::Hook);
        assert_eq!(verdict("SET extra_float_digits = 3"), Verdict::Hook);
        assert_eq!(
            verdict("SET standard_conforming_strings = on"),
            Verdict::Ignore("SET")
        );
        assert_eq!(verdict("SHOW TIME ZONE"), Verdict::Hook);
        assert_eq!(verdict("BEGIN"), Verdict::Hook);
        assert_eq!(verdict("DISCARD ALL"), Verdict::Ignore("DISCARD ALL"));
        for (sql, named) in [
            ("INSERT INTO t VALUES (1)", "INSERT INTO"),
            ("DELETE FROM t", "DELETE FROM"),
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("DROP TABLE t", "DROP TABLE"),
            ("COPY t TO '/tmp/x'", "COPY"),
            ("EXPLAIN INSERT INTO t VALUES (1)", "EXPLAIN INSERT INTO"),
        ] {
            match verdict(sql) {
                Verdict::Refuse(reason) => {
                    assert!(
                        reason.starts_with(&format!("{named} is refused")),
                        "{sql}: {reason}"
                    )
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        match verdict("SET datafusion.execution.target_partitions = 1") {
            Verdict::Refuse(reason) => assert!(
                reason.starts_with("SET datafusion.execution.target_partitions is refused"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
