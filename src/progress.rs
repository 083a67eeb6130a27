//! Progress on a terminal, nothing otherwise: long work (generation, a run's steps and
//! outputs) shows a spinner with counts when stderr is a TTY, and stays quiet in pipes,
//! CI logs and the daemon, where the structured logs tell the story instead.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// The latest message, shown or not, for logs that say what a run waits on.
    latest: Arc<Mutex<String>>,
}

impl Progress {
    /// A spinner if stderr is a terminal.
    pub fn for_terminal() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar: Some(bar),
            latest: Arc::default(),
        }
    }

    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            latest: Arc::default(),
        }
    }

    pub fn message(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(bar) = &self.bar {
            bar.set_message(message.clone());
        }
        *self.latest.lock().expect("progress lock") = message;
    }

    /// What the work is at: the latest message.
    pub fn latest(&self) -> String {
        self.latest.lock().expect("progress lock").clone()
    }

    /// A line that stays above the spinner: one piece of work done.
    pub fn done(&self, line: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.println(line.into());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1234567` as `1,234,567`, for people reading a terminal.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
