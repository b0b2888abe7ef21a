//! The RuntimeService: sandboxes and tasks over the supervisor the
//! containerd shim uses too. Requests become OCI specs (crate::spec), the
//! engine and its policy do the rest; this file keeps the records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use isoexec_shim::supervisor::{
    self, Attached, Event as SupEvent, Kind, NewTask, State, Stdio, Supervisor,
};
use nix::sys::signal::Signal;
use runtime::config::DriverConfig;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;
use crate::sandbox::{self, Layout};
use crate::spec;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The supervisor's error kinds as gRPC codes.
fn status(e: supervisor::Error) -> Status {
    let code = match e.kind {
        Kind::NotFound => tonic::Code::NotFound,
        Kind::AlreadyExists => tonic::Code::AlreadyExists,
        Kind::FailedPrecondition => tonic::Code::FailedPrecondition,
        Kind::InvalidArgument => tonic::Code::InvalidArgument,
        Kind::PermissionDenied => tonic::Code::PermissionDenied,
        Kind::Unimplemented => tonic::Code::Unimplemented,
        Kind::Internal => tonic::Code::Internal,
    };
    Status::new(code, e.message)
}

/// A failure of a task's create: a wrong field of the spec isoexecd wrote
/// is the request's mistake, named as the request's field.
fn request_error(e: supervisor::Error) -> Status {
    match e
        .spec_field
        .as_ref()
        .and_then(|(f, r)| Some((spec::request_field(f)?, r)))
    {
        Some((field, reason)) => Status::invalid_argument(format!("{field}: {reason}")),
        None => status(e),
    }
}

