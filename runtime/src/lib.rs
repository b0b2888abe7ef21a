//! isoexec's engine: reads an OCI bundle, translates it into a [`plan::Plan`]
//! (pure, unit-tested), and carries the plan out ([`sys`]) to start an
//! isolated process under cgroup limits ([`cgroup`]). The front ends (the
//! `isoexec` command line, the containerd shim, `isoexecd`) are thin layers
//! over [`container`].

pub mod bundle;
pub mod cgroup;
pub mod config;
pub mod console;
pub mod container;
pub mod debug;
pub mod device_filter;
pub mod driver;
pub mod error;
pub mod features;
pub mod fingerprint;
pub mod hooks;
pub mod plan;
pub mod seccomp;
pub mod seccomp_default;
pub mod sys;

pub use error::{Error, Result};

/// The runtime's version, as `isoexec --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
