//! isoexecd through its socket, as its users drive it: a tonic client made
//! from the same protos, and isoexecctl. Each test starts its own daemon on
//! a temp socket and state dir, runs host binaries (the default chroot_env),
//! and checks that nothing is left: process, cgroup, mount, state.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use isoexec_daemon::api::runtime_service_client::RuntimeServiceClient;
use isoexec_daemon::api::*;
use tonic::transport::Channel;
use tonic::Code;

type Client = RuntimeServiceClient<Channel>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An isoexecd of the test's own; stopped (SIGTERM, by pid) when dropped,
/// after removing what the test left.
struct Daemon {
    dir: TempDir,
    child: Option<Child>,
    config: Option<PathBuf>,
    /// The binary, when not the built one (an attack's copy).
    exe: Option<PathBuf>,
}

impl Daemon {
    fn start() -> Daemon {
        Self::with_config(None)
    }

    fn with_config(toml: Option<&str>) -> Daemon {
        Self::with(toml, None)
    }

    fn with(toml: Option<&str>, exe: Option<PathBuf>) -> Daemon {
        require_root();
        let dir = TempDir::new("isoexecd");
        let config = toml.map(|t| {
            let p = dir.path().join("config.toml");
            std::fs::write(&p, t).expect("config");
            p
        });
        let mut d = Daemon {
            dir,
            child: None,
            config,
            exe,
        };
        d.spawn();
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("isoexecd.sock")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn spawn(&mut self) {
        let mut c = Command::new(self.exe.clone().unwrap_or_else(|| binary("isoexecd")));
        c.arg("--listen")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state())
            .stderr(std::fs::File::create(self.dir.path().join("log")).expect("log"));
        if let Some(p) = &self.config {
            c.arg("--config").arg(p);
        }
        self.child = Some(c.spawn().expect("isoexecd"));
        let sock = self.socket();
        assert!(
            eventually(5, || std::os::unix::net::UnixStream::connect(&sock).is_ok()),
            "isoexecd did not listen: {}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// SIGTERM and wait: the daemon goes, its tasks stay.
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a signal to the daemon this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn client(&self, rt: &tokio::runtime::Runtime) -> Client {
        rt.block_on(isoexec_daemon::client::connect(self.socket()))
            .expect("connect")
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary("isoexecctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("isoexecctl")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let rt = rt();
            let mut c = self.client(&rt);
            let list = rt.block_on(c.list_sandboxes(ListSandboxesRequest::default()));
            for s in list.map(|l| l.into_inner().sandboxes).unwrap_or_default() {
                let _ = rt.block_on(c.remove_sandbox(RemoveSandboxRequest {
                    id: s.id,
                    grace_period_seconds: 1,
                }));
            }
        }
        self.terminate();
    }
}

fn config(command: &str, args: &[&str]) -> TaskConfig {
    TaskConfig {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn sh(script: &str) -> TaskConfig {
    config("/bin/sh", &["-c", script])
}

async fn sandbox(c: &mut Client, id: &str, mode: NetworkMode) -> Sandbox {
    c.run_sandbox(RunSandboxRequest {
        id: id.into(),
        labels: HashMap::from([("test".to_string(), "yes".to_string())]),
        network_mode: mode as i32,
    })
    .await
    .expect("run sandbox")
    .into_inner()
    .sandbox
    .expect("sandbox")
}

/// Creates and starts a task; returns it.
async fn run(c: &mut Client, sandbox: &str, name: &str, cfg: TaskConfig) -> Task {
    let t = create(c, sandbox, name, cfg).await.expect("create task");
    c.start_task(StartTaskRequest {
        task_id: t.id.clone(),
    })
    .await
    .expect("start task")
    .into_inner()
    .task
    .expect("task")
}

async fn create(
    c: &mut Client,
    sandbox: &str,
    name: &str,
    cfg: TaskConfig,
) -> Result<Task, tonic::Status> {
    Ok(c.create_task(CreateTaskRequest {
        sandbox_id: sandbox.into(),
        name: name.into(),
        config: Some(cfg),
    })
    .await?
    .into_inner()
    .task
    .expect("task"))
}

async fn exec_sync(c: &mut Client, task: &str, cmd: &[&str]) -> ExecSyncResponse {
    c.exec_sync(ExecSyncRequest {
        task_id: task.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        timeout_seconds: 10,
        env: HashMap::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("exec {cmd:?} in {task}: {e}"))
    .into_inner()
}

async fn out(c: &mut Client, task: &str, cmd: &[&str]) -> String {
    let r = exec_sync(c, task, cmd).await;
    assert_eq!(
        r.exit_code,
        0,
        "{cmd:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

async fn stop(c: &mut Client, task: &str, grace: u32) -> Task {
    c.stop_task(StopTaskRequest {
        task_id: task.into(),
        signal: String::new(),
        grace_period_seconds: grace,
    })
    .await
    .expect("stop")
    .into_inner()
    .task
    .expect("task")
}

/// RemoveSandbox with a 1 s grace period.
async fn remove_sandbox(c: &mut Client, id: &str) {
    c.remove_sandbox(RemoveSandboxRequest {
        id: id.into(),
        grace_period_seconds: 1,
    })
    .await
    .unwrap_or_else(|e| panic!("remove sandbox {id}: {e}"));
}

/// Nothing of these tasks left on the host, nor of the sandboxes in the
/// state dir.
fn assert_clean(d: &Daemon, tasks: &[Task]) {
    for t in tasks {
        assert!(
            !alive(t.pid as i32) || t.pid == 0,
            "task {} (pid {}) still runs",
            t.id,
            t.pid
        );
        for c in ["memory", "pids", "cpu", "freezer"] {
            let dir = cgroup_dir(c, &format!("/isoexecd/{}", t.id));
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
    assert_eq!(
        mounts_under(d.dir.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    let left: Vec<_> = std::fs::read_dir(d.state().join("sandboxes"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sandbox state left: {left:?}");
    let engine: Vec<_> = std::fs::read_dir(d.state().join("tasks"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(engine.is_empty(), "task state left: {engine:?}");
}

fn host_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .expect("netns")
        .display()
        .to_string()
}

#[test]
fn two_tasks_of_a_group_sandbox_share_alloc_and_a_network_namespace() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        let s = sandbox(&mut c, "grp", NetworkMode::Group).await;
        assert!(Path::new(&s.netns_path).exists(), "{}", s.netns_path);
        let a = run(
            &mut c,
            "grp",
            "writer",
            sh("echo from-writer > /alloc/shared; exec sleep 100"),
        )
        .await;
        let b = run(&mut c, "grp", "reader", config("/bin/sleep", &["100"])).await;
        assert_eq!(a.id, "grp.writer");
        assert_eq!(a.state, TaskState::Running as i32);
        assert!(eventually(5, || Path::new(&s.alloc_dir)
            .join("shared")
            .exists()));
        assert_eq!(
            out(&mut c, &b.id, &["cat", "/alloc/shared"]).await,
            "from-writer"
        );

        let na = out(&mut c, &a.id, &["readlink", "/proc/self/ns/net"]).await;
        let nb = out(&mut c, &b.id, &["readlink", "/proc/self/ns/net"]).await;
        assert_eq!(na, nb, "one network namespace for the sandbox");
        assert_ne!(na, host_netns(), "not the host's");
        // Loopback is up (IFF_UP | IFF_LOOPBACK) and it is the only interface.
        assert_eq!(
            out(&mut c, &a.id, &["cat", "/sys/class/net/lo/flags"]).await,
            "0x9"
        );
        assert_eq!(out(&mut c, &a.id, &["ls", "/sys/class/net"]).await, "lo");
        // The exec driver's default user.
        assert_eq!(out(&mut c, &a.id, &["id", "-u"]).await, "65534");

        let st = c
            .sandbox_status(SandboxStatusRequest { id: "grp".into() })
            .await
            .expect("status")
            .into_inner()
            .sandbox
            .expect("sandbox");
        assert_eq!(
            st.task_ids,
            vec!["grp.reader".to_string(), "grp.writer".to_string()]
        );
        let listed = c
            .list_tasks(ListTasksRequest {
                sandbox_id: "grp".into(),
                state: TaskState::Running as i32,
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        assert_eq!(listed.len(), 2);

        // A host-mode sandbox: the host's network.
        sandbox(&mut c, "hst", NetworkMode::Host).await;
        let h = run(&mut c, "hst", "t", config("/bin/sleep", &["100"])).await;
        assert_eq!(
            out(&mut c, &h.id, &["readlink", "/proc/self/ns/net"]).await,
            host_netns()
        );

        let a = stop(&mut c, &a.id, 1).await;
        assert_eq!(a.state, TaskState::Exited as i32);
        // sleep is pid 1 of its namespace: without a handler, SIGTERM is
        // ignored, and SIGKILL comes after the grace period.
        assert_eq!(a.exit_code, 137);
        for id in ["grp", "hst"] {
            c.remove_sandbox(RemoveSandboxRequest {
                id: id.into(),
                grace_period_seconds: 1,
            })
            .await
            .expect("remove sandbox");
        }
        assert!(!Path::new(&s.netns_path).exists());
        assert!(!Path::new(&s.alloc_dir).exists());
        let e = c
            .sandbox_status(SandboxStatusRequest { id: "grp".into() })
            .await
            .expect_err("gone");
        assert_eq!(e.code(), Code::NotFound);
        assert_clean(&d, &[a, b, h]);
    });
}

#[test]
fn exec_sync_and_attached_exec_with_and_without_a_terminal() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        sandbox(&mut c, "ex", NetworkMode::Host).await;
        let t = run(&mut c, "ex", "main", config("/bin/sleep", &["100"])).await;

        let r = exec_sync(
            &mut c,
            &t.id,
            &["sh", "-c", "echo out; echo err >&2; exit 7"],
        )
        .await;
        assert_eq!(
            (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 7)
        );
        let mut env = HashMap::new();
        env.insert("GREETING".to_string(), "hi there".to_string());
        let r = c
            .exec_sync(ExecSyncRequest {
                task_id: t.id.clone(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo $GREETING; echo $NOMAD_TASK_DIR".into(),
                ],
                timeout_seconds: 5,
                env,
            })
            .await
            .expect("exec")
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "hi there\n/local\n");
        let started = Instant::now();
        let e = c
            .exec_sync(ExecSyncRequest {
                task_id: t.id.clone(),
                command: vec!["sleep".into(), "30".into()],
                timeout_seconds: 1,
                env: HashMap::new(),
            })
            .await
            .expect_err("times out");
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = exec_sync_err(&mut c, &t.id, &["/no/such/program"]).await;
        assert!(e.message().contains("/no/such/program"), "{e}");

        // Attached, no terminal: stdin in, stdout and stderr apart, the exit last.
        let (mut got, code) = attached(
            &mut c,
            ExecStart {
                task_id: t.id.clone(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat; echo done >&2; exit 5".into(),
                ],
                ..Default::default()
            },
            vec![b"line one\n".to_vec(), b"line two\n".to_vec()],
            None,
        )
        .await;
        assert_eq!(code, 5);
        assert_eq!(
            String::from_utf8_lossy(&got.remove(&false).unwrap_or_default()),
            "line one\nline two\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&got.remove(&true).unwrap_or_default()),
            "done\n"
        );

        // A terminal of 100x40, resized to 120x50 while it runs.
        let (got, code) = attached(
            &mut c,
            ExecStart {
                task_id: t.id.clone(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "tty; stty size; read x; stty size; exit 2".into(),
                ],
                tty: true,
                width: 100,
                height: 40,
                ..Default::default()
            },
            vec![b"go\n".to_vec()],
            Some((120, 50)),
        )
        .await;
        assert_eq!(code, 2);
        let text = String::from_utf8_lossy(got.get(&false).map_or(&[][..], |v| v));
        assert!(text.contains("/dev/pts/"), "{text:?}");
        assert!(text.contains("40 100"), "{text:?}");
        assert!(text.contains("50 120"), "{text:?}");

        remove_sandbox(&mut c, "ex").await;
        assert_clean(&d, &[t]);
    });
}

async fn exec_sync_err(c: &mut Client, task: &str, cmd: &[&str]) -> tonic::Status {
    c.exec_sync(ExecSyncRequest {
        task_id: task.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        timeout_seconds: 5,
        env: HashMap::new(),
    })
    .await
    .expect_err("fails")
}

/// Runs an attached exec: `input` chunks as stdin (then closed, unless a
/// terminal), an optional resize after the first output. Returns the output
/// by stream (stderr: true) and the exit code.
async fn attached(
    c: &mut Client,
    start: ExecStart,
    input: Vec<Vec<u8>>,
    resize: Option<(u32, u32)>,
) -> (HashMap<bool, Vec<u8>>, i32) {
    let tty = start.tty;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let req = |r| ExecRequest { request: Some(r) };
    tx.send(req(exec_request::Request::Start(start)))
        .await
        .expect("send");
    let mut resp = c
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("exec")
        .into_inner();
    let first = resp.message().await.expect("started").expect("a message");
    assert!(
        matches!(first.response, Some(exec_response::Response::Started(ref s)) if s.pid > 0),
        "{first:?}"
    );
    if let Some((w, h)) = resize {
        // After the first size is printed: the command's first two lines
        // (the tty's name, then its size), however slowly they come.
        let mut got: HashMap<bool, Vec<u8>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got
            .get(&false)
            .map_or(0, |o| o.iter().filter(|b| **b == b'\n').count())
            < 2
        {
            let exit = next_output(&mut resp, deadline, &mut got, "the first size in time").await;
            assert_eq!(exit, None, "the exec ended before its first size: {got:?}");
        }
        tx.send(req(exec_request::Request::Resize(TerminalSize {
            width: w,
            height: h,
        })))
        .await
        .expect("resize");
        return finish(resp, tx, input, tty, got).await;
    }
    finish(resp, tx, input, tty, HashMap::new()).await
}

async fn finish(
    mut resp: tonic::Streaming<ExecResponse>,
    tx: tokio::sync::mpsc::Sender<ExecRequest>,
    input: Vec<Vec<u8>>,
    tty: bool,
    mut got: HashMap<bool, Vec<u8>>,
) -> (HashMap<bool, Vec<u8>>, i32) {
    let req = |r| ExecRequest { request: Some(r) };
    for chunk in input {
        tx.send(req(exec_request::Request::Stdin(chunk)))
            .await
            .expect("stdin");
    }
    if !tty {
        tx.send(req(exec_request::Request::CloseStdin(true)))
            .await
            .expect("close");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) =
            next_output(&mut resp, deadline, &mut got, "the exec ends in time").await
        {
            return (got, code);
        }
    }
}

/// The exec's next message by `deadline` (`within` says what was late):
/// its output goes to `got` (stderr: true); its exit code when it is the
/// exit.
async fn next_output(
    resp: &mut tonic::Streaming<ExecResponse>,
    deadline: tokio::time::Instant,
    got: &mut HashMap<bool, Vec<u8>>,
    within: &str,
) -> Option<i32> {
    let m = tokio::time::timeout_at(deadline, resp.message())
        .await
        .expect(within)
        .expect("stream")
        .expect("an exit before the end");
    match m.response {
        Some(exec_response::Response::Stdout(b)) => got.entry(false).or_default().extend(b),
        Some(exec_response::Response::Stderr(b)) => got.entry(true).or_default().extend(b),
        Some(exec_response::Response::ExitCode(code)) => return Some(code),
        other => panic!("unexpected {other:?}"),
    }
    None
}

#[test]
fn stats_move_and_events_come_in_order() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let mut events = d.client(&rt);
    let mut ev = rt.block_on(async {
        events
            .events(EventsRequest {
                sandbox_id: "st".into(),
                task_id: String::new(),
            })
            .await
            .expect("events")
            .into_inner()
    });
    rt.block_on(async {
        sandbox(&mut c, "st", NetworkMode::Host).await;
        let mut cfg = sh("while :; do :; done");
        cfg.resources = Some(Resources {
            memory_mb: 64,
            pids: 50,
            ..Default::default()
        });
        let t = run(&mut c, "st", "busy", cfg).await;
        let cg = cgroup_dir("memory", "/isoexecd/st.busy");
        assert!(cg.exists(), "the task's cgroup is {}", cg.display());
        let mut stats = c
            .task_stats(TaskStatsRequest {
                task_id: t.id.clone(),
                interval_ms: 200,
            })
            .await
            .expect("stats")
            .into_inner();
        let mut readings = Vec::new();
        for _ in 0..4 {
            readings.push(stats.message().await.expect("stats").expect("a reading"));
        }
        drop(stats);
        for w in readings.windows(2) {
            assert!(
                w[1].cpu_total_ns > w[0].cpu_total_ns,
                "CPU time moves: {readings:?}"
            );
        }
        assert!(
            readings[1..].iter().any(|r| r.cpu_percent > 20.0),
            "{readings:?}"
        );
        let last = readings.last().expect("reading");
        assert_eq!(last.memory_limit, 64 * 1024 * 1024);
        assert_eq!(last.pids_limit, 50);
        assert!(last.pids_current >= 1 && last.memory_usage > 0, "{last:?}");

        c.update_task_resources(UpdateTaskResourcesRequest {
            task_id: t.id.clone(),
            resources: Some(Resources {
                memory_mb: 128,
                ..Default::default()
            }),
        })
        .await
        .expect("update");
        let mut stats = c
            .task_stats(TaskStatsRequest {
                task_id: t.id.clone(),
                interval_ms: 100,
            })
            .await
            .expect("stats")
            .into_inner();
        let r = stats.message().await.expect("stats").expect("a reading");
        assert_eq!(r.memory_limit, 128 * 1024 * 1024, "the update is in force");
        drop(stats);

        let r = exec_sync(&mut c, &t.id, &["true"]).await;
        assert_eq!(r.exit_code, 0);
        stop(&mut c, &t.id, 1).await;
        remove_sandbox(&mut c, "st").await;

        let mut topics = Vec::new();
        while topics.last().map(String::as_str) != Some("sandbox-removed") {
            let e = tokio::time::timeout(Duration::from_secs(5), ev.message())
                .await
                .expect("events in time")
                .expect("stream")
                .expect("event");
            assert_eq!(e.sandbox_id, "st");
            topics.push(e.topic);
        }
        assert_eq!(
            topics,
            [
                "sandbox-ready",
                "task-created",
                "task-started",
                "exec-started",
                "exec-exited",
                "task-exited",
                "task-removed",
                "sandbox-removed"
            ]
        );
        assert_clean(&d, &[t]);
    });
}

/// The next task-oom or task-exited event: (topic, task id).
async fn oom_or_exit(ev: &mut tonic::Streaming<Event>) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = ev.message().await.expect("stream").expect("event");
            if e.topic == "task-oom" || e.topic == "task-exited" {
                return (e.topic, e.task_id);
            }
        }
    })
    .await
    .expect("an event in time")
}

#[test]
fn a_task_over_its_memory_limit_is_killed_and_says_so() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let mut events = d.client(&rt);
    rt.block_on(async {
        let mut ev = events
            .events(EventsRequest {
                sandbox_id: "oom".into(),
                task_id: String::new(),
            })
            .await
            .expect("events")
            .into_inner();
        sandbox(&mut c, "oom", NetworkMode::Host).await;
        let limit = Some(Resources {
            memory_mb: 16,
            ..Default::default()
        });
        // A process of the task is killed, the task goes on: reported at once.
        let mut cfg = sh("(a=x; while :; do a=\"$a$a\"; done); exec sleep 100");
        cfg.resources = limit;
        let survivor = run(&mut c, "oom", "survivor", cfg).await;
        assert_eq!(
            oom_or_exit(&mut ev).await,
            ("task-oom".to_string(), survivor.id.clone())
        );
        let st = c
            .task_status(TaskStatusRequest {
                task_id: survivor.id.clone(),
            })
            .await
            .expect("status")
            .into_inner()
            .task
            .expect("task");
        assert!(
            st.oom_killed && st.state == TaskState::Running as i32,
            "{st:?}"
        );

        // The task itself is killed: its exit says so, one OOM event.
        let mut cfg = sh("a=x; while :; do a=\"$a$a\"; done");
        cfg.resources = limit;
        let t = run(&mut c, "oom", "hog", cfg).await;
        let w = tokio::time::timeout(
            Duration::from_secs(20),
            c.wait_task(WaitTaskRequest {
                task_id: t.id.clone(),
            }),
        )
        .await
        .expect("killed in time")
        .expect("wait")
        .into_inner();
        assert_eq!(w.exit_code, 137);
        assert!(w.oom_killed);
        assert_eq!(
            oom_or_exit(&mut ev).await,
            ("task-oom".to_string(), t.id.clone())
        );
        assert_eq!(
            oom_or_exit(&mut ev).await,
            ("task-exited".to_string(), t.id.clone())
        );
        remove_sandbox(&mut c, "oom").await;
        assert_clean(&d, &[t, survivor]);
    });
}

#[test]
fn errors_carry_codes_and_messages_a_person_can_act_on() {
    let d = Daemon::with_config(Some(
        "denied_host_uids = \"0\"\ndefault_pid_mode = \"host\"\n",
    ));
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        let expect = |r: Result<Task, tonic::Status>, code: Code, text: &str| {
            let e = r.expect_err("refused");
            assert_eq!(e.code(), code, "{e}");
            assert!(
                e.message().contains(text),
                "{:?} lacks {text:?}",
                e.message()
            );
        };
        sandbox(&mut c, "err", NetworkMode::Host).await;
        let e = c
            .run_sandbox(RunSandboxRequest {
                id: "err".into(),
                ..Default::default()
            })
            .await
            .expect_err("exists");
        assert_eq!(e.code(), Code::AlreadyExists);
        assert_eq!(e.message(), "sandbox err already exists");
        let e = c
            .run_sandbox(RunSandboxRequest {
                id: "a/b".into(),
                ..Default::default()
            })
            .await
            .expect_err("bad id");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("id: \"a/b\" is not a valid name"),
            "{e}"
        );

        let e = c
            .task_status(TaskStatusRequest {
                task_id: "err.nope".into(),
            })
            .await
            .expect_err("missing");
        assert_eq!(
            (e.code(), e.message()),
            (Code::NotFound, "task err.nope not found")
        );
        expect(
            create(&mut c, "nosuch", "t", sh("true")).await,
            Code::NotFound,
            "sandbox nosuch not found",
        );
        expect(
            create(&mut c, "err", "t", config("", &[])).await,
            Code::InvalidArgument,
            "config.command",
        );
        let mut cfg = sh("true");
        cfg.cap_add = vec!["flying".into()];
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::InvalidArgument,
            "config.cap_add[0]: unknown capability",
        );
        let mut cfg = sh("true");
        cfg.resources = Some(Resources {
            cores: 4096,
            ..Default::default()
        });
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::InvalidArgument,
            "config.resources.cores",
        );
        let mut cfg = sh("true");
        cfg.cap_add = vec!["sys_admin".into()];
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::PermissionDenied,
            "driver does not allow the following capabilities: sys_admin",
        );
        let mut cfg = sh("true");
        cfg.user = "root".into();
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::PermissionDenied,
            "uid 0",
        );
        // Mistakes in the request found inside the task: the request's
        // field, not the spec isoexecd wrote.
        let mut cfg = sh("true");
        cfg.work_dir = "/no/such/dir".into();
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::InvalidArgument,
            "config.work_dir: cannot enter /no/such/dir in the container: No such file or directory",
        );
        expect(
            create(&mut c, "err", "t", config("no-such-program", &[])).await,
            Code::InvalidArgument,
            "config.command: \"no-such-program\": executable file not found",
        );
        let mut cfg = sh("true");
        cfg.env.insert("K".into(), "a\0b".into());
        expect(
            create(&mut c, "err", "t", cfg).await,
            Code::InvalidArgument,
            "config.env[\"K\"]: contains a NUL byte",
        );

        let t = create(&mut c, "err", "t", config("/bin/sleep", &["100"]))
            .await
            .expect("create");
        expect(
            create(&mut c, "err", "t", sh("true")).await,
            Code::AlreadyExists,
            "task err.t already exists",
        );
        let e = exec_sync_err(&mut c, &t.id, &["true"]).await;
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("is not running"), "{e}");
        c.start_task(StartTaskRequest {
            task_id: t.id.clone(),
        })
        .await
        .expect("start");
        let e = c
            .start_task(StartTaskRequest {
                task_id: t.id.clone(),
            })
            .await
            .expect_err("started twice");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        let e = c
            .remove_task(RemoveTaskRequest {
                task_id: t.id.clone(),
            })
            .await
            .expect_err("running");
        assert_eq!(
            (e.code(), e.message()),
            (
                Code::FailedPrecondition,
                "task err.t is running: stop it first"
            )
        );
        let e = c
            .signal_task(SignalTaskRequest {
                task_id: t.id.clone(),
                signal: "SIGNOPE".into(),
            })
            .await
            .expect_err("bad signal");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("signal: "), "{e}");

        c.stop_sandbox(StopSandboxRequest {
            id: "err".into(),
            grace_period_seconds: 1,
        })
        .await
        .expect("stop sandbox");
        expect(
            create(&mut c, "err", "u", sh("true")).await,
            Code::FailedPrecondition,
            "sandbox err is stopped",
        );
        c.remove_task(RemoveTaskRequest {
            task_id: t.id.clone(),
        })
        .await
        .expect("remove task");
        remove_sandbox(&mut c, "err").await;
        assert_clean(&d, &[t]);
    });
}

