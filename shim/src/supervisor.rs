//! The supervisor both servers share (the containerd shim over ttrpc and
//! `isoexecd` over gRPC): the process table (each task's init and execs),
//! their IO, exits reaped in one place, OOM watches, and lifecycle events
//! in order. Front ends translate requests into these calls and these
//! events and errors into their protocol; nothing here knows either one.
//!
//! Tasks are forked from this process: it must run on a single-threaded
//! runtime (see DESIGN.md, "Process model").

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runtime::cgroup::CgroupManager;
use runtime::config::DriverConfig;
use runtime::container::{self, Container, CreateOptions, ExecOptions, Status as CStatus};
use tokio::sync::watch;

use crate::io::{Console, ProcessIo};

/// What went wrong, as every front end's protocol has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unimplemented,
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// (field, reason) when the spec's field was wrong: a front end that
    /// wrote the spec from its own request names its request's field.
    pub spec_field: Option<(String, String)>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub fn error(kind: Kind, message: impl Into<String>) -> Error {
    Error {
        kind,
        message: message.into(),
        spec_field: None,
    }
}

impl From<runtime::Error> for Error {
    fn from(e: runtime::Error) -> Self {
        use runtime::Error as E;
        let kind = match &e {
            E::NotFound(_) => Kind::NotFound,
            E::AlreadyExists(_) => Kind::AlreadyExists,
            E::WrongState { .. } | E::Hook(_) => Kind::FailedPrecondition,
            E::InvalidSpec { .. } | E::InvalidArgument(_) | E::Bundle { .. } => {
                Kind::InvalidArgument
            }
            E::Policy(_) => Kind::PermissionDenied,
            _ => Kind::Internal,
        };
        let mut out = error(kind, e.to_string());
        if let E::InvalidSpec { field, reason } = e {
            out.spec_field = Some((field, reason));
        }
        out
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn no_task(id: &str) -> Error {
    error(Kind::NotFound, format!("task {id} not found"))
}

fn no_exec(id: &str, exec_id: &str) -> Error {
    error(
        Kind::NotFound,
        format!("exec {exec_id} not found in task {id}"),
    )
}

/// The status of an exit this process could not learn: a task adopted
/// after a restart that exited while no one listened, or on a kernel
/// without process events.
pub const UNKNOWN_EXIT: u32 = 255;

/// An exit: the status (128 + signal when killed) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    /// Seconds and nanoseconds since the epoch.
    pub at: (i64, i32),
}

impl Exit {
    pub fn now(status: u32) -> Exit {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Exit {
            status,
            at: (d.as_secs() as i64, d.subsec_nanos() as i32),
        }
    }
}

/// Where a process's standard IO goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Io {
    /// containerd's forms: a fifo path, `file:///path`, `binary:///path?args`,
    /// or empty for /dev/null; a terminal is relayed to the stdin/stdout ones.
    Uris {
        stdin: String,
        stdout: String,
        stderr: String,
    },
    /// Pipes (or the terminal's master) handed back to the caller by start.
    #[default]
    Attach,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub io: Io,
    pub terminal: bool,
}

impl Stdio {
    pub fn uris(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Stdio {
        Stdio {
            io: Io::Uris {
                stdin: stdin.into(),
                stdout: stdout.into(),
                stderr: stderr.into(),
            },
            terminal,
        }
    }

    /// The three URIs (empty when attached).
    pub fn paths(&self) -> (&str, &str, &str) {
        match &self.io {
            Io::Uris {
                stdin,
                stdout,
                stderr,
            } => (stdin, stdout, stderr),
            Io::Attach => ("", "", ""),
        }
    }
}

/// The caller's ends of an attached process's IO.
pub enum Attached {
    Pipes {
        stdin: File,
        stdout: File,
        stderr: File,
    },
    Terminal(File),
}

/// The lifecycle events, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created {
        id: String,
        bundle: PathBuf,
        pid: i32,
        stdio: Stdio,
    },
    Started {
        id: String,
        pid: i32,
    },
    ExecAdded {
        id: String,
        exec_id: String,
    },
    ExecStarted {
        id: String,
        exec_id: String,
        pid: i32,
    },
    /// `exec_id` is the task id for the init (containerd's convention).
    Exited {
        id: String,
        exec_id: String,
        pid: i32,
        exit: Exit,
    },
    Oom {
        id: String,
    },
    Paused {
        id: String,
    },
    Resumed {
        id: String,
    },
    Deleted {
        id: String,
        pid: i32,
        exit: Exit,
    },
    /// Something the operator should hear that fails nothing (a poststart
    /// or poststop hook that failed).
    Warning {
        id: String,
        message: String,
    },
}

