//! What can go wrong in the engine, with the table, file and column a user needs, and whose
//! fault it is.

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::fault::Fault;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not start the query engine")]
    Setup(#[source] DataFusionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("source '{table}': cannot read the Delta table at {url}: {reason}")]
    DeltaLog {
        table: String,
        url: String,
        reason: String,
        /// No table there (a user's URL), rather than a store that failed.
        not_a_table: bool,
    },
    #[error("source '{table}': the Delta table at {url} {reason}")]
    DeltaUnsupported {
        table: String,
        url: String,
        reason: String,
    },
    #[error("source '{table}': no {kind} files at {url}{hint}")]
    NoFiles {
        table: String,
        /// What the source's format calls its files: "Parquet", "CSV", "JSON".
        kind: &'static str,
        url: String,
        hint: String,
    },
    #[error(
        "source '{table}': {file} has the columns {found}, but {first} has {expected}; every \
         CSV file of a source needs the same header line"
    )]
    HeaderMismatch {
        table: String,
        file: String,
        found: String,
        first: String,
        expected: String,
    },
    #[error("source '{table}': cannot read the first line of {file}: {reason}")]
    FirstLine {
        table: String,
        file: String,
        reason: String,
    },
    #[error(
        "source '{table}': {url} holds a value that does not read as its declared type: \
         {reason}. Fix the file, or declare the column as string and convert it in a step"
    )]
    BadValue {
        table: String,
        url: String,
        reason: String,
    },
    #[error("source '{table}': {file} is not a readable Parquet file")]
    UnreadableFile {
        table: String,
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("source '{table}': {file} has no column '{column}' (declared as {expected}){hint}")]
    MissingColumn {
        table: String,
        file: String,
        column: String,
        expected: String,
        hint: String,
    },
    #[error(
        "source '{table}': column '{column}' in {file} is {found}, but is declared as {expected}"
    )]
    WrongType {
        table: String,
        file: String,
        column: String,
        expected: String,
        found: DataType,
    },
    #[error(
        "source '{}': column '{}' is {} in {} but {} in {}, which cannot be read as one type; rewrite the files so that the column has one kind of value",
        .0.table, .0.column, .0.first_type, .0.first_file, .0.other_type, .0.other_file
    )]
    ColumnTypesDiffer(Box<TypeConflict>),
    #[error(
        "source '{table}': column '{column}' holds wall-clock times (no zone) in {naive_file} but instants (with a zone) in {aware_file}; with the source's timezone {zone} they cannot be told apart once read together, so write the column one way"
    )]
    WallClockAndInstants {
        table: String,
        column: String,
        naive_file: String,
        aware_file: String,
        zone: String,
    },
    #[error("source '{table}': {message}")]
    SourceData { table: String, message: String },
    /// A query stopped at data that does not decode; [`Engine::find_damaged_file`] can then
    /// say which file holds it.
    #[error("step '{step}': a source file could not be read: {message}")]
    UnreadableData { step: String, message: String },
    /// A query over CSV or JSON sources stopped at a value that does not parse: a value of
    /// a file, which [`Engine::find_damaged_file`] then names, or a cast in the SQL itself,
    /// when no file repeats the error: then `otherwise` tells it.
    #[error("{otherwise}")]
    UnparsedText { otherwise: Box<EngineError> },
    #[error("{at}: check '{check}' on '{table}' could not run: {message}")]
    Check {
        at: String,
        check: String,
        table: String,
        message: String,
    },
    #[error("{at}: check '{check}': '{column}' is not a column of '{table}'{hint}")]
    CheckColumn {
        at: String,
        check: String,
        table: String,
        column: String,
        hint: String,
    },
    // Boxed: a stalled job's report is large, and this enum travels up every call.
    #[error(transparent)]
    Cluster(Box<crate::cluster::ClusterError>),
    #[error(transparent)]
    NotBuilt(#[from] crate::features::NotBuilt),
    #[error(
        "the pipeline runs on a cluster, whose executors cannot reach what is on this \
         machine; make each of these a URL every executor reaches (s3://...):{}",
        .0.iter().map(|l| format!("\n  {l}")).collect::<String>()
    )]
    LocalOnCluster(Vec<String>),
    #[error("{at}: check '{check}' could not run: {source}")]
    CheckRun {
        at: String,
        check: String,
        #[source]
        source: Box<EngineError>,
    },
    #[error("{at}: check '{check}': {message}")]
    CheckUnfit {
        at: String,
        check: String,
        message: String,
    },
    #[error("computing '{table}': {message}")]
    Query { table: String, message: String },
    #[error("output '{table}': computing its rows failed: {message}")]
    Output { table: String, message: String },
    #[error(
        "source '{table}': {url} cannot be read: {reason}. The file is damaged or was written \
         incompletely: replace it, or move it out of the source's folder"
    )]
    DamagedFile {
        table: String,
        url: String,
        reason: String,
    },
    #[error(
        "step '{step}': {url}, a file's result that an earlier run kept, cannot be read: \
         {reason}. Run with --full to compute every file again (it replaces what is kept)"
    )]
    DamagedKept {
        step: String,
        url: String,
        reason: String,
    },
    #[error("segments take their members from the table '{table}' (members.table), but {problem}")]
    Members { table: String, problem: String },
    #[error("source '{table}': the {role} column '{column}' is not a column of the source{hint}")]
    KeyColumn {
        table: String,
        /// What the spec names the column as: `key`, `version` or `deleted`.
        role: &'static str,
        column: String,
        hint: String,
    },
    #[error(
        "source '{table}': {rows} rows have no {key}, which identifies its rows; fix the rows or leave them out of the export"
    )]
    MissingKey {
        table: String,
        key: String,
        rows: usize,
    },
    #[error("source '{table}': {}", repeated_key_message(.key, *.repeated, .example, *.rows, .version.as_deref()))]
    RepeatedKey {
        table: String,
        key: String,
        /// How many key values appear on more than one row.
        repeated: usize,
        example: String,
        /// The rows of the example.
        rows: i64,
        /// The column that stamps the rows' versions, when the source has one.
        version: Option<String>,
    },
    #[error(
        "source '{table}': '{column}' is a {found} column; as a {role} column it must be {expected}"
    )]
    VersionColumn {
        table: String,
        column: String,
        role: &'static str,
        expected: &'static str,
        found: DataType,
    },
    #[error("table '{table}': could not register {url}")]
    Register {
        table: String,
        url: String,
        #[source]
        source: DataFusionError,
    },
    #[error("{what} '{step}' ({file}): {message}")]
    Plan {
        /// `step`, `segment` or `check`.
        what: &'static str,
        step: String,
        file: String,
        message: String,
    },
    #[error(
        "step '{step}': needed more memory than the engine may use ({limit}), and could not \
         spill what it held to disk: {message}. Raise engine.memory_limit, or lower \
         engine.target_partitions so that fewer partitions of the step hold memory at once"
    )]
    OutOfMemory {
        step: String,
        /// The memory pool's size: `engine.memory_limit`, or its default.
        limit: String,
        message: String,
    },
    #[error("step '{step}': could not run")]
    Execute {
        step: String,
        #[source]
        source: DataFusionError,
    },
}