#[test]
fn stop_task_waits_the_grace_period_then_kills() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        sandbox(&mut c, "gr", NetworkMode::Host).await;
        let stubborn = run(
            &mut c,
            "gr",
            "stubborn",
            sh("trap '' TERM; while :; do sleep 0.1; done"),
        )
        .await;
        let polite = run(
            &mut c,
            "gr",
            "polite",
            sh("trap 'exit 3' TERM; while :; do sleep 0.1; done"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await; // the traps are set

        let t0 = Instant::now();
        let p = stop(&mut c, &polite.id, 10).await;
        assert_eq!(p.exit_code, 3);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

        let t0 = Instant::now();
        let s = stop(&mut c, &stubborn.id, 2).await;
        let took = t0.elapsed();
        assert_eq!(s.exit_code, 137, "SIGKILL after the grace period");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{took:?}"
        );

        // Removing the sandbox stops its tasks together: one grace period.
        let mut more = Vec::new();
        for name in ["s1", "s2", "s3"] {
            more.push(
                run(
                    &mut c,
                    "gr",
                    name,
                    sh("trap '' TERM; while :; do sleep 0.1; done"),
                )
                .await,
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        remove_sandbox(&mut c, "gr").await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
            "{took:?}"
        );
        more.extend([s, p]);
        assert_clean(&d, &more);
    });
}

