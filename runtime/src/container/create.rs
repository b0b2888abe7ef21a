//! `create`: bundle → plan → cgroup → forked init, left blocked on
//! `exec.fifo` until `start`. On any failure nothing is left behind.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::{write_atomic, Container, State, Status, EXEC_FIFO, HOOKS_FIFO, STATE_FILE};
use crate::bundle;
use crate::cgroup::CgroupManager;
use crate::config::DriverConfig;
use crate::error::{Context, Error, Result};
use crate::plan::{self, NsKind, Plan, PlanOptions};
use crate::sys::chroot::Prepared;
use crate::sys::{self, init, msg, SyncSocket};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The state root (`--root`).
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// A connected socket to send the pty master on instead (a foreground
    /// `run`'s [`crate::console::ForegroundConsole`]).
    pub console_fd: Option<std::os::fd::RawFd>,
    pub no_pivot: bool,
    /// `--no-new-keyring`: the init keeps the caller's session keyring.
    pub no_new_keyring: bool,
    pub systemd_cgroup: bool,
    pub preserve_fds: i32,
    /// The driver's options (config.toml).
    pub driver: DriverConfig,
    /// The init's standard input, output and error (default: the caller's).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// A container whose init waits for `start`.
pub struct Created {
    pub container: Container,
    /// The init, a child of this process (for `run`, which waits on it).
    pub init: Pid,
    /// What the user should be told (policy adjustments, ...).
    pub warnings: Vec<String>,
}

