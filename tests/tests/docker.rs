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
        let tar = busybox_image_tar(docker.dir.path());
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

#[test]
fn docker_runs_its_containers_on_isoexec() {
    let d = Docker::start();
    // The runtime's state: in the root dockerd gives its runc shim while
    // a container lives, gone after.
    let root = d.dir.path().join("exec/runtime-runc/moby");
    docker_cli_suite(
        &|| d.command(),
        &["--runtime", "isoexec", "--network", "none"],
        &|id| format!("/docker/{id}"),
        &|id| {
            assert!(
                root.join(id).join("state.json").exists(),
                "no state in {}",
                root.display()
            )
        },
    );
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in {}", root.display());
}