#[test]
fn a_restarted_daemon_keeps_its_tasks() {
    let mut d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let (t, brief, alloc) = rt.block_on(async {
        let s = sandbox(&mut c, "rs", NetworkMode::Group).await;
        let t = run(
            &mut c,
            "rs",
            "svc",
            sh("trap 'exit 3' TERM; while :; do sleep 0.1; done"),
        )
        .await;
        let brief = run(
            &mut c,
            "rs",
            "brief",
            sh("while [ ! -e /alloc/go ]; do sleep 0.05; done; exit 4"),
        )
        .await;
        (t, brief, s.alloc_dir)
    });
    d.terminate();
    assert!(alive(t.pid as i32), "the task outlives the daemon");
    assert!(!d.socket().exists(), "the socket is removed on SIGTERM");
    // One task ends while no daemon is there to see how.
    std::fs::write(Path::new(&alloc).join("go"), "").expect("go");
    assert!(eventually(5, || !alive(brief.pid as i32)));
    d.spawn();
    let mut c = d.client(&rt);
    let mut waiter = d.client(&rt);
    rt.block_on(async {
        let st = c
            .task_status(TaskStatusRequest {
                task_id: t.id.clone(),
            })
            .await
            .expect("status")
            .into_inner()
            .task
            .expect("task");
        assert_eq!((st.state, st.pid), (TaskState::Running as i32, t.pid));
        let b = c
            .task_status(TaskStatusRequest {
                task_id: brief.id.clone(),
            })
            .await
            .expect("status")
            .into_inner()
            .task
            .expect("task");
        assert_eq!(
            (b.state, b.exit_code),
            (TaskState::Exited as i32, 255),
            "exited unseen: the status is not known"
        );
        assert_eq!(
            out(&mut c, &t.id, &["echo", "still here"]).await,
            "still here"
        );
        let id = t.id.clone();
        let wait =
            tokio::spawn(async move { waiter.wait_task(WaitTaskRequest { task_id: id }).await });
        c.signal_task(SignalTaskRequest {
            task_id: t.id.clone(),
            signal: "TERM".into(),
        })
        .await
        .expect("signal");
        let w = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the wait returns")
            .expect("join")
            .expect("wait")
            .into_inner();
        // Not the daemon's child any more: its status comes from the
        // kernel's process events.
        assert_eq!(w.exit_code, 3, "the trap's exit status");
        assert!(!alive(t.pid as i32));
        remove_sandbox(&mut c, "rs").await;
    });
    assert_clean(&d, &[t, brief]);
}

