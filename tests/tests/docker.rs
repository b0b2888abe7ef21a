//! isoexec as a Docker runtime, as a user adds one: Debian's dockerd on a
//! private data root, exec root, pid file and socket (its own managed
//! containerd under the exec root), `--iptables=false --bridge=none`, the
//! runtime registered in daemon.json with the driver config naming image
//! semantics in `runtimeArgs` (Docker passes no annotation), a busybox image
//! from `docker import`.

mod common;

use std::process::{Child, Command, Output, Stdio};

use common::*;

struct Docker {
    dir: TempDir,
    daemon: Option<Child>,
}

impl Docker {
    fn start() -> Self {
        require_root();
        assert!(
            Command::new("sh")
                .args(["-c", "command -v dockerd && command -v docker"])
                .output()
                .unwrap()
                .status
                .success(),
            "Docker is not installed: `apt-get install docker.io` (make test does)"
        );
        let dir = TempDir::new("isoexec-docker");
        let d = dir.path();
        std::fs::write(d.join("image.toml"), "default_root = \"image\"\n").unwrap();
        std::fs::write(
            d.join("daemon.json"),
            serde_json::json!({"runtimes": {"isoexec": {
                "path": binary("isoexec"),
                "runtimeArgs": ["--config", d.join("image.toml")],
            }}})
            .to_string(),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .args([
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver",
                "vfs",
            ])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let docker = Docker {
            dir,
            daemon: Some(daemon),
        };
        assert!(
            eventually(30, || docker.run(&["version"]).status.success()),
            "dockerd did not come up: {}",
            std::fs::read_to_string(docker.dir.path().join("dockerd.log")).unwrap_or_default()
        );
        let rootfs = docker.dir.path().join("image");
        busybox_rootfs(&rootfs);
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        let tar = docker.dir.path().join("busybox.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        docker.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        docker
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", d.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running docker")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let ids = stdout(&self.run(&["ps", "-a", "-q"]));
            for id in ids.lines() {
                let _ = self.run(&["rm", "-f", id]);
            }
            // SAFETY: a signal to the dockerd this harness started.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let _ = d.wait();
        }
        // What dockerd mounted under its roots (if anything is left).
        for m in mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

fn state(d: &Docker, name: &str) -> String {
    d.ok(&["inspect", name, "--format", "{{.State.Status}}"])
        .trim()
        .to_string()
}

const RUN: [&str; 4] = ["--runtime", "isoexec", "--network", "none"];

fn docker_run(d: &Docker, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&RUN);
    args.push("busybox");
    args.extend_from_slice(cmd);
    d.run(&args)
}

#[test]
fn docker_runs_its_containers_on_isoexec() {
    let d = Docker::start();
    let o = docker_run(
        &d,
        &["--rm"],
        &["sh", "-c", "echo hi; ls /bin/busybox; exit 3"],
    );
    assert_eq!(stdout(&o), "hi\n/bin/busybox\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!stderr(&o).contains("isoexec"), "{}", stderr(&o));

    let o = docker_run(
        &d,
        &["-d", "--name", "c1"],
        &["sh", "-c", "echo started; exec sleep 1000"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = d.run(&["exec", "c1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("in-exec\n", Some(5)),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(eventually(5, || d.ok(&["logs", "c1"]) == "started\n"));
    assert!(d
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .contains("c1 Up"));
    assert!(d.ok(&["top", "c1"]).contains("sleep 1000"));
    assert!(d
        .ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "c1"
        ])
        .contains("c1 1"));
    let pid: i32 = d
        .ok(&["inspect", "c1", "--format", "{{.State.Pid}}"])
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // The runtime's state: in the root dockerd gives its runc shim.
    let root = d.dir.path().join("exec/runtime-runc/moby");
    assert!(
        root.join(&id).join("state.json").exists(),
        "no state in {}",
        root.display()
    );
    let cmd = format!(
        "{} exec -it c1 sh -c 'tty; echo tty-ok'",
        shell_line(&d.command())
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("DOCKER_CONFIG", d.dir.path().join("client"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{text}"
    );
    d.ok(&["pause", "c1"]);
    assert_eq!(state(&d, "c1"), "paused");
    d.ok(&["unpause", "c1"]);
    assert_eq!(state(&d, "c1"), "running");
    d.ok(&["stop", "-t", "1", "c1"]);
    assert_eq!(state(&d, "c1"), "exited");
    assert!(!alive(pid));
    d.ok(&["start", "c1"]);
    d.ok(&["kill", "c1"]);
    assert!(eventually(5, || state(&d, "c1") == "exited"));
    d.ok(&["rm", "c1"]);
    for c in ["memory", "pids"] {
        let dir = cgroup_dir(c, &format!("/docker/{id}"));
        assert!(!dir.exists(), "{} left", dir.display());
    }

    let o = docker_run(
        &d,
        &["--rm", "--memory", "32m"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?",
        ],
    );
    assert_eq!(stdout(&o), "dd=137\n", "{}", stderr(&o));
    let o = docker_run(
        &d,
        &["--rm", "--pids-limit", "4"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do sleep 3 & done; wait; echo done",
        ],
    );
    assert!(
        stderr(&o).contains("can't fork") || stdout(&o).contains("can't fork"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = docker_run(&d, &["--rm", "--user", "1000:1000"], &["id"]);
    assert_eq!(
        stdout(&o),
        "uid=1000 gid=1000 groups=1000\n",
        "{}",
        stderr(&o)
    );
    assert!(d.ok(&["ps", "-a", "-q"]).trim().is_empty());
    // The runtime's state (under the runc shim's root in dockerd's managed
    // containerd) is gone with the containers.
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in {}", root.display());
}

/// A command's program and arguments as one shell line.
fn shell_line(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
