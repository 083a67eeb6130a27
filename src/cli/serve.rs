//! `segflow serve`: the published outputs over the PostgreSQL protocol, until stopped
//! (SIGTERM/SIGINT); `segflow serve passwd`: a user of it. The daemon's `--serve` starts the
//! same server ([`start`]).

use std::net::SocketAddr;

use segflow::pipeline::Pipeline;

use super::Failure;
use super::args::{ServeArgs, ServeOptions};

#[cfg(not(feature = "serve"))]
pub(super) async fn serve_command(_args: ServeArgs) -> Result<(), Failure> {
    Err(not_built("segflow serve"))
}

#[cfg(not(feature = "serve"))]
fn not_built(needs: &str) -> Failure {
    use segflow::features::{Feature, Features};
    match Features::BUILT.require(Feature::Serve, needs) {
        Ok(()) => unreachable!("this build leaves the serve feature out"),
        Err(error) => Failure::User(error.into()),
    }
}

/// A server of `pipelines` on `listen`, bound and ready, or why not; without the `serve`
/// feature, the refusal that names it.
#[cfg(not(feature = "serve"))]
pub(super) async fn start(
    _pipelines: &[Pipeline],
    _listen: SocketAddr,
    _options: ServeOptions,
) -> Result<Started, Failure> {
    Err(not_built("--serve"))
}

#[cfg(not(feature = "serve"))]
pub(super) enum Started {}

#[cfg(not(feature = "serve"))]
impl Started {
    pub(super) fn serving(&self) -> segflow::serve::Serving {
        match *self {}
    }

    pub(super) async fn run(self, _stop: tokio_util::sync::CancellationToken) {
        match self {}
    }
}

#[cfg(feature = "serve")]
pub(super) type Started = segflow::serve::Server;

#[cfg(feature = "serve")]
pub(super) async fn start(
    pipelines: &[Pipeline],
    listen: SocketAddr,
    options: ServeOptions,
) -> Result<Started, Failure> {
    use segflow::serve::{Limits, ServeError, ServeSettings, Server, TlsFiles};
    use segflow::storage::Storage;

    let Some(users) = options.users else {
        return Err(Failure::User(anyhow::anyhow!(
            "serving needs --users FILE (or SEGFLOW_SERVE_USERS): no one logs in without one; \
             `segflow serve passwd FILE NAME` writes it"
        )));
    };
    let settings = ServeSettings {
        listen,
        users,
        tls: options
            .tls_cert
            .zip(options.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        require_tls: options.require_tls,
        limits: Limits {
            statement_timeout: options.statement_timeout,
            query_memory: options.query_memory,
            max_connections: usize::try_from(options.max_connections).unwrap_or(usize::MAX),
            idle_timeout: options.idle_timeout,
        },
        refresh: options.refresh,
    };
    let server = Server::bind(pipelines, settings, Storage::new())
        .await
        .map_err(|error| match error {
            ServeError::Listen { .. }
            | ServeError::Publications { .. }
            | ServeError::Footer { .. } => Failure::Environment(error.into()),
            _ => Failure::User(error.into()),
        })?;
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(address = %server.local_addr(), pipelines = ?names, "Serving the published outputs over the PostgreSQL protocol.");
    Ok(server)
}

#[cfg(feature = "serve")]
pub(super) async fn serve_command(args: ServeArgs) -> Result<(), Failure> {
    use segflow::pipeline::LoadOptions;
    use segflow::serve::UsersFile;

    use super::args::ServeCommand;

    if let Some(ServeCommand::Passwd { users, user }) = args.command {
        let password = read_password(&user)?;
        UsersFile::set_password(&users, &user, &password).map_err(|e| Failure::User(e.into()))?;
        say!(
            "{}: user '{user}' can log in with the password given",
            users.display()
        );
        return Ok(());
    }
    let pipelines = args
        .pipelines
        .iter()
        .map(|path| Pipeline::load(path, &LoadOptions::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let server = start(&pipelines, args.listen, args.options).await?;
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    say!(
        "segflow serve: listening on {} (schemas: {})",
        server.local_addr(),
        names.join(", ")
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        super::hand_runner::stop_requested().await;
        stopper.cancel();
    });
    server.run(stop).await;
    Ok(())
}

/// The first line of standard input: a password is never an argument, where `ps` and the
/// shell's history would show it.
#[cfg(feature = "serve")]
fn read_password(user: &str) -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for '{user}' (it is shown as typed; pipe it in to hide it): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Environment(anyhow::anyhow!("could not read the password: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Failure::User(anyhow::anyhow!(
            "no password on standard input: `printf '%s\\n' \"$PASSWORD\" | segflow serve passwd FILE {user}`"
        )));
    }
    Ok(password)
}