#[test]
fn isoexecctl_drives_the_api_from_a_shell() {
    let d = Daemon::start();
    let ok = |args: &[&str]| {
        let o = d.ctl(args);
        assert!(o.status.success(), "isoexecctl {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert!(ok(&["version"]).starts_with("isoexecd "));
    assert!(ok(&["fingerprint"]).contains("driver.exec = 1"));
    assert_eq!(
        ok(&[
            "sandbox",
            "run",
            "cli",
            "--network",
            "group",
            "--label",
            "team=a"
        ])
        .trim(),
        "cli"
    );
    let log = d.dir.path().join("web.log");
    let id = ok(&[
        "run",
        "cli",
        "web",
        "--env",
        "WHO=cli",
        "--stdout",
        log.to_str().expect("utf-8"),
        "--",
        "/bin/sh",
        "-c",
        "echo $WHO > /alloc/who; echo logged as $(id -un); exec sleep 100",
    ]);
    assert_eq!(id.trim(), "cli.web");
    let ls = ok(&["task", "ls", "--sandbox", "cli"]);
    assert!(ls.contains("cli.web") && ls.contains("running"), "{ls}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "task", "status", "cli.web"])).expect("json");
    assert_eq!(j["state"], "running");
    assert_eq!(j["config"]["env"]["WHO"], "cli");
    // The task's spec (its environment) and every record are root's alone:
    // any host user could read them before.
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("stat").permissions())
            & 0o7777
    };
    assert_eq!(mode(&d.state()), 0o700);
    let mut files = vec![d.state()];
    let mut specs = 0;
    while let Some(p) = files.pop() {
        // Not the tasks' own files (their directories and /alloc).
        if p.is_dir() && !p.ends_with("rootfs") && !p.ends_with("alloc") {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("read_dir")
                    .map(|e| e.expect("entry").path()),
            );
        } else if p.is_file() && !p.ends_with("netns") {
            // (netns is the sandbox's namespace, bind-mounted from nsfs.)
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            specs += usize::from(p.ends_with("config.json"));
        }
    }
    assert_eq!(specs, 1, "the task's config.json was seen");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["sandbox", "ls", "--label", "team=a", "-o", "json"]))
            .expect("json");
    assert_eq!(j[0]["network_mode"], "group");
    assert!(eventually(5, || d
        .ctl(&["exec", "cli.web", "--", "cat", "/alloc/who"])
        .status
        .success()));
    assert_eq!(
        ok(&["exec", "cli.web", "--", "cat", "/alloc/who"]).trim(),
        "cli"
    );
    // The task writes its log line after /alloc/who: wait for it.
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(eventually(5, || !logged().is_empty()), "stdout_path");
    assert_eq!(logged(), "logged as nobody\n");
    let o = d.ctl(&["exec", "cli.web", "--", "sh", "-c", "exit 9"]);
    assert_eq!(o.status.code(), Some(9), "exec's exit code is isoexecctl's");
    // Attached, stdin from a pipe.
    let mut child = Command::new(binary("isoexecctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["exec", "-i", "cli.web", "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("isoexecctl exec -i");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"shout\n").expect("write");
    }
    let o = child.wait_with_output().expect("exec -i");
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "SHOUT\n"));

    // A terminal session, as a person at a shell has one: the window size
    // goes through, the exit code comes back.
    let cmd = format!(
        "stty cols 90 rows 30; {} --socket {} exec -t cli.web -- sh -c 'tty; stty size; exit 3'",
        binary("isoexecctl").display(),
        d.socket().display()
    );
    let o = in_terminal(&cmd).output().expect("script");
    let out = stdout(&o);
    assert!(
        out.contains("/dev/pts/") && out.contains("30 90"),
        "{out:?} {}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(3), "{out:?}");

    let o = d.ctl(&["task", "status", "cli.nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("NotFound: task cli.nope not found"),
        "{}",
        stderr(&o)
    );
    ok(&["task", "stop", "cli.web", "--grace", "1"]);
    let o = d.ctl(&["task", "wait", "cli.web"]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "pid 1 of its namespace ignores SIGTERM"
    );
    ok(&["task", "rm", "cli.web"]);
    ok(&["sandbox", "rm", "cli"]);
    let ls = ok(&["sandbox", "ls"]);
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");
    assert_clean(&d, &[]);
}

/// A sandbox removed the moment its task exits: the kernel has the init
/// dead before the daemon's reaper has its exit, and the removal must wait
/// for that instead of calling the task running (it did, about one run in
/// sixteen).
#[test]
fn a_sandbox_removed_as_its_task_exits_goes_at_once() {
    let d = Daemon::start();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let sb = format!("q{i}");
        for args in [
            &["sandbox", "run", sb.as_str()][..],
            &["run", &sb, "t", "--", "/bin/true"],
            &["sandbox", "rm", &sb],
        ] {
            let o = d.ctl(args);
            assert!(o.status.success(), "isoexecctl {args:?}: {}", stderr(&o));
        }
        tasks.push(Task {
            id: format!("{sb}.t"),
            ..Default::default()
        });
    }
    assert_clean(&d, &tasks);
}

