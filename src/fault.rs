//! Whose move it is when something fails. Every error type at a module edge answers once, by
//! a `fault()` method; the binary turns the answer into the exit code (1 or 2).

/// Who must act on a failure. Ordered so that of several failures, the environment's wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The command line, the spec, the SQL or the data: fix it and run again (exit 1).
    User,
    /// Storage, memory, disk, another process, or a bug in segflow (exit 2).
    Environment,
}
