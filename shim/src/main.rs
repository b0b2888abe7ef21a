//! `containerd-shim-isoexec-v1`: the containerd shim v2 (runtime type
//! `io.containerd.isoexec.v1`). containerd runs it three ways:
//! `... start` (start or find the shim serving this task, print its
//! address), `... delete` (clean up after a shim that is gone), and, from
//! `start`, the server itself. The server starts tasks with the engine
//! in-process (no helper binary per operation).

mod bootstrap;
mod events;
mod service;
mod stats;

use isoexec_shim::io;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use containerd_shim_protos::api::DeleteResponse;
use protobuf::Message;

/// What containerd passes (Go flag style: `-name value`).
#[derive(Debug, Default, Clone)]
pub struct ShimArgs {
    pub namespace: String,
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: PathBuf,
    pub debug: bool,
    /// `-info`: print the runtime's info (containerd 2) and exit.
    pub info: bool,
    pub action: String,
    /// Flags this shim does not know, ignored (said in the shim's log):
    /// a newer containerd's must not stop its tasks.
    pub ignored: Vec<String>,
}

impl ShimArgs {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        const ACTIONS: [&str; 2] = ["start", "delete"];
        let mut a = ShimArgs::default();
        let mut it = args.skip(1).peekable();
        while let Some(arg) = it.next() {
            if !arg.starts_with('-') {
                a.action = arg;
                continue;
            }
            let flag = arg.trim_start_matches('-');
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            let on = inline.as_deref() != Some("false");
            match name.as_str() {
                "debug" => a.debug = on,
                "info" => a.info = on,
                "v" | "version" => {
                    println!("containerd-shim-isoexec-v1 {}", runtime::VERSION);
                    std::process::exit(0);
                }
                "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket"
                | "debug-socket" | "debug-fifo" => {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| format!("flag -{name} needs a value"))?,
                    };
                    match name.as_str() {
                        "namespace" => a.namespace = value,
                        "address" => a.address = value,
                        "publish-binary" => a.publish_binary = value,
                        "id" => a.id = value,
                        "bundle" => a.bundle = PathBuf::from(value),
                        // containerd's, changing nothing here.
                        _ => {}
                    }
                }
                _ => {
                    // Go style: a flag's value follows it unless it is a
                    // switch; a word that is an action or a flag is not one.
                    let value = match inline {
                        Some(v) => Some(v),
                        None => {
                            it.next_if(|n| !n.starts_with('-') && !ACTIONS.contains(&n.as_str()))
                        }
                    };
                    a.ignored.push(match value {
                        Some(v) => format!("-{name} {v}"),
                        None => format!("-{name}"),
                    });
                }
            }
        }
        if a.info {
            return Ok(a);
        }
        if a.bundle.as_os_str().is_empty() {
            a.bundle = std::env::current_dir().map_err(|e| e.to_string())?;
        }
        if a.namespace.is_empty() {
            return Err("-namespace is required".into());
        }
        Ok(a)
    }
}