#[test]
fn generic_grpc_tools_discover_the_api_by_reflection_on_a_private_socket() {
    use std::os::unix::fs::PermissionsExt;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let d = Daemon::start();
    let mode = std::fs::metadata(d.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is root's alone");
    let rt = rt();
    rt.block_on(async {
        let ch = isoexec_daemon::client::channel(d.socket())
            .await
            .expect("channel");
        let mut r = ServerReflectionClient::new(ch);
        let ask = |m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let reqs = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "isoexec.v1.RuntimeService".into(),
            )),
        ];
        let mut resp = r
            .server_reflection_info(tokio_stream::iter(reqs))
            .await
            .expect("reflection")
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(l)) = resp
            .message()
            .await
            .expect("answer")
            .and_then(|m| m.message_response)
        else {
            panic!("no service list");
        };
        let mut names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
        names.sort();
        // Both reflection versions are served and listed, as the README says.
        assert_eq!(
            names,
            [
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                "isoexec.v1.RuntimeService"
            ]
        );
        let Some(MessageResponse::FileDescriptorResponse(f)) = resp
            .message()
            .await
            .expect("answer")
            .and_then(|m| m.message_response)
        else {
            panic!("no descriptor");
        };
        let file = String::from_utf8_lossy(&f.file_descriptor_proto[0]).into_owned();
        assert!(
            file.contains("isoexec/v1/runtime.proto") && file.contains("ExecSync"),
            "{file}"
        );
    });
}

