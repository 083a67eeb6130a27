//! What a step's SQL file may be: exactly one query. Anything that writes, defines or
//! configures (DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`) is refused, because a step's
//! only effect must be the table it produces. Also finds the tables a query reads, from which
//! the step order is derived.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{Statement as SqlStatement, TableFactor, Visit, Visitor};

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum SqlError {
    #[error("it is not valid SQL: {0}")]
    Syntax(String),
    #[error("it contains no SQL statement")]
    Empty,
    #[error("it contains {0} statements; a step is exactly one query")]
    Several(usize),
    #[error("it is a `{0}` statement; a step may only query (SELECT or WITH ... SELECT)")]
    NotAQuery(String),
}

/// One step's SQL, checked to be a single query.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSql {
    pub text: String,
    /// The tables the query reads (CTE names excluded), lower-cased as DataFusion resolves
    /// unquoted identifiers.
    pub tables: BTreeSet<String>,
}

pub(crate) fn analyze(text: &str) -> Result<StepSql, SqlError> {
    let mut statements =
        DFParser::parse_sql(text).map_err(|e| SqlError::Syntax(strip_prefix(e.to_string())))?;
    let statement = match statements.len() {
        0 => return Err(SqlError::Empty),
        1 => statements.pop_front().expect("one statement"),
        n => return Err(SqlError::Several(n)),
    };
    match &statement {
        Statement::Statement(inner) if matches!(**inner, SqlStatement::Query(_)) => {}
        other => return Err(SqlError::NotAQuery(statement_kind(other))),
    }
    let (tables, _ctes) = resolve_table_references(&statement, true)
        .map_err(|e| SqlError::Syntax(strip_prefix(e.to_string())))?;
    let functions = table_functions(&statement);
    Ok(StepSql {
        text: text.to_string(),
        tables: tables
            .iter()
            .map(|t| t.to_string())
            .filter(|t| !functions.contains(t))
            .collect(),
    })
}

/// The table functions a query calls (`generate_series(1, 10)`, `range(5)`): DataFusion's
/// resolver lists them among the tables, but they are computed, not read.
fn table_functions(statement: &Statement) -> BTreeSet<String> {
    struct Calls(BTreeSet<String>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(_),
                ..
            } = factor
                && let Ok(reference) = object_name_to_table_reference(name.clone(), true)
            {
                self.0.insert(reference.to_string());
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(BTreeSet::new());
    let Statement::Statement(query) = statement else {
        return calls.0;
    };
    let _ = query.visit(&mut calls);
    calls.0
}

/// The leading keywords of a statement (`CREATE TABLE`, `INSERT INTO`, `SET`), enough for the
/// user to recognise what was refused.
fn statement_kind(statement: &Statement) -> String {
    match statement {
        Statement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        Statement::CopyTo(_) => "COPY".into(),
        Statement::Explain(_) => "EXPLAIN".into(),
        Statement::Reset(_) => "RESET".into(),
        Statement::Statement(inner) => {
            let text = inner.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            match words.as_slice() {
                [first, second] if second.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    format!("{first} {second}")
                }
                [first, ..] => first.to_string(),
                [] => "empty".into(),
            }
        }
    }
}

/// DataFusion prefixes parser errors with its own category names, which mean nothing to a
/// user reading about their SQL file.
fn strip_prefix(message: String) -> String {
    message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_but_not_ctes() {
        let sql = analyze(
            "WITH recent AS (SELECT * FROM Orders) \
             SELECT * FROM recent JOIN customers c USING (customer_id)",
        )
        .unwrap();
        assert_eq!(
            sql.tables.into_iter().collect::<Vec<_>>(),
            vec!["customers", "orders"]
        );
    }

    #[test]
    fn table_functions_are_not_tables() {
        let sql = analyze(
            "SELECT c.customer_id, d.value AS day \
             FROM customers c CROSS JOIN generate_series(1, 7) AS d",
        )
        .unwrap();
        assert_eq!(
            sql.tables.into_iter().collect::<Vec<_>>(),
            vec!["customers"]
        );
    }

    #[test]
    fn refuses_everything_but_one_query() {
        for (text, kind) in [
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("INSERT INTO t VALUES (1)", "INSERT INTO"),
            ("DROP TABLE orders", "DROP TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("COPY orders TO 'x.parquet'", "COPY"),
            (
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'x'",
                "CREATE EXTERNAL TABLE",
            ),
        ] {
            match analyze(text) {
                Err(SqlError::NotAQuery(found)) => assert_eq!(found, kind, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(
            analyze("SELECT 1; SELECT 2").unwrap_err(),
            SqlError::Several(2)
        );
        assert_eq!(analyze("-- nothing").unwrap_err(), SqlError::Empty);
        assert!(matches!(analyze("SELEC 1"), Err(SqlError::Syntax(_))));
    }
}
