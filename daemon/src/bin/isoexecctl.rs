//! isoexecctl: isoexecd's API from a shell, readable or `--output json`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use isoexec_daemon::api::*;
use tonic::transport::Channel;

type Client = runtime_service_client::RuntimeServiceClient<Channel>;

#[derive(Parser)]
#[command(name = "isoexecctl", version = runtime::VERSION, about = "Drive isoexecd: sandboxes, tasks, exec, stats, events")]
struct Cli {
    /// isoexecd's socket: a path, or unix://PATH.
    #[arg(long, global = true, env = "ISOEXEC_SOCKET", default_value = isoexec_daemon::client::DEFAULT_SOCKET, value_parser = isoexec_daemon::client::socket_path)]
    socket: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// The daemon's version.
    Version,
    /// The host's attributes and health.
    Fingerprint,
    /// Sandboxes: run, stop, rm, status, ls.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Tasks: create, start, stop, rm, status, ls, wait, signal, update.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Create and start a task; print its id.
    Run(Box<CreateArgs>),
    /// Run a command in a running task. With -t or -i it is attached
    /// (stdin, a terminal with -t); else its output is printed when it ends.
    Exec {
        task_id: String,
        /// Attach a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// Keep stdin open and send it.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Seconds before the command is killed (without -t/-i).
        #[arg(long, default_value_t = 0)]
        timeout: u32,
        #[arg(long = "env", short = 'e', value_parser = key_value)]
        env: Vec<(String, String)>,
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// A task's resource usage, every interval.
    Stats {
        task_id: String,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u32,
        /// Stop after this many readings (0: until the task goes).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
    /// Lifecycle events as they happen.
    Events {
        #[arg(long, default_value = "")]
        sandbox: String,
        #[arg(long, default_value = "")]
        task: String,
        /// Stop after this many events (0: never).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
}

#[derive(Subcommand)]
enum SandboxCmd {
    Run {
        id: String,
        /// host (no network namespace) or group (one shared by the tasks).
        #[arg(long, default_value = "host")]
        network: String,
        #[arg(long = "label", value_parser = key_value)]
        labels: Vec<(String, String)>,
    },
    Stop {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace: u32,
    },
    Rm {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace: u32,
    },
    Status {
        id: String,
    },
    Ls {
        #[arg(long = "label", value_parser = key_value)]
        labels: Vec<(String, String)>,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The sandbox the task joins.
    sandbox: String,
    /// The task's name in the sandbox (its id is SANDBOX.NAME).
    name: String,
    /// A host user name, "uid" or "uid:gid" (default: nobody).
    #[arg(long, default_value = "", hide_default_value = true)]
    user: String,
    /// The working directory in the task (default: /).
    #[arg(long, default_value = "", hide_default_value = true)]
    work_dir: String,
    /// KEY=VALUE, repeatable.
    #[arg(long = "env", short = 'e', value_parser = key_value)]
    env: Vec<(String, String)>,
    /// private or host (default: the config's default_pid_mode).
    #[arg(long, default_value = "", hide_default_value = true)]
    pid_mode: String,
    /// private or host (default: the config's default_ipc_mode).
    #[arg(long, default_value = "", hide_default_value = true)]
    ipc_mode: String,
    /// A capability to add (net_raw, ..., or all), repeatable.
    #[arg(long)]
    cap_add: Vec<String>,
    /// A capability to drop (or all), repeatable.
    #[arg(long)]
    cap_drop: Vec<String>,
    #[command(flatten)]
    resources: ResourceArgs,
    /// The size of /local and /tmp together, in MiB (ENOSPC at the limit).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    disk: u64,
    /// runtime/default (Docker's profile, the default), unconfined, or
    /// localhost/PATH (a linux.seccomp JSON file on the host).
    #[arg(long, default_value = "", hide_default_value = true)]
    seccomp: String,
    /// auto (a user namespace of its own, ids from the config's
    /// userns_range) or host (host ids); default: the config's userns.
    #[arg(long, default_value = "", hide_default_value = true)]
    userns: String,
    /// A JSON file of OCI hooks, as config.json's `hooks` object:
    /// {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "..."]}]}.
    #[arg(long, value_parser = hooks_file)]
    hooks: Option<Hooks>,
    /// HOST:TASK[:ro], repeatable.
    #[arg(long = "mount", value_parser = mount)]
    mounts: Vec<Mount>,
    /// A host file the task's stdout is appended to.
    #[arg(long, default_value = "", hide_default_value = true)]
    stdout: String,
    /// A host file the task's stderr is appended to.
    #[arg(long, default_value = "", hide_default_value = true)]
    stderr: String,
    /// The program (a path in the task's chroot) and its arguments.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct ResourceArgs {
    /// CPU in MHz (shares).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    cpu: i64,
    /// Cores of its own (cpuset).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    cores: u32,
    /// Memory in MiB: the limit, or the reservation with --memory-max.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    memory: i64,
    /// The hard memory limit in MiB.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    memory_max: i64,
    /// The most processes.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pids: i64,
}

#[derive(Subcommand)]
enum TaskCmd {
    Create(Box<CreateArgs>),
    Start {
        id: String,
    },
    Stop {
        id: String,
        #[arg(long, default_value = "")]
        signal: String,
        #[arg(long, default_value_t = 0)]
        grace: u32,
    },
    Rm {
        id: String,
    },
    Status {
        id: String,
    },
    Ls {
        #[arg(long, default_value = "")]
        sandbox: String,
        /// created, running, paused or exited.
        #[arg(long, default_value = "")]
        state: String,
    },
    /// Wait for the task to exit; exit with its status.
    Wait {
        id: String,
    },
    Signal {
        id: String,
        signal: String,
    },
    Update {
        id: String,
        #[command(flatten)]
        resources: ResourceArgs,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn mount(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [h, t] => Ok(Mount {
            host_path: h.to_string(),
            task_path: t.to_string(),
            ..Default::default()
        }),
        [h, t, "ro"] => Ok(Mount {
            host_path: h.to_string(),
            task_path: t.to_string(),
            readonly: true,
            ..Default::default()
        }),
        _ => Err(format!("{s:?}: expected HOST:TASK or HOST:TASK:ro")),
    }
}

fn resources(r: &ResourceArgs) -> Resources {
    Resources {
        cpu_mhz: r.cpu,
        cores: r.cores,
        memory_mb: r.memory,
        memory_max_mb: r.memory_max,
        pids: r.pids,
    }
}

fn task_state(v: i32) -> &'static str {
    match TaskState::try_from(v) {
        Ok(TaskState::Created) => "created",
        Ok(TaskState::Running) => "running",
        Ok(TaskState::Paused) => "paused",
        Ok(TaskState::Exited) => "exited",
        _ => "unknown",
    }
}

fn sandbox_state(v: i32) -> &'static str {
    match SandboxState::try_from(v) {
        Ok(SandboxState::Ready) => "ready",
        Ok(SandboxState::Notready) => "notready",
        _ => "unknown",
    }
}

fn network(v: i32) -> &'static str {
    match NetworkMode::try_from(v) {
        Ok(NetworkMode::Group) => "group",
        _ => "host",
    }
}

/// JSON with the enums by name.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(v).unwrap_or_default();
    fix_enums(&mut v);
    v
}

fn fix_enums(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            let is_task = m.contains_key("sandbox_id") && m.contains_key("name");
            let is_sandbox = m.contains_key("network_mode");
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x.as_i64()) {
                    ("state", Some(n)) if is_task => *x = task_state(n as i32).into(),
                    ("state", Some(n)) if is_sandbox => *x = sandbox_state(n as i32).into(),
                    ("network_mode", Some(n)) => *x = network(n as i32).into(),
                    _ => fix_enums(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(fix_enums),
        _ => {}
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(&json(v)).unwrap_or_default()
    );
}

fn ns_time(ns: i64) -> String {
    if ns == 0 {
        return "-".into();
    }
    let secs = ns / 1_000_000_000;
    let d = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    let ago = std::time::SystemTime::now()
        .duration_since(d)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{ago}s ago")
}

fn print_tasks(tasks: &[Task]) {
    println!(
        "{:<28} {:<9} {:>8} {:>5} {:<10} COMMAND",
        "ID", "STATE", "PID", "EXIT", "STARTED"
    );
    for t in tasks {
        let cmd = t.config.as_ref().map(|c| {
            let mut v = vec![c.command.clone()];
            v.extend(c.args.iter().cloned());
            v.join(" ")
        });
        let exit = if t.state == TaskState::Exited as i32 {
            t.exit_code.to_string()
        } else {
            "-".into()
        };
        println!(
            "{:<28} {:<9} {:>8} {:>5} {:<10} {}",
            t.id,
            task_state(t.state),
            t.pid,
            exit,
            ns_time(t.started_at),
            cmd.unwrap_or_default()
        );
    }
}

fn print_task(t: &Task) {
    print_tasks(std::slice::from_ref(t));
    if t.oom_killed {
        println!("oom killed: yes");
    }
    for w in &t.warnings {
        println!("warning: {w}");
    }
}

fn print_sandboxes(s: &[Sandbox]) {
    println!(
        "{:<20} {:<9} {:<8} {:>5} ALLOC",
        "ID", "STATE", "NETWORK", "TASKS"
    );
    for s in s {
        println!(
            "{:<20} {:<9} {:<8} {:>5} {}",
            s.id,
            sandbox_state(s.state),
            network(s.network_mode),
            s.task_ids.len(),
            s.alloc_dir
        );
    }
}

fn map(v: &[(String, String)]) -> HashMap<String, String> {
    v.iter().cloned().collect()
}

/// `--hooks FILE`: OCI hooks JSON as the API's Hooks.
fn hooks_file(path: &str) -> Result<Hooks, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))?;
    let list = |key: &str| -> Result<Vec<Hook>, String> {
        let Some(items) = v.get(key) else {
            return Ok(vec![]);
        };
        let items = items
            .as_array()
            .ok_or_else(|| format!("{path}: {key} is not a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let strings = |k: &str| -> Result<Vec<String>, String> {
                    match h.get(k) {
                        None => Ok(vec![]),
                        Some(a) => serde_json::from_value(a.clone()).map_err(|_| {
                            format!("{path}: {key}[{i}].{k} is not a list of strings")
                        }),
                    }
                };
                Ok(Hook {
                    path: h
                        .get("path")
                        .and_then(|p| p.as_str())
                        .ok_or_else(|| format!("{path}: {key}[{i}].path is missing"))?
                        .to_string(),
                    args: strings("args")?,
                    env: strings("env")?,
                    timeout_seconds: match h.get("timeout") {
                        None => 0,
                        Some(t) => {
                            t.as_u64()
                                .and_then(|t| u32::try_from(t).ok())
                                .ok_or_else(|| {
                                    format!("{path}: {key}[{i}].timeout is not a number of seconds")
                                })?
                        }
                    },
                })
            })
            .collect()
    };
    Ok(Hooks {
        prestart: list("prestart")?,
        create_runtime: list("createRuntime")?,
        create_container: list("createContainer")?,
        start_container: list("startContainer")?,
        poststart: list("poststart")?,
        poststop: list("poststop")?,
    })
}