/// The Python stubs of proto/, generated as a user of the API does.
fn python_stubs(dir: &Path) {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let o = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(proto.join("isoexec/v1/runtime.proto"))
        .output()
        .expect("python3 -m grpc_tools.protoc (make test installs grpcio-tools)");
    assert!(o.status.success(), "protoc: {}", stderr(&o));
}

#[test]
fn a_python_client_with_grpcios_defaults_drives_the_api() {
    // The README's client, its stubs generated from proto/, on a channel
    // opened the ordinary way (grpc.insecure_channel("unix://PATH"), no
    // options): grpcio sends the socket's path as the :authority, which
    // the HTTP/2 server refused on every call (INTERNAL: RST_STREAM).
    let d = Daemon::start();
    let stubs = TempDir::new("isoexec-pystubs");
    python_stubs(stubs.path());
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/python/isoexec_client.py");
    let o = Command::new("python3")
        .arg(&client)
        .arg(d.socket())
        .env("PYTHONPATH", stubs.path())
        .output()
        .unwrap();
    let version = format!("isoexecd {} (isoexec.v1)", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        stdout(&o),
        format!("{version}\nexec: hello from nobody (exit 0)\npy.job exited 7\n"),
        "{}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(7));
    assert_clean(&d, &[]);

    // grpcio-reflection's client (v1alpha, as grpcurl-style tools still
    // ask): every service is listed, both reflection versions among them,
    // and the API's methods are found by name.
    let script = format!(
        "import grpc\n\
         from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase\n\
         from google.protobuf.descriptor_pool import DescriptorPool\n\
         ch = grpc.insecure_channel('unix://{}')\n\
         db = ProtoReflectionDescriptorDatabase(ch)\n\
         print(' '.join(sorted(db.get_services())))\n\
         s = DescriptorPool(db).FindServiceByName('isoexec.v1.RuntimeService')\n\
         print(' '.join(m.name for m in s.methods if m.name.startswith('Exec')))\n",
        d.socket().display()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o),
        "grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection isoexec.v1.RuntimeService\nExecSync Exec\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn listen_takes_a_path_or_unix_url_and_refuses_other_schemes() {
    // `--listen unix:///abs` is the socket /abs (the form isoexecctl's
    // --socket takes and the log prints), not a directory tree "unix:".
    let dir = TempDir::new("isoexecd-listen");
    let sock = dir.path().join("d.sock");
    let mut child = Command::new(binary("isoexecd"))
        .current_dir(dir.path())
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let listening = eventually(5, || std::os::unix::net::UnixStream::connect(&sock).is_ok());
    let o = Command::new(binary("isoexecctl"))
        .arg("--socket")
        .arg(format!("unix://{}", sock.display()))
        .arg("version")
        .output()
        .unwrap();
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(
        listening,
        "{}",
        std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.path().join("unix:").exists());
    assert!(!sock.exists(), "the socket goes with the daemon");
    for bad in ["tcp://127.0.0.1:5000", "http://localhost/x", "unix://"] {
        let o = Command::new(binary("isoexecd"))
            .current_dir(dir.path())
            .args(["--listen", bad])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let e = stderr(&o);
        assert!(
            e.contains("unix socket only") || e.contains("no socket path"),
            "{bad}: {e}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["log", "state"]);
}

#[test]
fn a_created_task_holds_none_of_the_daemons_descriptors() {
    // The hazard: the init of a created (not started) task, forked from
    // isoexecd, kept the daemon's listening socket and client connections,
    // so after a SIGKILL of the daemon a new one found its socket "in use".
    let mut d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let t = rt.block_on(async {
        sandbox(&mut c, "fd", NetworkMode::Host).await;
        create(&mut c, "fd", "waiting", sh("exit 5"))
            .await
            .expect("create")
    });
    drop(c);
    // The init holds its standard I/O and the start fifo, nothing else.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", t.pid))
        .expect("the init's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(!fds.iter().any(|f| f.starts_with("socket:")), "{fds:?}");
    if let Some(mut child) = d.child.take() {
        child.kill().expect("SIGKILL isoexecd");
        let _ = child.wait();
    }
    d.spawn();
    let mut c = d.client(&rt);
    rt.block_on(async {
        let t = c
            .start_task(StartTaskRequest {
                task_id: t.id.clone(),
            })
            .await
            .expect("start after the restart")
            .into_inner()
            .task
            .expect("task");
        assert!(t.pid > 0);
    });
}

#[test]
fn tasks_of_a_sandbox_share_one_user_namespace_range() {
    // config.userns = "auto": each task in a user namespace of its own,
    // the sandbox's tasks on one range of host ids, so /alloc is theirs
    // alike; its ephemeral disk still enforced.
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let idmap = Command::new(binary("isoexec"))
        .args(["fingerprint", "--format", "json"])
        .output()
        .unwrap();
    let idmap: serde_json::Value = serde_json::from_slice(&idmap.stdout).unwrap();
    rt.block_on(async {
        let sb = sandbox(&mut c, "un", NetworkMode::Group).await;
        let mut cfg = config("/bin/sleep", &["100"]);
        cfg.userns = "auto".into();
        cfg.ephemeral_disk_mb = 4;
        if idmap["idmapped_mounts"] != "yes" {
            // No idmapped mounts of the host's directories here: refused.
            let e = create(&mut c, "un", "a", cfg).await.expect_err("refused");
            assert!(e.message().contains("idmapped mount"), "{e}");
            remove_sandbox(&mut c, "un").await;
            assert_clean(&d, &[]);
            return;
        }
        let a = run(&mut c, "un", "a", cfg.clone()).await;
        let b = run(&mut c, "un", "b", cfg).await;
        let map_a = out(&mut c, &a.id, &["cat", "/proc/self/uid_map"]).await;
        let map_b = out(&mut c, &b.id, &["cat", "/proc/self/uid_map"]).await;
        assert_eq!(map_a, map_b);
        let base: u32 = map_a.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(base >= 1_000_000_000, "{map_a}");
        let r = out(
            &mut c,
            &a.id,
            &[
                "sh",
                "-c",
                "id -u; echo hi > /alloc/from-a; df -m /local | tail -1 | awk '{print $2}'",
            ],
        )
        .await;
        assert_eq!(r, "65534\n4");
        assert_eq!(out(&mut c, &b.id, &["cat", "/alloc/from-a"]).await, "hi");
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(Path::new(&sb.alloc_dir).join("from-a")).unwrap();
        assert_eq!(
            m.uid(),
            base + 65534,
            "nobody in the task is the range's 65534"
        );
        remove_sandbox(&mut c, "un").await;
        assert_clean(&d, &[a, b]);
        assert!(!d.state().join("tasks/.userns").exists());
    });
}

#[test]
fn a_tasks_ephemeral_disk_is_enforced() {
    // A task's writable directories are as large as its request says.
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        sandbox(&mut c, "dk", NetworkMode::Host).await;
        let mut cfg = config("/bin/sleep", &["100"]);
        cfg.ephemeral_disk_mb = 4;
        let t = run(&mut c, "dk", "small", cfg).await;
        let r = exec_sync(
            &mut c,
            &t.id,
            &["sh", "-c", "df -m /local | tail -1 | awk '{print $2}'; \
               dd if=/dev/zero of=/tmp/x bs=1M count=8 2>&1 | grep -o 'No space left on device' | head -1"],
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&r.stdout), "4\nNo space left on device\n");
    });
}

/// CVE-2019-5736, as the attack (see the CLI's test): the task plants
/// `#!/proc/self/exe` in /local, an operator's ExecSync runs it, which
/// makes the kernel run isoexecd's own binary inside the task; the task
/// stops it, keeps its exe open, kills it and writes through the handle.
/// isoexecd runs from a read-only copy of itself: refused, the binary
/// (a copy) unchanged, no handle before the exec.
#[test]
fn cve_2019_5736_a_task_cannot_overwrite_isoexecd() {
    let bin = TempDir::new("isoexecd-bin");
    let exe = binary_copy("isoexecd", bin.path());
    let before = std::fs::read(&exe).unwrap();
    let mut d = Daemon::with(None, Some(exe.clone()));
    let attacker = TempDir::new("attacker");
    exe_watch(&attacker.path().join("watch"));
    let rt = rt();
    let mut c = d.client(&rt);
    let result = attacker.path().join("result");
    let task = rt.block_on(async {
        let sb = sandbox(&mut c, "cve-2019-5736", NetworkMode::Group).await;
        let mut cfg = sh("printf '#!/proc/self/exe\\n' > /local/attack; \
             chmod 755 /local/attack; exec /attacker/watch /attacker/result");
        // As root: a task of nobody could not write a root-owned binary anyway.
        cfg.user = "root".into();
        cfg.mounts = vec![Mount {
            host_path: attacker.path().display().to_string(),
            task_path: "/attacker".into(),
            readonly: false,
            propagation: String::new(),
        }];
        run(&mut c, &sb.id, "victim", cfg).await
    });
    exe_attack_catch(&result, 20, || {
        let _ = rt.block_on(c.exec_sync(ExecSyncRequest {
            task_id: task.id.clone(),
            command: vec!["/local/attack".into()],
            timeout_seconds: 10,
            env: HashMap::new(),
        }));
    });
    // The binary is free for writing once isoexecd restarts.
    d.terminate();
    let verdict = exe_attack_verdict(&result);
    // The built binary cleans up, whatever became of the copy.
    d.exe = None;
    d.spawn();
    assert_exe_attack_failed(&verdict, &exe, &before, &result);
}

/// The mount-destination race (CVE-2021-30465, CVE-2024-45310), as the
/// attack: a running task of a sandbox swaps, as fast as it can, a
/// directory of the shared /alloc with a symlink to a host directory,
/// while the operator creates other tasks of the sandbox with a mount
/// under that directory. Every destination is resolved inside the task's
/// root by descriptor and the mount made onto it: the host directory keeps
/// its file (never truncated) and gets no new entry, whatever each create
/// answered.
#[test]
fn mount_destinations_swapped_for_symlinks_never_reach_the_host() {
    let victim = race_victim();
    let attacker = TempDir::new("attacker");
    swapper(&attacker.path().join("swap"));
    std::fs::write(attacker.path().join("src"), "bound").unwrap();
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        let sb = sandbox(&mut c, "race", NetworkMode::Group).await;
        let script = format!(
            "mkdir /alloc/x && ln -s {} /alloc/l && exec /attacker/swap /alloc/x /alloc/l",
            victim.path().display()
        );
        let mut cfg = sh(&script);
        cfg.user = "root".into();
        cfg.mounts = vec![Mount {
            host_path: attacker.path().display().to_string(),
            task_path: "/attacker".into(),
            readonly: true,
            propagation: String::new(),
        }];
        run(&mut c, &sb.id, "swapper", cfg).await;
        let (mut made, mut refused) = (0, 0);
        for i in 0..40 {
            let dest = if i % 2 == 0 {
                "/alloc/x/f"
            } else {
                "/alloc/x/new/f"
            };
            let mut cfg = config("/bin/true", &[]);
            cfg.mounts = vec![Mount {
                host_path: attacker.path().join("src").display().to_string(),
                task_path: dest.into(),
                readonly: true,
                propagation: String::new(),
            }];
            match create(&mut c, &sb.id, &format!("victim{i}"), cfg).await {
                Ok(t) => {
                    made += 1;
                    c.remove_task(RemoveTaskRequest { task_id: t.id })
                        .await
                        .expect("remove");
                }
                Err(_) => refused += 1,
            }
        }
        eprintln!("tasks created under the swapping directory: {made}, refused: {refused}");
    });
    assert_victim_untouched(victim.path());
}

