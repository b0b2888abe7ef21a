//! The engine's error type: every failure a front end can meet, each saying
//! what is wrong, where, and (where it helps) what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json missing, unreadable or not valid JSON / OCI.
    #[error("{}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },

    /// A field of the spec has a value isoexec cannot run.
    #[error("invalid {field} in config.json: {reason}")]
    InvalidSpec { field: String, reason: String },

    /// The driver's policy (allow_caps, denied_host_uids/gids) refuses the task.
    #[error("{0}")]
    Policy(String),

    /// A command-line or request argument is wrong.
    #[error("{0}")]
    InvalidArgument(String),

    #[error("container \"{0}\" does not exist")]
    NotFound(String),

    #[error("container with id \"{0}\" already exists")]
    AlreadyExists(String),

    /// The verb does not apply in the container's current state.
    #[error("container \"{id}\" is {status}: {hint}")]
    WrongState {
        id: String,
        status: String,
        hint: String,
    },

    /// The container init failed while setting the container up; the message
    /// comes from inside the new namespaces.
    #[error("{0}")]
    Init(String),

    /// The runtime's binary is protected only by its immutable flag, and
    /// the task may hold CAP_LINUX_IMMUTABLE, which clears it: the caller
    /// re-executes itself from a read-only copy ([`crate::sys::exe::reseal`])
    /// and starts over. Returned before anything is made.
    #[error("the runtime's binary is sealed only by its immutable flag and the task may hold CAP_LINUX_IMMUTABLE (CVE-2019-5736): re-execute from a sealed copy")]
    NeedsSeal,

    /// An OCI hook failed: which one (`hooks.KIND[N]`, its path) and how.
    #[error("hook {0}")]
    Hook(String),

    /// A cgroup operation failed (the kernel refused a limit, a controller is
    /// missing, ...).
    #[error("cgroup {path}: {reason}")]
    Cgroup { path: String, reason: String },

    /// A system call failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn sys(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            context: context.into(),
            source: source.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::sys("system call", std::io::Error::from(e))
    }
}

/// Adds context to a failing system call: `mkdir(p).ctx(|| format!(...))`.
pub trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::sys(f(), e))
    }
}