fn repeated_key_message(
    key: &str,
    repeated: usize,
    example: &str,
    rows: i64,
    version: Option<&str>,
) -> String {
    let values = match repeated {
        1 => format!("1 {key} value is"),
        n => format!("{n} {key} values are"),
    };
    match version {
        None => format!(
            "{values} on more than one row (for example {example}, on {rows} rows); if the \
             rows are versions of what the key names (an order exported again when refunded, \
             a row delivered twice), declare `version:` (a column such as updated_at) on the \
             source so that each run counts the version in force at the end of its as_of day \
             (docs/sources.md, \"Rows that change\"); else fix the data"
        ),
        Some(version) => format!(
            "{values} on different rows of one file with the same {version} (for example \
             {example}, on {rows} rows), so which one is in force is not known; fix the export"
        ),
    }
}

/// Two files of one source whose column types have no common type.
#[derive(Debug)]
pub struct TypeConflict {
    pub table: String,
    pub column: String,
    pub first_file: String,
    pub first_type: DataType,
    pub other_file: String,
    pub other_type: DataType,
}

impl EngineError {
    /// The spec, the SQL or the data, except where the engine or the storage failed.
    pub fn fault(&self) -> Fault {
        match self {
            EngineError::Setup(_)
            | EngineError::Execute { .. }
            | EngineError::OutOfMemory { .. }
            | EngineError::Register { .. } => Fault::Environment,
            EngineError::Storage(e) => e.fault(),
            EngineError::DeltaLog { not_a_table, .. } => {
                if *not_a_table {
                    Fault::User
                } else {
                    Fault::Environment
                }
            }
            EngineError::CheckRun { source, .. } => source.fault(),
            EngineError::Cluster(error) => error.fault(),
            _ => Fault::User,
        }
    }
}

impl From<crate::cluster::ClusterError> for EngineError {
    fn from(error: crate::cluster::ClusterError) -> Self {
        EngineError::Cluster(Box::new(error))
    }
}

/// Whether a query failed for want of memory, disk or storage rather than because of
/// its SQL or data.
pub fn is_environment_failure(error: &DataFusionError) -> bool {
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::Internal(_) => true,
        DataFusionError::Execution(text) => is_cluster_transport_failure(text),
        _ => false,
    }
}

/// Whether a query on a cluster failed for the cluster's sake: a process that could not be
/// reached, or a request to it that timed out or broke off (tonic's `Status`, which
/// Ballista's client passes on as text), not the SQL or the data.
#[cfg(feature = "cluster")]
pub(super) fn is_cluster_failure(error: &DataFusionError) -> bool {
    let text = match error.find_root() {
        DataFusionError::Execution(text) | DataFusionError::Internal(text) => text.clone(),
        DataFusionError::External(error) => error.to_string(),
        other => other.to_string(),
    };
    is_cluster_transport_failure(&text)
        || [
            "Status {",
            "Timeout expired",
            "h2 protocol error",
            "transport error",
            "Connection refused",
        ]
        .iter()
        .any(|sign| text.contains(sign))
}