/// Tasks run under Docker's default seccomp profile unless the request
/// opts out. As the attack: a task tries to get CAP_SYS_ADMIN in a new
/// user namespace (the first step of CVE-2022-0185's exploit and many
/// like it) and to reach the kernel's keyrings; both are refused under the
/// default profile, in the task and in what ExecSync starts in it, and
/// allowed with "unconfined". A request can name a profile of its own.
#[test]
fn seccomp_default_profile_opt_out_and_a_named_profile() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let probe = "grep '^Seccomp:' /proc/self/status; \
        unshare -U true 2>/dev/null && echo userns-made || echo userns-refused; \
        keyctl show >/dev/null 2>&1 && echo keyring-read || echo keyring-refused; \
        sleep 1000";
    let dir = TempDir::new("profiles");
    let profile = dir.path().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    rt.block_on(async {
        let sb = sandbox(&mut c, "sc", NetworkMode::Host).await;
        let mut outputs = Vec::new();
        for (name, p) in [("default", ""), ("open", "unconfined")] {
            let out = dir.path().join(format!("{name}.out"));
            let mut cfg = sh(probe);
            cfg.seccomp_profile = p.into();
            cfg.stdout_path = out.display().to_string();
            let t = run(&mut c, &sb.id, name, cfg).await;
            assert!(eventually(10, || std::fs::read_to_string(&out)
                .is_ok_and(|s| s.lines().count() == 3)));
            outputs.push((t, std::fs::read_to_string(&out).unwrap()));
        }
        assert_eq!(
            outputs[0].1, "Seccomp:\t2\nuserns-refused\nkeyring-refused\n",
            "the default profile"
        );
        assert_eq!(
            outputs[1].1, "Seccomp:\t0\nuserns-made\nkeyring-read\n",
            "unconfined"
        );
        // ExecSync runs under the task's filter.
        let r = exec_sync(
            &mut c,
            &outputs[0].0.id,
            &[
                "sh",
                "-c",
                "grep '^Seccomp:' /proc/self/status; unshare -U true",
            ],
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&r.stdout), "Seccomp:\t2\n");
        assert_ne!(r.exit_code, 0);

        let mut cfg = sh("mkdir /tmp/d && echo made || echo mkdir-refused");
        cfg.seccomp_profile = format!("localhost/{}", profile.display());
        let out = dir.path().join("named.out");
        cfg.stdout_path = out.display().to_string();
        run(&mut c, &sb.id, "named", cfg).await;
        assert!(eventually(10, || std::fs::read_to_string(&out)
            .is_ok_and(|s| s == "mkdir-refused\n")));

        let mut cfg = sh("true");
        cfg.seccomp_profile = "localhost/no/such.json".into();
        let e = create(&mut c, &sb.id, "bad", cfg)
            .await
            .expect_err("bad profile");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("config.seccomp_profile"),
            "{}",
            e.message()
        );
    });
}

