//! The server: where it listens, how a connection is accepted (TLS, the connection limit,
//! the startup and idle timeouts), and what answers it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::auth::DefaultServerParameterProvider;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, NoopHandler, PgWireConnectionState,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use datafusion_postgres::pgwire::tokio::tokio_rustls::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::catalog::{CATALOG, LiveSchema, Served};
use super::session::{Extended, Parsed, Queries};
use super::settings::{ServeSettings, TlsFiles};
use super::stats::{ServeStats, Serving};
use super::stores::ServedStores;
use super::users::{UsersError, UsersFile};
use crate::pipeline::Pipeline;
use crate::publish::PublishError;
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("--require-tls needs a certificate and key (--tls-cert, --tls-key)")]
    TlsRequiredWithoutCertificate,
    #[error("TLS: could not read {path}")]
    TlsRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {path} holds no {what} in PEM form")]
    TlsPem { path: PathBuf, what: &'static str },
    #[error("TLS: the certificate {cert} and key {key} cannot be used together")]
    TlsConfig {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("nothing to serve: name at least one pipeline")]
    NoPipelines,
    #[error("two served pipelines are both named '{0}'; each is a schema, whose names differ")]
    SameName(String),
    #[error("pipeline '{pipeline}', output '{table}': could not read its publications")]
    Publications {
        pipeline: String,
        table: String,
        #[source]
        source: Box<PublishError>,
    },
    #[error("could not read the columns of {file}")]
    Footer {
        file: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error("could not make the served table '{name}'")]
    Table {
        name: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not set up the server's session")]
    Session(#[source] Box<datafusion::error::DataFusionError>),
    #[error("could not listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How long a client has to complete TLS and log in, as PostgreSQL's
/// authentication_timeout.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long past its deadline a statement's rows may take to be taken by a client that
/// stopped reading, before its connection is closed.
const SEND_GRACE: Duration = Duration::from_secs(10);

/// A running server: where it listens, and its counts.
pub struct Server {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    settings: ServeSettings,
    served: Arc<Served>,
    base: SessionContext,
    pub stats: Arc<ServeStats>,
}

impl Server {
    /// Checks everything a client would otherwise meet as a failure (the users file, the
    /// certificate, every output's publications) and binds the address.
    pub async fn bind(
        pipelines: &[Pipeline],
        settings: ServeSettings,
        storage: Storage,
    ) -> Result<Server, ServeError> {
        let Some(first) = pipelines.first() else {
            return Err(ServeError::NoPipelines);
        };
        for (i, pipeline) in pipelines.iter().enumerate() {
            if pipelines[..i].iter().any(|p| p.name == pipeline.name) {
                return Err(ServeError::SameName(pipeline.name.clone()));
            }
        }
        let users = Arc::new(UsersFile::open(&settings.users)?);
        if settings.require_tls && settings.tls.is_none() {
            return Err(ServeError::TlsRequiredWithoutCertificate);
        }
        let tls = settings.tls.as_ref().map(tls_acceptor).transpose()?;
        let served = Arc::new(Served::new(storage.clone(), pipelines));
        let folders: Vec<_> = served
            .outputs()
            .map(|o| (o.location.clone(), o.options.clone()))
            .collect();
        let stores = ServedStores::new(&storage, &folders)?;
        let base = server_session(&served, stores, &first.name).await?;
        served.refresh(&base).await?;
        let stats = Arc::new(ServeStats::default());
        let queries = Arc::new(Queries::new(
            Arc::clone(&served),
            base.clone(),
            settings.limits.clone(),
            Arc::clone(&stats),
        ));
        let certificate = match &settings.tls {
            Some(files) => Some(read(&files.cert)?),
            None => None,
        };
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.search_path = first.name.clone();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        let handlers = Arc::new(Handlers {
            extended: Arc::new(Extended::new(Arc::clone(&queries))),
            queries,
            users,
            parameters: Arc::new(parameters),
            connections: Arc::new(ConnectionManager::new()),
            certificate,
        });
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    address: settings.listen,
                    source,
                })?;
        Ok(Server {
            listener,
            handlers,
            tls,
            settings,
            served,
            base,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Its address and counts, for the daemon's status page and `/metrics`.
    pub fn serving(&self) -> Serving {
        Serving {
            address: self.local_addr(),
            stats: Arc::clone(&self.stats),
        }
    }

    /// Serves until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let refresher = tokio::spawn(refresh_loop(
            Arc::clone(&self.served),
            self.base.clone(),
            self.settings.refresh,
            stop.clone(),
        ));
        let slots = Arc::new(Semaphore::new(self.settings.limits.max_connections));
        let settings = Arc::new(self.settings);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %error, "Could not accept a connection.");
                    continue;
                }
            };
            let slot = Arc::clone(&slots).try_acquire_owned().ok();
            let handlers = Arc::clone(&self.handlers);
            let tls = self.tls.clone();
            let settings = Arc::clone(&settings);
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                stats.connections_total.fetch_add(1, Ordering::Relaxed);
                stats.connections_open.fetch_add(1, Ordering::Relaxed);
                if let Err(error) =
                    connection(socket, handlers, tls, &settings, slot.is_some(), &stats).await
                {
                    tracing::debug!(peer = %peer, error = %error, "A connection ended with an error.");
                }
                stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                drop(slot);
            });
        }
        refresher.abort();
    }
}

