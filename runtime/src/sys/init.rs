//! The two children isoexec forks: a container's init, and a process exec'd
//! into a running container. Each reports success or a message over its
//! [`SyncSocket`], so the caller of `create`/`exec` gets the real error.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

use super::process::{self, Exec};
use super::rootfs::{self, CgroupView};
use super::{msg, SyncSocket};
use crate::driver::ChrootPlan;
use crate::error::{Context, Error, Result};
use crate::plan::{NsKind, Plan, ProcessPlan};
use crate::sys;
use crate::sys::chroot::Prepared;

/// What the init child needs besides its plan.
pub struct InitArgs<'a> {
    pub plan: &'a Plan,
    pub sync: &'a SyncSocket,
    /// The `exec.fifo` in the state directory: `start` writes one byte to it.
    pub fifo_path: &'a Path,
    /// `hooks.fifo`, when the spec has startContainer hooks.
    pub hooks_fifo: Option<&'a Path>,
    /// Connection to `--console-socket`, for `terminal: true`.
    pub console: Option<RawFd>,
    /// Descriptors 3..3+N passed through to the container (`--preserve-fds`).
    pub preserve_fds: i32,
    /// The exec driver's root assembly, prepared on the host.
    pub chroot: Option<(&'a ChrootPlan, &'a Prepared)>,
    /// Standard input, output and error, when not the caller's own.
    pub stdio: Option<[RawFd; 3]>,
    /// The new namespaces the init makes itself, once it has joined those
    /// given by path.
    pub unshare: CloneFlags,
}

/// Body of the container's init. Never returns.
pub fn init_main(args: InitArgs) -> ! {
    let mut made = Vec::new();
    let r = init_setup(&args, &mut made);
    // The exec driver's task directory is left as it was found: the
    // runtime removes what the mounts needed, at delete or on failure.
    if args.chroot.is_some() && args.sync.send_paths(&made).is_err() {
        std::process::exit(1);
    }
    match r {
        Ok(Ready { exec, fifo, start }) => {
            if args.sync.send(msg::READY, b"").is_err() {
                std::process::exit(1);
            }
            // Nothing more goes to the runtime: a waiting init holds no
            // socket of the process that made it. (This process never
            // returns, so the socket's owner does not close it again.)
            // SAFETY: closing a descriptor this process owns.
            unsafe { libc::close(args.sync.fd()) };
            // Blocks until `start` writes; the runtime is gone by then.
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(&fifo, &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(1) => break,
                    _ => std::process::exit(1),
                }
            }
            drop(fifo);
            if let Some((report, created)) = start {
                // `start` reads what goes wrong here; the descriptor
                // closes at exec, which tells it all went well.
                let hooks = &args.plan.hooks.start_container;
                if let Err(e) = sys::hooks::run_all(hooks, &created) {
                    let _ = nix::unistd::write(&report, e.to_string().as_bytes());
                    std::process::exit(1);
                }
            }
            let err = exec.exec(3 + args.preserve_fds);
            eprintln!("isoexec: {err}");
            std::process::exit(127);
        }
        Err(e) => {
            let _ = args.sync.send_error(&e);
            std::process::exit(1);
        }
    }
}

/// Closes what the child inherited from its parent but does not need:
/// everything but its sync socket, console and the descriptors passed
/// through (`--preserve-fds`, 3..3+N). Standard I/O is in place by then.
fn close_inherited(sync: &sys::SyncSocket, console: Option<RawFd>, preserve: i32) {
    sys::close_all_but(3 + preserve.max(0), &[sync.fd(), console.unwrap_or(-1)]);
}

/// An init set up, about to wait for `start`.
struct Ready {
    exec: Exec,
    /// `exec.fifo`, which `start` writes.
    fifo: OwnedFd,
    /// `hooks.fifo` and the state the startContainer hooks read.
    start: Option<(OwnedFd, Vec<u8>)>,
}

