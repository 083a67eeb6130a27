//! How a client's statements are answered: parsed as PostgreSQL, sorted by the [`guard`],
//! and each query planned and run in a session of its own, pinned to the snapshot of the
//! served tables that was current when it began, with its own memory pool and a deadline
//! that covers planning, running and sending the rows.
//!
//! datafusion-postgres's `DfSessionService` runs everything in the one shared session it is
//! given, with no memory bound and a timeout that stops at planning; so segflow answers the
//! protocol itself, with datafusion-postgres's parser, hooks, catalog and type encoding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::{
    deserialize_parameters_with_server_types, encode_dataframe,
};
use datafusion_postgres::arrow_pg::datatypes::{
    PG_OID_ALIAS_KEY, arrow_schema_to_pg_fields, into_pg_type, pg_type_for_alias_kind,
};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::portal::PortalExecutionState;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::send_query_response;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{
    FieldInfo, QueryResponse, Response, SendableRowStream, Tag,
};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::{Entry, PortalStore};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::extendedquery::Execute;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use futures::{Sink, StreamExt};

use super::catalog::Served;
use super::guard::{self, Verdict};
use super::settings::Limits;
use super::stats::ServeStats;

/// A parsed statement with its plan, as datafusion-postgres's cursor hook keeps them.
pub(super) type Parsed = (String, Option<(Statement, LogicalPlan)>);

/// Answers every connection's statements.
pub(super) struct Queries {
    served: Arc<Served>,
    /// The server's session: configuration, functions and `pg_catalog`; each query's
    /// session is built from it.
    base: SessionContext,
    limits: Limits,
    stats: Arc<ServeStats>,
    hooks: Vec<Arc<dyn QueryHook>>,
    parser: PostgresCompatibilityParser,
}

