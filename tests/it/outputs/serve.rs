//! `segflow serve`: stock PostgreSQL clients (psql, psycopg 3, asyncpg, SQLAlchemy and pandas,
//! pgjdbc, psqlODBC) read the published outputs, each query's rows equal to DuckDB's reading
//! of the same manifest's files; everything that is not a query is refused; the limits hold;
//! and a reader looping over a table while nights publish and vacuum runs sees whole
//! publications only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::oracles::{oracle, python_script};
use crate::support::process::{Outcome, Spawned, run, wait_for_log};
use crate::support::project::{END, Project};
use crate::support::shops::Size;

const USER: &str = "bi_reader";
const PASSWORD: &str = "s3gments-for-bi";

/// A users file with [`USER`], written by `segflow serve passwd` as a user would.
fn users_file(project: &Project) -> PathBuf {
    let path = project.path().join("serve-users");
    let mut command = project.command(&["serve", "passwd", path.to_str().unwrap(), USER]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Spawned::start(&mut command, "segflow serve passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let outcome = child.output_within(Duration::from_secs(60));
    assert_eq!(outcome.code, 0, "{outcome:?}");
    path
}

/// A running `segflow serve` of the project's pipeline, and the port it listens on.
struct Server {
    process: Spawned,
    port: String,
    log: Arc<Mutex<String>>,
}

fn serve(project: &Project, users: &Path, more: &[&str]) -> Server {
    let pipeline = project.pipeline();
    let mut args = vec![
        "serve",
        pipeline.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(more);
    let mut command = project.command(&args);
    command
        .env("SEGFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut process = Spawned::start(&mut command, "segflow serve");
    let log = process.follow_log();
    wait_for_log(&log, "Serving the published outputs");
    let text = log.lock().unwrap().clone();
    let at = text.find("127.0.0.1:").expect("the log names the address") + "127.0.0.1:".len();
    let port: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Server { process, port, log }
}

/// psql, as a user would run it, with `sql` (a query or a backslash command); SQLSTATEs in
/// its errors.
fn psql(server: &Server, sql: &str, env: &[(&str, &str)]) -> Outcome {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port,
            "-U",
            USER,
            "-d",
            "segflow",
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "30")
        .envs(env.iter().copied());
    run(&mut command)
}

fn published_project() -> Project {
    let project = Project::new(Size::Small);
    let outcome = project.run_nightly(END);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    project
}

#[test]
fn stock_clients_read_the_published_outputs() {
    let project = published_project();
    let users = users_file(&project);
    let server = serve(&project, &users, &[]);

    let schemas = psql(&server, "\\dn", &[]);
    assert_eq!(schemas.code, 0, "{schemas:?}");
    assert!(schemas.stdout.contains("nightly_segments"), "{schemas:?}");
    let tables = psql(&server, "\\dt", &[]);
    assert_eq!(tables.code, 0, "{tables:?}");
    for table in [
        "customer_profile",
        "history_customer_profile",
        "segment_membership",
        "publications",
    ] {
        assert!(
            tables.stdout.contains(&format!("| {table} ")),
            "{table}:\n{tables:?}"
        );
    }
    let described = psql(&server, "\\d customer_profile", &[]);
    assert_eq!(described.code, 0, "{described:?}");
    for (column, pg_type) in [
        ("customer_id", "bigint"),
        ("net_revenue", "numeric(14,2)"),
        ("last_order_at", "timestamp with time zone"),
        ("segments", "text[]"),
        ("as_of", "date"),
    ] {
        let line = described
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{column} ")))
            .unwrap_or_else(|| panic!("no {column} in \\d:\n{described:?}"));
        assert!(line.contains(pg_type), "{column} is not {pg_type}: {line}");
    }

    let out = project.out();
    let clients = python_script(
        "serve_clients.py",
        &[
            &server.port,
            USER,
            PASSWORD,
            out.to_str().unwrap(),
            "nightly_segments",
        ],
    );
    assert_eq!(
        clients.code,
        0,
        "{clients:?}\n--- server log\n{}",
        server.log.lock().unwrap()
    );

    let jdbc = jdbc(&server);
    let manifest = project.manifest("segment_membership", END);
    assert!(
        jdbc.contains(&format!("membership_rows {}", manifest.rows)),
        "{jdbc}"
    );
    assert!(
        jdbc.contains("schemas ") && jdbc.contains("nightly_segments"),
        "{jdbc}"
    );
    assert!(jdbc.contains("columns customer_id:int8,"), "{jdbc}");
}

/// Compiles and runs `oracles/JdbcClient.java` against the server with Debian's pgjdbc; its
/// output.
fn jdbc(server: &Server) -> String {
    let classes = tempfile::tempdir().unwrap();
    let jar = "/usr/share/java/postgresql.jar";
    let compiled = run(Command::new("javac")
        .args(["-d", classes.path().to_str().unwrap(), "-cp", jar])
        .arg(oracle("JdbcClient.java")));
    assert_eq!(compiled.code, 0, "{compiled:?}");
    let ran = run(Command::new("java")
        .args([
            "-cp",
            &format!("{jar}:{}", classes.path().display()),
            "JdbcClient",
        ])
        .args([&server.port, USER, PASSWORD, "nightly_segments"]));
    assert_eq!(
        ran.code,
        0,
        "{ran:?}\n--- server log\n{}",
        server.log.lock().unwrap()
    );
    ran.stdout
}