fn create_request(a: &CreateArgs) -> CreateTaskRequest {
    let (command, args) = a
        .command
        .split_first()
        .map_or((String::new(), vec![]), |(c, r)| (c.clone(), r.to_vec()));
    CreateTaskRequest {
        sandbox_id: a.sandbox.clone(),
        name: a.name.clone(),
        config: Some(TaskConfig {
            command,
            args,
            env: map(&a.env),
            user: a.user.clone(),
            work_dir: a.work_dir.clone(),
            pid_mode: a.pid_mode.clone(),
            ipc_mode: a.ipc_mode.clone(),
            cap_add: a.cap_add.clone(),
            cap_drop: a.cap_drop.clone(),
            resources: Some(resources(&a.resources)),
            mounts: a.mounts.clone(),
            stdout_path: a.stdout.clone(),
            stderr_path: a.stderr.clone(),
            ephemeral_disk_mb: a.disk,
            seccomp_profile: a.seccomp.clone(),
            hooks: a.hooks.clone(),
            userns: a.userns.clone(),
        }),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("isoexecctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("isoexecctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A gRPC error as a person reads it: the code and the daemon's message.
fn show(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn run(cli: Cli) -> Result<u8, String> {
    let mut c: Client = isoexec_daemon::client::connect(&cli.socket)
        .await
        .map_err(|e| {
            format!(
                "connecting to {}: {e} (is isoexecd running?)",
                cli.socket.display()
            )
        })?;
    let j = cli.output == Output::Json;
    match cli.cmd {
        Cmd::Version => {
            let v = c
                .version(VersionRequest {})
                .await
                .map_err(show)?
                .into_inner();
            if j {
                print_json(&v)
            } else {
                println!("{} {} ({})", v.name, v.version, v.api_version)
            }
        }
        Cmd::Fingerprint => {
            let f = c
                .fingerprint(FingerprintRequest {})
                .await
                .map_err(show)?
                .into_inner();
            if j {
                print_json(&f)
            } else {
                println!("health: {} ({})", f.health, f.health_description);
                let mut a: Vec<_> = f.attributes.iter().collect();
                a.sort();
                for (k, v) in a {
                    println!("{k} = {v}");
                }
            }
        }
        Cmd::Sandbox(cmd) => match cmd {
            SandboxCmd::Run {
                id,
                network,
                labels,
            } => {
                let mode = match network.as_str() {
                    "host" => NetworkMode::Host,
                    "group" => NetworkMode::Group,
                    other => return Err(format!("--network {other:?}: use host or group")),
                };
                let r = c
                    .run_sandbox(RunSandboxRequest {
                        id,
                        labels: map(&labels),
                        network_mode: mode as i32,
                    })
                    .await
                    .map_err(show)?
                    .into_inner();
                let s = r.sandbox.unwrap_or_default();
                if j {
                    print_json(&s)
                } else {
                    println!("{}", s.id)
                }
            }
            SandboxCmd::Stop { id, grace } => {
                c.stop_sandbox(StopSandboxRequest {
                    id,
                    grace_period_seconds: grace,
                })
                .await
                .map_err(show)?;
            }
            SandboxCmd::Rm { id, grace } => {
                c.remove_sandbox(RemoveSandboxRequest {
                    id,
                    grace_period_seconds: grace,
                })
                .await
                .map_err(show)?;
            }
            SandboxCmd::Status { id } => {
                let s = c
                    .sandbox_status(SandboxStatusRequest { id })
                    .await
                    .map_err(show)?
                    .into_inner();
                let s = s.sandbox.unwrap_or_default();
                if j {
                    print_json(&s)
                } else {
                    print_sandboxes(std::slice::from_ref(&s))
                }
            }
            SandboxCmd::Ls { labels } => {
                let r = c
                    .list_sandboxes(ListSandboxesRequest {
                        labels: map(&labels),
                    })
                    .await
                    .map_err(show)?;
                let s = r.into_inner().sandboxes;
                if j {
                    print_json(&s)
                } else {
                    print_sandboxes(&s)
                }
            }
        },
        Cmd::Run(a) => {
            let t = c
                .create_task(create_request(&a))
                .await
                .map_err(show)?
                .into_inner()
                .task
                .unwrap_or_default();
            let t = c
                .start_task(StartTaskRequest { task_id: t.id })
                .await
                .map_err(show)?
                .into_inner()
                .task
                .unwrap_or_default();
            if j {
                print_json(&t)
            } else {
                println!("{}", t.id)
            }
        }
        Cmd::Task(cmd) => match cmd {
            TaskCmd::Create(a) => {
                let t = c
                    .create_task(create_request(&a))
                    .await
                    .map_err(show)?
                    .into_inner()
                    .task
                    .unwrap_or_default();
                if j {
                    print_json(&t)
                } else {
                    println!("{}", t.id)
                }
            }
            TaskCmd::Start { id } => {
                let t = c
                    .start_task(StartTaskRequest { task_id: id })
                    .await
                    .map_err(show)?
                    .into_inner()
                    .task;
                if j {
                    print_json(&t)
                }
            }
            TaskCmd::Stop { id, signal, grace } => {
                let t = c
                    .stop_task(StopTaskRequest {
                        task_id: id,
                        signal,
                        grace_period_seconds: grace,
                    })
                    .await
                    .map_err(show)?
                    .into_inner()
                    .task
                    .unwrap_or_default();
                if j {
                    print_json(&t)
                } else {
                    print_task(&t)
                }
            }
            TaskCmd::Rm { id } => {
                c.remove_task(RemoveTaskRequest { task_id: id })
                    .await
                    .map_err(show)?;
            }
            TaskCmd::Status { id } => {
                let t = c
                    .task_status(TaskStatusRequest { task_id: id })
                    .await
                    .map_err(show)?
                    .into_inner()
                    .task
                    .unwrap_or_default();
                if j {
                    print_json(&t)
                } else {
                    print_task(&t)
                }
            }
            TaskCmd::Ls { sandbox, state } => {
                let state = match state.as_str() {
                    "" => 0,
                    "created" => TaskState::Created as i32,
                    "running" => TaskState::Running as i32,
                    "paused" => TaskState::Paused as i32,
                    "exited" => TaskState::Exited as i32,
                    other => {
                        return Err(format!(
                            "--state {other:?}: use created, running, paused or exited"
                        ))
                    }
                };
                let r = c
                    .list_tasks(ListTasksRequest {
                        sandbox_id: sandbox,
                        state,
                    })
                    .await
                    .map_err(show)?;
                let t = r.into_inner().tasks;
                if j {
                    print_json(&t)
                } else {
                    print_tasks(&t)
                }
            }
            TaskCmd::Wait { id } => {
                let w = c
                    .wait_task(WaitTaskRequest { task_id: id })
                    .await
                    .map_err(show)?
                    .into_inner();
                if j {
                    print_json(&w)
                } else {
                    println!("{}", w.exit_code)
                }
                return Ok(w.exit_code.clamp(0, 255) as u8);
            }
            TaskCmd::Signal { id, signal } => {
                c.signal_task(SignalTaskRequest {
                    task_id: id,
                    signal,
                })
                .await
                .map_err(show)?;
            }
            TaskCmd::Update { id, resources: r } => {
                c.update_task_resources(UpdateTaskResourcesRequest {
                    task_id: id,
                    resources: Some(resources(&r)),
                })
                .await
                .map_err(show)?;
            }
        },
        Cmd::Exec {
            task_id,
            tty,
            interactive,
            timeout,
            env,
            command,
        } => {
            if !tty && !interactive {
                let r = c
                    .exec_sync(ExecSyncRequest {
                        task_id,
                        command,
                        timeout_seconds: timeout,
                        env: map(&env),
                    })
                    .await
                    .map_err(show)?
                    .into_inner();
                if j {
                    print_json(&serde_json::json!({
                        "stdout": String::from_utf8_lossy(&r.stdout),
                        "stderr": String::from_utf8_lossy(&r.stderr),
                        "exit_code": r.exit_code,
                    }));
                } else {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&r.stdout);
                    let _ = std::io::stderr().write_all(&r.stderr);
                }
                return Ok(r.exit_code.clamp(0, 255) as u8);
            }
            return exec_attached(&mut c, task_id, tty, env, command).await;
        }
        Cmd::Stats {
            task_id,
            interval_ms,
            count,
        } => {
            let mut s = c
                .task_stats(TaskStatsRequest {
                    task_id,
                    interval_ms,
                })
                .await
                .map_err(show)?
                .into_inner();
            if !j {
                println!(
                    "{:>7} {:>12} {:>10} {:>10} {:>10} {:>5}",
                    "CPU%", "CPU TIME", "RSS", "CACHE", "SWAP", "PIDS"
                );
            }
            let mut n = 0;
            while let Some(r) = s.message().await.map_err(show)? {
                if j {
                    println!("{}", json(&r));
                } else {
                    println!(
                        "{:>6.1}% {:>10.3} s {:>10} {:>10} {:>10} {:>5}",
                        r.cpu_percent,
                        r.cpu_total_ns as f64 / 1e9,
                        r.memory_rss,
                        r.memory_cache,
                        r.memory_swap,
                        r.pids_current
                    );
                }
                n += 1;
                if count > 0 && n >= count {
                    break;
                }
            }
        }
        Cmd::Events {
            sandbox,
            task,
            count,
        } => {
            let mut s = c
                .events(EventsRequest {
                    sandbox_id: sandbox,
                    task_id: task,
                })
                .await
                .map_err(show)?
                .into_inner();
            let mut n = 0;
            while let Some(e) = s.message().await.map_err(show)? {
                if j {
                    println!("{}", json(&e));
                } else {
                    let what = if e.task_id.is_empty() {
                        e.sandbox_id.clone()
                    } else {
                        e.task_id.clone()
                    };
                    let mut line = format!("{} {}", e.topic, what);
                    if !e.exec_id.is_empty() {
                        line += &format!(" exec={}", e.exec_id);
                    }
                    if e.pid != 0 {
                        line += &format!(" pid={}", e.pid);
                    }
                    if e.topic.ends_with("exited") {
                        line += &format!(" exit={}", e.exit_code);
                    }
                    println!("{line}");
                }
                n += 1;
                if count > 0 && n >= count {
                    break;
                }
            }
        }
    }
    Ok(0)
}

/// Exec attached: stdin to the command, its output to ours; with a
/// terminal, ours in raw mode and its size followed.
async fn exec_attached(
    c: &mut Client,
    task_id: String,
    tty: bool,
    env: Vec<(String, String)>,
    command: Vec<String>,
) -> Result<u8, String> {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<ExecRequest>(16);
    let req = |r: exec_request::Request| ExecRequest { request: Some(r) };
    let size = terminal_size();
    let raw = if tty {
        runtime::console::RawMode::enter()
    } else {
        None
    };
    let _ = tx
        .send(req(exec_request::Request::Start(ExecStart {
            task_id,
            command,
            tty,
            env: map(&env),
            width: size.map_or(0, |s| s.0),
            height: size.map_or(0, |s| s.1),
        })))
        .await;
    let stdin_tx = tx.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = stdin_tx
                        .send(req(exec_request::Request::CloseStdin(true)))
                        .await;
                    return;
                }
                Ok(n) => {
                    if stdin_tx
                        .send(req(exec_request::Request::Stdin(buf[..n].to_vec())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    if tty {
        let resize_tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((w, h)) = terminal_size() {
                    let r = req(exec_request::Request::Resize(TerminalSize {
                        width: w,
                        height: h,
                    }));
                    if resize_tx.send(r).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut out = c
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(show)?
        .into_inner();
    let mut code = 0u8;
    while let Some(m) = out.message().await.map_err(show)? {
        match m.response {
            Some(exec_response::Response::Stdout(b)) => {
                let mut o = std::io::stdout();
                let _ = o.write_all(&b);
                let _ = o.flush();
            }
            Some(exec_response::Response::Stderr(b)) => {
                let _ = std::io::stderr().write_all(&b);
            }
            Some(exec_response::Response::ExitCode(c)) => {
                code = c.clamp(0, 255) as u8;
                break;
            }
            _ => {}
        }
    }
    drop(raw);
    // stdin's reader may be blocked in a read: do not wait for it.
    std::process::exit(i32::from(code));
}

fn terminal_size() -> Option<(u32, u32)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((u32::from(ws.ws_col), u32::from(ws.ws_row)))
}