impl Queries {
    pub(super) fn new(
        served: Arc<Served>,
        base: SessionContext,
        limits: Limits,
        stats: Arc<ServeStats>,
    ) -> Queries {
        Queries {
            served,
            base,
            limits,
            stats,
            hooks: vec![
                Arc::new(SetShowHook),
                Arc::new(TransactionStatementHook),
                Arc::new(CursorStatementHook),
            ],
            parser: PostgresCompatibilityParser::new(),
        }
    }

    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        let mut statements = self.parser.parse(sql).map_err(|e| {
            // DataFusion's own statements (CREATE EXTERNAL TABLE ... STORED AS CSV) are not
            // PostgreSQL's, and do not parse: refused as what they are, not as a typo.
            match guard::writing_keyword(sql) {
                Some(keyword) => guard::refused(&guard::refusal(keyword)),
                None => user_error("42601", &format!("syntax error: {e}")),
            }
        })?;
        statements.iter_mut().for_each(super::compat::adapt);
        Ok(statements)
    }

    /// A session for one query: the served tables as they are now, and a memory pool of its
    /// own, so that one client's query cannot take another's memory.
    fn query_session(&self) -> PgWireResult<SessionContext> {
        let snapshot = self.served.current();
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.base.runtime_env().as_ref())
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.limits.query_memory)))
            .build_arc()
            .map_err(|e| self.sql_error(e))?;
        let state = SessionStateBuilder::new_from_existing(self.base.state())
            .with_catalog_list(snapshot.catalogs())
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    fn deadline<C: ClientInfo + ?Sized>(&self, client: &C) -> (Instant, Duration) {
        // A client may ask for less time with `SET statement_timeout`, never for more.
        let asked = client
            .metadata()
            .get("statement_timeout_ms")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        let limit = asked.map_or(self.limits.statement_timeout, |a| {
            a.min(self.limits.statement_timeout)
        });
        (Instant::now() + limit, limit)
    }

    async fn plan(
        &self,
        session: &SessionContext,
        statement: &Statement,
    ) -> PgWireResult<LogicalPlan> {
        let plan = session
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await
            .map_err(|e| self.sql_error(e))?;
        guard::verify(&plan)?;
        Ok(plan)
    }

    /// Plans `statement` against the served tables as they are now, binds `params`, runs it,
    /// and returns its rows as they come, all before the statement's deadline.
    async fn run<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        statement: &Statement,
        params: Option<(&ParamValues, &LogicalPlan)>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let started = Instant::now();
        let (deadline, limit) = self.deadline(client);
        let format_options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let work = async {
            let session = self.query_session()?;
            let mut plan = self.plan(&session, statement).await?;
            if let Some((values, prepared)) = params {
                // A statement prepared before a night's publication changed the columns
                // cannot be run as it was described to the client.
                if plan.schema().as_arrow() != prepared.schema().as_arrow() {
                    return Err(user_error(
                        "0A000",
                        "cached plan must not change result type: the served table's columns \
                         changed since this statement was prepared; prepare it again",
                    ));
                }
                plan = plan
                    .replace_params_with_values(values)
                    .map_err(|e| self.sql_error(e))?;
            }
            let frame = session
                .execute_logical_plan(plan)
                .await
                .map_err(|e| self.sql_error(e))?;
            encode_dataframe(frame, format, Some(format_options)).await
        };
        let outcome = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out(limit)),
        };
        match outcome {
            Ok(mut response) => {
                let rows =
                    std::mem::replace(&mut response.data_rows, futures::stream::empty().boxed());
                response.data_rows = self.bounded(rows, deadline, limit, started);
                Ok(Response::Query(response))
            }
            Err(error) => {
                self.stats.finished(started.elapsed(), true);
                Err(error)
            }
        }
    }

    /// `rows`, ended with a timeout error at `deadline`, and counted when
    /// the last is sent.
    fn bounded(
        &self,
        rows: SendableRowStream,
        deadline: Instant,
        limit: Duration,
        started: Instant,
    ) -> SendableRowStream {
        let stats = Arc::clone(&self.stats);
        let query_memory = self.limits.query_memory;
        let state = (rows, stats, false);
        futures::stream::unfold(state, move |(mut rows, stats, done)| async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                next = rows.next() => next,
                () = tokio::time::sleep_until(deadline.into()) => Some(Err(timed_out(limit))),
            };
            match next {
                Some(Ok(row)) => Some((Ok(row), (rows, stats, false))),
                Some(Err(error)) => {
                    stats.finished(started.elapsed(), true);
                    Some((
                        Err(streamed_error(error, query_memory)),
                        (rows, stats, true),
                    ))
                }
                None => {
                    stats.finished(started.elapsed(), false);
                    None
                }
            }
        })
        .boxed()
    }

    fn sql_error(&self, error: DataFusionError) -> PgWireError {
        sql_error(error, self.limits.query_memory)
    }

    async fn hook_simple<C>(&self, client: &mut C, statement: &Statement) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.query_session()?;
        for hook in &self.hooks {
            if let Some(result) = hook.handle_simple_query(statement, &session, client).await {
                return result;
            }
        }
        Ok(Response::Execution(Tag::new("SET")))
    }

    async fn hook_extended<C>(
        &self,
        client: &mut C,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.query_session()?;
        for hook in &self.hooks {
            if let Some(result) = hook
                .handle_extended_query(statement, plan, params, &session, client)
                .await
            {
                return result;
            }
        }
        Ok(Response::Execution(Tag::new("SET")))
    }
}

/// A DataFusion error as the PostgreSQL error a client understands.
fn sql_error(error: DataFusionError, query_memory: usize) -> PgWireError {
    let root = error.find_root();
    match root {
        DataFusionError::ResourcesExhausted(detail) => user_error(
            "53200",
            &format!(
                "out of memory: the query needs more than the {} each query may use \
                 (segflow serve --query-memory); select fewer rows or columns ({detail})",
                human_bytes(query_memory)
            ),
        ),
        DataFusionError::SQL(e, _) => user_error("42601", &format!("syntax error: {e}")),
        DataFusionError::SchemaError(e, _) => user_error("42703", &e.to_string()),
        DataFusionError::ObjectStore(e) if matches!(**e, object_store::Error::NotFound { .. }) => {
            user_error(
                "40001",
                "the publication this query read was replaced while it ran (the date was \
                 run again); run the query again to read the new one",
            )
        }
        DataFusionError::Plan(message) if message.contains("not found") => {
            user_error("42P01", message)
        }
        other => user_error("XX000", &other.to_string()),
    }
}