pub fn create(opts: &CreateOptions) -> Result<Created> {
    plan::validate_id(&opts.id)?;
    let bundle = std::path::absolute(&opts.bundle)
        .ctx(|| format!("bundle path {}", opts.bundle.display()))?;
    crate::debug::phase("create: loading config.json");
    let spec = bundle::load(&bundle)?;
    // userns = "auto": a range of host ids for a task whose spec has no
    // user namespace of its own; given back if the create fails.
    let has_userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User)
        });
    let annotations = plan::annotations_of(&spec);
    let mut slot = None;
    if !has_userns && crate::driver::userns_auto(&annotations, &opts.driver)? {
        let pool = &opts.driver.userns_pool;
        super::private_dir_all(&opts.root)
            .ctx(|| format!("creating state root {}", opts.root.display()))?;
        let sandbox = crate::driver::sandbox_of(&annotations)?;
        let holder = super::userns::holder(&opts.id, sandbox.as_deref());
        slot = Some(SlotClaim {
            root: opts.root.clone(),
            id: opts.id.clone(),
            slot: super::userns::claim(&opts.root, pool, &holder)?,
            holder,
            keep: false,
        });
    }
    let plan = plan::plan(
        &opts.id,
        &bundle,
        &spec,
        &PlanOptions {
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            systemd_cgroup: opts.systemd_cgroup,
            driver: opts.driver.clone(),
            state_root: opts.root.clone(),
            userns_slot: slot.as_ref().map(|s| s.slot),
        },
    )?;
    let mut plan = plan;
    crate::sys::exe::needs_seal(&plan.process.capabilities.bounding, plan.userns.is_some())?;
    if !plan.root.path.is_dir() && plan.chroot.is_none() {
        return Err(Error::invalid(
            "root.path",
            format!("{} is not a directory", plan.root.path.display()),
        ));
    }

    super::private_dir_all(&opts.root)
        .ctx(|| format!("creating state root {}", opts.root.display()))?;
    let dir = opts.root.join(&opts.id);
    match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(opts.id.clone()))
        }
        Err(e) => return Err(Error::sys(format!("creating {}", dir.display()), e)),
    }

    let mut undo = Undo {
        dir: Some(dir.clone()),
        cgroup: None,
        child: None,
        chroot: None,
        poststop: None,
        sandbox: None,
    };
    let sandbox = plan.chroot.as_ref().and_then(|c| c.sandbox.clone());
    let mut state = State {
        id: opts.id.clone(),
        // 0 until the init exists: "creating", and what delete --force
        // needs (the cgroup, what the root assembly made) if this process
        // dies before it finishes.
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: plan.root.path.clone(),
        created: super::rfc3339_now(),
        owner: "root".into(),
        annotations: plan.annotations.clone(),
        cgroup_path: plan.cgroup.path.clone(),
        // As planned: exec'd processes get the driver's environment too.
        process: {
            let mut p = spec.process().clone().unwrap_or_default();
            p.set_env(Some(plan.process.env.clone()));
            p
        },
        seccomp: plan.process.seccomp.clone(),
        chroot: None,
        sandbox: sandbox.clone(),
        hooks: plan.hooks.clone(),
        userns: plan.userns.clone(),
    };
    let save = |state: &State| write_atomic(&dir.join(STATE_FILE), &state.to_json()?);
    if let (Some(sandbox), Some(chroot)) = (&sandbox, &plan.chroot) {
        // The task joins its sandbox under the root's lock: recorded first,
        // then the shared directory made, so a delete of the sandbox's last
        // other task sees it and leaves the directory alone.
        let _lock = super::lock_root(&opts.root)?;
        undo.sandbox = Some((opts.root.clone(), sandbox.clone()));
        save(&state)?;
        std::fs::create_dir_all(&chroot.alloc_host)
            .ctx(|| format!("creating {}", chroot.alloc_host.display()))?;
    }
    let prepared = match &plan.chroot {
        Some(chroot) => {
            crate::debug::phase("create: chroot_env");
            let spec_mounts: Vec<&Path> = plan
                .mounts
                .iter()
                .map(|m| m.destination.as_path())
                .collect();
            // In a new user namespace the task's writable directories are
            // owned by its ids on the host, as the namespace maps them.
            let owner = plan.userns.as_ref().map(|u| {
                (
                    u.host_uid(plan.process.uid).unwrap_or(plan.process.uid),
                    u.host_gid(plan.process.gid).unwrap_or(plan.process.gid),
                )
            });
            let p = sys::chroot::prepare(chroot, &plan.root.path, &opts.root, &spec_mounts, owner)?;
            undo.chroot = Some((plan.root.path.clone(), p.clone()));
            Some(p)
        }
        None => None,
    };
    state.chroot = prepared.clone();
    if prepared.is_some() {
        // What the assembly made, for a delete --force if this process
        // dies before the init exists. (Without it, the state is first
        // written once the init is forked, while it sets itself up.)
        save(&state)?;
    }
    if plan.namespaces.has(NsKind::User) && prepared.is_none() {
        // An image's mount points the task's root could not create.
        sys::rootfs::top_mount_points(&plan)?;
    }
    // Serialized before the fork, written after it. Written into after
    // the fork, a buffer of this size (a large environment) takes heap
    // pages the init shares: the runtime gets copies, and the init is left
    // sole owner of pages still charged to the runtime's cgroup, so its
    // set-up would escape its own memory limit.
    let creating = match prepared {
        Some(_) => None,
        None => Some(state.to_json()?),
    };
    let state_file = dir.join(STATE_FILE);
    let spawned = spawn(opts, &plan, prepared.as_ref(), &dir, &mut undo, &|| {
        creating
            .as_ref()
            .map_or(Ok(()), |json| write_atomic(&state_file, json))
    })?;
    drop(creating);
    let (init, made) = (spawned.init, spawned.made);
    plan.warnings.extend(spawned.warning);
    if let Some(p) = state.chroot.as_mut() {
        p.add_mount_points(&made);
    }
    // Created from here (`start` refuses a creating container).
    state.pid = init.as_raw();
    state.start_time = sys::process_start_time(init.as_raw()).unwrap_or(0);
    save(&state)?;
    if let Some(p) = &opts.pid_file {
        write_atomic(p, init.as_raw().to_string().as_bytes())
            .map_err(|e| Error::InvalidArgument(format!("--pid-file {}: {e}", p.display())))?;
    }
    undo.disarm();
    if let Some(s) = slot.as_mut() {
        s.keep = true;
    }
    Ok(Created {
        container: Container::new(dir, state),
        init,
        warnings: plan.warnings,
    })
}

/// How long a container's init may take to set itself up.
const INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An init forked and set up, waiting for `start`.
struct Spawned {
    init: Pid,
    /// What it made in the task directory for mounts to stand on.
    made: Vec<PathBuf>,
    /// The resource controls left out, when the host lacks controllers.
    warning: Option<String>,
}

/// The cgroup as planned, with the limits it gets: none, and a warning,
/// when the host lacks controllers that resource controls need (as the
/// exec driver, the task then runs without them, and says so).
fn planned_cgroup(
    plan: &Plan,
) -> Result<(
    CgroupManager,
    Option<&oci_spec::runtime::LinuxResources>,
    Option<String>,
)> {
    let path = &plan.cgroup.path;
    let resources = plan.cgroup.resources.as_ref();
    let cgroup = CgroupManager::planned(path, resources)?;
    match resources.and(cgroup.resource_warning()) {
        Some(w) => Ok((CgroupManager::planned(path, None)?, None, Some(w))),
        None => Ok((cgroup, resources, None)),
    }
}

