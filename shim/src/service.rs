//! The Task service containerd calls, over the engine: the process table
//! (each task's init and execs), their IO, exits reaped in one place, and
//! the events containerd expects, in order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::{any::Any, timestamp::Timestamp};
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim_async::{create_task, Task};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runtime::config::DriverConfig;
use runtime::container::{self, Container, CreateOptions, ExecOptions, Status as CStatus};
use tokio::sync::{watch, Notify};
use ttrpc::asynchronous::TtrpcContext;
use ttrpc::{Code, Error as TError};

use crate::events::{now, Publisher};
use crate::io::{log, Console, ProcessIo};
use crate::ShimArgs;

type TResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl Into<String>) -> TError {
    TError::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn no_task(id: &str) -> TError {
    status(Code::NOT_FOUND, format!("task {id} not found"))
}

/// The engine's errors as the codes containerd acts on.
fn engine_err(e: runtime::Error) -> TError {
    use runtime::Error as E;
    let code = match &e {
        E::NotFound(_) => Code::NOT_FOUND,
        E::AlreadyExists(_) => Code::ALREADY_EXISTS,
        E::WrongState { .. } => Code::FAILED_PRECONDITION,
        E::InvalidSpec { .. } | E::InvalidArgument(_) | E::Bundle { .. } => Code::INVALID_ARGUMENT,
        E::Policy(_) => Code::PERMISSION_DENIED,
        _ => Code::UNKNOWN,
    };
    status(code, e.to_string())
}

#[derive(Clone, Copy)]
struct Exit {
    status: u32,
    at: (i64, i32),
}

impl Exit {
    fn timestamp(&self) -> Timestamp {
        let mut t = Timestamp::new();
        t.seconds = self.at.0;
        t.nanos = self.at.1;
        t
    }
}

/// A running (or finished) process: an init or an exec.
struct Proc {
    pid: i32,
    exit: watch::Sender<Option<Exit>>,
    io: Option<ProcessIo>,
    console: Option<Console>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
}

impl Proc {
    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

/// An exec: its request, and its process once started.
struct ExecEntry {
    spec: oci_spec::runtime::Process,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// Exists from Exec on: Wait may come before Start. Moves into the
    /// process when it starts.
    exit: Option<watch::Sender<Option<Exit>>>,
    proc: Option<Proc>,
}

struct TaskEntry {
    container: Container,
    bundle: PathBuf,
    init: Proc,
    execs: HashMap<String, ExecEntry>,
    rootfs_mounted: bool,
    driver: DriverConfig,
    /// Publishes TaskOOM when the kernel kills in the task's memory cgroup.
    oom_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TaskEntry {
    fn drop(&mut self) {
        if let Some(w) = &self.oom_watch {
            w.abort();
        }
    }
}

/// Watches the task's memory cgroup for OOM kills (cgroup v1: an eventfd
/// registered on memory.oom_control through cgroup.event_control).
fn watch_oom(container: &Container, publisher: Publisher) -> Option<tokio::task::JoinHandle<()>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let cg = container.cgroup();
    if cg.is_v2() {
        return None;
    }
    let dir = cg.controller_dir("memory")?;
    let control = std::fs::File::open(dir.join("memory.oom_control")).ok()?;
    // SAFETY: eventfd returns a new descriptor or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor we own.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )
    .ok()?;
    // SAFETY: the AsyncFd owns the eventfd, deregistered before it closes.
    let efd = unsafe { tokio::io::unix::AsyncFd::register(efd) }.ok()?;
    let id = container.id().to_string();
    Some(tokio::spawn(async move {
        let _control = control;
        loop {
            let Ok(mut g) = efd.readable().await else {
                return;
            };
            let mut buf = [0u8; 8];
            match g.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(8)) => {
                    // The eventfd also fires when the cgroup is removed.
                    if !dir.exists() {
                        return;
                    }
                    let mut ev = containerd_shim_protos::events::task::TaskOOM::new();
                    ev.container_id = id.clone();
                    publisher.publish("/tasks/oom", &ev);
                }
                Ok(_) => return,
                Err(_would_block) => continue,
            }
        }
    }))
}