async fn refresh_loop(
    served: Arc<Served>,
    base: SessionContext,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(error) = served.refresh(&base).await {
            tracing::warn!(error = %crate::fault::causes(&error).join(": "), "Could not read the publications again; queries keep reading the ones read before.");
        }
    }
}

/// The server's session, from which each query's is made: the served pipelines' schemas
/// (the first as the default, where unqualified names are looked up), `pg_catalog` and
/// `information_schema` for the clients' listings, segflow's functions, and stores that
/// read the served outputs only. Nothing spills: a query that outgrows its pool fails.
async fn server_session(
    served: &Arc<Served>,
    stores: ServedStores,
    default_schema: &str,
) -> Result<SessionContext, ServeError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, default_schema);
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(stores))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| ServeError::Session(Box::new(e)))?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    crate::functions::register(&ctx);
    ctx.register_udf(postgres_version());
    ctx.register_udf(type_is_visible());
    setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider).map_err(ServeError::Session)?;
    ctx.register_udf(
        to_regtype(&ctx)
            .await
            .map_err(|e| ServeError::Session(Box::new(e)))?,
    );
    let catalog = ctx
        .catalog(CATALOG)
        .expect("the default catalog is made with the session");
    for pipeline in served.pipeline_names() {
        let schema = Arc::new(LiveSchema {
            served: Arc::clone(served),
            pipeline: pipeline.to_string(),
        });
        catalog
            .register_schema(pipeline, schema)
            .map_err(|e| ServeError::Session(Box::new(e)))?;
    }
    Ok(ctx)
}

/// `version()` in PostgreSQL's form, which clients parse for the server's version
/// (SQLAlchemy refuses a server whose version() does not begin with `PostgreSQL`): the
/// PostgreSQL version pgwire announces, then what answers in fact.
fn postgres_version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL 16.6 on {} (segflow serve {}, Apache DataFusion {})",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// `pg_type_is_visible(oid)`: true. Every type here is PostgreSQL's own, in `pg_catalog`,
/// which is always on the search path (SQLAlchemy 1.4 reflects domains with it).
fn type_is_visible() -> ScalarUDF {
    create_udf(
        "pg_type_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = match &args[0] {
                ColumnarValue::Array(array) => array.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            let visible = datafusion::arrow::array::BooleanArray::from(vec![true; rows]);
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    )
}

/// `to_regtype(name)`: the oid of the type of that name in `pg_catalog.pg_type`, or NULL.
/// psycopg looks types up with it (SQLAlchemy asks for `hstore` on connecting).
async fn to_regtype(ctx: &SessionContext) -> datafusion::error::Result<ScalarUDF> {
    use datafusion::arrow::array::{Array, AsArray, Int32Array};
    use datafusion::arrow::datatypes::Int32Type;
    let mut oids: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    let batches = ctx
        .sql("SELECT CAST(typname AS VARCHAR), oid FROM pg_catalog.pg_type")
        .await?
        .collect()
        .await?;
    for batch in &batches {
        let names = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let ids = batch.column(1).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            if names.is_valid(row) && ids.is_valid(row) {
                oids.insert(names.value(row).to_string(), ids.value(row));
            }
        }
    }
    let lookup = move |args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let names = match &args[0] {
            ColumnarValue::Array(array) => {
                datafusion::arrow::compute::cast(array, &DataType::Utf8)?
            }
            ColumnarValue::Scalar(scalar) => scalar.cast_to(&DataType::Utf8)?.to_array()?,
        };
        let found: Int32Array = names
            .as_string::<i32>()
            .iter()
            .map(|name| name.and_then(|n| oids.get(n.trim_start_matches("pg_catalog.")).copied()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(found)))
    };
    Ok(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(lookup),
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsRead {
        path: path.to_path_buf(),
        source,
    })
}