/// Forks the init and, while it makes its namespaces and mounts, saves the
/// state of a creating container (`save_creating`) and makes its cgroup:
/// the runtime's share of the set-up runs beside the init's, not before it.
fn spawn(
    opts: &CreateOptions,
    plan: &Plan,
    prepared: Option<&Prepared>,
    dir: &Path,
    undo: &mut Undo,
    save_creating: &dyn Fn() -> Result<()>,
) -> Result<Spawned> {
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
        .ctx(|| format!("mkfifo {}", fifo.display()))?;
    // Only when the init has startContainer hooks to report on.
    let hooks_fifo = (!plan.hooks.start_container.is_empty()).then(|| dir.join(HOOKS_FIFO));
    if let Some(f) = &hooks_fifo {
        nix::unistd::mkfifo(f, Mode::from_bits_truncate(0o600))
            .ctx(|| format!("mkfifo {}", f.display()))?;
    }

    let console =
        match (&opts.console_socket, plan.process.terminal) {
            (Some(path), true) => Some(
                UnixStream::connect(path)
                    .ctx(|| format!("connecting to --console-socket {}", path.display()))?,
            ),
            (None, true) if opts.console_fd.is_some() => opts
                .console_fd
                .map(crate::console::connection)
                .transpose()?,
            (None, true) => return Err(Error::InvalidArgument(
                "process.terminal is true: give --console-socket (the pty master is sent there)"
                    .into(),
            )),
            _ => None,
        };

    // Every namespace to join is checked here, where an error is plain: a
    // fifo or a file of the wrong kind is refused before the init exists.
    for (kind, path) in &plan.namespaces.join {
        let field = || format!("linux.namespaces[{}].path", kind.oci_name());
        let fd = sys::open_namespace(path, *kind).map_err(|e| Error::invalid(field(), e))?;
        // Joining the runtime's own mount namespace would build the root in
        // the host's mount table.
        if *kind == NsKind::Mount && sys::same_file(fd.as_fd(), Path::new("/proc/self/ns/mnt")) {
            return Err(Error::invalid(
                field(),
                format!("{} is the runtime's own mount namespace: the container's root would be built in the host's mounts; give it a new one", path.display()),
            ));
        }
    }
    // Joined by the runtime around its fork: a pid namespace (joining one
    // applies to children); with a new user namespace, every namespace
    // joined by path, as they belong to the host's user namespace, where
    // the init has no capability to join them.
    let userns_new = plan.userns.is_some();
    let mut around: Vec<(NsKind, std::os::fd::OwnedFd)> = Vec::new();
    for (kind, path) in &plan.namespaces.join {
        if *kind == NsKind::Pid || (userns_new && *kind != NsKind::Mount) {
            let fd = sys::open_namespace(path, *kind).map_err(|e| {
                Error::invalid(format!("linux.namespaces[{}].path", kind.oci_name()), e)
            })?;
            around.push((*kind, fd));
        }
    }
    let joins: Vec<(NsKind, std::os::fd::BorrowedFd)> =
        around.iter().map(|(k, fd)| (*k, fd.as_fd())).collect();

    // Unless a new user namespace comes with the clone, the init makes its
    // new namespaces itself (unshare), but for the pid namespace (only a
    // fork enters it) and the time namespace (it applies to children):
    // - in a user namespace joined by path, once it is in it, so that
    //   they belong to it;
    // - without one, so that the clone returns at once and this process
    //   makes the cgroup while the init makes its network namespace, the
    //   slowest to make (~0.4 ms).
    // (The cgroup namespace is the init's, once it is in its cgroup; a
    // joined user namespace comes without a new pid namespace, the plan
    // refuses the two together.)
    let new = plan
        .namespaces
        .new
        .iter()
        .filter(|k| **k != NsKind::Cgroup)
        .fold(nix::sched::CloneFlags::empty(), |f, k| f | k.clone_flag());
    let in_init = if plan.userns.is_none() {
        new - (NsKind::Pid.clone_flag() | NsKind::Time.clone_flag())
    } else {
        nix::sched::CloneFlags::empty()
    };
    let flags = new - in_init;
    crate::debug::phase("create: clone");
    let (parent_end, child_end) = SyncSocket::pair().ctx(|| "socketpair".into())?;
    // Where the init records its steps: if it dies, the error says where.
    let steps = crate::debug::StepPage::new();
    // SAFETY: the caller is single-threaded (the command line, the shim's
    // current-thread runtime); the child only runs `init_main`.
    let child = unsafe { sys::clone_fork_in(&joins, flags) }
        .ctx(|| "clone of the container init".into())?;
    let Some(child) = child else {
        drop(parent_end);
        if let Some(s) = &steps {
            s.record_here();
        }
        init::init_main(init::InitArgs {
            plan,
            sync: &child_end,
            fifo_path: &fifo,
            hooks_fifo: hooks_fifo.as_deref(),
            console: console.as_ref().map(|c| c.as_raw_fd()),
            preserve_fds: opts.preserve_fds,
            chroot: plan.chroot.as_ref().zip(prepared),
            stdio: opts.stdio,
            unshare: in_init,
        });
    };
    undo.child = Some(child);
    drop(child_end);
    drop(console);
    drop(joins);
    drop(around);
    if let Some(u) = &plan.userns {
        crate::debug::phase("create: user namespace mappings");
        sys::userns::write_maps(child, u)?;
        let trees = sys::userns::idmapped_trees(child, &idmap_sources(plan, prepared))?;
        let keys: Vec<&[u8]> = trees
            .iter()
            .map(|(k, _)| std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()))
            .collect();
        let fds: Vec<std::os::fd::RawFd> = trees.iter().map(|(_, t)| t.as_raw_fd()).collect();
        if parent_end
            .send_fds(msg::MAPPED, &keys.join(&0u8), &fds)
            .is_err()
        {
            return Err(init_died(undo, steps.as_ref()));
        }
    }
    // The state of a creating container, for a delete --force from here
    // on: it names the cgroup about to be made.
    save_creating()?;
    // The cgroup, made while the init makes its namespaces and mounts its
    // root: the init waits for CGROUP, which names the directories, then
    // joins it itself before its cgroup mount, its cgroup namespace and
    // anything of the user's (hooks, the process). (A process moving
    // itself skips the kernel's global threadgroup lock; moving it from
    // here waits for an RCU grace period, up to 20 ms.)
    // A failure here kills it (the undo).
    crate::debug::phase("create: cgroup");
    let (cgroup, resources, warning) = planned_cgroup(plan)?;
    cgroup.make(resources, &plan.cgroup.devices)?;
    let dirs = sys::cgroup_dirs_message(cgroup.is_v2(), &cgroup.dirs());
    undo.cgroup = Some(cgroup);
    crate::debug::phase("create: cgroup made");
    // An init that failed meanwhile has queued its error: the loop below
    // reads it.
    let _ = parent_end.send(msg::CGROUP, &dirs);

    // Bounded: an init stuck in its set-up is killed (by the undo) and
    // the create fails, rather than hanging its caller.
    let mut deadline = std::time::Instant::now() + INIT_TIMEOUT;
    let mut made: Vec<PathBuf> = Vec::new();
    let hook_state = |status: Status| {
        super::hook_state(
            &plan.id,
            child.as_raw(),
            &plan.bundle,
            &plan.annotations,
            status,
        )
    };
    let r = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let m = match parent_end.recv_within(left) {
            Ok(m) => m,
            Err(nix::errno::Errno::ETIMEDOUT) => {
                break Err(Error::Init(format!(
                    "the container init did not finish its set-up within {} s",
                    INIT_TIMEOUT.as_secs()
                )))
            }
            // The init is gone, its end reset.
            // The init is gone, its end reset (and it said nothing).
            Err(nix::errno::Errno::ECONNRESET) => break Err(init_died(undo, steps.as_ref())),
            Err(e) => {
                break Err(Error::sys(
                    "waiting for the container init",
                    std::io::Error::from(e),
                ))
            }
        };
        match m {
            Some((msg::MADE, body)) => {
                use std::os::unix::ffi::OsStrExt;
                made.extend(
                    body.split(|b| *b == 0)
                        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p))),
                );
            }
            Some((msg::HOOKS, _)) => {
                // The container exists from here: a failure now is
                // followed by its poststop hooks, as after a delete.
                undo.poststop = Some((plan.hooks.poststop.clone(), hook_state(Status::Stopped)));
                // "created", as crun gives it and the OCI validation suite
                // expects, for every hook of create and for startContainer.
                let state = hook_state(Status::Created);
                if let Err(e) = sys::hooks::run_all(plan.hooks.runtime_create(), &state) {
                    break Err(e);
                }
                if parent_end.send(msg::HOOKS_DONE, &state).is_err() {
                    break Err(init_died(undo, steps.as_ref()));
                }
                // The hooks' time is not the init's.
                deadline = std::time::Instant::now() + INIT_TIMEOUT;
            }
            Some((msg::READY, _)) => {
                crate::debug::phase("create: init ready");
                break Ok(());
            }
            Some((tag @ (msg::ERROR | msg::INVALID), m)) => break Err(sys::child_error(tag, &m)),
            _ => break Err(init_died(undo, steps.as_ref())),
        }
    };
    // What the init made in the task directory goes with the rest, whether
    // the create succeeds or is undone.
    if let Some((_, p)) = undo.chroot.as_mut() {
        p.add_mount_points(&made);
    }
    r.map(|()| Spawned {
        init: child,
        made,
        warning,
    })
}