fn init_setup(args: &InitArgs, made: &mut Vec<std::path::PathBuf>) -> Result<Ready> {
    let plan = args.plan;
    nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE".into())?;
    if let Some(fds) = args.stdio {
        sys::set_stdio(fds).ctx(|| "standard input/output".into())?;
    }
    close_inherited(args.sync, args.console, args.preserve_fds);
    crate::debug::phase("init: namespaces");
    // Opened before any namespace is joined: a joined mount namespace may
    // not show the state directory.
    // O_RDWR never blocks on a fifo; the read after READY does.
    let fifo = open(
        args.fifo_path,
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {}", args.fifo_path.display()))?;
    let report = args
        .hooks_fifo
        .map(|p| {
            open(p, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| format!("opening {}", p.display()))
        })
        .transpose()?;

    // In a new user namespace, wait for the runtime to write its mappings
    // (and send the chroot_env's idmapped trees).
    if plan.userns.is_some() {
        crate::debug::phase("init: waiting for the user namespace's mappings");
        let got = args
            .sync
            .recv_fds()
            .ctx(|| "waiting for the user namespace's mappings".into())?;
        let Some((msg::MAPPED, keys, trees)) = got else {
            return Err(Error::Init(
                "the runtime did not map the user namespace".into(),
            ));
        };
        use std::os::unix::ffi::OsStrExt;
        let keys = keys
            .split(|b| *b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(k)));
        sys::userns::keep_trees(keys.zip(trees).collect());
    }
    for (kind, path) in &plan.namespaces.join {
        // The pid namespace is joined by the runtime before the fork; with
        // a new user namespace, all of them.
        if *kind == NsKind::Pid || plan.userns.is_some() {
            continue;
        }
        let fd = sys::open_namespace(path, *kind).map_err(Error::Init)?;
        setns(fd.as_fd(), kind.clone_flag()).map_err(|e| {
            Error::Init(format!(
                "cannot join {} namespace {}: {}",
                kind.proc_name(),
                path.display(),
                std::io::Error::from(e)
            ))
        })?;
    }
    // The new namespaces the clone did not make: after the joins (in a
    // joined user namespace, they belong to it).
    if !args.unshare.is_empty() {
        unshare(args.unshare).ctx(|| format!("unshare {:?}", args.unshare))?;
    }
    if plan.new_session_keyring {
        process::join_new_session_keyring()?;
    }

    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: pointer and length of a live string.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(Error::sys(
                format!("setdomainname {d:?}"),
                std::io::Error::last_os_error(),
            ));
        }
    }

    crate::debug::phase("init: mounts");
    rootfs::bind_root(plan)?;
    // Where the runtime made the cgroup, once it says so.
    let dirs = std::cell::OnceCell::new();
    let cgroup = || in_cgroup(args, &dirs);
    if plan.namespaces.has(NsKind::User) {
        // Joined as the host's uid 0: the namespace's root may not write
        // the host's cgroup files.
        cgroup()?;
        // Still the host's uid 0: open what the namespace's root could
        // not reach, then become it.
        crate::debug::phase("init: becoming the user namespace's root");
        let mut ahead: Vec<&Path> = vec![&plan.root.path];
        ahead.extend(plan.mounts.iter().filter_map(|m| match m.kind {
            crate::plan::MountKind::Bind { .. } => m.source.as_deref(),
            _ => None,
        }));
        if let Some((chroot, _)) = args.chroot {
            ahead.push(&chroot.alloc_host);
            if chroot.disk_mb.is_some() {
                ahead.push(&chroot.disk_dir);
            }
        }
        sys::userns::open_ahead(&ahead)?;
        sys::userns::become_root()?;
    }
    if let Some((chroot, prepared)) = args.chroot {
        crate::debug::phase("init: chroot_env");
        sys::chroot::mount_all(
            chroot,
            prepared,
            &plan.root.path,
            plan.process.uid,
            plan.process.gid,
        )?;
    }
    rootfs::mount_spec(plan, made, &cgroup)?;
    // At the latest here: before any hook or anything of the user's runs.
    cgroup()?;
    let created = if plan.hooks.init_waits() {
        Some(create_hooks(args, made)?)
    } else {
        None
    };
    crate::debug::phase("init: pivot_root");
    rootfs::enter_root(plan)?;
    if plan.process.terminal {
        let console = args.console.ok_or_else(|| {
            Error::Init("process.terminal is true but no --console-socket was given".into())
        })?;
        process::setup_terminal(console, plan.process.console_size)?;
    }
    crate::debug::phase("init: sysctl, masked and read-only paths");
    rootfs::finish(plan)?;
    crate::debug::phase("init: credentials");

    let exec = finish_process(&plan.process)?;
    crate::debug::phase("init: ready, waiting for start");
    Ok(Ready {
        exec,
        fifo,
        start: report.zip(created),
    })
}

/// The init in its cgroup: the first call waits until the runtime has
/// made it (it does so while the init makes its namespaces and mounts),
/// joins it, then makes the cgroup namespace, rooted at the container's
/// cgroup. Every call returns the cgroup's directories.
fn in_cgroup<'d>(args: &InitArgs, dirs: &'d CgroupDirs) -> Result<CgroupView<'d>> {
    if let Some((v2, dirs)) = dirs.get() {
        return Ok(CgroupView { v2: *v2, dirs });
    }
    crate::debug::phase("init: waiting for its cgroup");
    let made = match args
        .sync
        .recv_whole()
        .ctx(|| "waiting for the cgroup".into())?
    {
        Some((msg::CGROUP, body)) => sys::parse_cgroup_dirs(&body),
        _ => None,
    };
    let Some((v2, made)) = made else {
        return Err(Error::Init("the runtime did not make the cgroup".into()));
    };
    sys::join_cgroup(v2, &made).ctx(|| "cgroup".into())?;
    if args.plan.namespaces.creates(NsKind::Cgroup) {
        unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())?;
    }
    crate::debug::phase("init: in its cgroup");
    let (v2, dirs) = dirs.get_or_init(|| (v2, made));
    Ok(CgroupView { v2: *v2, dirs })
}

