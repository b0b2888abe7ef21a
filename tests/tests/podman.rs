//! isoexec as podman's OCI runtime (`podman --runtime`), as a user runs it:
//! Debian's podman and conmon on a private root, runroot and tmpdir, the
//! cgroupfs manager and file events, a busybox image made with `podman
//! import`, and image semantics chosen by a driver config named in the
//! runtime's arguments (`--runtime-flag config=FILE`), since podman passes
//! no annotation unless told.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::*;

struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Self {
        require_root();
        assert!(
            Command::new("sh")
                .args(["-c", "command -v podman"])
                .output()
                .unwrap()
                .status
                .success(),
            "podman is not installed: `apt-get install podman` (make test does)"
        );
        let dir = TempDir::new("isoexec-podman");
        // podman's default rlimits (1048576 files, its own process limit)
        // need CAP_SYS_RESOURCE, which the machines this runs on may not
        // give root: runc fails there too. Modest limits, as an operator of
        // such a host sets them.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("image.toml"), "default_root = \"image\"\n").unwrap();
        let p = Podman { dir };
        let rootfs = p.dir.path().join("image");
        busybox_rootfs(&rootfs);
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        let tar = p.dir.path().join("busybox.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        p.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        p
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--volumepath")
            .arg(d.join("volumes"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--storage-driver", "vfs"])
            .arg("--runtime")
            .arg(binary("isoexec"))
            .arg("--runtime-flag")
            .arg(format!("config={}", d.join("image.toml").display()))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn hooks_dir(&self) -> PathBuf {
        self.dir.path().join("hooks.d")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["system", "reset", "--force"]);
    }
}

fn status(p: &Podman, name: &str) -> String {
    p.ok(&["inspect", name, "--format", "{{.State.Status}}"])
        .trim()
        .to_string()
}

#[test]
fn podman_runs_its_containers_on_isoexec() {
    let p = Podman::new();
    // run --rm: output, exit status, the image's own root.
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo hi; ls /bin/busybox; exit 3",
    ]);
    assert_eq!(stdout(&o), "hi\n/bin/busybox\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("isoexec"),
        "the runtime spoke in the output: {}",
        stderr(&o)
    );

    // -d, exec (its status), logs, ps, top, stats, inspect.
    let id = p
        .ok(&[
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ])
        .trim()
        .to_string();
    let o = p.run(&["exec", "c1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("in-exec\n", Some(5)),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(eventually(5, || p.ok(&["logs", "c1"]) == "started\n"));
    assert!(p
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .contains("c1 Up"));
    assert!(p.ok(&["top", "c1"]).contains("sleep 1000"));
    assert!(p
        .ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "c1"
        ])
        .contains("c1 1"));
    assert_eq!(status(&p, "c1"), "running");
    let pid: i32 = p
        .ok(&["inspect", "c1", "--format", "{{.State.Pid}}"])
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // A terminal exec.
    let cmd = format!(
        "{} exec -it c1 sh -c 'tty; echo tty-ok'",
        shell_words(&p.command())
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .envs(p.command().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{text}"
    );

    // pause, unpause, kill, stop, rm.
    p.ok(&["pause", "c1"]);
    assert_eq!(status(&p, "c1"), "paused");
    p.ok(&["unpause", "c1"]);
    assert_eq!(status(&p, "c1"), "running");
    p.ok(&["stop", "--time", "1", "c1"]);
    assert_eq!(status(&p, "c1"), "exited");
    assert!(!alive(pid));
    p.ok(&["start", "c1"]);
    p.ok(&["kill", "--signal", "KILL", "c1"]);
    assert!(eventually(5, || status(&p, "c1") == "exited"));
    p.ok(&["rm", "c1"]);
    for c in ["memory", "pids"] {
        let dir = cgroup_dir(c, &format!("/libpod_parent/libpod-{id}"));
        assert!(!dir.exists(), "{} left", dir.display());
    }

    // Limits enforced and the user honoured.
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?",
    ]);
    assert_eq!(stdout(&o), "dd=137\n", "{}", stderr(&o));
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pids-limit",
        "4",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do sleep 3 & done; wait; echo done",
    ]);
    assert!(
        stderr(&o).contains("can't fork") || stdout(&o).contains("can't fork"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "busybox",
        "id",
    ]);
    assert_eq!(
        stdout(&o),
        "uid=1000 gid=1000 groups=1000\n",
        "{}",
        stderr(&o)
    );
    assert!(p.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn podman_hooks_run_on_isoexec() {
    // podman's hooks.d: the runtime runs them at their stages.
    let p = Podman::new();
    let log = p.dir.path().join("hooks.log");
    std::fs::create_dir_all(p.hooks_dir()).unwrap();
    std::fs::write(
        p.hooks_dir().join("log.json"),
        serde_json::json!({
            "version": "1.0.0",
            "hook": {"path": "/bin/sh", "args": ["sh", "-c",
                format!("s=$(cat); st=${{s#*\\\"status\\\":\\\"}}; echo ${{st%%\\\"*}} >> {}", log.display())]},
            "when": {"always": true},
            "stages": ["prestart", "poststart"],
        })
        .to_string(),
    )
    .unwrap();
    let hooks = p.hooks_dir();
    let o = p.run(&[
        "--hooks-dir",
        hooks.to_str().unwrap(),
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "hooked",
    ]);
    assert_eq!(stdout(&o), "hooked\n", "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "created\nrunning\n");
}

/// A command's program and arguments as one shell line.
fn shell_words(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
