//! `segflow serve`: the published outputs over the PostgreSQL protocol, until stopped
//! (SIGTERM/SIGINT); `segflow serve passwd`: a user of it.

use super::Failure;
use super::args::ServeArgs;

#[cfg(not(feature = "serve"))]
pub(super) async fn serve_command(_args: ServeArgs) -> Result<(), Failure> {
    use segflow::features::{Feature, Features};
    Features::BUILT
        .require(Feature::Serve, "segflow serve")
        .map_err(|e| Failure::User(e.into()))
}

#[cfg(feature = "serve")]
pub(super) async fn serve_command(args: ServeArgs) -> Result<(), Failure> {
    use segflow::pipeline::{LoadOptions, Pipeline};
    use segflow::serve::{Limits, ServeError, ServeSettings, Server, TlsFiles, UsersFile};
    use segflow::storage::Storage;

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
    let settings = ServeSettings {
        listen: args.listen,
        users: args.users.expect("clap requires --users to serve"),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        require_tls: args.require_tls,
        limits: Limits {
            statement_timeout: args.statement_timeout,
            query_memory: args.query_memory,
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            idle_timeout: args.idle_timeout,
        },
        refresh: args.refresh,
    };
    let server = Server::bind(&pipelines, settings, Storage::new())
        .await
        .map_err(|error| match error {
            ServeError::Listen { .. }
            | ServeError::Publications { .. }
            | ServeError::Footer { .. } => Failure::Environment(error.into()),
            _ => Failure::User(error.into()),
        })?;
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(address = %server.local_addr(), pipelines = ?names, "Serving the published outputs over the PostgreSQL protocol.");
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
