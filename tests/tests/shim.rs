//! containerd-shim-isoexec-v1 under a real containerd (the distribution's),
//! started by each test on a private config, sockets and state directory,
//! and driven with `ctr` as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use isoexec_tests::containerd;

const RUNTIME: &str = "io.containerd.isoexec.v1";

struct Containerd {
    dir: TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// Where the shim binary is found, when not the built one's directory.
    bin_dir: Option<PathBuf>,
}

impl Containerd {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// containerd with `env` (which its shims inherit).
    fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_full(env, None)
    }

    fn start_full(env: &[(&str, &str)], bin_dir: Option<PathBuf>) -> Self {
        require_root();
        for tool in ["containerd", "ctr"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is not installed: `apt-get install containerd` (make test does)"
            );
        }
        let dir = TempDir::new("isoexec-ctd");
        containerd::write_config(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let mut c = Containerd {
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bin_dir,
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let bin_dir = self.bin_dir.clone().unwrap_or_else(|| {
            binary("containerd-shim-isoexec-v1")
                .parent()
                .unwrap()
                .to_path_buf()
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .unwrap();
        let child = containerd::command(self.dir.path(), &bin_dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        self.child = Some(child);
        assert!(
            eventually(15, || self.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    /// Stops containerd (SIGTERM, as a service manager would), leaving its
    /// shims running.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a signal to the containerd this harness started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn sock(&self) -> PathBuf {
        containerd::socket(self.dir.path())
    }

    fn empty_root(&self) -> String {
        self.dir.path().join("empty").display().to_string()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.sock())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// `ctr run` with isoexec on the empty root.
    fn run(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
        let args = self.run_args(flags, id, cmd);
        self.ctr(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The arguments of `ctr run` with isoexec on the empty root.
    fn run_args(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let root = self.empty_root();
        // ctr's fifos in the test's own directory: a task deleted without
        // ctr (its shim killed) leaves them behind, and they go with it.
        let fifos = self.dir.path().join("fifo").display().to_string();
        // --rootfs is a switch: the directory is the first argument, and
        // ctr reads no flag after it.
        let mut args = vec!["run", "--runtime", RUNTIME, "--fifo-dir", &fifos];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &root]);
        args.push(id);
        args.extend_from_slice(cmd);
        args.into_iter().map(String::from).collect()
    }

    /// Shim processes serving this containerd (by their -address). A task's
    /// init forked by a shim carries the shim's command line until it
    /// execs: a process whose parent is a shim is not one.
    fn shims(&self) -> Vec<i32> {
        let sock = self.sock().display().to_string();
        let found: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("containerd-shim-isoexec-v1") && cmd.contains(&sock) && alive(*pid)
            })
            .collect();
        let ppid = |pid: i32| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        found
            .iter()
            .copied()
            .filter(|p| !ppid(*p).is_some_and(|pp| found.contains(&pp)))
            .collect()
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.state()
            .join("io.containerd.runtime.v2.task/default")
            .join(id)
    }

    /// Kills task `id`, waits until it is stopped, removes it and its
    /// container.
    fn kill_and_remove(&self, id: &str) {
        self.ok(&["task", "kill", "-s", "KILL", id]);
        let stopped = |l: &str| l.split_whitespace().next() == Some(id) && l.contains("STOPPED");
        assert!(eventually(5, || self
            .ok(&["task", "ls"])
            .lines()
            .any(stopped)));
        self.ok(&["task", "rm", id]);
        self.ok(&["c", "rm", id]);
    }

    /// Nothing of task `id` left: shim, state, cgroup, mounts, socket.
    fn assert_clean(&self, id: &str) {
        assert!(
            eventually(10, || self.shims().is_empty()),
            "shims left: {:?}",
            self.shims()
        );
        let isoexec_state = self.state().join("isoexec/default").join(id);
        assert!(!isoexec_state.exists(), "{} left", isoexec_state.display());
        for c in ["memory", "pids", "cpu", "freezer"] {
            assert!(
                !cgroup_dir(c, &format!("/default/{id}")).exists(),
                "{c} cgroup of {id} left"
            );
        }
        assert!(
            mounts_under(self.dir.path()).is_empty(),
            "{:?}",
            mounts_under(self.dir.path())
        );
        assert_eq!(
            std::fs::read_dir(self.dir.path().join("empty"))
                .unwrap()
                .count(),
            0
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let tasks = stdout(&self.ctr(&["task", "ls", "-q"]));
            for id in tasks.lines() {
                let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
                let _ = self.ctr(&["task", "rm", "-f", id]);
            }
            for id in stdout(&self.ctr(&["c", "ls", "-q"])).lines() {
                let _ = self.ctr(&["c", "rm", id]);
            }
        }
        self.stop();
        for pid in self.shims() {
            // SAFETY: a shim started for this harness's containerd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn topics(events: &Path) -> Vec<String> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tasks/"))
                .map(str::to_string)
        })
        .collect()
}

/// `ctr events` into a file while `f` runs.
fn with_events(ctd: &Containerd, f: impl FnOnce()) -> Vec<String> {
    let path = ctd.dir.path().join(unique("events"));
    let mut child = Command::new("ctr")
        .arg("-a")
        .arg(ctd.sock())
        .arg("events")
        .stdout(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    f();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    topics(&path)
}

#[test]
fn run_rm_runs_a_host_binary_with_no_image() {
    let ctd = Containerd::start();
    let o = ctd.run(
        &["--rm"],
        "hello",
        &[
            "sh",
            "-c",
            "echo hi; ls /usr/bin/env; wc -c < /etc/shadow; exit 3",
        ],
    );
    // ctr's task runs as root: the host's /etc/shadow is hidden from it
    // (chroot_env_hide), the rest of /etc is there.
    assert_eq!(stdout(&o), "hi\n/usr/bin/env\n0\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3));
    ctd.assert_clean("hello");
    assert!(ctd.ok(&["c", "ls", "-q"]).is_empty());
}

#[test]
fn host_devices_stay_closed_through_ctr() {
    // The attack through containerd's default spec (its own device rules):
    // with CAP_MKNOD a task makes the node of the disk under / and of the
    // kernel's memory and opens them. Made, never opened (v1 and v2).
    let ctd = Containerd::start();
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").unwrap());
    let script = format!(
        "mknod /tmp/disk b {} {} && echo made; head -c 1 /tmp/disk || echo disk-refused; \
         mknod /tmp/mem c 1 1 && echo made; head -c 1 /tmp/mem || echo mem-refused; \
         echo ok > /dev/null && echo null-ok",
        libc::major(dev),
        libc::minor(dev)
    );
    let o = ctd.run(&["--rm"], "mknod", &["sh", "-c", &script]);
    assert_eq!(
        stdout(&o),
        "made\ndisk-refused\nmade\nmem-refused\nnull-ok\n",
        "{}",
        stderr(&o)
    );
    ctd.assert_clean("mknod");
}

#[test]
fn output_waits_for_a_reader_that_comes_late() {
    // A reader that opens the output fifo after the process has written
    // and exited still gets the output, as with containerd's runc shim
    // (the shim dropped it with its last descriptor of the fifo).
    let ctd = Containerd::start();
    let fifo = ctd.dir.path().join("late.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = ctd.run(
        &["-d", "--log-uri", fifo.to_str().unwrap()],
        "late",
        &["sh", "-c", "echo hello"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(eventually(10, || ctd
        .ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("late") && l.contains("STOPPED"))));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(path).unwrap_or_default());
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the fifo reached its end");
    assert_eq!(got, "hello\n");
    ctd.ok(&["task", "rm", "late"]);
    ctd.ok(&["c", "rm", "late"]);
    ctd.assert_clean("late");
}

/// Runs `ctr ARGS sh -c 'sleep LATE; wc -c; echo end'`, ctr's stdin fed
/// `size` bytes once the process has started (ctr sends CloseIO only from
/// then), and asserts the process counted them all and ended.
fn fed_through_ctr(ctd: &Containerd, args: &[String], size: usize, late: u64) {
    use std::io::Write;
    let script = format!("sleep {late}; wc -c; echo end");
    let mut child = Command::new("ctr")
        .arg("-a")
        .arg(ctd.sock())
        .args(args)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300 * late));
        stdin.write_all(&vec![b'x'; size]).is_ok()
    });
    let pid = child.id() as i32;
    let done = eventually(10, || {
        !alive(pid) || matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        done,
        "ctr {args:?} did not end: the process never saw the end of its stdin"
    );
    assert!(writer.join().unwrap(), "ctr took its input");
    let out = stdout(&o);
    let got: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        (got, o.status.code()),
        (vec![size.to_string().as_str(), "end"], Some(0)),
        "ctr {args:?}: the process got only part of its {size} bytes of input"
    );
}

/// (bytes of input, seconds before the process reads it): 120000 is more
/// than the process's pipe holds and less than the pipe and the fifo hold,
/// so ctr has written it all and sent CloseIO before the process reads;
/// then short inputs read at once, as a user's loop feeds them.
const LATE_INPUTS: [(usize, u64); 2] = [(120_000, 1), (6, 0)];

/// `… | ctr task exec ... cat`: the exec reads its input to the end and
/// ends, though ctr sends CloseIO as soon as its own stdin ends: maybe
/// before it starts the exec, and before the shim has relayed from the
/// fifo what ctr wrote there. An exec that reads late, with more input than
/// its pipe holds, has the rest of it in the fifo then, every time; a short
/// input, in a loop as a user's script runs it, now and then. `echo end`
/// after the input tells a lost input from a lost output.
#[test]
fn exec_reads_stdin_to_its_end() {
    let ctd = Containerd::start();
    assert!(ctd.run(&["-d"], "in", &["sleep", "1000"]).status.success());
    let [long, short] = LATE_INPUTS;
    let inputs = [long].into_iter().chain([short; 30]);
    for (n, (size, late)) in inputs.enumerate() {
        let args = ["task", "exec", "--exec-id", &format!("cat{n}"), "in"];
        fed_through_ctr(&ctd, &args.map(String::from), size, late);
    }
    ctd.ok(&["task", "kill", "-s", "KILL", "in"]);
    assert!(eventually(5, || ctd
        .ok(&["task", "ls"])
        .contains("STOPPED")));
    ctd.ok(&["task", "rm", "in"]);
    ctd.ok(&["c", "rm", "in"]);
    ctd.assert_clean("in");
}

/// `… | ctr run --rm ... cat`: a task's own process reads its input to the
/// end, as an exec does (the same CloseIO from ctr).
#[test]
fn run_reads_stdin_to_its_end() {
    let ctd = Containerd::start();
    for (n, (size, late)) in LATE_INPUTS.into_iter().enumerate() {
        let id = format!("fed{n}");
        fed_through_ctr(&ctd, &ctd.run_args(&["--rm"], &id, &[]), size, late);
        ctd.assert_clean(&id);
    }
}

#[test]
fn detached_task_exec_ps_metrics_pause_kill() {
    let ctd = Containerd::start();
    let o = ctd.run(
        &["-d"],
        "web",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.1; done",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ls = ctd.ok(&["task", "ls"]);
    assert!(ls.contains("web") && ls.contains("RUNNING"), "{ls}");

    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "web",
        "sh",
        "-c",
        "echo from-exec $NOMAD_TASK_DIR; exit 4",
    ]);
    assert_eq!(stdout(&o), "from-exec /local\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    let ps = ctd.ok(&["task", "ps", "web"]);
    let init: String = ls
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .into();
    assert!(ps.contains(&init), "{ps}");

    // ctr prints the v1 or the v2 Metrics type, by the host's hierarchy.
    let metrics = ctd.ok(&["task", "metrics", "web"]);
    let (usage, cpu) = if cgroup_v2() {
        ("memory.usage ", "cpu.usage_usec")
    } else {
        ("memory.usage_in_bytes", "cpuacct.usage")
    };
    let pids: Option<u64> = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pids.current"))
        .and_then(|v| v.trim().parse().ok());
    assert!(pids >= Some(1), "{metrics}");
    assert!(
        metrics.contains(usage) && metrics.contains(cpu),
        "{metrics}"
    );

    // Back to back, as a script does: each `pause` returns once the task
    // is frozen, so `ls` says PAUSED and `resume` finds it paused.
    for round in 0..10 {
        ctd.ok(&["task", "pause", "web"]);
        let ls = ctd.ok(&["task", "ls"]);
        assert!(ls.contains("PAUSED"), "round {round}: {ls}");
        ctd.ok(&["task", "resume", "web"]);
        let ls = ctd.ok(&["task", "ls"]);
        assert!(ls.contains("RUNNING"), "round {round}: {ls}");
    }

    ctd.ok(&["task", "kill", "-s", "TERM", "web"]);
    assert!(eventually(5, || ctd
        .ok(&["task", "ls"])
        .contains("STOPPED")));
    // A finished process cannot be signalled: NotFound, as containerd expects.
    let e = stderr(&ctd.ctr(&["task", "kill", "-s", "KILL", "web"]));
    assert!(
        e.contains("not found") || e.contains("already finished"),
        "{e}"
    );
    ctd.ok(&["task", "rm", "web"]);
    ctd.ok(&["c", "rm", "web"]);
    ctd.assert_clean("web");
}

#[test]
fn events_in_order() {
    let ctd = Containerd::start();
    let got = with_events(&ctd, || {
        assert!(ctd.run(&["-d"], "ev", &["sleep", "1000"]).status.success());
        ctd.ok(&["task", "exec", "--exec-id", "x1", "ev", "true"]);
        ctd.ok(&["task", "pause", "ev"]);
        ctd.ok(&["task", "resume", "ev"]);
        ctd.ok(&["task", "kill", "-s", "KILL", "ev"]);
        assert!(eventually(5, || ctd
            .ok(&["task", "ls"])
            .contains("STOPPED")));
        ctd.ok(&["task", "rm", "ev"]);
    });
    assert_eq!(
        got,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[test]
fn a_task_asks_for_a_user_namespace_of_its_own_through_ctr() {
    // `--annotation io.isoexec.userns=auto`: the task's ids are a range of
    // the pool's (the default userns_range starts at 1000000000), the
    // chroot_env idmapped where the kernel can. (ctr 1.6 applies --uidmap
    // to image snapshots only; with --rootfs it drops it.)
    let ctd = Containerd::start();
    let o = ctd.run(
        &["--rm", "--annotation", "io.isoexec.userns=auto"],
        "mapped",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; stat -c %u /usr/bin/env",
        ],
    );
    let f: serde_json::Value = serde_json::from_slice(
        &Command::new(binary("isoexec"))
            .args(["fingerprint", "--format", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    if f["idmapped_mounts"] == "yes" {
        let out = stdout(&o);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(
            words,
            ["0", "1000000000", "65536", "0", "0"],
            "{}",
            stderr(&o)
        );
        assert_eq!(o.status.code(), Some(0));
    } else {
        // The host's directories cannot be idmapped here: refused, by name.
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("idmapped mount"), "{}", stderr(&o));
    }
    ctd.assert_clean("mapped");
    // The range went back to the pool with the task.
    assert!(!ctd.state().join("isoexec/default/.userns").exists());
}

/// An OCI image archive of a busybox root, made as an image builder
/// writes one (layout, index, manifest, config, one layer), for
/// `ctr images import`.
fn busybox_oci_archive(dir: &Path) -> PathBuf {
    let layer = busybox_image_tar(dir);
    let blobs = dir.join("oci/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = dir.join("blob");
        std::fs::write(&tmp, bytes).unwrap();
        let sum = Command::new("sha256sum").arg(&tmp).output().unwrap();
        let hex = stdout(&sum).split_whitespace().next().unwrap().to_string();
        std::fs::rename(&tmp, blobs.join(&hex)).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&std::fs::read(&layer).unwrap());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("oci/index.json"), index.to_string()).unwrap();
    std::fs::write(
        dir.join("oci/oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("busybox.oci.tar");
    let o = Command::new("tar")
        .arg("-C")
        .arg(dir.join("oci"))
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    archive
}

#[test]
fn ctr_run_uidmap_of_an_image_runs_in_a_user_namespace() {
    // `ctr run --uidmap/--gidmap IMAGE`: ctr shifts a copy of the image's
    // snapshot to the host ids and asks for the user namespace in the
    // spec; with image semantics the task's root owns its files.
    let ctd = Containerd::start();
    let archive = busybox_oci_archive(ctd.dir.path());
    ctd.ok(&[
        "images",
        "import",
        "--base-name",
        "localhost/busybox",
        archive.to_str().unwrap(),
    ]);
    let fifos = ctd.dir.path().join("fifo").display().to_string();
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--fifo-dir",
        &fifos,
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "--annotation",
        "io.isoexec.chroot_env=none",
        "localhost/busybox:latest",
        "mapped-image",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; touch /tmp/mine && echo wrote",
    ]);
    let out = stdout(&o);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536", "0", "0", "wrote"],
        "{}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(eventually(10, || ctd.shims().is_empty()), "shims left");
    let state = ctd.state().join("isoexec/default/mapped-image");
    assert!(!state.exists(), "{} left", state.display());
}

#[test]
fn memory_limit_kills_and_reports_oom() {
    let ctd = Containerd::start();
    let mut code = None;
    let got = with_events(&ctd, || {
        let o = ctd.run(
            &["--rm", "--memory-limit", "33554432"],
            "hog",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        );
        code = o.status.code();
    });
    assert_eq!(code, Some(137));
    assert!(got.contains(&"/tasks/oom".to_string()), "{got:?}");
    ctd.assert_clean("hog");
}

#[test]
fn driver_policy_reaches_ctr() {
    let ctd = Containerd::start();
    let o = ctd.run(&["--rm", "--privileged"], "priv", &["true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("driver does not allow the following capabilities"),
        "{}",
        stderr(&o)
    );
    // The driver config through the runtime options (ConfigPath).
    let cfg = ctd.dir.path().join("deny.toml");
    std::fs::write(&cfg, "denied_host_uids = \"0\"\n").unwrap();
    let o = ctd.run(
        &["--rm", "--runtime-config-path", cfg.to_str().unwrap()],
        "denied",
        &["true"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("running as uid 0 is disallowed"),
        "{}",
        stderr(&o)
    );
    // net_raw is in ctr's default set: dropped, and the task runs.
    let o = ctd.run(
        &["--rm"],
        "caps",
        &["sh", "-c", "grep CapBnd /proc/self/status"],
    );
    assert_eq!(stdout(&o), "CapBnd:\t00000000a80405fb\n", "{}", stderr(&o));
    // The shim's log goes to containerd's (through the bundle's log fifo).
    let log = std::fs::read(ctd.dir.path().join("containerd.log")).unwrap();
    assert!(
        String::from_utf8_lossy(&log)
            .contains("caps: warning: dropping capabilities not in allow_caps: net_raw"),
        "the shim's warning is not in containerd's log"
    );
    for id in ["priv", "denied", "caps"] {
        ctd.assert_clean(id);
    }
}

#[test]
fn terminal_session() {
    let ctd = Containerd::start();
    let cmd = format!(
        "ctr -a {} run -t --rm --runtime {RUNTIME} --rootfs {} tty1 sh -c 'tty; echo done'",
        ctd.sock().display(),
        ctd.empty_root()
    );
    let o = in_terminal(&cmd).output().unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("/dev/pts/0") && out.contains("done"),
        "{out:?} {}",
        stderr(&o)
    );
    ctd.assert_clean("tty1");
    // ctr resizes an exec's terminal right after the start, when a quick
    // process is gone already: no error for that, as with runc's shim.
    let o = ctd.run(&["-d"], "tty2", &["sleep", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 0..5 {
        let cmd = format!(
            "ctr -a {} task exec -t --exec-id quick{i} tty2 true",
            ctd.sock().display()
        );
        let o = in_terminal(&cmd).output().unwrap();
        let out = stdout(&o);
        assert!(o.status.success() && !out.contains("resize pty"), "{out:?}");
    }
    ctd.kill_and_remove("tty2");
    ctd.assert_clean("tty2");
}

#[test]
fn containerd_restart_keeps_the_task() {
    let mut ctd = Containerd::start();
    let o = ctd.run(&["-d"], "keep", &["sleep", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shims = ctd.shims();
    assert_eq!(shims.len(), 1);
    ctd.restart();
    assert_eq!(ctd.shims(), shims, "the shim outlived containerd");
    assert!(ctd.ok(&["task", "ls"]).contains("RUNNING"));
    assert_eq!(
        stdout(&ctd.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "after",
            "keep",
            "echo",
            "still here"
        ])),
        "still here\n"
    );
    ctd.kill_and_remove("keep");
    ctd.assert_clean("keep");
}

#[test]
fn killed_shim_leaves_nothing_after_delete() {
    let ctd = Containerd::start();
    assert!(ctd
        .run(&["-d"], "orphan", &["sleep", "1000"])
        .status
        .success());
    let ls = ctd.ok(&["task", "ls"]);
    let init: i32 = ls
        .lines()
        .find(|l| l.starts_with("orphan"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let shim: i32 = std::fs::read_to_string(ctd.bundle("orphan").join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the shim this test's containerd started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // containerd notices and runs the shim's delete.
    assert!(eventually(10, || !ctd
        .ok(&["task", "ls"])
        .contains("orphan")));
    let _ = ctd.ctr(&["task", "rm", "-f", "orphan"]);
    ctd.ok(&["c", "rm", "orphan"]);
    assert!(
        eventually(5, || !alive(init)),
        "the task's process outlived its shim's delete"
    );
    ctd.assert_clean("orphan");
    let sockets: Vec<_> = std::fs::read_dir("/run/containerd/s")
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    let ours = std::fs::read_to_string(ctd.bundle("orphan").join("address")).unwrap_or_default();
    assert!(!sockets
        .iter()
        .any(|e| ours.ends_with(&e.file_name().to_string_lossy().to_string())));
}

#[test]
fn one_sandbox_one_shim_one_alloc() {
    let ctd = Containerd::start();
    let ann = ["--annotation", "io.isoexec.sandbox=pod-1", "-d"];
    assert!(ctd
        .run(
            &ann,
            "a",
            &["sh", "-c", "echo shared > /alloc/msg; sleep 1000"]
        )
        .status
        .success());
    assert!(ctd.run(&ann, "b", &["sleep", "1000"]).status.success());
    assert_eq!(ctd.shims().len(), 1, "one shim serves the sandbox");
    let addr = |id: &str| std::fs::read_to_string(ctd.bundle(id).join("address")).unwrap();
    assert_eq!(addr("a"), addr("b"));
    let mut out = String::new();
    assert!(
        eventually(5, || {
            out = stdout(&ctd.ctr(&[
                "task",
                "exec",
                "--exec-id",
                unique("r").as_str(),
                "b",
                "cat",
                "/alloc/msg",
            ]));
            out == "shared\n"
        }),
        "{out:?}"
    );
    // The shim stays while one task is left, and goes with the last.
    ctd.kill_and_remove("a");
    assert_eq!(ctd.shims().len(), 1);
    assert_eq!(
        stdout(&ctd.ctr(&["task", "exec", "--exec-id", "late", "b", "echo", "ok"])),
        "ok\n"
    );
    ctd.kill_and_remove("b");
    ctd.assert_clean("a");
    ctd.assert_clean("b");
    assert!(!ctd
        .state()
        .join("isoexec/default/.sandboxes/pod-1")
        .exists());
}

#[test]
fn log_uris_file_and_binary() {
    use std::os::unix::fs::PermissionsExt;
    let ctd = Containerd::start();
    let dir = ctd.dir.path();
    // file://: the task's output goes to the file.
    let log = dir.join("task.log");
    let uri = format!("file://{}", log.display());
    let o = ctd.run(
        &["--rm", "--log-uri", &uri],
        "flog",
        &["sh", "-c", "echo to-file; echo err-to-file >&2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("to-file\n") && text.contains("err-to-file\n"),
        "{text:?}"
    );

    // binary://: a log driver gets stdout on 3, stderr on 4, and its
    // arguments from the query.
    let out = dir.join("driver.out");
    let driver = dir.join("driver.sh");
    std::fs::write(
        &driver,
        format!(
            "#!/bin/sh\nexec 5>&-\necho \"args: $* id: $CONTAINER_ID ns: $CONTAINER_NAMESPACE\" > {o}\n\
             cat <&3 >> {o} &\ncat <&4 >> {o}\nwait\n",
            o = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&driver, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?tag=demo", driver.display());
    let o = ctd.run(
        &["--rm", "--log-uri", &uri],
        "blog",
        &["sh", "-c", "echo via-driver"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut text = String::new();
    assert!(
        eventually(5, || {
            text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("via-driver")
        }),
        "{text:?}"
    );
    assert!(
        text.starts_with("args: tag demo id: blog ns: default"),
        "{text:?}"
    );
    ctd.assert_clean("flog");
    ctd.assert_clean("blog");
}

/// CVE-2019-5736, as the attack (see the CLI's test): the task plants
/// `#!/proc/self/exe` in /local, `ctr task exec` of it makes the kernel run
/// the shim's own binary inside the task; the task stops it, keeps its exe
/// open, kills it and writes through the handle. The shim serves from a
/// read-only copy of itself, so the write is refused for good (read-only,
/// not merely busy while a shim runs the binary), the binary (a copy) is
/// unchanged, and no handle opens before the exec.
#[test]
fn cve_2019_5736_a_task_cannot_overwrite_the_shim() {
    let bin = TempDir::new("isoexec-shim-bin");
    let exe = binary_copy("containerd-shim-isoexec-v1", bin.path());
    let before = std::fs::read(&exe).unwrap();
    let ctd = Containerd::start_full(&[], Some(bin.path().to_path_buf()));
    let attacker = TempDir::new("attacker");
    exe_watch(&attacker.path().join("watch"));
    let id = unique("cve-2019-5736");
    let fifos = ctd.dir.path().join("fifo").display().to_string();
    let root = ctd.empty_root();
    let mount = format!(
        "type=bind,src={},dst=/attacker,options=rbind:rw",
        attacker.path().display()
    );
    ctd.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--fifo-dir",
        &fifos,
        "--mount",
        &mount,
        "--rootfs",
        &root,
        &id,
        "sh",
        "-c",
        "printf '#!/proc/self/exe\\n' > /local/attack; chmod 755 /local/attack; \
         exec /attacker/watch /attacker/result",
    ]);
    let result = attacker.path().join("result");
    let mut n = 0;
    exe_attack_catch(&result, 20, || {
        n += 1;
        let exec_id = format!("attack{n}");
        ctd.ctr(&["task", "exec", "--exec-id", &exec_id, &id, "/local/attack"]);
    });
    // While the task lives the shim runs: a write the binary refused only
    // for being busy would succeed once the shim is gone.
    let verdict = if eventually(10, || result.exists()) {
        std::fs::read_to_string(&result).unwrap()
    } else {
        "busy: the handle is the shim's binary itself".into()
    };
    // The attacker exits with its verdict; kill it when it has none.
    let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
    let stopped =
        |l: &str| l.split_whitespace().next() == Some(id.as_str()) && l.contains("STOPPED");
    assert!(eventually(5, || ctd
        .ok(&["task", "ls"])
        .lines()
        .any(stopped)));
    ctd.ok(&["task", "rm", &id]);
    ctd.ok(&["c", "rm", &id]);
    assert_exe_attack_failed(&verdict, &exe, &before, &result);
    ctd.assert_clean(&id);
}

/// The mount-destination race (CVE-2021-30465, CVE-2024-45310) through
/// containerd, as the attack: a running task swaps, as fast as it can, a
/// directory of a volume it shares with other tasks for a symlink to a
/// host directory, while `ctr run` starts tasks with a mount under it. The
/// host directory's file is never truncated and it gets no new entry.
#[test]
fn mount_destinations_swapped_for_symlinks_never_reach_the_host() {
    let ctd = Containerd::start();
    let victim = race_victim();
    let vol = TempDir::new("isoexec-volume");
    let attacker = TempDir::new("attacker");
    swapper(&attacker.path().join("swap"));
    let src = attacker.path().join("src");
    std::fs::write(&src, "bound").unwrap();
    let volume = format!(
        "type=bind,src={},dst=/vol,options=rbind:rw",
        vol.path().display()
    );
    let tools = format!(
        "type=bind,src={},dst=/attacker,options=rbind:ro",
        attacker.path().display()
    );
    let id = unique("swapper");
    let script = format!(
        "mkdir /vol/x && ln -s {} /vol/l && exec /attacker/swap /vol/x /vol/l",
        victim.path().display()
    );
    let o = ctd.run(
        &["-d", "--mount", &volume, "--mount", &tools],
        &id,
        &["sh", "-c", &script],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(eventually(5, || vol.path().join("l").exists()));
    let (mut made, mut refused) = (0, 0);
    for i in 0..30 {
        let dest = if i % 2 == 0 {
            "/vol/x/f"
        } else {
            "/vol/x/new/f"
        };
        let target = format!(
            "type=bind,src={},dst={dest},options=rbind:ro",
            src.display()
        );
        let v = unique("victim");
        let o = ctd.run(
            &["--rm", "--mount", &volume, "--mount", &target],
            &v,
            &["true"],
        );
        if o.status.success() {
            made += 1;
        } else {
            refused += 1;
            // A refused create leaves a container record behind in ctr.
            let _ = ctd.ctr(&["c", "rm", &v]);
        }
    }
    eprintln!("tasks started under the swapping directory: {made}, refused: {refused}");
    ctd.kill_and_remove(&id);
    assert_victim_untouched(victim.path());
    ctd.assert_clean(&id);
}

/// Keyrings and state, as the attack, through containerd: a task reads the
/// keys of the session that started containerd (its shims inherit it), and
/// any host user reads a task's environment from the shim's state. Each
/// task gets its own session keyring; state is 0600 under 0700 directories.
#[test]
fn tasks_cannot_read_containerds_keys_nor_host_users_the_state() {
    let name = unique("isoexec-ctd-secret");
    session_key(&name, "containerd-secret");
    let ctd = Containerd::start();
    let id = unique("keys");
    let script = format!(
        "keyctl request user {name} >/dev/null 2>&1 && echo found || echo unreadable; sleep 1000"
    );
    let o = ctd.run(
        &["-d", "--env", "API_TOKEN=hunter2-secret"],
        &id,
        &["sh", "-c", &script],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let state = ctd
        .state()
        .join("isoexec/default")
        .join(&id)
        .join("state.json");
    assert!(eventually(5, || std::fs::read_to_string(&state)
        .is_ok_and(|s| s.contains("hunter2-secret"))));
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(state.parent().unwrap()), 0o700);
    assert_eq!(mode(state.parent().unwrap().parent().unwrap()), 0o700);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!o.status.success() && !stdout(&o).contains("hunter2"));
    // A process started in the task looks for the key.
    let o = ctd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "k1",
        &id,
        "sh",
        "-c",
        &format!("keyctl request user {name} >/dev/null 2>&1 && echo found || echo unreadable"),
    ]);
    assert_eq!(o, "unreadable\n");
    ctd.kill_and_remove(&id);
    ctd.assert_clean(&id);
}

#[test]
fn hooks_of_a_spec_run_through_ctr() {
    // `ctr run --config` passes the whole spec, hooks included, as a
    // client with its own spec would.
    let ctd = Containerd::start();
    let dir = TempDir::new("isoexec-hooks");
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let log = dir.path().join("hooks.log");
    let hook = |kind: &str, log: &Path, code: i32| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c",
                     "s=$(cat); st=${s#*\\\"status\\\":\\\"}; echo \"$1 ${st%%\\\"*}\" >> \"$2\"; exit \"$3\"",
                     "sh", kind, log, code.to_string()],
        })
    };
    let spec = |id: &str, hooks: serde_json::Value| -> PathBuf {
        let b = Bundle::busybox(&["sh", "-c", "echo main"], |c| {
            c["root"] = serde_json::json!({"path": rootfs, "readonly": false});
            c["hooks"] = hooks;
        });
        let path = dir.path().join(format!("{id}.json"));
        std::fs::copy(b.path().join("config.json"), &path).unwrap();
        path
    };
    let config = spec(
        "ok",
        serde_json::json!({
            "prestart": [hook("prestart", &log, 0)],
            "createRuntime": [hook("createRuntime", &log, 0)],
            "createContainer": [hook("createContainer", &log, 0)],
            "startContainer": [hook("startContainer", Path::new("/hooks.log"), 0)],
            "poststart": [hook("poststart", &log, 0)],
            "poststop": [hook("poststop", &log, 0)],
        }),
    );
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--config",
        config.to_str().unwrap(),
        "hooked",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "main\n");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "prestart created\ncreateRuntime created\ncreateContainer created\n\
         poststart running\npoststop stopped\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hooks.log")).unwrap(),
        "startContainer created\n"
    );
    ctd.assert_clean("hooked");

    // A failing createContainer hook fails the task's creation with the
    // hook named, and leaves nothing.
    std::fs::remove_file(&log).unwrap();
    let config = spec(
        "bad",
        serde_json::json!({"createContainer": [hook("createContainer", &log, 9)]}),
    );
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--config",
        config.to_str().unwrap(),
        "unhooked",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("hooks.createContainer[0] (/bin/sh): exited with status 9"),
        "{}",
        stderr(&o)
    );
    let _ = ctd.ctr(&["c", "rm", "unhooked"]);
    ctd.assert_clean("unhooked");
}

#[test]
fn containerd_2s_side_info_bootstrap_and_the_task_api_v3() {
    // containerd 2 (not buildable with Debian 12's Go) as its code talks to
    // a shim: `-info` for the runtime's description, `start` from the
    // containerd binary (here a stand-in whose Go build info says
    // containerd 2, all a shim can read of its caller), the bootstrap
    // answer selecting the task API v3, then a task's life over ttrpc.
    use containerd_shim_protos::api::*;
    use containerd_shim_protos::types::introspection::RuntimeInfo;
    use containerd_shim_protos::TaskClient;
    use protobuf::Message;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    require_root();
    let shim = binary("containerd-shim-isoexec-v1");

    let o = Command::new(&shim)
        .arg("-info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let info = RuntimeInfo::parse_from_bytes(&o.stdout).expect("a RuntimeInfo");
    assert_eq!(info.name, RUNTIME);
    let features: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(
        features["hooks"].as_array().is_some_and(|h| h.len() == 6),
        "{features}"
    );

    let dir = TempDir::new("isoexec-ctd2");
    let fake = dir.path().join("containerd");
    fake_containerd2(&fake);
    let id = unique("v3");
    let bundle = dir
        .path()
        .join("state/io.containerd.runtime.v2.task/ctd2")
        .join(&id);
    std::fs::create_dir_all(&bundle).unwrap();
    let b = Bundle::busybox(&["sh", "-c", "echo v3 > /out; exit 4"], |c| {
        c["root"]["readonly"] = serde_json::json!(false);
    });
    std::fs::write(
        bundle.join("config.json"),
        std::fs::read_to_string(b.path().join("config.json"))
            .unwrap()
            .replace(
                "\"rootfs\"",
                &format!("{:?}", b.rootfs().display().to_string()),
            ),
    )
    .unwrap();
    // The shim's log, a fifo containerd reads: held open here.
    let log_fifo = bundle.join("log");
    let path = std::ffi::CString::new(log_fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let mut log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log_fifo)
        .unwrap();
    let address = dir.path().join("containerd.sock");
    let start = |parent: Option<&Path>| {
        let mut c = match parent {
            Some(p) => {
                let mut c = Command::new(p);
                c.arg(&shim);
                c
            }
            None => Command::new(&shim),
        };
        c.args(["-namespace", "ctd2", "-address"])
            .arg(&address)
            .args([
                "-publish-binary",
                "/bin/false",
                "-id",
                &id,
                "-new-flag",
                "x",
                "start",
            ])
            .current_dir(&bundle)
            .env_remove("TTRPC_ADDRESS")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = start(Some(&fake));
    assert!(o.status.success(), "{}", stderr(&o));
    let boot: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bootstrap JSON");
    assert_eq!(boot["version"], 3, "{boot}");
    assert_eq!(boot["protocol"], "ttrpc");
    let addr = boot["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("unix:///"), "{addr}");
    // The same shim, asked by containerd 1.x (this test): the plain address.
    let o = start(None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), addr);

    let client = TaskClient::new(ttrpc::Client::connect(&addr).expect("connecting"));
    let ctx = || ttrpc::context::with_timeout(10_000_000_000);
    let mut req = CreateTaskRequest::new();
    req.id = id.clone();
    req.bundle = bundle.display().to_string();
    let created = client.create(ctx(), &req).expect("create over task API v3");
    assert!(created.pid > 0);
    let mut req = StartRequest::new();
    req.id = id.clone();
    client.start(ctx(), &req).expect("start");
    let mut req = WaitRequest::new();
    req.id = id.clone();
    let waited = client.wait(ctx(), &req).expect("wait");
    assert_eq!(waited.exit_status, 4);
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("out")).unwrap(),
        "v3\n"
    );
    let mut req = DeleteRequest::new();
    req.id = id.clone();
    client.delete(ctx(), &req).expect("delete");
    let mut req = ShutdownRequest::new();
    req.id = id.clone();
    let _ = client.shutdown(ctx(), &req);
    let sock = PathBuf::from(addr.trim_start_matches("unix://"));
    assert!(
        eventually(5, || !sock.exists()),
        "the shim's socket outlived it"
    );
    assert!(!dir.path().join("state/isoexec/ctd2").join(&id).exists());
    // The unknown flag was ignored and said in the shim's log.
    let mut text = vec![0u8; 65536];
    let n = log.read(&mut text).unwrap_or(0);
    let text = String::from_utf8_lossy(&text[..n]);
    assert!(
        text.contains("ignoring the unknown flag -new-flag x"),
        "{text}"
    );
}

#[test]
fn containerds_runc_shim_drives_the_isoexec_cli() {
    // containerd's own runc shim with `--runc-binary isoexec`: the CLI as
    // the runc it expects (create/start/state/kill/delete/exec/ps/pause/
    // resume/update with --root, --log and --log-format json), image
    // semantics from the config named in the shim's environment.
    let dir = TempDir::new("isoexec-runc-shim");
    let config = dir.path().join("image.toml");
    std::fs::write(&config, "default_root = \"image\"\n").unwrap();
    let ctd = Containerd::start_with(&[("ISOEXEC_CONFIG", config.to_str().unwrap())]);
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    let isoexec = binary("isoexec");
    let run = |flags: &[&str], id: &str, cmd: &[&str]| {
        let mut args = vec!["run", "--runtime", "io.containerd.runc.v2", "--runc-binary"];
        args.push(isoexec.to_str().unwrap());
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", rootfs.to_str().unwrap(), id]);
        args.extend_from_slice(cmd);
        ctd.ctr(&args)
    };
    let o = run(
        &["--rm"],
        "r1",
        &["sh", "-c", "echo hi; ls /bin/busybox; exit 3"],
    );
    assert_eq!(stdout(&o), "hi\n/bin/busybox\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let o = run(&["-d"], "r2", &["sleep", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "r2",
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("in-exec\n", Some(5)),
        "{}",
        stderr(&o)
    );
    // The runc shim's root for its runtime: isoexec's state is there.
    let runc_root = Path::new("/run/containerd/runc/default");
    assert!(runc_root.join("r2/state.json").exists());
    let ps = ctd.ok(&["task", "ps", "r2"]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    assert!(ctd.ok(&["task", "metrics", "r2"]).contains("memory"));
    ctd.ok(&["task", "pause", "r2"]);
    assert!(ctd
        .ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("r2") && l.contains("PAUSED")));
    ctd.ok(&["task", "resume", "r2"]);
    assert!(ctd
        .ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("r2") && l.contains("RUNNING")));
    ctd.kill_and_remove("r2");

    let o = run(
        &["--rm", "--memory-limit", &(32u64 << 20).to_string()],
        "r3",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?",
        ],
    );
    assert_eq!(stdout(&o), "dd=137\n", "{}", stderr(&o));
    // The runtime said nothing in the containers' output, and left no
    // state in the runc shim's root for the runtime (--root).
    assert!(!stderr(&o).contains("isoexec"), "{}", stderr(&o));
    for id in ["r1", "r2", "r3"] {
        assert!(
            !runc_root.join(id).exists(),
            "state of {id} left in {}",
            runc_root.display()
        );
    }
    assert!(ctd.ok(&["c", "ls", "-q"]).trim().is_empty());
}
