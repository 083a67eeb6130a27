//! Client SQL that PostgreSQL takes and DataFusion does not, rewritten before planning into
//! the same query DataFusion can run.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Statement, Value, visit_expressions_mut,
};

/// Rewrites `statement` in place.
pub(super) fn adapt(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        escape_with_backslash(expr);
        ControlFlow::<()>::Continue(())
    });
}

/// `x LIKE p ESCAPE '/'` (SQLAlchemy lists schemas with it): DataFusion escapes with a
/// backslash only, so the pattern's backslashes are doubled and its escape character made
/// a backslash. A doubled escape character (`//`, a literal `/`) is the one pattern this
/// reads differently, as a literal backslash.
fn escape_with_backslash(expr: &mut Expr) {
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = expr
    else {
        return;
    };
    let Some(escape) = escape_char
        .as_ref()
        .and_then(|e| e.value.clone().into_string())
    else {
        return;
    };
    if escape == "\\" {
        return;
    }
    let doubled = replace(pattern.as_ref().clone(), "\\", "\\\\");
    **pattern = replace(doubled, &escape, "\\");
    *escape_char = None;
}

fn replace(text: Expr, from: &str, to: &str) -> Expr {
    let argument = |expr: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(expr));
    let literal = |s: &str| Expr::Value(Value::SingleQuotedString(s.to_string()).into());
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("replace"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                argument(text),
                argument(literal(from)),
                argument(literal(to)),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    #[tokio::test]
    async fn like_with_another_escape_character_matches_as_postgresql_does() {
        let ctx = SessionContext::new();
        for (sql, matches) in [
            ("SELECT 'pg_catalog' LIKE 'pg/_%' ESCAPE '/'", true),
            ("SELECT 'pgxcatalog' LIKE 'pg/_%' ESCAPE '/'", false),
            ("SELECT 'a\\b' LIKE 'a\\b' ESCAPE '/'", true),
            ("SELECT 'nightly' NOT LIKE 'pg/_' || '%' ESCAPE '/'", true),
        ] {
            let mut statement = PostgresCompatibilityParser::new()
                .parse(sql)
                .unwrap()
                .remove(0);
            adapt(&mut statement);
            let batches = ctx
                .sql(&statement.to_string())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let value = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            assert!(
                value.contains(if matches { "true" } else { "false" }),
                "{sql}: {value}"
            );
        }
    }
}