pub struct Service {
    root: PathBuf,
    namespace: String,
    publisher: Publisher,
    tasks: Mutex<HashMap<String, TaskEntry>>,
    shutdown: Notify,
}

impl Service {
    pub fn new(args: ShimArgs, publisher: Publisher) -> Arc<Self> {
        let root = crate::state_root(&args.bundle, &args.namespace);
        Arc::new(Service {
            root,
            namespace: args.namespace.clone(),
            publisher,
            tasks: Mutex::new(HashMap::new()),
            shutdown: Notify::new(),
        })
    }

    pub async fn wait_shutdown(&self) {
        self.shutdown.notified().await
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskEntry>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An exit reaped: record it, release the process's IO (containerd then
    /// sees the end of its output), and publish TaskExit.
    fn exited(&self, pid: i32, code: u32) {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let exit = Exit {
            status: code,
            at: (d.as_secs() as i64, d.subsec_nanos() as i32),
        };
        let mut tasks = self.tasks();
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
            p.io = None;
            p.console = None;
            p.exit.send_replace(Some(exit));
            let mut ev = TaskExit::new();
            ev.container_id = id.clone();
            ev.id = exec_id;
            ev.pid = pid as u32;
            ev.exit_status = code;
            ev.exited_at = MessageField::some(exit.timestamp());
            self.publisher.publish("/tasks/exit", &ev);
            // Without a pid namespace of its own, the task's other processes
            // outlive its init: end them, as containerd's runc shim does.
            if t.init.pid == pid {
                for p in t.container.cgroup().procs() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            return;
        }
    }
}

/// Reaps every child of the shim, the only place that waits for them.
pub async fn reap(svc: Arc<Service>, mut sigchld: tokio::signal::unix::Signal) {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => svc.exited(pid.as_raw(), code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => svc.exited(pid.as_raw(), 128 + sig as u32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}

/// The Task service under both names containerd uses: v2 (1.6, 1.7) and v3
/// (2.x).
pub fn register(svc: Arc<Service>) -> HashMap<String, ttrpc::asynchronous::Service> {
    let mut services = create_task(svc.clone());
    if let Some(v3) = create_task(svc).remove("containerd.task.v3.Task") {
        services.insert("containerd.task.v2.Task".to_string(), v3);
    }
    services
}

/// `runtimeoptions.v1.Options` (CRI's runtime options): field 2 is
/// ConfigPath. Decoded by hand: two string fields.
fn config_path_of(opts: &Any) -> Option<PathBuf> {
    if !opts.type_url.ends_with("runtimeoptions.v1.Options") {
        return None;
    }
    let b = &opts.value;
    let mut i = 0;
    while i < b.len() {
        let key = b[i];
        i += 1;
        let (field, wire) = (key >> 3, key & 7);
        if wire != 2 {
            return None;
        }
        let (mut len, mut shift) = (0usize, 0);
        while i < b.len() {
            let byte = b[i];
            i += 1;
            len |= ((byte & 0x7f) as usize) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let s = b.get(i..i + len)?;
        i += len;
        if field == 2 {
            return Some(PathBuf::from(String::from_utf8_lossy(s).into_owned()));
        }
    }
    None
}

/// Mounts the rootfs containerd prepared (a snapshot) at BUNDLE/rootfs.
fn mount_rootfs(mounts: &[containerd_shim_protos::api::Mount], target: &Path) -> TResult<bool> {
    use nix::mount::{mount, MsFlags};
    if mounts.is_empty() {
        return Ok(false);
    }
    std::fs::create_dir_all(target)
        .map_err(|e| status(Code::INTERNAL, format!("{}: {e}", target.display())))?;
    for m in mounts {
        let opts = runtime::plan::parse_mount_options(&m.options);
        let data = opts.data.join(",");
        let data = (!data.is_empty()).then_some(data.as_str());
        let r = if opts.bind.is_some() || m.type_ == "bind" {
            let mut f = MsFlags::MS_BIND;
            if opts.bind == Some(true) {
                f |= MsFlags::MS_REC;
            }
            mount(
                Some(m.source.as_str()),
                target,
                None::<&str>,
                f,
                None::<&str>,
            )
            .and_then(|_| {
                if opts.flags.is_empty() {
                    Ok(())
                } else {
                    mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        f | MsFlags::MS_REMOUNT | opts.flags,
                        None::<&str>,
                    )
                }
            })
        } else {
            mount(
                Some(m.source.as_str()),
                target,
                Some(m.type_.as_str()),
                opts.flags,
                data,
            )
        };
        r.map_err(|e| {
            status(
                Code::INTERNAL,
                format!(
                    "mounting the rootfs ({} {}) at {}: {e}",
                    m.type_,
                    m.source,
                    target.display()
                ),
            )
        })?;
    }
    Ok(true)
}

/// Undoes `mount_rootfs` (every mount stacked on BUNDLE/rootfs).
pub fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    for _ in 0..16 {
        if nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

fn task_io(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> TaskIO {
    let mut io = TaskIO::new();
    io.stdin = stdin.into();
    io.stdout = stdout.into();
    io.stderr = stderr.into();
    io.terminal = terminal;
    io
}

/// A console socket of the shim's own, for a terminal.
fn console_socket(id: &str) -> TResult<runtime::console::ConsoleSocket> {
    runtime::console::ConsoleSocket::temporary(id).map_err(engine_err)
}

fn new_proc(
    pid: i32,
    exit: Option<watch::Sender<Option<Exit>>>,
    io: Option<ProcessIo>,
    console: Option<Console>,
    stdio: (&str, &str, &str),
    terminal: bool,
) -> Proc {
    Proc {
        pid,
        exit: exit.unwrap_or_else(|| watch::channel(None).0),
        io,
        console,
        stdin: stdio.0.into(),
        stdout: stdio.1.into(),
        stderr: stdio.2.into(),
        terminal,
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TResult<CreateTaskResponse> {
        if self.tasks().contains_key(&req.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("task {} already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let config = req.options.as_ref().and_then(config_path_of);
        let driver = DriverConfig::load(config.as_deref()).map_err(engine_err)?;
        let rootfs_mounted = mount_rootfs(&req.rootfs, &bundle.join("rootfs"))?;
        let undo_mount = |e: TError| {
            if rootfs_mounted {
                unmount_rootfs(&bundle);
            }
            e
        };
        let (io, console) = if req.terminal {
            (None, Some(console_socket(&req.id).map_err(undo_mount)?))
        } else {
            let io = ProcessIo::open(
                &req.stdin,
                &req.stdout,
                &req.stderr,
                &req.id,
                &self.namespace,
            )
            .map_err(|e| undo_mount(status(Code::INVALID_ARGUMENT, format!("task io: {e}"))))?;
            (Some(io), None)
        };
        let opts = CreateOptions {
            root: self.root.clone(),
            id: req.id.clone(),
            bundle: bundle.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            driver: driver.clone(),
            stdio: io.as_ref().map(|io| io.child_fds()),
            ..Default::default()
        };
        let created = container::create(&opts);
        let relay = match (&created, console) {
            (Ok(_), Some(sock)) => {
                let master = sock.receive().map_err(|e| undo_mount(engine_err(e)))?;
                Some(
                    Console::relay(master, &req.stdin, &req.stdout)
                        .map_err(|e| undo_mount(status(Code::INTERNAL, e.to_string())))?,
                )
            }
            _ => None,
        };
        let created = created.map_err(|e| undo_mount(engine_err(e)))?;
        for w in &created.warnings {
            log(&format!("{}: warning: {w}", req.id));
        }
        let pid = created.init.as_raw();
        let oom_watch = watch_oom(&created.container, self.publisher.clone());
        let init = new_proc(
            pid,
            None,
            io,
            relay,
            (&req.stdin, &req.stdout, &req.stderr),
            req.terminal,
        );
        self.tasks().insert(
            req.id.clone(),
            TaskEntry {
                container: created.container,
                bundle: bundle.clone(),
                init,
                execs: HashMap::new(),
                rootfs_mounted,
                driver,
                oom_watch,
            },
        );
        let mut ev = TaskCreate::new();
        ev.container_id = req.id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        ev.io = MessageField::some(task_io(&req.stdin, &req.stdout, &req.stderr, req.terminal));
        ev.pid = pid as u32;
        self.publisher.publish("/tasks/create", &ev);
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TResult<StartResponse> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(&req.id).ok_or_else(|| no_task(&req.id))?;
        let mut resp = StartResponse::new();
        if req.exec_id.is_empty() {
            container::start(&t.container).map_err(engine_err)?;
            resp.pid = t.init.pid as u32;
            let mut ev = TaskStart::new();
            ev.container_id = req.id.clone();
            ev.pid = resp.pid;
            self.publisher.publish("/tasks/start", &ev);
            return Ok(resp);
        }
        let driver = t.driver.clone();
        let e = t.execs.get_mut(&req.exec_id).ok_or_else(|| {
            status(
                Code::NOT_FOUND,
                format!("exec {} not found in task {}", req.exec_id, req.id),
            )
        })?;
        if e.proc.is_some() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("exec {} already started", req.exec_id),
            ));
        }
        let (io, console) = if e.terminal {
            (None, Some(console_socket(&req.exec_id)?))
        } else {
            (
                Some(
                    ProcessIo::open(&e.stdin, &e.stdout, &e.stderr, &req.id, &self.namespace)
                        .map_err(|err| status(Code::INVALID_ARGUMENT, format!("exec io: {err}")))?,
                ),
                None,
            )
        };
        let mut spec = e.spec.clone();
        spec.set_terminal(Some(e.terminal));
        let opts = ExecOptions {
            process: Some(spec),
            tty: e.terminal,
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            stdio: io.as_ref().map(|io| io.child_fds()),
            driver,
            ..Default::default()
        };
        let r = container::exec(&t.container, &opts);
        let relay = match (&r, console) {
            (Ok(_), Some(sock)) => {
                let master = sock.receive().map_err(engine_err)?;
                Some(
                    Console::relay(master, &e.stdin, &e.stdout)
                        .map_err(|err| status(Code::INTERNAL, err.to_string()))?,
                )
            }
            _ => None,
        };
        let pid = r.map_err(engine_err)?.pid.as_raw();
        e.proc = Some(new_proc(
            pid,
            e.exit.take(),
            io,
            relay,
            (&e.stdin.clone(), &e.stdout.clone(), &e.stderr.clone()),
            e.terminal,
        ));
        resp.pid = pid as u32;
        let mut ev = TaskExecStarted::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        ev.pid = resp.pid;
        self.publisher.publish("/tasks/exec-started", &ev);
        Ok(resp)
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TResult<WaitResponse> {
        let mut rx = {
            let tasks = self.tasks();
            let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
            if req.exec_id.is_empty() {
                t.init.exit.subscribe()
            } else {
                let e = t.execs.get(&req.exec_id).ok_or_else(|| {
                    status(Code::NOT_FOUND, format!("exec {} not found", req.exec_id))
                })?;
                match (&e.proc, &e.exit) {
                    (Some(p), _) => p.exit.subscribe(),
                    (None, Some(tx)) => tx.subscribe(),
                    (None, None) => {
                        return Err(status(
                            Code::FAILED_PRECONDITION,
                            format!("exec {} has no process", req.exec_id),
                        ))
                    }
                }
            }
        };
        let exit = loop {
            if let Some(e) = *rx.borrow_and_update() {
                break e;
            }
            if rx.changed().await.is_err() {
                return Err(status(Code::NOT_FOUND, "the process is gone"));
            }
        };
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = MessageField::some(exit.timestamp());
        Ok(resp)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TResult<StateResponse> {
        use containerd_shim_protos::api::Status as S;
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let mut resp = StateResponse::new();
        resp.id = req.id.clone();
        resp.bundle = t.bundle.display().to_string();
        resp.exec_id = req.exec_id.clone();
        let (p, st) = if req.exec_id.is_empty() {
            let st = match (t.init.exited(), t.container.status()) {
                (Some(_), _) => S::STOPPED,
                (None, CStatus::Created) => S::CREATED,
                (None, CStatus::Paused) => S::PAUSED,
                (None, CStatus::Stopped) => S::STOPPED,
                (None, _) => S::RUNNING,
            };
            (Some(&t.init), st)
        } else {
            let e = t.execs.get(&req.exec_id).ok_or_else(|| {
                status(Code::NOT_FOUND, format!("exec {} not found", req.exec_id))
            })?;
            resp.stdin = e.stdin.clone();
            resp.stdout = e.stdout.clone();
            resp.stderr = e.stderr.clone();
            resp.terminal = e.terminal;
            match &e.proc {
                None => (None, S::CREATED),
                Some(p) if p.exited().is_some() => (Some(p), S::STOPPED),
                Some(p) => (Some(p), S::RUNNING),
            }
        };
        if let Some(p) = p {
            resp.pid = p.pid as u32;
            resp.stdin = p.stdin.clone();
            resp.stdout = p.stdout.clone();
            resp.stderr = p.stderr.clone();
            resp.terminal = p.terminal;
            if let Some(x) = p.exited() {
                resp.exit_status = x.status;
                resp.exited_at = MessageField::some(x.timestamp());
            }
        }
        resp.status = EnumOrUnknown::new(st);
        Ok(resp)
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TResult<DeleteResponse> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(&req.id).ok_or_else(|| no_task(&req.id))?;
        let mut resp = DeleteResponse::new();
        if !req.exec_id.is_empty() {
            let e = t.execs.get(&req.exec_id).ok_or_else(|| {
                status(Code::NOT_FOUND, format!("exec {} not found", req.exec_id))
            })?;
            if let Some(p) = &e.proc {
                let Some(x) = p.exited() else {
                    return Err(status(
                        Code::FAILED_PRECONDITION,
                        format!("exec {} is running", req.exec_id),
                    ));
                };
                resp.pid = p.pid as u32;
                resp.exit_status = x.status;
                resp.exited_at = MessageField::some(x.timestamp());
            }
            t.execs.remove(&req.exec_id);
            return Ok(resp);
        }
        if t.init.exited().is_none() && t.container.status() != CStatus::Created {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("task {} is running: kill it first", req.id),
            ));
        }
        container::delete(&t.container, true).map_err(engine_err)?;
        if t.rootfs_mounted {
            unmount_rootfs(&t.bundle);
        }
        let t = tasks.remove(&req.id).expect("present above");
        let exit = t.init.exited();
        resp.pid = t.init.pid as u32;
        resp.exit_status = exit.map_or(137, |x| x.status);
        resp.exited_at = MessageField::some(exit.map_or_else(now, |x| x.timestamp()));
        let mut ev = TaskDelete::new();
        ev.container_id = req.id.clone();
        ev.id = req.id.clone();
        ev.pid = resp.pid;
        ev.exit_status = resp.exit_status;
        ev.exited_at = resp.exited_at.clone();
        self.publisher.publish("/tasks/delete", &ev);
        Ok(resp)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TResult<Empty> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let sig = Signal::try_from(req.signal as i32).map_err(|_| {
            status(
                Code::INVALID_ARGUMENT,
                format!("signal {} is not a signal", req.signal),
            )
        })?;
        if req.exec_id.is_empty() {
            if t.init.exited().is_some() {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            container::kill(&t.container, sig, req.all).map_err(|e| match e {
                runtime::Error::WrongState { .. } => {
                    status(Code::NOT_FOUND, "process already finished")
                }
                e => engine_err(e),
            })?;
        } else {
            let p = t
                .execs
                .get(&req.exec_id)
                .and_then(|e| e.proc.as_ref())
                .ok_or_else(|| {
                    status(
                        Code::NOT_FOUND,
                        format!("exec {} not found or not started", req.exec_id),
                    )
                })?;
            if p.exited().is_some() {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            nix::sys::signal::kill(Pid::from_raw(p.pid), sig)
                .map_err(|e| status(Code::UNKNOWN, format!("kill {}: {e}", p.pid)))?;
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TResult<Empty> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(&req.id).ok_or_else(|| no_task(&req.id))?;
        if t.execs.contains_key(&req.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        let spec: oci_spec::runtime::Process =
            serde_json::from_slice(&req.spec.value).map_err(|e| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("exec {}: the process spec is not valid: {e}", req.exec_id),
                )
            })?;
        t.execs.insert(
            req.exec_id.clone(),
            ExecEntry {
                spec,
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                exit: Some(watch::channel(None).0),
                proc: None,
            },
        );
        let mut ev = TaskExecAdded::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.publisher.publish("/tasks/exec-added", &ev);
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TResult<Empty> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let p = if req.exec_id.is_empty() {
            Some(&t.init)
        } else {
            t.execs.get(&req.exec_id).and_then(|e| e.proc.as_ref())
        };
        let console = p
            .and_then(|p| p.console.as_ref())
            .ok_or_else(|| status(Code::FAILED_PRECONDITION, "the process has no terminal"))?;
        console.resize(req.width, req.height);
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TResult<Empty> {
        let mut tasks = self.tasks();
        let t = tasks.get_mut(&req.id).ok_or_else(|| no_task(&req.id))?;
        let p = if req.exec_id.is_empty() {
            Some(&mut t.init)
        } else {
            t.execs.get_mut(&req.exec_id).and_then(|e| e.proc.as_mut())
        };
        if let Some(p) = p {
            if let Some(io) = p.io.as_mut() {
                io.close_stdin();
            }
            if let Some(c) = p.console.as_mut() {
                c.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TResult<PidsResponse> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let mut resp = PidsResponse::new();
        for pid in t.container.pids().map_err(engine_err)? {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            resp.processes.push(info);
        }
        Ok(resp)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TResult<Empty> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        t.container.pause().map_err(engine_err)?;
        let mut ev = TaskPaused::new();
        ev.container_id = req.id.clone();
        self.publisher.publish("/tasks/paused", &ev);
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TResult<Empty> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        t.container.resume().map_err(engine_err)?;
        let mut ev = TaskResumed::new();
        ev.container_id = req.id.clone();
        self.publisher.publish("/tasks/resumed", &ev);
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TResult<Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "isoexec does not checkpoint tasks",
        ))
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TResult<Empty> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&req.resources.value)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("resources: {e}")))?;
        t.container.update(&res).map_err(engine_err)?;
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TResult<StatsResponse> {
        let tasks = self.tasks();
        let t = tasks.get(&req.id).ok_or_else(|| no_task(&req.id))?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(crate::stats::metrics(t.container.cgroup()));
        Ok(resp)
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TResult<ConnectResponse> {
        let tasks = self.tasks();
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.version = "2".into();
        if let Some(t) = tasks.get(&req.id) {
            resp.task_pid = t.init.pid as u32;
        }
        Ok(resp)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TResult<Empty> {
        // Exit only when no task is left: the shim may serve a whole sandbox.
        if self.tasks().is_empty() {
            self.shutdown.notify_one();
        }
        Ok(Empty::new())
    }
}