pub type Sink = Box<dyn Fn(Event) + Send + Sync>;

/// A process's state as front ends report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct ProcState {
    pub pid: i32,
    pub state: State,
    pub exit: Option<Exit>,
    pub stdio: Stdio,
    pub bundle: PathBuf,
}

/// A running (or finished) process: an init or an exec.
struct Proc {
    pid: i32,
    exit: watch::Sender<Option<Exit>>,
    io: Option<ProcessIo>,
    console: Option<Console>,
    /// The terminal's master when the caller holds it: resize goes here.
    master: Option<OwnedFd>,
    /// Waited for, its exit not yet recorded (a terminal's output is still
    /// draining): its pid may be another process's already.
    reaped: bool,
}

impl Proc {
    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Finished: no signal may go to its pid any more.
    fn gone(&self) -> bool {
        self.reaped || self.exited().is_some()
    }
}

/// An exec: its request, and its process once started.
struct ExecEntry {
    spec: oci_spec::runtime::Process,
    stdio: Stdio,
    /// Made by add_exec: Wait may come before Start. Moves into the process
    /// when it starts.
    exit: Option<watch::Sender<Option<Exit>>>,
    /// containerd's fifos, opened when the exec is added (see add_exec).
    io: Option<ProcessIo>,
    proc: Option<Proc>,
}

