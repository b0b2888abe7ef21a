//! The Task service containerd calls: a thin translation of its requests
//! into the supervisor's calls, of the supervisor's errors into the ttrpc
//! codes containerd acts on, and of its events into containerd's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::{any::Any, timestamp::Timestamp};
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim_async::{create_task, Task};
use isoexec_shim::io::log;
use isoexec_shim::supervisor::{self, Event, Exit, Kind, NewTask, State, Stdio, Supervisor};
use nix::sys::signal::Signal;
use runtime::config::DriverConfig;
use tokio::sync::Notify;
use ttrpc::asynchronous::TtrpcContext;
use ttrpc::{Code, Error as TError};

use crate::events::Publisher;
use crate::ShimArgs;

type TResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl Into<String>) -> TError {
    TError::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// The supervisor's errors as the codes containerd acts on.
fn sup_err(e: supervisor::Error) -> TError {
    let code = match e.kind {
        Kind::NotFound => Code::NOT_FOUND,
        Kind::AlreadyExists => Code::ALREADY_EXISTS,
        Kind::FailedPrecondition => Code::FAILED_PRECONDITION,
        Kind::InvalidArgument => Code::INVALID_ARGUMENT,
        Kind::PermissionDenied => Code::PERMISSION_DENIED,
        Kind::Unimplemented => Code::UNIMPLEMENTED,
        Kind::Internal => Code::UNKNOWN,
    };
    status(code, e.message)
}

fn engine_err(e: runtime::Error) -> TError {
    sup_err(e.into())
}

fn timestamp(e: &Exit) -> Timestamp {
    let mut t = Timestamp::new();
    t.seconds = e.at.0;
    t.nanos = e.at.1;
    t
}

/// containerd's empty exec id is the init.
fn exec_of(exec_id: &str) -> Option<&str> {
    (!exec_id.is_empty()).then_some(exec_id)
}

fn task_io(stdio: &Stdio) -> TaskIO {
    let (stdin, stdout, stderr) = stdio.paths();
    let mut io = TaskIO::new();
    io.stdin = stdin.into();
    io.stdout = stdout.into();
    io.stderr = stderr.into();
    io.terminal = stdio.terminal;
    io
}

/// The supervisor's events as containerd's, on its topics.
fn publish(publisher: &Publisher, event: Event) {
    match event {
        Event::Created {
            id,
            bundle,
            pid,
            stdio,
        } => {
            let mut ev = TaskCreate::new();
            ev.container_id = id;
            ev.bundle = bundle.display().to_string();
            ev.io = MessageField::some(task_io(&stdio));
            ev.pid = pid as u32;
            publisher.publish("/tasks/create", &ev);
        }
        Event::Started { id, pid } => {
            let mut ev = TaskStart::new();
            ev.container_id = id;
            ev.pid = pid as u32;
            publisher.publish("/tasks/start", &ev);
        }
        Event::ExecAdded { id, exec_id } => {
            let mut ev = TaskExecAdded::new();
            ev.container_id = id;
            ev.exec_id = exec_id;
            publisher.publish("/tasks/exec-added", &ev);
        }
        Event::ExecStarted { id, exec_id, pid } => {
            let mut ev = TaskExecStarted::new();
            ev.container_id = id;
            ev.exec_id = exec_id;
            ev.pid = pid as u32;
            publisher.publish("/tasks/exec-started", &ev);
        }
        Event::Exited {
            id,
            exec_id,
            pid,
            exit,
        } => {
            let mut ev = TaskExit::new();
            ev.container_id = id;
            ev.id = exec_id;
            ev.pid = pid as u32;
            ev.exit_status = exit.status;
            ev.exited_at = MessageField::some(timestamp(&exit));
            publisher.publish("/tasks/exit", &ev);
        }
        Event::Oom { id } => {
            let mut ev = TaskOOM::new();
            ev.container_id = id;
            publisher.publish("/tasks/oom", &ev);
        }
        Event::Paused { id } => {
            let mut ev = TaskPaused::new();
            ev.container_id = id;
            publisher.publish("/tasks/paused", &ev);
        }
        Event::Resumed { id } => {
            let mut ev = TaskResumed::new();
            ev.container_id = id;
            publisher.publish("/tasks/resumed", &ev);
        }
        Event::Deleted { id, pid, exit } => {
            let mut ev = TaskDelete::new();
            ev.container_id = id.clone();
            ev.id = id;
            ev.pid = pid as u32;
            ev.exit_status = exit.status;
            ev.exited_at = MessageField::some(timestamp(&exit));
            publisher.publish("/tasks/delete", &ev);
        }
        Event::Warning { id, message } => log(&format!("{id}: warning: {message}")),
    }
}

pub struct Service {
    sup: Arc<Supervisor>,
    shutdown: Notify,
}

impl Service {
    pub fn new(args: &ShimArgs, publisher: Publisher) -> Arc<Self> {
        let root = crate::state_root(&args.bundle, &args.namespace);
        let sink = Box::new(move |e| publish(&publisher, e));
        Arc::new(Service {
            sup: Supervisor::new(root, &args.namespace, sink),
            shutdown: Notify::new(),
        })
    }

    pub fn supervisor(&self) -> Arc<Supervisor> {
        self.sup.clone()
    }

    pub async fn wait_shutdown(&self) {
        self.shutdown.notified().await
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

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TResult<CreateTaskResponse> {
        if self.sup.contains(&req.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("task {} already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let config = req.options.as_ref().and_then(config_path_of);
        let driver = DriverConfig::load(config.as_deref()).map_err(engine_err)?;
        let rootfs_mounted = mount_rootfs(&req.rootfs, &bundle.join("rootfs"))?;
        let created = self
            .sup
            .create(NewTask {
                id: req.id.clone(),
                bundle: bundle.clone(),
                stdio: Stdio::uris(&req.stdin, &req.stdout, &req.stderr, req.terminal),
                driver,
                rootfs_mounted,
            })
            .map_err(|e| {
                if rootfs_mounted {
                    supervisor::unmount_rootfs(&bundle);
                }
                sup_err(e)
            })?;
        for w in &created.warnings {
            log(&format!("{}: warning: {w}", req.id));
        }
        let mut resp = CreateTaskResponse::new();
        resp.pid = created.pid as u32;
        Ok(resp)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TResult<StartResponse> {
        let (pid, _) = self
            .sup
            .start(&req.id, exec_of(&req.exec_id))
            .map_err(sup_err)?;
        let mut resp = StartResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TResult<WaitResponse> {
        let exit = self
            .sup
            .wait(&req.id, exec_of(&req.exec_id))
            .await
            .map_err(sup_err)?;
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = MessageField::some(timestamp(&exit));
        Ok(resp)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TResult<StateResponse> {
        use containerd_shim_protos::api::Status as S;
        let st = self
            .sup
            .state(&req.id, exec_of(&req.exec_id))
            .map_err(sup_err)?;
        let (stdin, stdout, stderr) = st.stdio.paths();
        let mut resp = StateResponse::new();
        resp.id = req.id.clone();
        resp.bundle = st.bundle.display().to_string();
        resp.exec_id = req.exec_id.clone();
        resp.pid = st.pid as u32;
        resp.stdin = stdin.into();
        resp.stdout = stdout.into();
        resp.stderr = stderr.into();
        resp.terminal = st.stdio.terminal;
        if let Some(x) = st.exit {
            resp.exit_status = x.status;
            resp.exited_at = MessageField::some(timestamp(&x));
        }
        resp.status = EnumOrUnknown::new(match st.state {
            State::Created => S::CREATED,
            State::Running => S::RUNNING,
            State::Paused => S::PAUSED,
            State::Stopped => S::STOPPED,
        });
        Ok(resp)
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TResult<DeleteResponse> {
        let (pid, exit) = self
            .sup
            .delete(&req.id, exec_of(&req.exec_id))
            .map_err(sup_err)?;
        let mut resp = DeleteResponse::new();
        resp.pid = pid as u32;
        resp.exit_status = exit.status;
        resp.exited_at = MessageField::some(timestamp(&exit));
        Ok(resp)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TResult<Empty> {
        let sig = Signal::try_from(req.signal as i32).map_err(|_| {
            status(
                Code::INVALID_ARGUMENT,
                format!("signal {} is not a signal", req.signal),
            )
        })?;
        self.sup
            .kill(&req.id, exec_of(&req.exec_id), sig, req.all)
            .map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TResult<Empty> {
        let spec: oci_spec::runtime::Process =
            serde_json::from_slice(&req.spec.value).map_err(|e| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("exec {}: the process spec is not valid: {e}", req.exec_id),
                )
            })?;
        let stdio = Stdio::uris(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        self.sup
            .add_exec(&req.id, &req.exec_id, spec, stdio)
            .map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TResult<Empty> {
        self.sup
            .resize(&req.id, exec_of(&req.exec_id), req.width, req.height)
            .map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TResult<Empty> {
        self.sup
            .close_stdin(&req.id, exec_of(&req.exec_id))
            .map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TResult<PidsResponse> {
        let mut resp = PidsResponse::new();
        for pid in self.sup.pids(&req.id).map_err(sup_err)? {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            resp.processes.push(info);
        }
        Ok(resp)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TResult<Empty> {
        self.sup.pause(&req.id).map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TResult<Empty> {
        self.sup.resume(&req.id).map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TResult<Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "isoexec does not checkpoint tasks",
        ))
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TResult<Empty> {
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&req.resources.value)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("resources: {e}")))?;
        self.sup.update(&req.id, &res).map_err(sup_err)?;
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TResult<StatsResponse> {
        let usage = self
            .sup
            .with_cgroup(&req.id, isoexec_shim::usage::read)
            .map_err(sup_err)?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(crate::stats::metrics(&usage));
        Ok(resp)
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TResult<ConnectResponse> {
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.version = "2".into();
        if let Some(pid) = self.sup.task_pid(&req.id) {
            resp.task_pid = pid as u32;
        }
        Ok(resp)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TResult<Empty> {
        // Exit only when no task is left: the shim may serve a whole sandbox.
        if self.sup.is_empty() {
            self.shutdown.notify_one();
        }
        Ok(Empty::new())
    }
}