fn main() -> ExitCode {
    let args = match ShimArgs::parse(std::env::args()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-isoexec-v1: {e}");
            return ExitCode::from(2);
        }
    };
    if args.info {
        return match bootstrap::info(&mut std::io::stdin().lock()) {
            Ok(bytes) => match std::io::stdout().write_all(&bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("containerd-shim-isoexec-v1: -info: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("containerd-shim-isoexec-v1: -info: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let r = match args.action.as_str() {
        "start" => start(&args),
        "delete" => delete(&args),
        "" => serve(&args),
        other => Err(format!("unknown action {other:?} (start, delete)")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-isoexec-v1: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The isoexec state root for containerd's tasks of `namespace`: beside
/// containerd's own state (bundles are STATE/io.containerd.runtime.v2.task/NS/ID).
pub fn state_root(bundle: &Path, namespace: &str) -> PathBuf {
    match bundle.ancestors().nth(3) {
        Some(state)
            if bundle
                .ancestors()
                .nth(2)
                .and_then(|p| p.file_name())
                .is_some() =>
        {
            state.join("isoexec").join(namespace)
        }
        _ => PathBuf::from("/run/isoexec/containerd").join(namespace),
    }
}

/// The group a task's shim serves: its sandbox, else the task itself. A
/// plain JSON lookup: `start` runs for every task, and the whole OCI spec
/// is not needed to read one annotation.
fn group_of(bundle: &Path, id: &str) -> String {
    let spec: Option<serde_json::Value> = std::fs::read(bundle.join(runtime::bundle::CONFIG))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let annotation = |key: &str| {
        spec.as_ref()?
            .get("annotations")?
            .get(key)?
            .as_str()
            .map(str::to_string)
    };
    annotation(runtime::driver::ANN_SANDBOX)
        .or_else(|| annotation(runtime::driver::ANN_CRI_SANDBOX))
        .unwrap_or_else(|| id.to_string())
}

/// FNV-1a: a hash that stays the same across builds (std's does not
/// promise to), so every version of the shim finds a group's socket.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The shim's socket: short (a unix socket path is limited to ~106 bytes)
/// and the same for every task of one group.
fn socket_path(args: &ShimArgs, group: &str) -> PathBuf {
    let h = fnv1a(&[&args.address, &args.namespace, group]);
    PathBuf::from(format!("/run/containerd/s/isoexec-{h:016x}"))
}

/// `start`: print the address of the shim serving this task, starting it
/// when its group has none yet.
fn start(args: &ShimArgs) -> Result<(), String> {
    let group = group_of(&args.bundle, &args.id);
    let sock = socket_path(args, &group);
    let address = format!("unix://{}", sock.display());
    let write_address = || {
        std::fs::write(args.bundle.join("address"), &address)
            .map_err(|e| format!("writing {}/address: {e}", args.bundle.display()))
    };
    // What containerd reads back: the plain address (1.6, 1.7) or, for
    // containerd 2, the bootstrap document with the task API v3.
    let answer = bootstrap::start_answer(&address);
    if UnixStream::connect(&sock).is_ok() {
        // The group's shim is running: it serves this task too.
        write_address()?;
        print!("{answer}");
        return Ok(());
    }
    // The server forks tasks' processes: never as the host's writable
    // binary (CVE-2019-5736). Re-executes `start` when it must.
    runtime::sys::exe::ensure_sealed(&state_root(&args.bundle, &args.namespace), false)
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&sock);
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(&sock).map_err(|e| format!("listening on {}: {e}", sock.display()))?;
    // The server is this process, forked (no second exec of the binary):
    // start is single-threaded here, nothing is running yet.
    // SAFETY: single-threaded; the child runs the server and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("starting the shim server: {e}"))? {
        nix::unistd::ForkResult::Child => {
            // containerd waits for start's stdout and stderr to close: the
            // server must not keep them.
            let detached = nix::unistd::setsid().is_ok() && stdio_to_null().is_ok();
            let code = if detached {
                match serve_on(args, listener.as_raw_fd()) {
                    Ok(()) => 0,
                    Err(e) => {
                        io::log(&format!("shim server: {e}"));
                        1
                    }
                }
            } else {
                1
            };
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(listener);
            let _ = std::fs::write(args.bundle.join("shim.pid"), child.to_string());
        }
    }
    write_address()?;
    print!("{answer}");
    let _ = std::io::stdout().flush();
    Ok(())
}

fn stdio_to_null() -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let n = null.as_raw_fd();
    runtime::sys::set_stdio([n, n, n])
}

/// `delete`: the shim is gone; remove what the task left (processes,
/// mounts, cgroup, state) and print a DeleteResponse.
fn delete(args: &ShimArgs) -> Result<(), String> {
    let root = state_root(&args.bundle, &args.namespace);
    let mut resp = DeleteResponse::new();
    resp.exit_status = 137;
    resp.exited_at = protobuf::MessageField::some(events::now());
    if let Ok(c) = runtime::container::Container::load(&root, &args.id) {
        resp.pid = c.state.pid as u32;
        if c.status() == runtime::container::Status::Stopped {
            resp.exit_status = 0;
        }
        runtime::container::delete(&c, true).map_err(|e| e.to_string())?;
    }
    isoexec_shim::supervisor::unmount_rootfs(&args.bundle);
    // A shim killed without a goodbye leaves its socket: remove it if no one
    // answers there any more.
    let sock = socket_path(args, &group_of(&args.bundle, &args.id));
    if UnixStream::connect(&sock).is_err() {
        let _ = std::fs::remove_file(&sock);
    }
    let bytes = resp.write_to_bytes().map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The server run directly (no action): on a listening socket passed as
/// descriptor 3.
fn serve(args: &ShimArgs) -> Result<(), String> {
    runtime::sys::exe::ensure_sealed(&state_root(&args.bundle, &args.namespace), false)
        .map_err(|e| e.to_string())?;
    serve_on(args, 3)
}

/// The server: a single-threaded runtime (so the engine may fork), serving
/// the Task service under containerd's 1.6/1.7 and 2.x names on the
/// listening socket `fd`.
fn serve_on(args: &ShimArgs, fd: std::os::fd::RawFd) -> Result<(), String> {
    io::open_log(&args.bundle);
    for flag in &args.ignored {
        io::log(&format!("ignoring the unknown flag {flag}"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // SAFETY: `fd` is the listening socket.
        let sock_path = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        let sock_path = {
            let p = sock_path
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf));
            std::mem::forget(sock_path); // the server takes the descriptor
            p
        };
        let (publisher, events_task) = events::Publisher::start(&args.namespace);
        let svc = service::Service::new(args, publisher.clone());
        let services = service::register(svc.clone());
        // SAFETY: `fd` is a listening unix socket, owned by the server from here.
        let mut server = unsafe { ttrpc::asynchronous::Server::new().add_unix_listener(fd) }
            .map_err(|e| e.to_string())?
            .register_service(services);
        // Registered before the first task is forked, so no exit is missed.
        let sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
            .map_err(|e| e.to_string())?;
        tokio::spawn(svc.supervisor().reap(sigchld));
        server.start().await.map_err(|e| e.to_string())?;
        svc.wait_shutdown().await;
        let _ = server.shutdown().await;
        publisher.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), events_task).await;
        if let Some(p) = sock_path {
            let _ = std::fs::remove_file(p);
        }
        Ok::<(), String>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_stable_short_and_per_group() {
        let args = ShimArgs {
            address: "/run/containerd/containerd.sock".into(),
            namespace: "k8s.io".into(),
            ..Default::default()
        };
        // Fixed: the same on every build of the shim.
        assert_eq!(fnv1a(&["a"]), 0x089b_e207_b544_f1e4);
        let p = socket_path(&args, "pod-1");
        assert_eq!(p, socket_path(&args, "pod-1"));
        assert_ne!(p, socket_path(&args, "pod-2"));
        assert!(p.as_os_str().len() < 100, "{}", p.display());
        // Parts do not run together: ("ab", "c") is not ("a", "bc").
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
    }

    #[test]
    fn args_in_go_flag_style() {
        let a = ShimArgs::parse(
            [
                "shim",
                "-namespace",
                "default",
                "-id=t1",
                "--address",
                "/run/c.sock",
                "-bundle",
                "/b",
                "-debug",
                "start",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!(
            (a.namespace.as_str(), a.id.as_str(), a.address.as_str()),
            ("default", "t1", "/run/c.sock")
        );
        assert_eq!(a.bundle, PathBuf::from("/b"));
        assert!(a.debug);
        assert_eq!(a.action, "start");
        // A newer containerd's flags are ignored, with or without a value.
        let a = ShimArgs::parse(
            [
                "shim",
                "-namespace",
                "n",
                "-bogus",
                "x",
                "-switch",
                "-new=1",
                "delete",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!(a.ignored, ["-bogus x", "-switch", "-new 1"]);
        assert_eq!((a.namespace.as_str(), a.action.as_str()), ("n", "delete"));
        let a = ShimArgs::parse(["shim", "-info"].iter().map(|s| s.to_string())).unwrap();
        assert!(a.info, "-info needs no namespace");
        let e = ShimArgs::parse(["shim", "-id", "x"].iter().map(|s| s.to_string())).unwrap_err();
        assert!(e.contains("-namespace is required"), "{e}");
    }

    #[test]
    fn state_root_beside_containerds_state() {
        assert_eq!(
            state_root(
                Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"),
                "k8s.io"
            ),
            PathBuf::from("/run/containerd/isoexec/k8s.io")
        );
        assert_eq!(
            state_root(Path::new("/b"), "default"),
            PathBuf::from("/run/isoexec/containerd/default")
        );
    }
}
