//! `exec`: starts another process inside a running container: its
//! namespaces, its cgroup, its root, with the process settings of the spec
//! unless the caller gives others.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::{write_atomic, Container, Status};
use crate::error::{Context, Error, Result};
use crate::plan::{self, NsKind};
use crate::sys::{self, init, msg, rootfs::CgroupView, SyncSocket};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A `process.json` (an OCI `process` object); when set, `args` and the
    /// overrides below are not used.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub no_new_privs: bool,
    pub console_socket: Option<PathBuf>,
    /// A connected socket to send the pty master on instead (a foreground
    /// `exec -t`'s [`crate::console::ForegroundConsole`]).
    pub console_fd: Option<std::os::fd::RawFd>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// The driver's policy applies to exec'd processes too.
    pub driver: crate::config::DriverConfig,
    /// An OCI process given as a value (the shim's Exec request).
    pub process: Option<oci_spec::runtime::Process>,
    /// Standard input, output and error (default: the caller's).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// A process started in a container; a child of this process.
pub struct Execed {
    pub pid: Pid,
}

pub fn exec(c: &Container, opts: &ExecOptions) -> Result<Execed> {
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(c.wrong_state(status, "exec needs a running container"));
    }
    let process = process_for(c, opts)?;
    crate::sys::exe::needs_seal(&process.capabilities.bounding, c.state.userns.is_some())?;
    let init_pid = c.state.pid;

    // The container's namespaces that differ from ours.
    let mut namespaces: Vec<(NsKind, OwnedFd)> = Vec::new();
    let mut pid_ns = None;
    for kind in NsKind::JOIN_ORDER {
        let theirs = format!("/proc/{init_pid}/ns/{}", kind.proc_name());
        let ours = format!("/proc/self/ns/{}", kind.proc_name());
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = open(
            theirs.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {theirs}"))?;
        if kind == NsKind::Pid {
            pid_ns = Some(fd);
        } else {
            namespaces.push((kind, fd));
        }
    }
    // The user namespace last: the container's other namespaces may belong
    // to the host's user namespace (a pod's network namespace, joined by
    // path), where a process already in the container's has no capability.
    // The runtime, still the host's root, joins them first.
    namespaces.sort_by_key(|(k, _)| *k == NsKind::User);
    let root = open(
        format!("/proc/{init_pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the root of container \"{}\"", c.id()))?;
    // Re-check after opening: the descriptors must belong to the init we checked.
    if !c.init_alive() {
        return Err(c.wrong_state(Status::Stopped, "exec needs a running container"));
    }

    let console = match (&opts.console_socket, process.terminal) {
        (Some(path), true) => Some(
            UnixStream::connect(path)
                .ctx(|| format!("connecting to --console-socket {}", path.display()))?,
        ),
        (None, true) if opts.console_fd.is_some() => opts
            .console_fd
            .map(crate::console::connection)
            .transpose()?,
        (None, true) => {
            return Err(Error::InvalidArgument(
                "--tty needs --console-socket (the pty master is sent there)".into(),
            ))
        }
        _ => None,
    };

    let cgroup = c.cgroup();
    let cgroup_dirs = cgroup.dirs();
    let (parent_end, child_end) = SyncSocket::pair().ctx(|| "socketpair".into())?;
    // SAFETY: the caller is single-threaded (the command line, the shim's
    // current-thread runtime); the child runs exec_main.
    let child = unsafe {
        sys::clone_fork_in(
            &pid_ns
                .as_ref()
                .map(|f| (NsKind::Pid, f.as_fd()))
                .into_iter()
                .collect::<Vec<_>>(),
            nix::sched::CloneFlags::empty(),
        )
    }
    .ctx(|| "fork for exec (in the container's pid namespace)".into())?;
    let Some(child) = child else {
        drop(parent_end);
        init::exec_main(init::ExecArgs {
            process: &process,
            sync: &child_end,
            namespaces,
            root,
            cgroups: CgroupView {
                v2: cgroup.is_v2(),
                dirs: &cgroup_dirs,
            },
            console: console.as_ref().map(|c| c.as_raw_fd()),
            preserve_fds: opts.preserve_fds,
            stdio: opts.stdio,
        });
    };
    drop(child_end);
    drop(console);
    let fail = |e: Error| {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        e
    };
    // READY, then EOF when exec closes the socket; or ERROR.
    loop {
        match parent_end
            .recv()
            .ctx(|| "waiting for exec".into())
            .map_err(fail)?
        {
            Some((msg::READY, _)) => continue,
            Some((tag @ (msg::ERROR | msg::INVALID), m)) => {
                // The process is the exec's (its arguments, --cwd, a
                // process.json), not config.json's.
                let e = match crate::sys::child_error(tag, &m) {
                    Error::InvalidSpec { field, reason } => {
                        Error::InvalidArgument(format!("exec: {field}: {reason}"))
                    }
                    e => e,
                };
                return Err(fail(e));
            }
            _ => break,
        }
    }
    if let Some(p) = &opts.pid_file {
        write_atomic(p, child.as_raw().to_string().as_bytes())?;
    }
    Ok(Execed { pid: child })
}

/// The process to exec, under the container's seccomp filter.
fn process_for(c: &Container, opts: &ExecOptions) -> Result<plan::ProcessPlan> {
    let mut p = requested_process(c, opts)?;
    p.seccomp = c.state.seccomp.clone();
    // A task's exec'd processes see its driver environment (NOMAD_*), even
    // when the caller built the process from the plain spec (containerd).
    if c.state.chroot.is_some() {
        for e in c.state.process.env().iter().flatten() {
            let key = e.split('=').next().unwrap_or_default();
            let set = p.env.iter().any(|x| x.split('=').next() == Some(key));
            if key.starts_with("NOMAD_") && !set {
                p.env.push(e.clone());
            }
        }
    }
    if let Some(u) = &c.state.userns {
        plan::check_mapped(&p, u, "process.user")?;
    }
    crate::driver::apply_policy(&mut p, &opts.driver, c.state.userns.as_ref())?;
    Ok(p)
}

/// `--process FILE`, or the spec's process with the command line's args
/// and overrides.
fn requested_process(c: &Container, opts: &ExecOptions) -> Result<plan::ProcessPlan> {
    if let Some(p) = &opts.process {
        return plan::process_plan(p, "process");
    }
    if let Some(path) = &opts.process_file {
        let text = std::fs::read(path).map_err(|e| Error::Bundle {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let p: oci_spec::runtime::Process =
            serde_json::from_slice(&text).map_err(|e| Error::Bundle {
                path: path.clone(),
                reason: format!("not a valid OCI process: {e}"),
            })?;
        return plan::process_plan(&p, "process");
    }
    if opts.args.is_empty() {
        return Err(Error::InvalidArgument(
            "exec needs a command (or --process FILE)".into(),
        ));
    }
    let mut p = c.state.process.clone();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &opts.user {
        let (uid, gid) = parse_user(u)?;
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
    }
    if !opts.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(opts.additional_gids.clone()));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    plan::process_plan(&p, "process")
}

/// `UID[:GID]` (numeric, as runc's `--user`).
pub fn parse_user(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::InvalidArgument(format!("--user {s:?}: use UID or UID:GID (numbers)"));
    match s.split_once(':') {
        Some((u, g)) => Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?)),
        None => {
            let u = s.parse().map_err(|_| bad())?;
            Ok((u, 0))
        }
    }
}