struct TaskEntry {
    container: Container,
    bundle: PathBuf,
    stdio: Stdio,
    init: Proc,
    execs: HashMap<String, ExecEntry>,
    /// The front end mounted BUNDLE/rootfs (containerd's snapshot): delete
    /// unmounts it.
    rootfs_mounted: bool,
    driver: DriverConfig,
    oom_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TaskEntry {
    fn drop(&mut self) {
        if let Some(w) = &self.oom_watch {
            w.abort();
        }
    }
}

/// What create needs besides the bundle's config.json.
pub struct NewTask {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: Stdio,
    pub driver: DriverConfig,
    pub rootfs_mounted: bool,
}

pub struct Created {
    pub pid: i32,
    pub warnings: Vec<String>,
    pub attached: Option<Attached>,
}

pub struct Supervisor {
    root: PathBuf,
    /// Names a process to a binary log driver (CONTAINER_NAMESPACE).
    namespace: String,
    tasks: Mutex<HashMap<String, TaskEntry>>,
    sink: Sink,
    /// Itself, for the OOM watches it spawns.
    me: std::sync::Weak<Supervisor>,
}

/// Unmounts BUNDLE/rootfs (every layer stacked there).
pub fn unmount_rootfs(bundle: &std::path::Path) {
    let target = bundle.join("rootfs");
    for _ in 0..16 {
        if nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// The IO a process gets: containerd's URIs, or pipes/a terminal whose other
/// ends go back to the caller. Returns the process's side, a console socket
/// to receive a terminal on, and the caller's pipe ends.
type OpenedIo = (
    Option<ProcessIo>,
    Option<runtime::console::ConsoleSocket>,
    Option<Attached>,
);

fn open_io(stdio: &Stdio, tag: &str, namespace: &str) -> Result<OpenedIo> {
    if stdio.terminal {
        let sock = runtime::console::ConsoleSocket::temporary(tag)?;
        return Ok((None, Some(sock), None));
    }
    let (io, attached) = match &stdio.io {
        Io::Uris {
            stdin,
            stdout,
            stderr,
        } => (
            ProcessIo::open(stdin, stdout, stderr, tag, namespace)
                .map_err(|e| error(Kind::InvalidArgument, format!("{tag}: io: {e}")))?,
            None,
        ),
        Io::Attach => {
            let (io, stdin, stdout, stderr) = ProcessIo::pipes()
                .map_err(|e| error(Kind::Internal, format!("{tag}: pipes: {e}")))?;
            (
                io,
                Some(Attached::Pipes {
                    stdin,
                    stdout,
                    stderr,
                }),
            )
        }
    };
    Ok((Some(io), None, attached))
}

/// After the engine started a process with a terminal: its master, relayed
/// to containerd's fifos or handed to the caller.
fn take_terminal(
    sock: runtime::console::ConsoleSocket,
    stdio: &Stdio,
) -> Result<(Option<Console>, Option<OwnedFd>, Option<Attached>)> {
    let master = sock.receive()?;
    match &stdio.io {
        Io::Uris { stdin, stdout, .. } => {
            let console = Console::relay(master, stdin, stdout)
                .map_err(|e| error(Kind::Internal, format!("terminal relay: {e}")))?;
            Ok((Some(console), None, None))
        }
        Io::Attach => {
            let keep = master
                .try_clone()
                .map_err(|e| error(Kind::Internal, format!("terminal: {e}")))?;
            Ok((
                None,
                Some(keep),
                Some(Attached::Terminal(File::from(master))),
            ))
        }
    }
}

impl Supervisor {
    pub fn new(root: PathBuf, namespace: &str, sink: Sink) -> Arc<Self> {
        Arc::new_cyclic(|me| Supervisor {
            root,
            namespace: namespace.to_string(),
            tasks: Mutex::new(HashMap::new()),
            sink,
            me: me.clone(),
        })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskEntry>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.tasks().is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.tasks().contains_key(id)
    }

    /// The init's pid of task `id`.
    pub fn task_pid(&self, id: &str) -> Option<i32> {
        self.tasks().get(id).map(|t| t.init.pid)
    }

    /// Creates task `id` from its bundle; the init waits for start.
    pub fn create(&self, req: NewTask) -> Result<Created> {
        if self.contains(&req.id) {
            return Err(error(
                Kind::AlreadyExists,
                format!("task {} already exists", req.id),
            ));
        }
        let (io, console, attached) = open_io(&req.stdio, &req.id, &self.namespace)?;
        let opts = CreateOptions {
            root: self.root.clone(),
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            driver: req.driver.clone(),
            stdio: io.as_ref().map(|io| io.child_fds()),
            ..Default::default()
        };
        let created = container::create(&opts)?;
        let (relay, master, attached) = match console {
            Some(sock) => match take_terminal(sock, &req.stdio) {
                Ok(t) => t,
                Err(e) => {
                    let _ = container::delete(&created.container, true);
                    return Err(e);
                }
            },
            None => (None, None, attached),
        };
        let pid = created.init.as_raw();
        let oom_watch = self.watch_oom(&created.container);
        self.tasks().insert(
            req.id.clone(),
            TaskEntry {
                container: created.container,
                bundle: req.bundle.clone(),
                stdio: req.stdio.clone(),
                init: Proc {
                    pid,
                    exit: watch::channel(None).0,
                    io,
                    console: relay,
                    master,
                    reaped: false,
                },
                execs: HashMap::new(),
                rootfs_mounted: req.rootfs_mounted,
                driver: req.driver,
                oom_watch,
            },
        );
        (self.sink)(Event::Created {
            id: req.id,
            bundle: req.bundle,
            pid,
            stdio: req.stdio,
        });
        Ok(Created {
            pid,
            warnings: created.warnings,
            attached,
        })
    }

    /// Takes back task `id`, created by an earlier run of this server (whose
    /// state is on disk) and perhaps still running. It is not this process's
    /// child: its exit is seen through a pidfd, and its status is not known
    /// (reported as 255).
    pub fn adopt(
        &self,
        id: &str,
        bundle: &std::path::Path,
        stdio: Stdio,
        driver: DriverConfig,
    ) -> Result<()> {
        let c = Container::load(&self.root, id)?;
        let pid = c.state.pid;
        let alive = c.status() != CStatus::Stopped;
        let exit = watch::channel(if alive {
            None
        } else {
            Some(Exit::now(UNKNOWN_EXIT))
        })
        .0;
        let oom_watch = if alive { self.watch_oom(&c) } else { None };
        let watcher = if alive { self.watch_pidfd(pid) } else { None };
        self.tasks().insert(
            id.to_string(),
            TaskEntry {
                container: c,
                bundle: bundle.to_path_buf(),
                stdio,
                init: Proc {
                    pid,
                    exit,
                    io: None,
                    console: None,
                    master: None,
                    reaped: false,
                },
                execs: HashMap::new(),
                rootfs_mounted: false,
                driver,
                oom_watch: match (oom_watch, watcher) {
                    (Some(o), Some(w)) => Some(tokio::spawn(async move {
                        let _ = tokio::join!(o, w);
                    })),
                    (o, w) => o.or(w),
                },
            },
        );
        Ok(())
    }

    /// Reports the exit of `pid`, not this process's child: when its pidfd
    /// says it has exited, with the status the kernel's process events gave
    /// (UNKNOWN_EXIT where they are not available).
    fn watch_pidfd(&self, pid: i32) -> Option<tokio::task::JoinHandle<()>> {
        // Subscribed before anything else, so the exit cannot come between.
        let events = crate::proc_events::subscribe().ok();
        let fd = runtime::sys::pidfd(pid)?;
        // SAFETY: the AsyncFd owns the pidfd, deregistered before it closes.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok()?;
        // SAFETY: as above, for the netlink socket.
        let events = events.and_then(|e| unsafe { tokio::io::unix::AsyncFd::register(e) }.ok());
        let me = self.me.clone();
        Some(tokio::spawn(async move {
            let mut raw = None;
            loop {
                tokio::select! {
                    _ = fd.readable() => break,
                    r = async { events.as_ref()?.readable().await.ok() }, if events.is_some() => {
                        if let Some(mut g) = r {
                            g.clear_ready();
                        }
                        if let Some(e) = &events {
                            raw = raw.or(crate::proc_events::drain(e.get_ref(), pid));
                        }
                    }
                }
            }
            // The event is sent before the pidfd wakes: it is queued by now.
            if let Some(e) = &events {
                raw = raw.or(crate::proc_events::drain(e.get_ref(), pid));
            }
            let status = raw.map_or(UNKNOWN_EXIT, crate::proc_events::status);
            if let Some(s) = me.upgrade() {
                s.exited(pid, status);
            }
        }))
    }

    /// Starts the init (no `exec_id`) or an exec added before.
    pub fn start(&self, id: &str, exec_id: Option<&str>) -> Result<(i32, Option<Attached>)> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(id).ok_or_else(|| no_task(id))?;
        let Some(exec_id) = exec_id else {
            let warnings = container::start(&t.container)?;
            let pid = t.init.pid;
            drop(tasks);
            (self.sink)(Event::Started {
                id: id.to_string(),
                pid,
            });
            self.warn(id, warnings);
            return Ok((pid, None));
        };
        let driver = t.driver.clone();
        let e = t
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| no_exec(id, exec_id))?;
        if e.proc.is_some() {
            return Err(error(
                Kind::FailedPrecondition,
                format!("exec {exec_id} already started"),
            ));
        }
        let (io, console, attached) = match e.io.take() {
            Some(io) => (Some(io), None, None),
            None => open_io(&e.stdio, exec_id, &self.namespace)?,
        };
        let mut spec = e.spec.clone();
        spec.set_terminal(Some(e.stdio.terminal));
        let opts = ExecOptions {
            process: Some(spec),
            tty: e.stdio.terminal,
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            stdio: io.as_ref().map(|io| io.child_fds()),
            driver,
            ..Default::default()
        };
        let pid = container::exec(&t.container, &opts)?.pid.as_raw();
        // The exec runs: a failed relay leaves it without a terminal but
        // reaped as usual.
        let (relay, master, attached) = match console {
            Some(sock) => take_terminal(sock, &e.stdio)?,
            None => (None, None, attached),
        };
        e.proc = Some(Proc {
            pid,
            exit: e.exit.take().unwrap_or_else(|| watch::channel(None).0),
            io,
            console: relay,
            master,
            reaped: false,
        });
        drop(tasks);
        (self.sink)(Event::ExecStarted {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
        });
        Ok((pid, attached))
    }

    /// Adds an exec to task `id`, started by `start(id, Some(exec_id))`.
    pub fn add_exec(
        &self,
        id: &str,
        exec_id: &str,
        spec: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<()> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(id).ok_or_else(|| no_task(id))?;
        if t.execs.contains_key(exec_id) {
            return Err(error(
                Kind::AlreadyExists,
                format!("exec {exec_id} already exists"),
            ));
        }
        if t.init.exited().is_some() {
            return Err(error(
                Kind::FailedPrecondition,
                format!("task {id} has exited: nothing to exec into"),
            ));
        }
        // containerd's fifos are opened now, not at start: the client (ctr)
        // blocks opening its ends until this side does, and opened at start
        // most `ctr task exec` calls took ~13 ms longer (35-38 ms against
        // 17-30 ms, 30 runs each), the client's Start arriving late.
        let io = match (&stdio.io, stdio.terminal) {
            (Io::Uris { .. }, false) => open_io(&stdio, exec_id, &self.namespace)?.0,
            _ => None,
        };
        t.execs.insert(
            exec_id.to_string(),
            ExecEntry {
                spec,
                stdio,
                exit: Some(watch::channel(None).0),
                io,
                proc: None,
            },
        );
        drop(tasks);
        (self.sink)(Event::ExecAdded {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    /// Waits for the init's or an exec's exit (it may not have started yet).
    pub async fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<Exit> {
        let mut rx = {
            let tasks = self.tasks();
            let t = tasks.get(id).ok_or_else(|| no_task(id))?;
            match exec_id {
                None => t.init.exit.subscribe(),
                Some(x) => {
                    let e = t.execs.get(x).ok_or_else(|| no_exec(id, x))?;
                    match (&e.proc, &e.exit) {
                        (Some(p), _) => p.exit.subscribe(),
                        (None, Some(tx)) => tx.subscribe(),
                        (None, None) => return Err(no_exec(id, x)),
                    }
                }
            }
        };
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return Ok(e);
            }
            if rx.changed().await.is_err() {
                return Err(error(
                    Kind::NotFound,
                    format!("task {id}: the process is gone"),
                ));
            }
        }
    }

    pub fn state(&self, id: &str, exec_id: Option<&str>) -> Result<ProcState> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        let (p, state, stdio) = match exec_id {
            None => {
                let st = match (t.init.exited(), t.container.status()) {
                    (Some(_), _) => State::Stopped,
                    (None, CStatus::Created) => State::Created,
                    (None, CStatus::Paused) => State::Paused,
                    (None, CStatus::Stopped) => State::Stopped,
                    (None, _) => State::Running,
                };
                (Some(&t.init), st, t.stdio.clone())
            }
            Some(x) => {
                let e = t.execs.get(x).ok_or_else(|| no_exec(id, x))?;
                let st = match &e.proc {
                    None => State::Created,
                    Some(p) if p.exited().is_some() => State::Stopped,
                    Some(_) => State::Running,
                };
                (e.proc.as_ref(), st, e.stdio.clone())
            }
        };
        Ok(ProcState {
            pid: p.map_or(0, |p| p.pid),
            state,
            exit: p.and_then(Proc::exited),
            stdio,
            bundle: t.bundle.clone(),
        })
    }

    /// Deletes an exec (once it has exited) or the task (once its init has
    /// exited, or before it started): its cgroup, mounts and state go. The
    /// pid and exit are returned; 137 for an init that never ran.
    pub fn delete(&self, id: &str, exec_id: Option<&str>) -> Result<(i32, Exit)> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(id).ok_or_else(|| no_task(id))?;
        if let Some(x) = exec_id {
            let e = t.execs.get(x).ok_or_else(|| no_exec(id, x))?;
            let r = match &e.proc {
                Some(p) => {
                    let exit = p.exited().ok_or_else(|| {
                        error(Kind::FailedPrecondition, format!("exec {x} is running"))
                    })?;
                    (p.pid, exit)
                }
                None => (0, Exit::now(0)),
            };
            t.execs.remove(x);
            return Ok(r);
        }
        if t.init.exited().is_none() && t.container.status() != CStatus::Created {
            return Err(error(
                Kind::FailedPrecondition,
                format!("task {id} is running: kill it first"),
            ));
        }
        let warnings = container::delete(&t.container, true)?;
        self.warn(id, warnings);
        if t.rootfs_mounted {
            unmount_rootfs(&t.bundle);
        }
        let Some(t) = tasks.remove(id) else {
            return Err(no_task(id));
        };
        drop(tasks);
        let exit = t.init.exited().unwrap_or_else(|| Exit::now(137));
        (self.sink)(Event::Deleted {
            id: id.to_string(),
            pid: t.init.pid,
            exit,
        });
        Ok((t.init.pid, exit))
    }