/// Keyrings, as the attack: a task reads the keys of the session that
/// started isoexecd, and tasks of two sandboxes pass keys to each other
/// through a shared session keyring. Each task gets a session keyring of
/// its own (even unconfined: the default seccomp profile refuses the
/// keyring calls altogether).
#[test]
fn tasks_cannot_read_the_operators_or_each_others_keys() {
    let name = unique("isoexec-op-secret");
    session_key(&name, "operator-secret");
    let d = Daemon::start();
    let dir = TempDir::new("keys");
    let rt = rt();
    let mut c = d.client(&rt);
    rt.block_on(async {
        let a = sandbox(&mut c, "ka", NetworkMode::Host).await;
        let b = sandbox(&mut c, "kb", NetworkMode::Host).await;
        let probe = |key: &str| {
            format!("keyctl request user {key} >/dev/null 2>&1 && echo {key}-found || echo {key}-unreadable")
        };
        let shared = unique("shared");
        let out_a = dir.path().join("a.out");
        let mut cfg = sh(&format!(
            "keyctl add user {shared} from-a @s >/dev/null && echo added; {}; sleep 1000",
            probe(&name)
        ));
        cfg.user = "root".into();
        cfg.seccomp_profile = "unconfined".into();
        cfg.stdout_path = out_a.display().to_string();
        run(&mut c, &a.id, "writer", cfg).await;
        assert!(eventually(10, || std::fs::read_to_string(&out_a)
            .is_ok_and(|s| s.lines().count() == 2)));
        assert_eq!(
            std::fs::read_to_string(&out_a).unwrap(),
            format!("added\n{name}-unreadable\n")
        );
        let out_b = dir.path().join("b.out");
        let mut cfg = sh(&format!("{}; {}", probe(&shared), probe(&name)));
        cfg.user = "root".into();
        cfg.seccomp_profile = "unconfined".into();
        cfg.stdout_path = out_b.display().to_string();
        run(&mut c, &b.id, "reader", cfg).await;
        assert!(eventually(10, || std::fs::read_to_string(&out_b)
            .is_ok_and(|s| s.lines().count() == 2)));
        assert_eq!(
            std::fs::read_to_string(&out_b).unwrap(),
            format!("{shared}-unreadable\n{name}-unreadable\n")
        );
    });
}

/// A hook that appends `KIND STATUS PID` to `log` from the state on its
/// standard input, then exits with `code`.
fn logging_hook(kind: &str, log: &str, code: u32) -> Hook {
    let script = "s=$(cat); st=${s#*\\\"status\\\":\\\"}; pid=${s#*\\\"pid\\\":}; \
        echo \"$1 ${st%%\\\"*} ${pid%%,*}\" >> \"$2\"; \
        [ \"$3\" = 0 ] || echo \"$1 says no\" >&2; exit \"$3\"";
    Hook {
        path: "/bin/sh".into(),
        args: ["sh", "-c", script, "sh", kind, log, &code.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        env: vec![format!("KIND={kind}")],
        timeout_seconds: 10,
    }
}

#[test]
fn hooks_of_a_task_run_at_each_step_and_a_failing_one_fails_it() {
    let d = Daemon::start();
    let rt = rt();
    let mut c = d.client(&rt);
    let dir = TempDir::new("isoexecd-hooks");
    let log = dir.path().join("hooks.log");
    let host_log = log.to_str().unwrap();
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    rt.block_on(async {
        sandbox(&mut c, "hk", NetworkMode::Host).await;
        let mut cfg = sh("exec sleep 1000");
        cfg.hooks = Some(Hooks {
            prestart: vec![logging_hook("prestart", host_log, 0)],
            create_runtime: vec![logging_hook("createRuntime", host_log, 0)],
            create_container: vec![logging_hook("createContainer", host_log, 0)],
            // In the task: its own /tmp.
            start_container: vec![logging_hook("startContainer", "/tmp/hooks.log", 0)],
            poststart: vec![logging_hook("poststart", host_log, 0)],
            poststop: vec![logging_hook("poststop", host_log, 0)],
        });
        let t = create(&mut c, "hk", "t", cfg).await.expect("create");
        let pid = t.pid;
        assert_eq!(
            lines(),
            [
                format!("prestart created {pid}"),
                format!("createRuntime created {pid}"),
                format!("createContainer created {pid}"),
            ]
        );
        c.start_task(StartTaskRequest {
            task_id: t.id.clone(),
        })
        .await
        .expect("start");
        assert_eq!(lines().last().unwrap(), &format!("poststart running {pid}"));
        assert_eq!(
            out(&mut c, &t.id, &["cat", "/tmp/hooks.log"]).await,
            format!("startContainer created {pid}")
        );
        stop(&mut c, &t.id, 1).await;
        c.remove_task(RemoveTaskRequest {
            task_id: t.id.clone(),
        })
        .await
        .expect("remove");
        let all = lines();
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all[4].starts_with("poststop stopped"), "{all:?}");

        // A failing createRuntime hook: FailedPrecondition naming it, and
        // nothing left.
        let mut cfg = sh("true");
        cfg.hooks = Some(Hooks {
            create_runtime: vec![logging_hook("createRuntime", host_log, 7)],
            ..Default::default()
        });
        let e = create(&mut c, "hk", "bad", cfg)
            .await
            .expect_err("hook fails");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(
            e.message().contains(
                "hooks.createRuntime[0] (/bin/sh): exited with status 7: createRuntime says no"
            ),
            "{e}"
        );
        // And a request mistake names the request's field.
        let mut cfg = sh("true");
        cfg.hooks = Some(Hooks {
            poststop: vec![Hook {
                path: "rel/hook".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let e = create(&mut c, "hk", "bad2", cfg)
            .await
            .expect_err("relative");
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("config.hooks.poststop[0].path"), "{e}");
        remove_sandbox(&mut c, "hk").await;
        assert_clean(&d, &[t]);
    });

    // isoexecctl takes the hooks as OCI JSON.
    let hooks = dir.path().join("hooks.json");
    std::fs::write(
        &hooks,
        serde_json::json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo ctl >> {host_log}")]}]})
            .to_string(),
    )
    .unwrap();
    let o = d.ctl(&["sandbox", "run", "ctl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.ctl(&[
        "run",
        "ctl",
        "t",
        "--hooks",
        hooks.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // (A poststop hook of the sandbox removed above may still be writing.)
    assert!(lines().iter().any(|l| l == "ctl"), "{:?}", lines());
    let o = d.ctl(&["sandbox", "rm", "ctl"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