/// What the chroot_env shows through idmapped mounts in a new user
/// namespace, keyed as `sys::chroot::mount_all` looks them up: bind mode's
/// host directories, link mode's copies in the task directory.
fn idmap_sources(plan: &Plan, prepared: Option<&Prepared>) -> Vec<(PathBuf, PathBuf)> {
    let (Some(chroot), Some(prepared)) = (&plan.chroot, prepared) else {
        return Vec::new();
    };
    prepared
        .entries
        .iter()
        .filter(|e| !e.twin)
        .filter_map(|e| match chroot.mode {
            crate::config::ChrootMode::Bind => Some((e.host.clone(), e.host.clone())),
            crate::config::ChrootMode::Link => {
                let link =
                    std::fs::symlink_metadata(&e.target).is_ok_and(|m| m.file_type().is_symlink());
                (!link).then(|| (e.target.clone(), e.target.clone()))
            }
            crate::config::ChrootMode::Overlay => None,
        })
        .collect()
}

/// The error for an init that died before it said why: how it ended (it
/// is reaped here, so the undo never signals a pid that could be reused),
/// the step it was at, and whether the kernel killed it for its memory.
fn init_died(undo: &mut Undo, steps: Option<&crate::debug::StepPage>) -> Error {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut how = "died".to_string();
    if let Some(pid) = undo.child {
        for _ in 0..100 {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    how = format!("was killed by {sig}");
                    undo.child = None;
                    break;
                }
                Ok(WaitStatus::Exited(_, code)) => {
                    how = format!("exited with status {code}");
                    undo.child = None;
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    undo.child = None;
                    break;
                }
            }
        }
    }
    let at = steps
        .and_then(|s| s.last())
        .map(|s| format!(" (at \"{s}\")"))
        .unwrap_or_default();
    let oom = undo.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
    let hint = if oom {
        ": the kernel killed it for the cgroup's memory limit; linux.resources.memory.limit is too low even to set the container up"
    } else {
        ""
    };
    Error::Init(format!(
        "the container init {how} during its set-up{at}{hint}"
    ))
}