fn field(e: spec::FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn exit_ns(e: &supervisor::Exit) -> i64 {
    e.at.0 * 1_000_000_000 + i64::from(e.at.1)
}

/// The sandbox of a task id (SANDBOX.NAME; sandbox ids have no dot).
fn sandbox_of(task_id: &str) -> &str {
    task_id.split_once('.').map_or(task_id, |(s, _)| s)
}

fn grace(seconds: u32) -> Duration {
    Duration::from_secs(if seconds == 0 { 5 } else { u64::from(seconds) })
}

#[derive(Default)]
struct Records {
    sandboxes: BTreeMap<String, Sandbox>,
    tasks: BTreeMap<String, Task>,
}

pub struct Options {
    /// The daemon's state directory.
    pub state: PathBuf,
    /// The driver config file (None: ISOEXEC_CONFIG or the default path).
    pub config: Option<PathBuf>,
}

pub struct Daemon {
    layout: Layout,
    config: Option<PathBuf>,
    sup: Arc<Supervisor>,
    records: Mutex<Records>,
    events: broadcast::Sender<Event>,
    exec_seq: std::sync::atomic::AtomicU64,
}

impl Daemon {
    pub fn new(opts: Options) -> Arc<Daemon> {
        let layout = Layout { state: opts.state };
        let (events, _) = broadcast::channel(1024);
        Arc::new_cyclic(|me: &Weak<Daemon>| {
            let me = me.clone();
            let sink = Box::new(move |e| {
                if let Some(d) = me.upgrade() {
                    d.on_event(e);
                }
            });
            Daemon {
                sup: Supervisor::new(layout.engine_root(), "isoexecd", sink),
                layout,
                config: opts.config,
                records: Mutex::new(Records::default()),
                events,
                exec_seq: Default::default(),
            }
        })
    }

    pub fn supervisor(&self) -> Arc<Supervisor> {
        self.sup.clone()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn driver(&self) -> Result<DriverConfig, Status> {
        DriverConfig::load(self.config.as_deref()).map_err(|e| status(e.into()))
    }

    fn emit(&self, topic: &str, task_id: &str, exec_id: &str, pid: i32, exit_code: i32) {
        let sandbox_id = sandbox_of(task_id).to_string();
        if exec_id.is_empty() {
            tracing::info!(task = task_id, pid, exit_code, "{topic}");
        } else {
            tracing::debug!(task = task_id, exec = exec_id, pid, exit_code, "{topic}");
        }
        let _ = self.events.send(Event {
            topic: topic.into(),
            sandbox_id,
            task_id: task_id.into(),
            exec_id: exec_id.into(),
            pid: pid.max(0) as u32,
            exit_code,
            timestamp: now_ns(),
        });
    }

    fn emit_sandbox(&self, topic: &str, id: &str) {
        tracing::info!(sandbox = id, "{topic}");
        let _ = self.events.send(Event {
            topic: topic.into(),
            sandbox_id: id.into(),
            timestamp: now_ns(),
            ..Default::default()
        });
    }

    /// The supervisor's events: records updated, then published.
    fn on_event(&self, e: SupEvent) {
        match e {
            SupEvent::Created { id, pid, .. } => self.emit("task-created", &id, "", pid, 0),
            SupEvent::Started { id, pid } => self.emit("task-started", &id, "", pid, 0),
            SupEvent::ExecStarted { id, exec_id, pid } => {
                self.emit("exec-started", &id, &exec_id, pid, 0)
            }
            SupEvent::Exited {
                id,
                exec_id,
                pid,
                exit,
            } => {
                if exec_id != id {
                    self.emit("exec-exited", &id, &exec_id, pid, exit.status as i32);
                    return;
                }
                // The kernel's count, read before the cgroup goes: the OOM
                // notification may come after the exit.
                let oom = self
                    .sup
                    .with_cgroup(&id, |cg| cg.oom_kills() > 0)
                    .unwrap_or(false);
                if oom {
                    self.oom(&id, pid);
                }
                let saved = {
                    let mut r = self.records();
                    r.tasks.get_mut(&id).map(|t| {
                        t.finished_at = exit_ns(&exit);
                        t.exit_code = exit.status as i32;
                        t.clone()
                    })
                };
                if let Some(t) = saved {
                    let _ = sandbox::save_task(&self.layout, &t);
                }
                self.emit("task-exited", &id, "", pid, exit.status as i32);
            }
            SupEvent::Oom { id } => {
                let pid = self.sup.task_pid(&id).unwrap_or(0);
                self.oom(&id, pid);
            }
            SupEvent::Deleted { id, pid, exit } => {
                self.emit("task-removed", &id, "", pid, exit.status as i32)
            }
            SupEvent::Warning { id, message } => tracing::warn!(task = %id, "{message}"),
            SupEvent::ExecAdded { .. } | SupEvent::Paused { .. } | SupEvent::Resumed { .. } => {}
        }
    }

    /// The kernel killed in task `id`'s memory cgroup: recorded and
    /// published once (a process of the task may be killed while the task
    /// goes on; the exit reads the count in case the notice comes late).
    fn oom(&self, id: &str, pid: i32) {
        let first = {
            let mut r = self.records();
            match r.tasks.get_mut(id) {
                Some(t) if !t.oom_killed => {
                    t.oom_killed = true;
                    Some(t.clone())
                }
                _ => None,
            }
        };
        if let Some(t) = first {
            let _ = sandbox::save_task(&self.layout, &t);
            self.emit("task-oom", id, "", pid, 0);
        }
    }

    /// A task's record with its current state.
    fn task_view(&self, mut t: Task) -> Task {
        match self.sup.state(&t.id, None) {
            Ok(st) => {
                t.pid = st.pid.max(0) as u32;
                t.state = match st.state {
                    State::Created => TaskState::Created,
                    State::Running => TaskState::Running,
                    State::Paused => TaskState::Paused,
                    State::Stopped => TaskState::Exited,
                } as i32;
                if let Some(x) = st.exit {
                    t.exit_code = x.status as i32;
                    t.finished_at = exit_ns(&x);
                }
            }
            Err(_) => t.state = TaskState::Exited as i32,
        }
        t
    }

    fn sandbox_view(&self, mut s: Sandbox) -> Sandbox {
        let r = self.records();
        s.task_ids = r
            .tasks
            .values()
            .filter(|t| t.sandbox_id == s.id)
            .map(|t| t.id.clone())
            .collect();
        s
    }

    fn task_record(&self, id: &str) -> Result<Task, Status> {
        self.records()
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("task {id} not found")))
    }

    fn sandbox_record(&self, id: &str) -> Result<Sandbox, Status> {
        self.records()
            .sandboxes
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("sandbox {id} not found")))
    }

    /// Signal, grace period, SIGKILL; returns once the task has exited.
    async fn stop(&self, id: &str, sig: Signal, grace: Duration) -> Result<(), Status> {
        match self.sup.state(id, None).map_err(status)?.state {
            State::Stopped => {
                self.exit_recorded(id).await;
                return Ok(());
            }
            State::Created => {
                // Never started: nothing to wait for but the init's end.
                let _ = self.sup.kill(id, None, Signal::SIGKILL, true);
                let _ = self.sup.wait(id, None).await;
                return Ok(());
            }
            State::Paused => {
                let _ = self.sup.resume(id);
            }
            State::Running => {}
        }
        let _ = self.sup.kill(id, None, sig, false);
        if tokio::time::timeout(grace, self.sup.wait(id, None))
            .await
            .is_ok()
        {
            return Ok(());
        }
        let _ = self.sup.kill(id, None, Signal::SIGKILL, true);
        self.sup.wait(id, None).await.map_err(status)?;
        Ok(())
    }

    /// Waits until the exit of a task whose init the kernel reports dead is
    /// recorded: the reaper may be a step behind, and delete needs the exit.
    /// Bounded, so a lost exit fails the delete by name instead of hanging.
    async fn exit_recorded(&self, id: &str) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sup.wait(id, None)).await;
    }

    /// Stops `tasks` together: one grace period for all, not one each.
    async fn stop_all(self: &Arc<Self>, tasks: Vec<String>, grace: Duration) -> Result<(), Status> {
        let mut set = tokio::task::JoinSet::new();
        for t in tasks {
            let d = self.clone();
            set.spawn(async move { d.stop(&t, Signal::SIGTERM, grace).await });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| internal("stopping a task", e))??;
        }
        Ok(())
    }

    /// Deletes an exited task: the engine's state, its bundle, its record.
    fn drop_task(&self, id: &str) -> Result<(), Status> {
        let t = self.task_record(id)?;
        match self.sup.delete(id, None) {
            Ok(_) => {}
            Err(e) if e.kind == Kind::NotFound => {}
            Err(e) => return Err(status(e)),
        }
        let _ = std::fs::remove_dir_all(self.layout.bundle(&t.sandbox_id, &t.name));
        self.records().tasks.remove(id);
        Ok(())
    }

    /// The process of an exec into task `id`: the task's own (user,
    /// capabilities, cwd, env) running `command`.
    fn exec_process(
        &self,
        t: &Task,
        command: &[String],
        env: &std::collections::HashMap<String, String>,
        tty: Option<(u32, u32)>,
    ) -> Result<oci_spec::runtime::Process, Status> {
        if command.is_empty() {
            return Err(Status::invalid_argument(
                "command: is empty: name the program to run",
            ));
        }
        let bundle = self.layout.bundle(&t.sandbox_id, &t.name);
        let text = std::fs::read(bundle.join("config.json"))
            .map_err(|e| internal("reading the task's spec", e))?;
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&text).map_err(|e| internal("the task's spec", e))?;
        let mut p = spec
            .process()
            .clone()
            .ok_or_else(|| Status::internal("the task's spec has no process"))?;
        p.set_args(Some(command.to_vec()));
        let mut vars = p.env().clone().unwrap_or_default();
        let mut keys: Vec<&String> = env.keys().collect();
        keys.sort();
        for k in keys {
            vars.retain(|e| !e.starts_with(&format!("{k}=")));
            vars.push(format!("{k}={}", env[k]));
        }
        p.set_env(Some(vars));
        p.set_terminal(Some(tty.is_some()));
        // The terminal's first size is set before the command runs (a
        // resize after start would race with its first look).
        p.set_console_size(tty.filter(|&(w, h)| w > 0 && h > 0).and_then(|(w, h)| {
            oci_spec::runtime::BoxBuilder::default()
                .width(u64::from(w))
                .height(u64::from(h))
                .build()
                .ok()
        }));
        Ok(p)
    }

    fn running_task(&self, id: &str) -> Result<Task, Status> {
        let t = self.task_record(id)?;
        let st = self.sup.state(id, None).map_err(status)?;
        if st.state != State::Running {
            return Err(Status::failed_precondition(format!(
                "task {id} is not running ({:?})",
                st.state
            )));
        }
        Ok(t)
    }

    /// Adds and starts an exec of `process` in task `id`; nothing is left
    /// of it when it cannot start. Returns its id, pid and the caller's IO.
    fn start_exec(
        &self,
        id: &str,
        process: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<(String, i32, Option<Attached>), Status> {
        let exec_id = self.next_exec_id();
        self.sup
            .add_exec(id, &exec_id, process, stdio)
            .map_err(status)?;
        match self.sup.start(id, Some(&exec_id)) {
            Ok((pid, attached)) => Ok((exec_id, pid, attached)),
            Err(e) => {
                let _ = self.sup.delete(id, Some(&exec_id));
                Err(status(e))
            }
        }
    }

    fn next_exec_id(&self) -> String {
        let n = self
            .exec_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("exec-{}-{n}", std::process::id())
    }

    /// Loads the records of a previous run; tasks still known to the engine
    /// are adopted by the supervisor.
    pub fn recover(&self) {
        let (sandboxes, tasks) = sandbox::load_all(&self.layout);
        let mut r = self.records();
        for s in sandboxes {
            r.sandboxes.insert(s.id.clone(), s);
        }
        for t in tasks {
            let bundle = self.layout.bundle(&t.sandbox_id, &t.name);
            let stdio = task_stdio(&t.config.clone().unwrap_or_default());
            let driver = match self.driver() {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("driver config: {}", e.message());
                    DriverConfig::default()
                }
            };
            if let Err(e) = self.sup.adopt(&t.id, &bundle, stdio, driver) {
                tracing::warn!(task = %t.id, "not recovered: {e}");
            }
            r.tasks.insert(t.id.clone(), t);
        }
    }
}

