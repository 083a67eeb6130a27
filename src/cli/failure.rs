//! One exit status per kind of failure: 1, the user's spec or data; 2, the environment or
//! something internal. Each library error says whose fault it is; this is where that
//! becomes an exit status.

use segflow::fault::Fault;
use segflow::generate;
use segflow::history;
use segflow::pipeline::SpecError;
use segflow::run;
use segflow::runner;

/// A failed command: the error to print, and whose fault it was.
pub(crate) enum Failure {
    User(anyhow::Error),
    Environment(anyhow::Error),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::User(_) => 1,
            Failure::Environment(_) => 2,
        }
    }

    pub(crate) fn error(&self) -> &anyhow::Error {
        match self {
            Failure::User(e) | Failure::Environment(e) => e,
        }
    }

    /// The error as printed: `error: ...`, then each cause once (see `fault::causes`), then
    /// advice when the causes show a known misconfiguration.
    pub(crate) fn lines(&self) -> Vec<String> {
        let causes = segflow::fault::causes(self.error().as_ref());
        let mut lines = vec![format!("error: {}", causes[0])];
        lines.extend(
            causes[1..]
                .iter()
                .map(|cause| format!("  caused by: {cause}")),
        );
        if let Some(advice) = segflow::storage::advice(causes.iter().map(String::as_str)) {
            lines.push(format!("  hint: {advice}"));
        }
        lines
    }
}

impl From<SpecError> for Failure {
    fn from(error: SpecError) -> Self {
        match error {
            SpecError::Read { .. } => Failure::User(error.into()),
            SpecError::Invalid { .. } => Failure::User(error.into()),
        }
    }
}

impl Failure {
    fn of(fault: Fault, error: impl Into<anyhow::Error>) -> Failure {
        match fault {
            Fault::User => Failure::User(error.into()),
            Fault::Environment => Failure::Environment(error.into()),
        }
    }
}

impl From<segflow::cluster::ClusterError> for Failure {
    fn from(error: segflow::cluster::ClusterError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<segflow::publish::PublishError> for Failure {
    fn from(error: segflow::publish::PublishError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<segflow::report::ReportError> for Failure {
    fn from(error: segflow::report::ReportError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<run::RunError> for Failure {
    fn from(error: run::RunError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<history::HistoryError> for Failure {
    fn from(error: history::HistoryError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<segflow::lease::LeaseError> for Failure {
    fn from(error: segflow::lease::LeaseError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<runner::RecordedRunError> for Failure {
    fn from(error: runner::RecordedRunError) -> Self {
        match error {
            runner::RecordedRunError::Run(error) => error.into(),
            runner::RecordedRunError::History(error) => error.into(),
        }
    }
}

impl From<runner::RunnerError> for Failure {
    fn from(error: runner::RunnerError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<generate::GenerateError> for Failure {
    fn from(error: generate::GenerateError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<segflow::storage::StorageError> for Failure {
    fn from(error: segflow::storage::StorageError) -> Self {
        Failure::of(error.fault(), error)
    }
}

impl From<segflow::pipeline::SelectError> for Failure {
    fn from(error: segflow::pipeline::SelectError) -> Self {
        Failure::User(error.into())
    }
}