/// A slot of the user namespace pool, given back unless the create
/// succeeds. (Released after the state directory is gone: the claim of
/// a task whose directory exists is never taken over.)
struct SlotClaim {
    root: PathBuf,
    id: String,
    holder: String,
    slot: u32,
    keep: bool,
}

impl Drop for SlotClaim {
    fn drop(&mut self) {
        if !self.keep {
            super::userns::release(&self.root, self.slot, &self.holder, Some(&self.id));
        }
    }
}

/// Rolls back a half-made container when `create` fails.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<CgroupManager>,
    child: Option<Pid>,
    /// (root, what the chroot assembly created in it)
    chroot: Option<(PathBuf, Prepared)>,
    /// The poststop hooks and their state, once the container existed.
    poststop: Option<(Vec<crate::hooks::HookPlan>, Vec<u8>)>,
    /// (state root, sandbox) when the task joined a sandbox.
    sandbox: Option<(PathBuf, String)>,
}

impl Undo {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.child = None;
        self.chroot = None;
        self.poststop = None;
        self.sandbox = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        if let Some((root, prepared)) = self.chroot.take() {
            sys::chroot::undo(&root, &prepared);
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((root, sandbox)) = self.sandbox.take() {
            super::release_sandbox(&root, &sandbox);
        }
        // The create's own error is what the caller hears; a poststop
        // failure after it is only traced.
        if let Some((hooks, state)) = self.poststop.take() {
            for w in sys::hooks::run_all_warn(&hooks, &state) {
                crate::debug::phase(&format!("after the failed create: {w}"));
            }
        }
    }
}
