//! Processes the tests start, each with a deadline: a command run to its end, a process
//! followed by its log, and every wait on one gives up in time, naming what it waited for.
//! A started process is killed when its test ends, however it ends, so none outlives it,
//! running or stopped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn outcome(output: std::process::Output) -> Outcome {
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The real binary, without the environment that would point it at the developer's data.
pub fn segflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segflow"));
    command
        .env_remove("SEGFLOW_DATA")
        .env_remove("SEGFLOW_OUT")
        .env_remove("SEGFLOW_REPORT");
    command.env("SEGFLOW_LOG", "warn");
    command
}

/// How long one command of the tests may take on a loaded 2-core machine: the slowest (a
/// night of the shipped pipeline on the large shop, a cluster run) take well under a minute.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `command` to its end, within [`COMMAND_DEADLINE`]: one that hangs is killed and
/// fails the test, naming itself, instead of holding CI for its 90 minutes.
pub fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Outcome {
    let command: &mut Command = command.borrow_mut();
    let what = format!("{command:?}");
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    Spawned::start(command, &what).output_within(COMMAND_DEADLINE)
}

/// [`run`] for a test whose servers run on its own tokio runtime, which must keep serving
/// while the command runs: the same deadline, and the command killed if it is dropped.
pub async fn run_async(command: Command) -> Outcome {
    let what = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let ran = tokio::time::timeout(COMMAND_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what} did not finish within {} s",
                COMMAND_DEADLINE.as_secs()
            )
        });
    outcome(ran.unwrap_or_else(|e| panic!("{what} does not start: {e}")))
}

/// A process a test started: killed (SIGKILL, which also ends a stopped one) and reaped when
/// dropped. It reads as the [`Child`] it wraps.
pub struct Spawned {
    child: Child,
    /// What the process is, for the message of a wait that gives up.
    what: String,
    /// Its log, once [`Spawned::follow_log`] reads it.
    log: Option<Arc<Mutex<String>>>,
}

impl Spawned {
    /// Starts `command`; `what` names it in messages ("the daemon", "the holder's run").
    pub fn start(command: &mut Command, what: &str) -> Spawned {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start ({command:?}): {e}"));
        Spawned {
            child,
            what: what.to_string(),
            log: None,
        }
    }

    /// The process's stderr (piped), read on a thread so that it never blocks on a full pipe.
    pub fn follow_log(&mut self) -> Arc<Mutex<String>> {
        let stderr = self.child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // A test that failed while reading the log must still show its own panic.
                let mut text = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
        });
        self.log = Some(Arc::clone(&log));
        log
    }

    /// Waits for the process to exit, for at most `limit` after `event` (what should end it:
    /// "SIGTERM", "its executor was killed"); its exit code (-1 for a signal). One still
    /// running then is killed, and the test fails naming it and the event, with its log.
    pub fn exit_within(&mut self, limit: Duration, event: &str) -> i32 {
        self.status_within(limit, event).code().unwrap_or(-1)
    }

    fn status_within(&mut self, limit: Duration, event: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let log = self.log.as_ref().map(|log| {
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                });
                panic!(
                    "{} did not exit within {} s of {event}; its log:\n{}",
                    self.what,
                    limit.as_secs(),
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit, for at most `limit`, reading its piped stdout and
    /// stderr meanwhile.
    pub fn output_within(mut self, limit: Duration) -> Outcome {
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = read(self.child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(self.child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr =
                    String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!(
                    "{} did not finish within {} s; its stderr:\n{stderr}",
                    self.what,
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        outcome(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// Kills the process (SIGKILL) the moment its log (stderr, piped and not followed) shows
    /// `event` for the `nth` time, reading each line as it comes so that the kill lands at
    /// that moment. Returns how many it saw: fewer than `nth` if the process ended first.
    /// Gives up after `limit`, naming the event.
    pub fn kill_at(&mut self, event: &str, nth: usize, limit: Duration) -> usize {
        let stderr = self.child.stderr.take().expect("stderr is piped");
        let (lines, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + limit;
        let mut seen = 0;
        let mut log = String::new();
        while seen < nth {
            let left = deadline.saturating_duration_since(Instant::now());
            match receive.recv_timeout(left) {
                Ok(line) => {
                    seen += usize::from(line.contains(event));
                    log.push_str(&line);
                    log.push('\n');
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "{} did not log '{event}' #{nth} within {} s (it did {seen} times):\n{log}",
                        self.what,
                        limit.as_secs()
                    );
                }
            }
        }
        if seen == nth {
            self.child.kill().unwrap(); // SIGKILL on Unix
        }
        self.exit_within(limit, "SIGKILL, or the end of its log");
        seen
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-INT`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.child.id(), signal);
    }
}

/// Sends `signal` to the process `pid` with kill(1).
pub fn signal_pid(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

impl std::ops::Deref for Spawned {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `log` contains `needle`, for at most a minute; names the needle if it never
/// comes.
pub fn wait_for_log(log: &Mutex<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = log.lock().unwrap().clone();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in the log within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