/// An error met while the rows were sent: arrow-pg passes DataFusion's on as they are.
fn streamed_error(error: PgWireError, query_memory: usize) -> PgWireError {
    match error {
        PgWireError::ApiError(inner) => match inner.downcast::<DataFusionError>() {
            Ok(error) => sql_error(*error, query_memory),
            Err(inner) => PgWireError::ApiError(inner),
        },
        other => other,
    }
}

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.to_string(),
    )))
}

/// SQLSTATE 57014, query_canceled, in PostgreSQL's words for a statement timeout.
fn timed_out(limit: Duration) -> PgWireError {
    user_error(
        "57014",
        &format!(
            "canceling statement due to statement timeout: it ran past {} (segflow serve \
             --statement-timeout, or the session's statement_timeout), counting the time \
             to send its rows",
            humantime::format_duration(limit)
        ),
    )
}

pub(super) fn human_bytes(bytes: usize) -> String {
    const GIB: usize = 1 << 30;
    const MIB: usize = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            let response = match guard::judge(statement) {
                Verdict::Query => {
                    self.run(client, statement, None, &Format::UnifiedText)
                        .await
                }
                Verdict::Hook => self.hook_simple(client, statement).await,
                Verdict::Ignore(tag) => Ok(Response::Execution(Tag::new(tag))),
                Verdict::Refuse(reason) => Err(guard::refused(&reason)),
            };
            responses.push(logged(statement, response)?);
        }
        Ok(responses)
    }
}

/// Parses the extended protocol's statements: a query is planned against the served tables
/// as they are now, for its parameter and result types; it is planned again when it runs.
pub(super) struct Parser {
    queries: Arc<Queries>,
}