    /// Signals the init (`all`: every process of the task) or an exec.
    pub fn kill(&self, id: &str, exec_id: Option<&str>, sig: Signal, all: bool) -> Result<()> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        let finished = || error(Kind::NotFound, "process already finished");
        match exec_id {
            None => {
                if t.init.gone() {
                    return Err(finished());
                }
                container::kill(&t.container, sig, all).map_err(|e| match e {
                    runtime::Error::WrongState { .. } => finished(),
                    e => e.into(),
                })
            }
            Some(x) => {
                let p = t
                    .execs
                    .get(x)
                    .and_then(|e| e.proc.as_ref())
                    .ok_or_else(|| {
                        error(Kind::NotFound, format!("exec {x} not found or not started"))
                    })?;
                if p.gone() {
                    return Err(finished());
                }
                nix::sys::signal::kill(Pid::from_raw(p.pid), sig)
                    .map_err(|e| error(Kind::Internal, format!("kill {}: {e}", p.pid)))
            }
        }
    }

    pub fn resize(&self, id: &str, exec_id: Option<&str>, width: u32, height: u32) -> Result<()> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        let (p, terminal) = match exec_id {
            None => (Some(&t.init), t.stdio.terminal),
            Some(x) => match t.execs.get(x) {
                Some(e) => (e.proc.as_ref(), e.stdio.terminal),
                None => (None, false),
            },
        };
        match p {
            Some(Proc {
                console: Some(c), ..
            }) => c.resize(width, height),
            Some(Proc {
                master: Some(m), ..
            }) => crate::io::resize(m, width, height),
            // Its terminal went with it: nothing to resize (runc's shim
            // answers the same; ctr resizes right after a start).
            Some(p) if p.gone() && terminal => {}
            _ => {
                return Err(error(
                    Kind::FailedPrecondition,
                    "the process has no terminal",
                ))
            }
        }
        Ok(())
    }

    /// Closes the supervisor's side of a process's stdin.
    pub fn close_stdin(&self, id: &str, exec_id: Option<&str>) -> Result<()> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(id).ok_or_else(|| no_task(id))?;
        let p = match exec_id {
            None => Some(&mut t.init),
            Some(x) => match t.execs.get_mut(x) {
                // Not started yet: its fifos are open since add_exec, and a
                // client that had no more input may close stdin already.
                Some(ExecEntry {
                    proc: None,
                    io: Some(io),
                    ..
                }) => {
                    io.close_stdin();
                    return Ok(());
                }
                Some(e) => e.proc.as_mut(),
                None => None,
            },
        };
        if let Some(p) = p {
            if let Some(io) = p.io.as_mut() {
                io.close_stdin();
            }
            if let Some(c) = p.console.as_mut() {
                c.close_stdin();
            }
        }
        Ok(())
    }

    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        Ok(t.container.pids()?)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        {
            let tasks = self.tasks();
            let t = tasks.get(id).ok_or_else(|| no_task(id))?;
            t.container.pause()?;
        }
        (self.sink)(Event::Paused { id: id.to_string() });
        Ok(())
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        {
            let tasks = self.tasks();
            let t = tasks.get(id).ok_or_else(|| no_task(id))?;
            t.container.resume()?;
        }
        (self.sink)(Event::Resumed { id: id.to_string() });
        Ok(())
    }

    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        Ok(t.container.update(resources)?)
    }

    /// Runs `f` on task `id`'s cgroup (for statistics).
    pub fn with_cgroup<R>(&self, id: &str, f: impl FnOnce(&CgroupManager) -> R) -> Result<R> {
        let tasks = self.tasks();
        let t = tasks.get(id).ok_or_else(|| no_task(id))?;
        Ok(f(t.container.cgroup()))
    }

    /// An exit reaped (`code`, now): record it, release the process's IO
    /// (readers then see the end of its output), and publish it.
    fn exited(self: &Arc<Self>, pid: i32, code: u32) {
        self.record_exit(pid, Exit::now(code));
    }

    fn record_exit(self: &Arc<Self>, pid: i32, exit: Exit) {
        let mut tasks = self.tasks();
        let mut event = None;
        for (id, t) in tasks.iter_mut() {
            let (exec_id, p) = if t.init.pid == pid {
                (id.clone(), &mut t.init)
            } else if let Some((eid, e)) = t
                .execs
                .iter_mut()
                .find(|(_, e)| e.proc.as_ref().is_some_and(|p| p.pid == pid))
            {
                match e.proc.as_mut() {
                    Some(p) => (eid.clone(), p),
                    None => continue,
                }
            } else {
                continue;
            };
            // A terminal's output may still be on its way through the pty:
            // the exit is recorded once it has reached containerd's fifo.
            if let Some(console) = p.console.take() {
                p.reaped = true;
                drop(tasks);
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    console.drain().await;
                    me.record_exit(pid, exit);
                });
                return;
            }
            p.io = None;
            p.master = None;
            p.exit.send_replace(Some(exit));
            // Without a pid namespace of its own, the task's other processes
            // outlive its init: end them, as containerd's runc shim does.
            if t.init.pid == pid {
                for p in t.container.cgroup().procs() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            event = Some(Event::Exited {
                id: id.clone(),
                exec_id,
                pid,
                exit,
            });
            break;
        }
        drop(tasks);
        if let Some(e) = event {
            (self.sink)(e);
        }
    }

    fn warn(&self, id: &str, warnings: Vec<String>) {
        for message in warnings {
            (self.sink)(Event::Warning {
                id: id.to_string(),
                message,
            });
        }
    }

    /// Reaps every child of this process, the only place that waits for
    /// them. Register the SIGCHLD stream before the first task is forked.
    pub async fn reap(self: Arc<Self>, mut sigchld: tokio::signal::unix::Signal) {
        loop {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => self.exited(pid.as_raw(), code as u32),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => {
                        self.exited(pid.as_raw(), 128 + sig as u32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    }

    /// Watches the task's memory cgroup for OOM kills (cgroup v1: an eventfd
    /// registered on memory.oom_control through cgroup.event_control; v2:
    /// inotify on memory.events, whose `oom_kill` count is compared).
    fn watch_oom(&self, container: &Container) -> Option<tokio::task::JoinHandle<()>> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let cg = container.cgroup();
        if cg.is_v2() {
            return self.watch_oom_v2(container);
        }
        let dir = cg.controller_dir("memory")?;
        let control = File::open(dir.join("memory.oom_control")).ok()?;
        // SAFETY: eventfd returns a new descriptor or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor we own.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        runtime::sys::write_kernel(
            dir.join("cgroup.event_control"),
            format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
        )
        .ok()?;
        // The eventfd also fires when the cgroup is removed.
        self.spawn_oom_watch(container, efd, move |n| {
            let _control = &control;
            (n == 8 && dir.exists()).then_some(true)
        })
    }

    /// Runs the OOM watch on the shim's loop: each time `fd` is readable
    /// its data is read and `fired(bytes read)` says whether an OOM kill
    /// happened (`Some(true)`), nothing did (`Some(false)`), or the watch
    /// is over (`None`: the cgroup is gone).
    fn spawn_oom_watch(
        &self,
        container: &Container,
        fd: OwnedFd,
        mut fired: impl FnMut(usize) -> Option<bool> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        // SAFETY: the AsyncFd owns the descriptor, deregistered before it closes.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok()?;
        let id = container.id().to_string();
        let me = self.me.clone();
        Some(tokio::spawn(async move {
            loop {
                let Ok(mut g) = fd.readable().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                match g.try_io(|fd| {
                    nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
                }) {
                    Ok(Ok(n)) => match fired(n) {
                        Some(true) => {
                            let Some(s) = me.upgrade() else { return };
                            (s.sink)(Event::Oom { id: id.clone() });
                        }
                        Some(false) => {}
                        None => return,
                    },
                    Ok(Err(_)) => return,
                    Err(_would_block) => continue,
                }
            }
        }))
    }

    fn watch_oom_v2(&self, container: &Container) -> Option<tokio::task::JoinHandle<()>> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let cg = container.cgroup();
        let dir = cg.controller_dir("memory")?;
        let path = std::ffi::CString::new(
            dir.join("memory.events")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .ok()?;
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a valid descriptor and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
            return None;
        }
        // None once the file went with its cgroup.
        let kills = move || {
            crate::usage::keyed(&dir, "memory.events")
                .get("oom_kill")
                .copied()
        };
        let mut seen = kills().unwrap_or(0);
        self.spawn_oom_watch(container, fd, move |n| {
            let now = kills().filter(|_| n > 0)?;
            Some(std::mem::replace(&mut seen, now) < now)
        })
    }
}