/// The cgroup's directories, as the runtime named them: (v2, controllers).
type CgroupDirs = std::cell::OnceCell<(bool, Vec<(String, std::path::PathBuf)>)>;

/// The hooks of create: the runtime's (prestart, createRuntime) while this
/// init waits, then the createContainer hooks here, in the container's
/// mount namespace before its root is entered. Returns the state (the
/// runtime's answer) the startContainer hooks will read too.
fn create_hooks(args: &InitArgs, made: &mut Vec<std::path::PathBuf>) -> Result<Vec<u8>> {
    crate::debug::phase("init: hooks of create");
    // What the mounts made so far is the runtime's to remove, even if a
    // hook fails and this init is killed.
    let sent = args
        .sync
        .send_paths(made)
        .and_then(|()| args.sync.send(msg::HOOKS, b""));
    sent.ctx(|| "asking the runtime to run its hooks".into())?;
    made.clear();
    let answer = args
        .sync
        .recv()
        .ctx(|| "waiting for the runtime's hooks".into())?;
    let Some((msg::HOOKS_DONE, body)) = answer else {
        return Err(Error::Init("the runtime did not run its hooks".into()));
    };
    sys::hooks::run_all(&args.plan.hooks.create_container, &body)?;
    Ok(body)
}

/// The steps every process takes last: limits, credentials, working
/// directory and the executable's lookup. The seccomp filter is compiled
/// here and loaded by [`Exec::exec`], right before execve, with or without
/// noNewPrivileges.
fn finish_process(p: &ProcessPlan) -> Result<Exec> {
    let filter = p.seccomp.as_ref().map(sys::seccomp::program).transpose()?;
    process::apply_limits(p)?;
    process::switch_user(p)?;
    process::enter_cwd(p)?;
    process::prepare_exec(p, filter)
}

/// What a process joining a running container needs.
pub struct ExecArgs<'a> {
    pub process: &'a ProcessPlan,
    pub sync: &'a SyncSocket,
    /// The container's namespaces (all but pid, joined by the runtime).
    pub namespaces: Vec<(NsKind, OwnedFd)>,
    /// The container init's root (`/proc/PID/root`).
    pub root: OwnedFd,
    pub cgroups: CgroupView<'a>,
    pub console: Option<RawFd>,
    pub preserve_fds: i32,
    pub stdio: Option<[RawFd; 3]>,
}

/// Body of a process exec'd into a container. Never returns.
pub fn exec_main(args: ExecArgs) -> ! {
    let err = match exec_setup(&args) {
        Ok(exec) => {
            if args.sync.send(msg::READY, b"").is_err() {
                std::process::exit(1);
            }
            exec.exec(3 + args.preserve_fds)
        }
        Err(e) => e,
    };
    let _ = args.sync.send_error(&err);
    std::process::exit(127);
}

fn exec_setup(args: &ExecArgs) -> Result<Exec> {
    // Non-dumpable: a container process cannot open /proc/PID/exe of this
    // (host) binary while it is joining (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE".into())?;
    if let Some(fds) = args.stdio {
        sys::set_stdio(fds).ctx(|| "standard input/output".into())?;
    }
    sys::join_cgroup(args.cgroups.v2, args.cgroups.dirs).ctx(|| "cgroup".into())?;
    for (kind, fd) in &args.namespaces {
        setns(fd.as_fd(), kind.clone_flag())
            .ctx(|| format!("joining the container's {} namespace", kind.proc_name()))?;
    }
    // Never the caller's keys (an operator's shell, containerd, isoexecd).
    process::join_new_session_keyring()?;
    nix::unistd::fchdir(&args.root).ctx(|| "entering the container's root".into())?;
    nix::unistd::chroot(".").ctx(|| "chroot to the container's root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    // The namespaces and the root are entered: nothing else inherited from
    // the runtime (a server's sockets) stays open. The process never
    // returns, so no owner closes them again.
    close_inherited(args.sync, args.console, args.preserve_fds);
    if args.process.terminal {
        let console = args
            .console
            .ok_or_else(|| Error::Init("--tty needs --console-socket".into()))?;
        process::setup_terminal(console, args.process.console_size)?;
    }
    finish_process(args.process)
}