/// Whether a cluster's scheduler or executor could not be reached (one that died mid-run).
/// Ballista's client hands such errors on as execution errors holding the debug text of
/// its own error (`GrpcConnectionError("...")`, ballista-core's distributed_query.rs).
fn is_cluster_transport_failure(text: &str) -> bool {
    [
        "GrpcConnectionError(",
        "TonicError(",
        "GrpcError(",
        "IoError(",
    ]
    .iter()
    .any(|variant| text.starts_with(variant))
}

/// Whether a query failed because Parquet data did not decode (a damaged page), which says
/// nothing of the SQL: the culprit is a file.
pub fn is_unreadable_data(error: &DataFusionError) -> bool {
    match error.find_root() {
        DataFusionError::ParquetError(_) => true,
        DataFusionError::ArrowError(error, _) => {
            matches!(
                **error,
                datafusion::arrow::error::ArrowError::ParquetError(_)
            )
        }
        DataFusionError::External(error) => error.is::<parquet::errors::ParquetError>(),
        _ => false,
    }
}

/// Whether a CSV or JSON reader may have stopped at a value that does not read as its
/// column's type, or at a line it cannot split; the readers' messages do not name the file.
pub(super) fn is_unreadable_text(error: &DataFusionError) -> bool {
    let DataFusionError::ArrowError(error, _) = error.find_root() else {
        return false;
    };
    // A parse error may also come from a cast in SQL; then no file fails to read again, and
    // the run reports the error as it was (see `run::name_damaged_file`).
    matches!(
        &**error,
        ArrowError::CsvError(_) | ArrowError::JsonError(_) | ArrowError::ParseError(_)
    )
}

/// DataFusion's message without its category prefix and backtrace noise.
pub fn describe(error: &DataFusionError) -> String {
    let root = error.find_root();
    let text = match root {
        DataFusionError::SchemaError(e, _) => e.to_string(),
        DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
        DataFusionError::ArrowError(error, _) => match &**error {
            // The readers' own words, without "Arrow error: Parser error:" before them.
            ArrowError::ParseError(m) | ArrowError::CsvError(m) | ArrowError::JsonError(m) => {
                m.clone()
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let text = own_complaint(text.trim());
    if MISSING_ON_CLUSTER.iter().any(|said| text.contains(said)) {
        return format!("{text}. {LACKS_FUNCTIONS}");
    }
    text.to_string()
}

/// A function's own complaint about its arguments, without the two sentences DataFusion
/// wraps it in ("Function 'f' user-defined coercion failed with: ..." and "No function
/// matches the given name and argument types ...").
fn own_complaint(text: &str) -> &str {
    let Some((_, inner)) = text.split_once("user-defined coercion failed with: ") else {
        return text;
    };
    let inner = inner
        .strip_prefix("Error during planning: ")
        .unwrap_or(inner);
    inner
        .split_once(". No function matches the given name")
        .map_or(inner, |(complaint, _)| complaint)
}

/// What Ballista says when a scheduler or an executor lacks a function a plan calls.
const MISSING_ON_CLUSTER: [&str; 3] = [
    "task could not be prepared or was rejected by executor",
    "is not provided for scalar function",
    "is not provided for aggregate function",
];
const LACKS_FUNCTIONS: &str = "Most often the cluster lacks a function the query calls: Ballista's \
    stock images know none of segflow's (CSV and JSON sources, wall-clock timestamps, the \
    predictions' models) and no array function; run `segflow cluster scheduler` and `segflow cluster executor` \
    (docs/cluster.md)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_executor_is_the_environments_failure() {
        let refused = "GrpcConnectionError(\"Error connecting to Ballista scheduler or executor \
                       at http://127.0.0.1:33759: tonic::transport::Error(Transport, ...)\")";
        assert!(is_environment_failure(&DataFusionError::Execution(
            refused.to_string()
        )));
        assert!(!is_environment_failure(&DataFusionError::Execution(
            "Divide by zero error".to_string()
        )));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn what_ballistas_client_says_of_a_cluster_that_broke_off_is_the_clusters_fault() {
        // As ballista-core's distributed_query.rs hands on a failed status request.
        let timed_out = DataFusionError::Execution(
            "Status { code: Cancelled, message: \"Timeout expired\", source: None }".to_string(),
        );
        assert!(is_cluster_failure(&timed_out));
        let refused = DataFusionError::Execution(
            "GrpcConnectionError(\"transport error: Connection refused\")".to_string(),
        );
        assert!(is_cluster_failure(&refused));
        let sql = DataFusionError::Plan("No field named custmer_id".to_string());
        assert!(!is_cluster_failure(&sql));
        assert!(!is_cluster_failure(&DataFusionError::Execution(
            "Divide by zero error".to_string()
        )));
    }
}