/// A task's IO: no input, its output appended to the host files it names.
fn task_stdio(cfg: &TaskConfig) -> Stdio {
    let file = |p: &str| {
        if p.is_empty() {
            String::new()
        } else {
            format!("file://{p}")
        }
    };
    Stdio::uris("", &file(&cfg.stdout_path), &file(&cfg.stderr_path), false)
}

/// The host's users and groups, for a task's user.
fn read_users() -> (String, String) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    (passwd, group)
}

fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

#[tonic::async_trait]
impl RuntimeService for Arc<Daemon> {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            name: "isoexecd".into(),
            version: runtime::VERSION.into(),
            api_version: "isoexec.v1".into(),
        }))
    }

    async fn fingerprint(
        &self,
        _: Request<FingerprintRequest>,
    ) -> Result<Response<FingerprintResponse>, Status> {
        let f = runtime::fingerprint::gather();
        Ok(Response::new(FingerprintResponse {
            attributes: f.attributes().into_iter().collect(),
            detected: f.detected,
            health: f.health.into(),
            health_description: f.health_description.clone(),
            cgroup_version: u32::from(f.cgroup_version),
            controllers_missing: f.controllers_missing.clone(),
            resource_controls: f.resource_controls,
        }))
    }

    async fn run_sandbox(
        &self,
        req: Request<RunSandboxRequest>,
    ) -> Result<Response<RunSandboxResponse>, Status> {
        let req = req.into_inner();
        spec::validate_name("id", &req.id, false).map_err(field)?;
        let mode = NetworkMode::try_from(req.network_mode).map_err(|_| {
            Status::invalid_argument(format!("network_mode: {} is not a mode", req.network_mode))
        })?;
        if self.records().sandboxes.contains_key(&req.id) {
            return Err(Status::already_exists(format!(
                "sandbox {} already exists",
                req.id
            )));
        }
        let dir = self.layout.sandbox_dir(&req.id);
        std::fs::create_dir_all(dir.join("tasks"))
            .map_err(|e| internal("creating the sandbox", e))?;
        let alloc = runtime::driver::sandbox_dir(&self.layout.engine_root(), &req.id).join("alloc");
        let mut s = Sandbox {
            id: req.id.clone(),
            labels: req.labels,
            network_mode: mode as i32,
            state: SandboxState::Ready as i32,
            created_at: now_ns(),
            alloc_dir: alloc.display().to_string(),
            netns_path: String::new(),
            task_ids: vec![],
        };
        let undo = |e: Status| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        std::fs::create_dir_all(&alloc).map_err(|e| undo(internal("creating alloc/", e)))?;
        if mode == NetworkMode::Group {
            let ns = self.layout.netns(&req.id);
            sandbox::create_netns(&ns)
                .map_err(|e| undo(internal("creating the network namespace", e)))?;
            s.netns_path = ns.display().to_string();
        }
        if let Err(e) = sandbox::save_sandbox(&self.layout, &s) {
            sandbox::remove_netns(&self.layout.netns(&req.id));
            return Err(undo(internal("saving the sandbox", e)));
        }
        self.records().sandboxes.insert(s.id.clone(), s.clone());
        self.emit_sandbox("sandbox-ready", &s.id);
        Ok(Response::new(RunSandboxResponse { sandbox: Some(s) }))
    }

    async fn stop_sandbox(
        &self,
        req: Request<StopSandboxRequest>,
    ) -> Result<Response<StopSandboxResponse>, Status> {
        let req = req.into_inner();
        let s = self.sandbox_record(&req.id)?;
        let tasks = self.sandbox_view(s).task_ids;
        self.stop_all(tasks, grace(req.grace_period_seconds))
            .await?;
        let saved = {
            let mut r = self.records();
            r.sandboxes.get_mut(&req.id).map(|s| {
                s.state = SandboxState::Notready as i32;
                s.clone()
            })
        };
        if let Some(s) = saved {
            let _ = sandbox::save_sandbox(&self.layout, &s);
        }
        self.emit_sandbox("sandbox-stopped", &req.id);
        Ok(Response::new(StopSandboxResponse {}))
    }

    async fn remove_sandbox(
        &self,
        req: Request<RemoveSandboxRequest>,
    ) -> Result<Response<RemoveSandboxResponse>, Status> {
        let req = req.into_inner();
        let s = self.sandbox_record(&req.id)?;
        let tasks = self.sandbox_view(s).task_ids;
        self.stop_all(tasks.clone(), grace(req.grace_period_seconds))
            .await?;
        for t in tasks {
            self.drop_task(&t)?;
        }
        sandbox::remove_netns(&self.layout.netns(&req.id));
        runtime::container::release_sandbox(&self.layout.engine_root(), &req.id);
        std::fs::remove_dir_all(self.layout.sandbox_dir(&req.id))
            .map_err(|e| internal("removing the sandbox directory", e))?;
        self.records().sandboxes.remove(&req.id);
        self.emit_sandbox("sandbox-removed", &req.id);
        Ok(Response::new(RemoveSandboxResponse {}))
    }

    async fn sandbox_status(
        &self,
        req: Request<SandboxStatusRequest>,
    ) -> Result<Response<SandboxStatusResponse>, Status> {
        let s = self.sandbox_record(&req.into_inner().id)?;
        Ok(Response::new(SandboxStatusResponse {
            sandbox: Some(self.sandbox_view(s)),
        }))
    }

    async fn list_sandboxes(
        &self,
        req: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        let want = req.into_inner().labels;
        let all: Vec<Sandbox> = self.records().sandboxes.values().cloned().collect();
        let sandboxes = all
            .into_iter()
            .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| self.sandbox_view(s))
            .collect();
        Ok(Response::new(ListSandboxesResponse { sandboxes }))
    }

    async fn create_task(
        &self,
        req: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let req = req.into_inner();
        let s = self.sandbox_record(&req.sandbox_id)?;
        if s.state != SandboxState::Ready as i32 {
            return Err(Status::failed_precondition(format!(
                "sandbox {} is stopped: it takes no new task",
                s.id
            )));
        }
        spec::validate_name("name", &req.name, false).map_err(field)?;
        let id = spec::task_id(&s.id, &req.name);
        if self.records().tasks.contains_key(&id) {
            return Err(Status::already_exists(format!("task {id} already exists")));
        }
        let config = req.config.unwrap_or_default();
        let driver = self.driver()?;
        let (passwd, group) = read_users();
        let host = spec::Host {
            passwd: &passwd,
            group: &group,
            cpus: host_cpus(),
            read: |p| std::fs::read_to_string(p),
        };
        let at = spec::Placement {
            sandbox_id: &s.id,
            name: &req.name,
            netns: (!s.netns_path.is_empty()).then_some(s.netns_path.as_str()),
        };
        let oci = spec::task_spec(&config, &driver, &host, &at).map_err(field)?;
        let bundle = self.layout.bundle(&s.id, &req.name);
        std::fs::create_dir_all(&bundle).map_err(|e| internal("creating the task's bundle", e))?;
        let undo = |e: Status| {
            let _ = std::fs::remove_dir_all(&bundle);
            e
        };
        let text =
            serde_json::to_vec_pretty(&oci).map_err(|e| undo(internal("the task's spec", e)))?;
        // The spec holds the task's environment: root's alone.
        runtime::container::write_private(&bundle.join("config.json"), &text)
            .map_err(|e| undo(internal("writing config.json", e)))?;
        let created = self
            .sup
            .create(NewTask {
                id: id.clone(),
                bundle: bundle.clone(),
                stdio: task_stdio(&config),
                driver,
                rootfs_mounted: false,
            })
            .map_err(|e| undo(request_error(e)))?;
        for w in &created.warnings {
            tracing::warn!(task = %id, "{w}");
        }
        let t = Task {
            id: id.clone(),
            sandbox_id: s.id.clone(),
            name: req.name.clone(),
            state: TaskState::Created as i32,
            pid: created.pid as u32,
            created_at: now_ns(),
            config: Some(config),
            warnings: created.warnings,
            ..Default::default()
        };
        if let Err(e) = sandbox::save_task(&self.layout, &t) {
            let _ = self.sup.kill(&id, None, Signal::SIGKILL, true);
            let _ = self.sup.wait(&id, None).await;
            let _ = self.sup.delete(&id, None);
            return Err(undo(internal("saving the task", e)));
        }
        self.records().tasks.insert(id, t.clone());
        Ok(Response::new(CreateTaskResponse {
            task: Some(self.task_view(t)),
        }))
    }

    async fn start_task(
        &self,
        req: Request<StartTaskRequest>,
    ) -> Result<Response<StartTaskResponse>, Status> {
        let id = req.into_inner().task_id;
        self.task_record(&id)?;
        self.sup.start(&id, None).map_err(status)?;
        let t = {
            let mut r = self.records();
            let t = r
                .tasks
                .get_mut(&id)
                .ok_or_else(|| Status::not_found(format!("task {id} not found")))?;
            t.started_at = now_ns();
            t.clone()
        };
        let _ = sandbox::save_task(&self.layout, &t);
        Ok(Response::new(StartTaskResponse {
            task: Some(self.task_view(t)),
        }))
    }

    async fn stop_task(
        &self,
        req: Request<StopTaskRequest>,
    ) -> Result<Response<StopTaskResponse>, Status> {
        let req = req.into_inner();
        self.task_record(&req.task_id)?;
        let sig = spec::parse_signal("signal", &req.signal, Signal::SIGTERM).map_err(field)?;
        self.stop(&req.task_id, sig, grace(req.grace_period_seconds))
            .await?;
        let t = self.task_record(&req.task_id)?;
        Ok(Response::new(StopTaskResponse {
            task: Some(self.task_view(t)),
        }))
    }

    async fn remove_task(
        &self,
        req: Request<RemoveTaskRequest>,
    ) -> Result<Response<RemoveTaskResponse>, Status> {
        let id = req.into_inner().task_id;
        self.task_record(&id)?;
        match self.sup.state(&id, None).map_err(status)?.state {
            State::Running => {
                return Err(Status::failed_precondition(format!(
                    "task {id} is running: stop it first"
                )))
            }
            State::Stopped => self.exit_recorded(&id).await,
            _ => {}
        }
        self.drop_task(&id)?;
        Ok(Response::new(RemoveTaskResponse {}))
    }

    async fn task_status(
        &self,
        req: Request<TaskStatusRequest>,
    ) -> Result<Response<TaskStatusResponse>, Status> {
        let t = self.task_record(&req.into_inner().task_id)?;
        Ok(Response::new(TaskStatusResponse {
            task: Some(self.task_view(t)),
        }))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let req = req.into_inner();
        let all: Vec<Task> = self.records().tasks.values().cloned().collect();
        let tasks = all
            .into_iter()
            .filter(|t| req.sandbox_id.is_empty() || t.sandbox_id == req.sandbox_id)
            .map(|t| self.task_view(t))
            .filter(|t| req.state == 0 || t.state == req.state)
            .collect();
        Ok(Response::new(ListTasksResponse { tasks }))
    }

    async fn wait_task(
        &self,
        req: Request<WaitTaskRequest>,
    ) -> Result<Response<WaitTaskResponse>, Status> {
        let id = req.into_inner().task_id;
        self.task_record(&id)?;
        let exit = self.sup.wait(&id, None).await.map_err(status)?;
        let t = self.task_record(&id)?;
        Ok(Response::new(WaitTaskResponse {
            exit_code: exit.status as i32,
            finished_at: exit_ns(&exit),
            oom_killed: t.oom_killed,
        }))
    }

    async fn signal_task(
        &self,
        req: Request<SignalTaskRequest>,
    ) -> Result<Response<SignalTaskResponse>, Status> {
        let req = req.into_inner();
        self.task_record(&req.task_id)?;
        let sig = spec::parse_signal("signal", &req.signal, Signal::SIGTERM).map_err(field)?;
        self.sup
            .kill(&req.task_id, None, sig, false)
            .map_err(status)?;
        Ok(Response::new(SignalTaskResponse {}))
    }

    async fn update_task_resources(
        &self,
        req: Request<UpdateTaskResourcesRequest>,
    ) -> Result<Response<UpdateTaskResourcesResponse>, Status> {
        let req = req.into_inner();
        self.task_record(&req.task_id)?;
        let cpus = host_cpus();
        let r = req.resources.unwrap_or_default();
        let v = spec::resources(&r, cpus, "resources").map_err(field)?;
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_value(v).map_err(|e| internal("resources", e))?;
        self.sup.update(&req.task_id, &res).map_err(status)?;
        Ok(Response::new(UpdateTaskResourcesResponse {}))
    }

    async fn exec_sync(
        &self,
        req: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let req = req.into_inner();
        let t = self.running_task(&req.task_id)?;
        let process = self.exec_process(&t, &req.command, &req.env, None)?;
        let (exec_id, _, attached) = self.start_exec(&t.id, process, Stdio::default())?;
        let Some(Attached::Pipes {
            stdin,
            stdout,
            stderr,
        }) = attached
        else {
            return Err(Status::internal("exec: no pipes"));
        };
        drop(stdin);
        let collect = async {
            let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
            let exit = self.sup.wait(&t.id, Some(&exec_id)).await;
            (out, err, exit)
        };
        let result = if req.timeout_seconds > 0 {
            tokio::time::timeout(Duration::from_secs(u64::from(req.timeout_seconds)), collect).await
        } else {
            Ok(collect.await)
        };
        let Ok((out, err, exit)) = result else {
            let _ = self.sup.kill(&t.id, Some(&exec_id), Signal::SIGKILL, false);
            let _ = self.sup.wait(&t.id, Some(&exec_id)).await;
            let _ = self.sup.delete(&t.id, Some(&exec_id));
            return Err(Status::deadline_exceeded(format!(
                "the command did not finish within {} s: killed",
                req.timeout_seconds
            )));
        };
        let exit = exit.map_err(status)?;
        let _ = self.sup.delete(&t.id, Some(&exec_id));
        Ok(Response::new(ExecSyncResponse {
            stdout: out,
            stderr: err,
            exit_code: exit.status as i32,
        }))
    }

    type ExecStream = Stream2<ExecResponse>;

    async fn exec(
        &self,
        req: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("exec: the stream ended before its start"))?;
        let Some(exec_request::Request::Start(start)) = first.request else {
            return Err(Status::invalid_argument(
                "exec: the first message must be start",
            ));
        };
        let t = self.running_task(&start.task_id)?;
        let process = self.exec_process(
            &t,
            &start.command,
            &start.env,
            start.tty.then_some((start.width, start.height)),
        )?;
        let stdio = Stdio {
            terminal: start.tty,
            ..Default::default()
        };
        let (exec_id, pid, attached) = self.start_exec(&t.id, process, stdio)?;
        let (tx, rx) = mpsc::channel::<Result<ExecResponse, Status>>(64);
        let send = |r: exec_response::Response| ExecResponse { response: Some(r) };
        let _ = tx
            .send(Ok(send(exec_response::Response::Started(ExecStarted {
                exec_id: exec_id.clone(),
                pid: pid as u32,
            }))))
            .await;
        let (stdin, outputs) = match attached {
            Some(Attached::Pipes {
                stdin,
                stdout,
                stderr,
            }) => (Some(stdin), vec![(stdout, false), (stderr, true)]),
            Some(Attached::Terminal(master)) => {
                let input = master.try_clone().map_err(|e| internal("terminal", e))?;
                (Some(input), vec![(master, false)])
            }
            None => (None, vec![]),
        };
        let d = self.clone();
        let task_id = t.id.clone();
        tokio::spawn(async move {
            // Input: stdin, its end, resizes; until the client's stream ends.
            let input_task = {
                let (d, task_id, exec_id) = (d.clone(), task_id.clone(), exec_id.clone());
                tokio::spawn(async move {
                    let mut writer = stdin.and_then(|f| to_async_writer(f).ok());
                    while let Ok(Some(m)) = input.message().await {
                        match m.request {
                            Some(exec_request::Request::Stdin(b)) => {
                                if let Some(w) = writer.as_mut() {
                                    use tokio::io::AsyncWriteExt;
                                    if w.write_all(&b).await.is_err() {
                                        writer = None;
                                    }
                                }
                            }
                            Some(exec_request::Request::CloseStdin(true)) => writer = None,
                            Some(exec_request::Request::Resize(r)) => {
                                let _ = d.sup.resize(&task_id, Some(&exec_id), r.width, r.height);
                            }
                            _ => {}
                        }
                    }
                })
            };
            let mut pumps = Vec::new();
            for (f, is_err) in outputs {
                let tx = tx.clone();
                pumps.push(tokio::spawn(async move {
                    let Ok(mut r) = to_async_reader(f) else {
                        return;
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        use tokio::io::AsyncReadExt;
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let data = buf[..n].to_vec();
                                let msg = if is_err {
                                    exec_response::Response::Stderr(data)
                                } else {
                                    exec_response::Response::Stdout(data)
                                };
                                if tx
                                    .send(Ok(ExecResponse {
                                        response: Some(msg),
                                    }))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            let exit = d.sup.wait(&task_id, Some(&exec_id)).await;
            for p in pumps {
                let _ = p.await;
            }
            input_task.abort();
            let _ = d.sup.delete(&task_id, Some(&exec_id));
            let msg = match exit {
                Ok(x) => Ok(ExecResponse {
                    response: Some(exec_response::Response::ExitCode(x.status as i32)),
                }),
                Err(e) => Err(status(e)),
            };
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type TaskStatsStream = Stream2<TaskStatsResponse>;

    async fn task_stats(
        &self,
        req: Request<TaskStatsRequest>,
    ) -> Result<Response<Self::TaskStatsStream>, Status> {
        let req = req.into_inner();
        self.task_record(&req.task_id)?;
        let interval = Duration::from_millis(u64::from(if req.interval_ms == 0 {
            1000
        } else {
            req.interval_ms
        }));
        let (tx, rx) = mpsc::channel(4);
        let d = self.clone();
        tokio::spawn(async move {
            let mut last: Option<(u64, std::time::Instant)> = None;
            loop {
                let Ok(u) = d.sup.with_cgroup(&req.task_id, isoexec_shim::usage::read) else {
                    return;
                };
                let now = std::time::Instant::now();
                let cpu_percent = last.map_or(0.0, |(cpu, at)| {
                    let dt = now.duration_since(at).as_nanos() as f64;
                    if dt > 0.0 {
                        100.0 * u.cpu_total_ns.saturating_sub(cpu) as f64 / dt
                    } else {
                        0.0
                    }
                });
                last = Some((u.cpu_total_ns, now));
                let r = TaskStatsResponse {
                    timestamp: now_ns(),
                    cpu_percent,
                    cpu_total_ns: u.cpu_total_ns,
                    cpu_user_ns: u.cpu_user_ns,
                    cpu_system_ns: u.cpu_system_ns,
                    memory_rss: u.memory_rss,
                    memory_cache: u.memory_cache,
                    memory_swap: if u.v2 {
                        u.swap_usage
                    } else {
                        u.swap_usage.saturating_sub(u.memory_usage)
                    },
                    memory_usage: u.memory_usage,
                    memory_limit: u.memory_limit,
                    pids_current: u.pids_current,
                    pids_limit: u.pids_limit,
                };
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type EventsStream = Stream2<Event>;

    async fn events(
        &self,
        req: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let req = req.into_inner();
        let rx = self.events.subscribe();
        let stream =
            tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| match e {
                Ok(e)
                    if (req.sandbox_id.is_empty() || e.sandbox_id == req.sandbox_id)
                        && (req.task_id.is_empty() || e.task_id == req.task_id) =>
                {
                    Some(Ok(e))
                }
                Ok(_) => None,
                Err(_) => Some(Err(Status::data_loss(
                    "events were dropped: the reader fell behind",
                ))),
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

async fn read_all(f: std::fs::File) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if let Ok(mut r) = to_async_reader(f) {
        let _ = r.read_to_end(&mut out).await;
    }
    out
}

/// A pipe or pty master as an async reader (non-blocking, on the reactor:
/// no blocking threads in a process that forks).
fn to_async_reader(f: std::fs::File) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    isoexec_shim::io::set_nonblocking(&f)?;
    tokio::net::unix::pipe::Receiver::from_file_unchecked(f)
}

fn to_async_writer(f: std::fs::File) -> std::io::Result<tokio::net::unix::pipe::Sender> {
    isoexec_shim::io::set_nonblocking(&f)?;
    tokio::net::unix::pipe::Sender::from_file_unchecked(f)
}
