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
        let tar = busybox_image_tar(p.dir.path());
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

#[test]
fn podman_runs_its_containers_on_isoexec() {
    let p = Podman::new();
    docker_cli_suite(
        &|| p.command(),
        &["--network", "none"],
        &|id| format!("/libpod_parent/libpod-{id}"),
        &|_| {},
    );
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

#[test]
fn podman_userns_runs_on_isoexec() {
    // `podman run --uidmap/--gidmap`: podman shifts the image's files to the
    // host ids (vfs storage) and asks for the user namespace in the spec;
    // the container's root is host uid 200000, and `--userns=auto` takes a
    // range of podman's own.
    let p = Podman::new();
    let vol = TempDir::new("isoexec-podman-vol");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(vol.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let mount = format!("{}:/vol", vol.path().display());
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:200000:65536",
        "--gidmap",
        "0:200000:65536",
        "-v",
        &mount,
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; touch /vol/from-podman",
    ]);
    let out = stdout(&o);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536", "0", "0"],
        "{}",
        stderr(&o)
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(vol.path().join("from-podman")).unwrap();
    assert_eq!((m.uid(), m.gid()), (200000, 200000));
}
