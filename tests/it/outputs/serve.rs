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
    /// Killed when the test ends, however it ends.
    _process: Spawned,
    port: String,
    log: Arc<Mutex<String>>,
}

fn serve(project: &Project, users: &Path, more: &[&str]) -> Server {
    serve_pipeline(project, &project.pipeline(), users, more)
}

/// [`serve`] of another pipeline file of the project's.
fn serve_pipeline(project: &Project, pipeline: &Path, users: &Path, more: &[&str]) -> Server {
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
    Server {
        _process: process,
        port,
        log,
    }
}

/// psql, as a user would run it, with `sql` (a query or a backslash command); SQLSTATEs in
/// its errors.
fn psql(port: &str, sql: &str, env: &[(&str, &str)]) -> Outcome {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
        .args(["-h", "127.0.0.1", "-p", port, "-U", USER, "-d", "segflow"])
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

    let schemas = psql(&server.port, "\\dn", &[]);
    assert_eq!(schemas.code, 0, "{schemas:?}");
    assert!(schemas.stdout.contains("nightly_segments"), "{schemas:?}");
    let tables = psql(&server.port, "\\dt", &[]);
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
    let described = psql(&server.port, "\\d customer_profile", &[]);
    assert_eq!(described.code, 0, "{described:?}");
    for (column, pg_type) in [
        ("customer_id", "bigint"),
        // Without its precision and scale: pg_catalog's atttypmod is not filled in.
        ("net_revenue", "numeric"),
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
    let args = [
        &server.port,
        USER,
        PASSWORD,
        out.to_str().unwrap(),
        "nightly_segments",
    ];
    let clients = python_script(
        "serve_clients.py",
        &[&args[..], &["psycopg", "asyncpg", "odbc"]].concat(),
    );
    let log = || server.log.lock().unwrap().clone();
    assert_eq!(clients.code, 0, "{clients:?}\n--- server log\n{}", log());
    // Apache Superset's versions (SQLAlchemy 1.4, psycopg2, pandas 2.1), which .ci/run installs
    // in a virtualenv of their own.
    let superset = std::env::var("HOME").unwrap() + "/.cache/segflow/superset-clients/bin/python";
    let reflected = run(Command::new(superset)
        .arg(oracle("serve_clients.py"))
        .args(args)
        .arg("sqlalchemy"));
    assert_eq!(
        reflected.code,
        0,
        "{reflected:?}\n--- server log\n{}",
        log()
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
    let (spenders, revenue) = big_spenders(&project);
    assert!(
        jdbc.contains(&format!("big_spenders {spenders} {revenue}")),
        "{jdbc}"
    );
}

/// How many customers have a net revenue of 100.00 or more, and their revenue's sum, from
/// the published files.
fn big_spenders(project: &Project) -> (usize, String) {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::Decimal128Type;
    let batches: Vec<RecordBatch> = project.published("customer_profile", END);
    let (mut count, mut cents) = (0, 0i128);
    for batch in &batches {
        let revenue = batch
            .column_by_name("net_revenue")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        for value in revenue.iter().flatten().filter(|v| *v >= 10_000) {
            count += 1;
            cents += value;
        }
    }
    (count, format!("{}.{:02}", cents / 100, cents % 100))
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

/// psql's error for `sql`: fails the test if it succeeded.
fn psql_error(port: &str, sql: &str) -> String {
    let outcome = psql(port, sql, &[]);
    assert_ne!(outcome.code, 0, "{sql} succeeded:\n{outcome:?}");
    outcome.stderr
}

#[test]
fn what_is_not_a_query_is_refused_and_the_limits_hold() {
    let project = published_project();
    let users = users_file(&project);
    let server = serve(
        &project,
        &users,
        &[
            "--statement-timeout",
            "3s",
            "--query-memory",
            "16MiB",
            "--max-connections",
            "3",
            "--idle-timeout",
            "2s",
        ],
    );
    let written = project.path().join("copied.csv");
    let refusals = [
        (
            format!("COPY rfm TO '{}'", written.display()),
            "25006: COPY is refused",
        ),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".to_string(),
            "25006: CREATE is refused",
        ),
        (
            "CREATE EXTERNAL TABLE p STORED AS PARQUET LOCATION '/etc/passwd'".to_string(),
            "25006: CREATE EXTERNAL TABLE is refused",
        ),
        (
            "INSERT INTO rfm SELECT * FROM rfm".to_string(),
            "25006: INSERT INTO is refused",
        ),
        ("DROP TABLE rfm".to_string(), "25006: DROP TABLE is refused"),
        (
            "SET datafusion.execution.target_partitions = 1".to_string(),
            "25006: SET datafusion.execution.target_partitions is refused",
        ),
        (
            "SELECT * FROM read_csv('/etc/passwd')".to_string(),
            "42P01: table function 'read_csv' not found",
        ),
        ("SELECT * FROM '/etc/passwd'".to_string(), "42P01: table"),
    ];
    for (sql, expected) in &refusals {
        let error = psql_error(&server.port, sql);
        assert!(error.contains(expected), "{sql}: {error}");
    }
    assert!(!written.exists(), "COPY wrote {}", written.display());
    // What was refused changed nothing: the engine settings and the tables are as before.
    let partitions = psql(&server.port, "SELECT count(*) FROM rfm", &[]);
    assert_eq!(partitions.code, 0, "{partitions:?}");

    let started = Instant::now();
    let error = psql_error(
        &server.port,
        "SELECT count(*) FROM generate_series(1, 30000000000)",
    );
    assert!(
        error.contains("57014: canceling statement due to statement timeout"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let error = psql_error(
        &server.port,
        "SELECT value FROM generate_series(1, 20000000) AS t(value) ORDER BY value DESC",
    );
    assert!(
        error.contains("53200: out of memory") && error.contains("16 MiB"),
        "{error}"
    );

    // Three connections are taken by clients that connected and said nothing yet; a fourth
    // is told why it is refused.
    let held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(format!("127.0.0.1:{}", server.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let error = psql_error(&server.port, "SELECT 1");
    assert!(
        error.contains("53300") || error.contains("too many clients"),
        "{error}"
    );
    drop(held);

    let idle = python_inline(&format!(
        "import time, psycopg\n\
         c = psycopg.connect('host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=segflow connect_timeout=30', autocommit=True)\n\
         c.execute('SELECT 1')\n\
         time.sleep(4)\n\
         try:\n    c.execute('SELECT 1')\n    print('answered')\n\
         except psycopg.Error as e:\n    print('closed', e)\n",
        server.port
    ));
    assert!(
        idle.contains("closed") && idle.contains("idle-session timeout"),
        "{idle}"
    );

    let wrong = psql(
        &server.port,
        "SELECT 1",
        &[("PGPASSWORD", "not-the-password")],
    );
    assert_ne!(wrong.code, 0);
    assert!(
        wrong.stderr.contains(&format!(
            "password authentication failed for user \"{USER}\""
        )),
        "{wrong:?}"
    );
}

/// `python3 -c code`, to its end within the commands' deadline; its stdout and stderr.
fn python_inline(code: &str) -> String {
    let outcome = run(Command::new("python3").args(["-c", code]));
    format!("{}{}", outcome.stdout, outcome.stderr)
}

#[test]
fn tls_is_required_when_asked_and_a_bad_setup_stops_the_server() {
    let project = published_project();
    let users = users_file(&project);
    let (cert, key) = (
        project.path().join("cert.pem"),
        project.path().join("key.pem"),
    );
    let made = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout", key.to_str().unwrap()])
        .args(["-out", cert.to_str().unwrap()]));
    assert_eq!(made.code, 0, "{made:?}");
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--require-tls",
    ];
    let server = serve(&project, &users, &tls);
    let plain = psql(&server.port, "SELECT 1", &[("PGSSLMODE", "disable")]);
    assert_ne!(plain.code, 0);
    assert!(plain.stderr.contains("requires TLS"), "{plain:?}");
    let encrypted = psql(
        &server.port,
        "SELECT count(*) FROM customer_profile",
        &[("PGSSLMODE", "require")],
    );
    assert_eq!(encrypted.code, 0, "{encrypted:?}");

    let pipeline = project.pipeline();
    let refuse = |args: &[&str], expected: &str| {
        let mut all = vec![
            "serve",
            pipeline.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        let outcome = project.segflow(&all);
        assert_eq!(outcome.code, 1, "{args:?}: {outcome:?}");
        assert!(outcome.stderr.contains(expected), "{args:?}: {outcome:?}");
    };
    let users_arg = users.to_str().unwrap();
    refuse(
        &[
            "--users",
            users_arg,
            "--tls-cert",
            users_arg,
            "--tls-key",
            key.to_str().unwrap(),
        ],
        "holds no certificate in PEM form",
    );
    refuse(
        &["--users", users_arg, "--require-tls"],
        "--require-tls needs a certificate",
    );
    let exposed = project.path().join("exposed-users");
    std::fs::copy(&users, &exposed).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    refuse(&["--users", exposed.to_str().unwrap()], "chmod 600");
    let empty = project.path().join("no-users");
    std::fs::write(&empty, "# nobody\n").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    refuse(&["--users", empty.to_str().unwrap()], "has no users");
}

#[test]
fn a_reader_sees_whole_publications_while_nights_publish_and_vacuum_runs() {
    let project = published_project();
    let users = users_file(&project);
    let server = serve(&project, &users, &["--refresh", "200ms"]);
    let stop = project.path().join("stop-reading");
    let mut reader_command = Command::new("python3");
    reader_command
        .arg(oracle("serve_load.py"))
        .args([&server.port, USER, PASSWORD, stop.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let reader = Spawned::start(&mut reader_command, "the looping reader");
    let nights = ["2026-07-01", "2026-07-02", "2026-07-03"];
    let pipeline = project.pipeline();
    for night in nights {
        let outcome = project.run_nightly(night);
        assert_eq!(outcome.code, 0, "{night}: {outcome:?}");
        let vacuumed = project.segflow(&["vacuum", pipeline.to_str().unwrap(), "--retain", "0s"]);
        assert_eq!(vacuumed.code, 0, "{vacuumed:?}");
    }
    // The last night's publication is served within a few refreshes.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop, "").unwrap();
    let read = reader.output_within(Duration::from_secs(120));
    assert_eq!(read.code, 0, "{read:?}");

    let mut seen: Vec<(String, u64)> = Vec::new();
    for line in read.stdout.lines() {
        let answer: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            answer.get("error").is_none(),
            "the reader saw an error: {line}"
        );
        let groups = answer["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "one query saw two publications: {line}");
        let as_of = groups[0][0].as_str().unwrap().to_string();
        let rows = groups[0][1].as_u64().unwrap();
        if seen.last().is_none_or(|(date, _)| *date != as_of) {
            seen.push((as_of.clone(), rows));
        }
        let published = project.manifest("segment_membership", &as_of).rows;
        assert_eq!(
            rows, published,
            "{as_of}: the reader counted {rows}, the manifest lists {published}"
        );
    }
    let dates: Vec<&str> = seen.iter().map(|(d, _)| d.as_str()).collect();
    assert!(
        dates.len() >= 2,
        "the reader saw no night publish: {dates:?}"
    );
    assert_eq!(dates.last(), nights.last(), "{dates:?}");
    assert!(
        dates.windows(2).all(|w| w[0] < w[1]),
        "publications went back: {dates:?}"
    );

    // The last date run again rewrites its manifest: served too, though no date is new.
    let last = nights[nights.len() - 1];
    let before = project.manifest("segment_membership", last).run_id;
    let again = project.run_nightly(last);
    assert_eq!(again.code, 0, "{again:?}");
    let after = project.manifest("segment_membership", last).run_id;
    assert_ne!(before, after);
    let sql = format!(
        "SELECT run_id FROM publications WHERE output = 'segment_membership' AND as_of = DATE '{last}'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = psql(&server.port, &sql, &[]);
        if listed.stdout.contains(&after) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run again of {last} ({after}) not served within 30 s: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_serves_beside_its_runs_and_counts_the_queries() {
    let project = published_project();
    let users = users_file(&project);
    let scheduled = project.path().join("scheduled");
    std::fs::create_dir_all(&scheduled).unwrap();
    std::fs::copy(project.pipeline(), scheduled.join("nightly_segments.yaml")).unwrap();
    let mut daemon = crate::support::daemon::start_daemon_with(
        &project,
        5,
        &[
            "--http",
            "127.0.0.1:0",
            "--serve",
            "127.0.0.1:0",
            "--users",
            users.to_str().unwrap(),
        ],
    );
    let log = daemon.follow_log();
    let base = crate::support::daemon::served_at(&log);
    wait_for_log(&log, "Serving the published outputs");
    let text = log.lock().unwrap().clone();
    let line = text
        .lines()
        .find(|l| l.contains("Serving the published outputs"))
        .unwrap();
    let at = line.find("127.0.0.1:").expect("the log names the address") + "127.0.0.1:".len();
    let port: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    for _ in 0..3 {
        let counted = psql(&port, "SELECT count(*) FROM segment_membership", &[]);
        assert_eq!(counted.code, 0, "{counted:?}");
    }
    let failed = psql(&port, "SELECT no_such_column FROM rfm", &[]);
    assert_ne!(failed.code, 0);

    let (status, metrics) = crate::support::daemon::get(&base, "/metrics");
    assert_eq!(status, 200);
    let parsed = python_inline(&format!(
        "from prometheus_client.parser import text_string_to_metric_families\n\
         text = {metrics:?}\n\
         for family in text_string_to_metric_families(text):\n\
         \x20   if family.name.startswith('segflow_serve'):\n\
         \x20       for s in family.samples:\n\
         \x20           print(family.type, s.name, dict(s.labels), float(s.value))\n"
    ));
    for expected in [
        "counter segflow_serve_connections_total {} 4.0",
        "histogram segflow_serve_query_seconds_count {} 4.0",
        "histogram segflow_serve_query_seconds_bucket {'le': '+Inf'} 4.0",
        "counter segflow_serve_queries_failed_total {} 1.0",
        "gauge segflow_serve_connections_open {} 0.0",
    ] {
        assert!(
            parsed.contains(expected),
            "no `{expected}` in:\n{parsed}\n{metrics}"
        );
    }
    let (_, page) = crate::support::daemon::get(&base, "/");
    assert!(
        page.contains("PostgreSQL protocol on") && page.contains("4 queries (1 failed)"),
        "{page}"
    );
    assert_eq!(crate::support::daemon::terminate(&mut daemon), 0);
}

/// A real PostgreSQL server (Debian's, run as its `postgres` user) on a Unix socket in a
/// folder of the test's: the oracle of what psql lists for a table. Stopped when dropped.
struct Postgres {
    folder: tempfile::TempDir,
    bin: PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql is installed (.ci/run installs it)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|bin| bin.join("initdb").is_file())
            .expect("initdb in /usr/lib/postgresql/*/bin");
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().to_str().unwrap().to_string();
        let owned = run(Command::new("chown").args(["-R", "postgres:postgres", &path]));
        assert_eq!(owned.code, 0, "{owned:?}");
        let as_postgres = |program: &str, args: &[&str]| {
            let outcome = run(Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join(program))
                .args(args));
            assert_eq!(outcome.code, 0, "{program}: {outcome:?}");
        };
        let data = format!("{path}/data");
        as_postgres(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let options = format!("-c listen_addresses='' -k {path} -F");
        let log = format!("{path}/log");
        as_postgres(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start",
            ],
        );
        Postgres { folder, bin }
    }

    fn psql(&self, sql: &str) -> Outcome {
        let socket = self.folder.path().to_str().unwrap();
        let outcome = run(Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                socket,
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql]));
        assert_eq!(outcome.code, 0, "{sql}: {outcome:?}");
        outcome
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.folder.path().join("data");
        let _ = run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"]));
    }
}

/// The PostgreSQL type of a published column, from the manifest's Arrow type: what a team
/// would declare for the same data in PostgreSQL.
fn postgres_type(arrow: &str) -> String {
    match arrow {
        "Int64" => "bigint".to_string(),
        "Int32" => "integer".to_string(),
        "Utf8" => "text".to_string(),
        "Boolean" => "boolean".to_string(),
        "Float64" => "double precision".to_string(),
        "Date32" => "date".to_string(),
        "List(Utf8)" => "text[]".to_string(),
        timestamp if timestamp.starts_with("Timestamp(µs, \"UTC\")") => {
            "timestamp with time zone".to_string()
        }
        decimal if decimal.starts_with("Decimal128(") => {
            format!("numeric{}", &decimal["Decimal128".len()..].replace(' ', ""))
        }
        other => panic!("no PostgreSQL type for {other}"),
    }
}

/// The (column, type, nullable) rows of psql's `\d` of a table.
fn described_columns(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter(|line| line.matches('|').count() == 4)
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn psql_describes_a_served_table_as_postgresql_describes_the_same_columns() {
    let project = published_project();
    let users = users_file(&project);
    let server = serve(&project, &users, &[]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.out().join(format!(
            "customer_profile/_segflow/manifests/as_of={END}.json"
        )))
        .unwrap(),
    )
    .unwrap();
    let mut columns: Vec<String> = manifest["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let null = if c["nullable"].as_bool().unwrap() {
                ""
            } else {
                " NOT NULL"
            };
            format!(
                "{} {}{null}",
                c["name"].as_str().unwrap(),
                postgres_type(c["data_type"].as_str().unwrap())
            )
        })
        .collect();
    columns.push("as_of date NOT NULL".to_string());
    let postgres = Postgres::start();
    postgres.psql(&format!(
        "CREATE SCHEMA nightly_segments; CREATE TABLE nightly_segments.customer_profile ({})",
        columns.join(", ")
    ));
    let expected = described_columns(
        &postgres
            .psql("\\d nightly_segments.customer_profile")
            .stdout,
    );
    let served = psql(&server.port, "\\d nightly_segments.customer_profile", &[]);
    assert_eq!(served.code, 0, "{served:?}");
    let served = described_columns(&served.stdout);
    assert_eq!(served.len(), expected.len(), "{served:#?}\n{expected:#?}");
    for (ours, theirs) in served.iter().zip(&expected) {
        // The one difference: pg_attribute's atttypmod is not filled in, so a decimal's
        // precision and scale are not listed (its values are exact all the same).
        let theirs_type = if theirs.1.starts_with("numeric(") {
            "numeric"
        } else {
            &theirs.1
        };
        assert_eq!(
            (&ours.0, ours.1.as_str(), &ours.2),
            (&theirs.0, theirs_type, &theirs.2),
            "served {ours:?}, PostgreSQL {theirs:?}"
        );
    }
}

#[test]
fn delta_outputs_are_served_from_their_logs() {
    let project = Project::new(Size::Small);
    let pipeline = crate::support::delta::delta_pipeline(&project.pipeline());
    let outcome = run(project.command(&["run", pipeline.to_str().unwrap(), "--as-of", END]));
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let users = users_file(&project);
    let server = serve_pipeline(&project, &pipeline, &users, &[]);
    let served = psql(
        &server.port,
        "SELECT CAST(as_of AS VARCHAR) || ' ' || CAST(count(*) AS VARCHAR) FROM segment_membership GROUP BY as_of",
        &[],
    );
    assert_eq!(served.code, 0, "{served:?}");
    let read = crate::support::delta::python(
        "import sys, datetime, deltalake\n\
         day = datetime.date.fromisoformat(sys.argv[2])\n\
         t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(filters=[('as_of', '=', day)])\n\
         print(sys.argv[2], t.num_rows)",
        &[
            project.out().join("segment_membership").to_str().unwrap(),
            END,
        ],
    );
    assert!(
        served.stdout.contains(read.trim()),
        "served {served:?}, deltalake read {read}"
    );
}
