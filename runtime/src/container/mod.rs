//! Containers on disk and their verbs, one file each: a container is a
//! directory `ROOT/ID/` with `state.json` and, until it is started,
//! `exec.fifo`.

mod create;
mod delete;
mod exec;
mod kill;
mod start;
mod userns;

pub use create::{create, CreateOptions, Created};
pub use delete::{delete, release_sandbox};
pub use exec::{exec, ExecOptions, Execed};
pub use kill::{kill, parse_signal};
pub use start::start;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupManager;
use crate::error::{Context, Error, Result};
use crate::sys;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// Where the init reports on the startContainer hooks to `start` (only
/// when there are some): nothing written before exec means they passed.
pub const HOOKS_FIFO: &str = "hooks.fifo";
pub const OCI_VERSION: &str = "1.2.0";

/// What isoexec remembers about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// The init's pid (in the runtime's pid namespace).
    pub pid: i32,
    /// The init's start time: with the pid, tells the init from a later
    /// process that got the same pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_path: String,
    /// The spec's `process`: what `exec` inherits unless told otherwise.
    pub process: oci_spec::runtime::Process,
    /// The container's seccomp filter, applied to exec'd processes too.
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::SeccompPlan>,
    /// What the exec driver's root assembly created, removed on delete.
    #[serde(default)]
    pub chroot: Option<crate::sys::chroot::Prepared>,
    /// The sandbox (allocation) the task belongs to.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// The spec's hooks: start runs poststart, delete poststop.
    #[serde(default, skip_serializing_if = "crate::hooks::Hooks::is_empty")]
    pub hooks: crate::hooks::Hooks,
    /// The user namespace the runtime made for the task: its mappings
    /// (exec'd processes are judged on host ids) and its pool slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<crate::plan::UserNsPlan>,
}

impl State {
    /// The state file's content.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Init(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container found in the state root.
pub struct Container {
    pub dir: PathBuf,
    pub state: State,
    /// Its cgroup, found once (finding it reads the mount table).
    cgroup: std::sync::OnceLock<CgroupManager>,
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        crate::plan::validate_id(id)?;
        let dir = root.join(id);
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::sys(format!("reading {}", path.display()), e)),
        };
        let state = serde_json::from_str(&text).map_err(|e| Error::Bundle {
            path: path.clone(),
            reason: format!(
                "corrupt state: {e}; remove the directory with `isoexec delete --force {id}`"
            ),
        })?;
        Ok(Container::new(dir, state))
    }

    pub(crate) fn new(dir: PathBuf, state: State) -> Self {
        Container {
            dir,
            state,
            cgroup: std::sync::OnceLock::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.state.pid)
    }

    pub fn cgroup(&self) -> &CgroupManager {
        self.cgroup
            .get_or_init(|| CgroupManager::load(&self.state.cgroup_path))
    }

    /// True while the init (this very process, not a reuse of its pid) lives.
    pub fn init_alive(&self) -> bool {
        let Ok(stat) = sys::read_proc(format!("/proc/{}/stat", self.state.pid)) else {
            return false;
        };
        match sys::parse_stat(&stat) {
            Some((state, start)) => start == self.state.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }

    pub fn status(&self) -> Status {
        if self.state.pid <= 0 {
            Status::Creating
        } else if !self.init_alive() {
            Status::Stopped
        } else if self.dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if self.cgroup().is_frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    fn wrong_state(&self, status: Status, hint: &str) -> Error {
        Error::WrongState {
            id: self.id().to_string(),
            status: status.to_string(),
            hint: hint.to_string(),
        }
    }

    /// Writes the state back (after a change of what the container owns).
    pub(crate) fn save(&self) -> Result<()> {
        write_atomic(&self.dir.join(STATE_FILE), &self.state.to_json()?)
    }

    /// The state document a hook reads, in `status`.
    pub fn hook_state(&self, status: Status) -> Vec<u8> {
        hook_state(
            &self.state.id,
            self.state.pid,
            &self.state.bundle,
            &self.state.annotations,
            status,
        )
    }

    /// The OCI state document (`isoexec state`).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped {
            0
        } else {
            self.state.pid
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.state.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": self.state.bundle,
            "rootfs": self.state.rootfs,
            "created": self.state.created,
            "owner": self.state.owner,
            "annotations": self.state.annotations,
        })
    }

    pub fn pause(&self) -> Result<()> {
        match self.status() {
            Status::Running => self.cgroup().freeze(),
            s => Err(self.wrong_state(s, "only a running container can be paused")),
        }
    }

    pub fn resume(&self) -> Result<()> {
        match self.status() {
            Status::Paused => self.cgroup().thaw(),
            s => Err(self.wrong_state(s, "only a paused container can be resumed")),
        }
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>> {
        match self.status() {
            Status::Stopped => Ok(vec![]),
            _ => Ok(self.cgroup().procs()),
        }
    }

    /// Changes the container's limits (`isoexec update`).
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        match self.status() {
            Status::Stopped => Err(self.wrong_state(Status::Stopped, "nothing to update")),
            _ => self.cgroup().apply(resources),
        }
    }
}

/// Every container in the state root, sorted by id; directories without a
/// state file are containers still being created.
pub fn list(root: &Path) -> Result<Vec<(String, Option<Container>)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::sys(format!("reading {}", root.display()), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() || id.starts_with('.') {
            continue;
        }
        let c = Container::load(root, &id).ok();
        out.push((id, c));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The OCI state a hook reads on its stdin (no pid once stopped).
pub(crate) fn hook_state(
    id: &str,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
    status: Status,
) -> Vec<u8> {
    crate::hooks::HookState {
        oci_version: OCI_VERSION,
        id,
        status: status.as_str(),
        pid: (status != Status::Stopped).then_some(pid),
        bundle,
        annotations,
    }
    .to_json()
}

/// An exclusive lock on the state root (flock of the directory), held
/// while the lock lives: what tasks of one sandbox share is made and
/// removed under it.
pub(crate) fn lock_root(root: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root).ctx(|| format!("opening {}", root.display()))?;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(dir);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::sys(format!("locking {}", root.display()), e));
        }
    }
}

/// Writes `path` atomically (temp file + rename), readable by root only:
/// state holds the process's environment, often with secrets.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_private(path, data).ctx(|| format!("writing {}", path.display()))
}

/// Writes a runtime's own file (state, specs, records) atomically with mode
/// 0600. Not for paths a task can reach.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // A temp file left by a crash keeps its old mode: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Creates a runtime's state directory and its missing parents with mode
/// 0700, and makes an existing one 0700: only root looks inside.
pub fn private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Now as RFC 3339 UTC with nanoseconds, as runc writes `created`.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_818_896, 0), "2026-11-27T22:34:56.000000000Z");
    }
}