impl Parser {
    pub(super) fn new(queries: Arc<Queries>) -> Parser {
        Parser { queries }
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let queries = &self.queries;
        let mut statements = queries.parse(sql)?;
        if statements.is_empty() {
            return Ok(None);
        }
        let statement = statements.remove(0);
        let text = statement.to_string();
        let plan = match guard::judge(&statement) {
            Verdict::Query => {
                let session = queries.query_session()?;
                queries.plan(&session, &statement).await?
            }
            Verdict::Hook => {
                let session = queries.query_session()?;
                let mut planned = None;
                for hook in &queries.hooks {
                    if let Some(plan) = hook
                        .handle_extended_parse_query(&statement, &session, client)
                        .await
                    {
                        planned = Some(plan?);
                        break;
                    }
                }
                planned.unwrap_or_else(no_rows)
            }
            Verdict::Ignore(_) => no_rows(),
            Verdict::Refuse(reason) => return Err(guard::refused(&reason)),
        };
        Ok(Some((text, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, statement: &Parsed) -> PgWireResult<Vec<Type>> {
        let (_, Some((_, plan))) = statement else {
            return Ok(Vec::new());
        };
        let overrides = oid_alias_parameters(plan);
        parameter_types(plan)?
            .into_iter()
            .map(|(id, data_type)| match (overrides.get(&id), data_type) {
                (Some(alias), _) => Ok(alias.clone()),
                (None, Some(data_type)) => into_pg_type(&data_type),
                (None, None) => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Parsed,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let (_, Some((_, plan))) = statement else {
            return Ok(Vec::new());
        };
        arrow_schema_to_pg_fields(
            plan.schema().as_arrow(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

fn no_rows() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

/// A plan's parameters in order (`$1`, `$2`, ...) with their types: as DataFusion infers
/// them, else from a cast the SQL puts on them (`$1::date`), as datafusion-postgres does.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<(String, Option<DataType>)>> {
    let mut types = plan
        .get_parameter_types()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    visit_placeholders(plan, |expr| {
        if let Expr::Cast(cast) = expr
            && let Expr::Placeholder(placeholder) = cast.expr.as_ref()
            && let Some(slot @ None) = types.get_mut(&placeholder.id)
        {
            *slot = Some(cast.field.data_type().clone());
        }
    });
    let mut ordered: Vec<(String, Option<DataType>)> = types.into_iter().collect();
    ordered.sort_by_key(|(id, _)| {
        id.trim_start_matches('$')
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    Ok(ordered)
}

/// Parameters compared with catalog columns that PostgreSQL types as `oid` aliases
/// (`regclass`, ...): clients send them as those types.
fn oid_alias_parameters(plan: &LogicalPlan) -> HashMap<String, Type> {
    let mut overrides = HashMap::new();
    visit_placeholders(plan, |expr| {
        let placeholder = match expr {
            Expr::Placeholder(p) => p,
            Expr::Cast(cast) => match cast.expr.as_ref() {
                Expr::Placeholder(p) => p,
                _ => return,
            },
            _ => return,
        };
        if let Some(field) = &placeholder.field
            && field.data_type() == &DataType::Int32
            && let Some(kind) = field.metadata().get(PG_OID_ALIAS_KEY)
            && let Some(alias) = pg_type_for_alias_kind(kind)
        {
            overrides.insert(placeholder.id.clone(), alias);
        }
    });
    overrides
}

fn visit_placeholders(plan: &LogicalPlan, mut visit: impl FnMut(&Expr)) {
    let _ = plan.apply(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                visit(e);
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// The extended protocol (Parse, Bind, Describe, Execute): what JDBC, asyncpg and psycopg's
/// server-side parameters use.
pub(super) struct Extended {
    queries: Arc<Queries>,
    parser: Arc<Parser>,
}

impl Extended {
    pub(super) fn new(queries: Arc<Queries>) -> Extended {
        Extended {
            parser: Arc::new(Parser::new(Arc::clone(&queries))),
            queries,
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = Parsed;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// pgwire collects every row of a portal executed without a row limit before it sends
    /// the first (`Portal::fetch`): an export of segment_membership's 6 million rows held a
    /// gigabyte in the server, outside the query's memory pool. A query executed without a
    /// limit streams its rows instead, as the simple protocol does; a limited Execute (JDBC's
    /// fetch size) pages through pgwire's portal, holding one page, and every other statement
    /// takes pgwire's way.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) if message.max_rows == 0 => portal,
            _ => return self._on_execute(client, message).await,
        };
        let unstarted = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        let query = matches!(
            &portal.statement.statement,
            (_, Some((statement, _))) if guard::judge(statement) == Verdict::Query
        );
        if !unstarted || !query {
            return self._on_execute(client, message).await;
        }
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let Response::Query(rows) = self.do_query(client, portal.as_ref(), 0).await? else {
            unreachable!("a query answers with rows or an error")
        };
        // The portal is spent: an Execute of it again gets no rows, as from PostgreSQL.
        let columns = Arc::clone(&rows.row_schema);
        portal
            .start(QueryResponse::new(columns, futures::stream::empty()))
            .await;
        send_query_response(client, rows, false).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, Some((statement, plan))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        let wire_types = self
            .parser
            .get_parameter_types(&portal.statement.statement)?;
        let inferred: Vec<Option<DataType>> =
            parameter_types(plan)?.into_iter().map(|(_, t)| t).collect();
        let inferred: Vec<Option<&DataType>> = inferred.iter().map(Option::as_ref).collect();
        let wire: Vec<Option<&Type>> = wire_types.iter().map(Some).collect();
        let params = deserialize_parameters_with_server_types(portal, &inferred, &wire)?;
        let response = match guard::judge(statement) {
            Verdict::Query => {
                self.queries
                    .run(
                        client,
                        statement,
                        Some((&params, plan)),
                        &portal.result_column_format,
                    )
                    .await
            }
            Verdict::Hook => {
                self.queries
                    .hook_extended(client, statement, plan, &params)
                    .await
            }
            Verdict::Ignore(tag) => Ok(Response::Execution(Tag::new(tag))),
            Verdict::Refuse(reason) => Err(guard::refused(&reason)),
        };
        logged(statement, response)
    }
}

/// A failed statement in the server's log, as PostgreSQL logs one, with what the client
/// was told.
fn logged(statement: &Statement, response: PgWireResult<Response>) -> PgWireResult<Response> {
    if let Err(error) = &response {
        tracing::info!(statement = %statement, error = %error, "A statement failed.");
    }
    response
}