/// The TLS setup, or why it cannot be made: a server told to use TLS never falls back to
/// plain text.
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(ServeError::TlsPem {
            path: files.cert.clone(),
            what: "certificate",
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|_| ServeError::TlsPem {
            path: files.key.clone(),
            what: "private key",
        })?;
    let config_error = |source| ServeError::TlsConfig {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(config_error)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(config_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What answers each connection: pgwire's protocol handlers, segflow's.
struct Handlers {
    queries: Arc<Queries>,
    extended: Arc<Extended>,
    users: Arc<UsersFile>,
    parameters: Arc<DefaultServerParameterProvider>,
    connections: Arc<ConnectionManager>,
    /// With TLS, the certificate, for SCRAM's channel binding (SCRAM-SHA-256-PLUS).
    certificate: Option<Vec<u8>>,
}

impl Handlers {
    /// A new one per connection: the SCRAM exchange's state is the handler's.
    fn startup(&self) -> Arc<SASLAuthStartupHandler<DefaultServerParameterProvider>> {
        let mut scram = ScramAuth::new(Arc::clone(&self.users) as _);
        if let Some(certificate) = &self.certificate
            && let Err(error) = scram.configure_certificate(certificate)
        {
            tracing::warn!(error = %error, "The certificate cannot bind SCRAM to the TLS channel; clients log in with plain SCRAM-SHA-256.");
        }
        Arc::new(
            SASLAuthStartupHandler::new(Arc::clone(&self.parameters))
                .with_scram(scram)
                .with_connection_manager(Arc::clone(&self.connections)),
        )
    }
}

/// One client's connection, from TLS to its last message.
async fn connection(
    socket: tokio::net::TcpStream,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    settings: &ServeSettings,
    has_slot: bool,
    stats: &ServeStats,
) -> std::io::Result<()> {
    let startup_deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let negotiated =
        tokio::time::timeout_at(startup_deadline, negotiate_tls::<Parsed>(socket, tls)).await;
    let mut socket = match negotiated {
        Ok(Ok(Some(socket))) => socket,
        Ok(Err(error)) => return Err(error),
        // Timed out, or TLS asked for directly of a server without it.
        Err(_) | Ok(Ok(None)) => return Ok(()),
    };
    if settings.require_tls && !socket.is_secure() {
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        return fatal(
            &mut socket,
            "28000",
            "segflow serve requires TLS: connect with sslmode=require (or verify-full)",
        )
        .await;
    }
    if !has_slot {
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "sorry, too many clients already: segflow serve takes {} connections at a time \
             (--max-connections)",
            settings.limits.max_connections
        );
        return fatal(&mut socket, "53300", &message).await;
    }
    let startup = handlers.startup();
    let simple = Arc::clone(&handlers.queries);
    let extended = Arc::clone(&handlers.extended);
    // COPY never starts: the guard refuses it before any COPY message is exchanged.
    let copy = Arc::new(NoopHandler);
    let cancel = Arc::new(DefaultCancelHandler::new(Arc::clone(&handlers.connections)));
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let wait_until = if logging_in {
            startup_deadline
        } else {
            tokio::time::Instant::now() + settings.limits.idle_timeout
        };
        let message = match tokio::time::timeout_at(wait_until, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => break,
            Err(_) if logging_in => break,
            Err(_) => {
                let message = format!(
                    "terminating connection due to idle-session timeout: nothing was sent for {} \
                     (segflow serve --idle-timeout)",
                    humantime::format_duration(settings.limits.idle_timeout)
                );
                return fatal(&mut socket, "57P05", &message).await;
            }
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        let handled = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        );
        // A statement's own deadline ends its rows with an error; this one is for a client
        // that stopped taking them, whose connection would otherwise be held for ever.
        match tokio::time::timeout(settings.limits.statement_timeout + SEND_GRACE, handled).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let error = name_the_user(error, &socket);
                process_error(&mut socket, error, extended_query).await?;
            }
            Err(_) => {
                tracing::warn!(peer = %socket.socket_addr(), "A client stopped taking its rows past the statement deadline; its connection is closed.");
                break;
            }
        }
    }
    Ok(())
}

/// pgwire names the user of a failed SCRAM login by the name in the SCRAM message, which
/// clients leave empty (the startup message carries it): PostgreSQL's message, with the name.
fn name_the_user<C: ClientInfo>(error: PgWireError, client: &C) -> PgWireError {
    let PgWireError::InvalidPassword(_) = error else {
        return error;
    };
    let user = client.metadata().get("user").cloned().unwrap_or_default();
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        "28P01".to_string(),
        format!("password authentication failed for user \"{user}\""),
    )))
}

async fn fatal<S>(
    socket: &mut tokio_util::codec::Framed<
        S,
        datafusion_postgres::pgwire::tokio::server::PgWireMessageServerCodec<Parsed>,
    >,
    code: &str,
    message: &str,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let error = ErrorInfo::new("FATAL".to_string(), code.to_string(), message.to_string());
    socket
        .send(PgWireBackendMessage::ErrorResponse(error.into()))
        .await?;
    socket.close().await
}
