//! `segflow schedule` as a real process on a project: started, its log followed, its status
//! page read, stopped with SIGTERM within a deadline, and its run records read from the state
//! folder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::process::{Spawned, segflow, wait_for_log};
use super::project::Project;

/// A daemon of the project's `scheduled/` pipelines, state in `state/`, a 3-second lease and
/// a grace period of `grace_seconds`; its log (stderr) is piped, to follow.
pub fn start_daemon(project: &Project, grace_seconds: u64) -> Spawned {
    start_daemon_with(project, grace_seconds, &[])
}

/// [`start_daemon`] with more arguments (`--http ...`).
pub fn start_daemon_with(project: &Project, grace_seconds: u64, more: &[&str]) -> Spawned {
    Spawned::start(
        &mut daemon_command(project, grace_seconds, more),
        "the daemon",
    )
}

/// The command [`start_daemon_with`] starts, for a test that changes its environment.
pub fn daemon_command(project: &Project, grace_seconds: u64, more: &[&str]) -> Command {
    let mut daemon = segflow();
    daemon
        .current_dir(project.path())
        .env("SEGFLOW_LOG", "info")
        .args([
            "schedule",
            "--pipelines",
            "scheduled",
            "--state",
            "state",
            "--lease-seconds",
            "3",
            "--grace-seconds",
            &grace_seconds.to_string(),
        ])
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    daemon
}

/// Stops `daemon` with SIGTERM; its exit code. Gives up after two minutes, long enough for a
/// run to finish inside a grace period.
pub fn terminate(daemon: &mut Spawned) -> i32 {
    daemon.signal("-TERM");
    daemon.exit_within(Duration::from_secs(120), "SIGTERM")
}

/// The run records of one pipeline in the project's state folder.
pub fn records(project: &Project, pipeline: &str) -> Vec<serde_json::Value> {
    records_in(&project.path().join(format!("state/runs/{pipeline}")))
}

/// The run records in a folder of a state store on disk.
pub fn records_in(folder: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .map(|e| {
                    serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The status page's address, from the daemon's log.
pub fn served_at(log: &Mutex<String>) -> String {
    wait_for_log(log, "Serving the status page");
    let text = log.lock().unwrap().clone();
    let start = text
        .find("http://127.0.0.1:")
        .expect("the log names the address");
    let url: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    url.trim_end_matches('/').to_string()
}

/// GET `path` from `base` (http://host:port): the status code and the body. Each read and
/// write gives up after 30 s, naming the request.
pub fn get(base: &str, path: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let request = format!("GET {base}{path}");
    let limit = Duration::from_secs(30);
    let address = host.parse().unwrap_or_else(|e| panic!("{host}: {e}"));
    let mut stream = TcpStream::connect_timeout(&address, limit)
        .unwrap_or_else(|e| panic!("{request}: the status page does not answer: {e}"));
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("{request}: {e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{request}: no whole response within 30 s: {e}: {response}"));
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{request}: not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
