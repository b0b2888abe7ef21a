//! Pods on isoexec as a kubelet runs them: containerd's CRI plugin (the
//! distribution's containerd) on a private config, root, state and sockets,
//! driven over the CRI API (runtime.v1, the k8s-cri crate), with two runtime
//! handlers: `isoexec` (the exec driver's model) and `isoexec-image` (the
//! image as the root, through the shim's ConfigPath). No registry is
//! reached: a pause image (tests/fakes/pause.c) and a busybox image are
//! made with `podman import` and `podman save` as OCI archives and imported
//! with `ctr -n k8s.io images import`. Pods get their network from the CNI
//! plugins (the `static` IPAM plugin's 127.0.0.1/8, then `loopback`).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

const PAUSE: &str = "localhost/isoexec-test/pause:1";
const BUSYBOX: &str = "localhost/isoexec-test/busybox:1";

struct Cri {
    dir: TempDir,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
}

impl Cri {
    fn start() -> Self {
        require_root();
        let dir = TempDir::new("isoexec-cri");
        let d = dir.path();
        std::fs::create_dir_all(d.join("cni")).unwrap();
        std::fs::write(
            d.join("cni/10-isoexec-test.conflist"),
            serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "isoexec-test",
                "plugins": [
                    {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "127.0.0.1/8"}]}},
                    {"type": "loopback"}
                ]
            })
            .to_string(),
        )
        .unwrap();
        // The handlers exactly as shipped (contrib/kubernetes), their
        // driver configs moved from /etc/isoexec to this test's directory.
        let contrib =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/kubernetes");
        std::fs::copy(contrib.join("image.toml"), d.join("image.toml")).unwrap();
        std::fs::write(d.join("driver.toml"), "").unwrap();
        let handlers = std::fs::read_to_string(contrib.join("containerd-cri.toml"))
            .unwrap()
            .replace(
                "/etc/isoexec/config.toml",
                &d.join("driver.toml").display().to_string(),
            )
            .replace(
                "/etc/isoexec/image.toml",
                &d.join("image.toml").display().to_string(),
            );
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
                 [grpc]\n  address = \"{r}/c.sock\"\n[ttrpc]\n  address = \"{r}/c.sock.ttrpc\"\n\
                 [{cri}]\n  sandbox_image = \"{PAUSE}\"\n  restrict_oom_score_adj = true\n\
                   stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
                 [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{r}/cni\"\n\
                 [{cri}.containerd]\n  snapshotter = \"native\"\n  default_runtime_name = \"isoexec\"\n\
                 {handlers}",
                r = d.display(),
            ),
        )
        .unwrap();
        let bin_dir = binary("containerd-shim-isoexec-v1")
            .parent()
            .unwrap()
            .to_path_buf();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = isoexec_tests::containerd::command(d, &bin_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cri = Cri {
            dir,
            child: Some(child),
            rt,
        };
        assert!(
            eventually(20, || cri.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            std::fs::read_to_string(cri.dir.path().join("containerd.log")).unwrap_or_default()
        );
        cri.import_images();
        cri
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// The pause and busybox images, made as OCI archives by podman (on a
    /// store of this test's own) and imported into containerd's k8s.io
    /// namespace.
    fn import_images(&self) {
        let d = self.dir.path();
        let podman = |args: &[&str]| {
            let o = Command::new("podman")
                .arg("--root")
                .arg(d.join("podman/root"))
                .arg("--runroot")
                .arg(d.join("podman/run"))
                .arg("--tmpdir")
                .arg(d.join("podman/tmp"))
                .args(["--storage-driver", "vfs", "--events-backend", "none"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("running podman");
            assert!(o.status.success(), "podman {args:?}: {}", stderr(&o));
        };
        let pause_root = d.join("pause");
        std::fs::create_dir_all(&pause_root).unwrap();
        pause_binary(&pause_root.join("pause"));
        let pause_tar = d.join("pause.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&pause_root)
            .arg("-cf")
            .arg(&pause_tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let busybox_tar = busybox_image_tar(&d.join("bb"));
        for (name, tar, cmd) in [
            (PAUSE, pause_tar, "CMD [\"/pause\"]"),
            (BUSYBOX, busybox_tar, "CMD [\"sh\"]"),
        ] {
            podman(&["import", "--change", cmd, tar.to_str().unwrap(), name]);
            let archive = d.join(format!("{}.oci.tar", name.replace(['/', ':'], "_")));
            podman(&[
                "save",
                "--format",
                "oci-archive",
                "-o",
                archive.to_str().unwrap(),
                name,
            ]);
            let o = self.ctr(&[
                "images",
                "import",
                "--base-name",
                name.split(':').next().unwrap(),
                archive.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "ctr images import: {}", stderr(&o));
        }
        let images = stdout(&self.ctr(&["images", "ls", "-q"]));
        assert!(
            images.contains(PAUSE) && images.contains(BUSYBOX),
            "{images}"
        );
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        let sock = self.dir.path().join("c.sock");
        let channel = self
            .rt
            .block_on(isoexec_daemon::client::channel(sock))
            .expect("connecting to containerd's CRI");
        RuntimeServiceClient::new(channel)
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        let mut c = self.client();
        let pods = self
            .rt
            .block_on(c.list_pod_sandbox(ListPodSandboxRequest::default()))
            .map(|r| r.into_inner().items)
            .unwrap_or_default();
        for p in pods {
            let _ = self.rt.block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            }));
            let _ = self
                .rt
                .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: p.id,
                }));
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: a signal to the containerd this harness started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        for m in mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

fn pod_config(name: &str, logs: &std::path::Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: unique(name),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

#[test]
fn a_pod_lives_and_goes_through_the_cri_on_both_handlers() {
    let cri = Cri::start();
    let mut c = cri.client();
    for handler in ["isoexec-image", "isoexec"] {
        let pod = pod_config(&format!("p-{handler}"), &cri.logs());
        let sb = cri
            .rt
            .block_on(c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: handler.into(),
            }))
            .unwrap_or_else(|e| panic!("{handler}: runp: {e}"))
            .into_inner()
            .pod_sandbox_id;
        let created = cri
            .rt
            .block_on(c.create_container(CreateContainerRequest {
                pod_sandbox_id: sb.clone(),
                config: Some(container_config(
                    "main",
                    &["sh", "-c", "echo started; exec sleep 1000"],
                )),
                sandbox_config: Some(pod.clone()),
            }))
            .unwrap_or_else(|e| panic!("{handler}: create: {e}"))
            .into_inner()
            .container_id;
        cri.rt
            .block_on(c.start_container(StartContainerRequest {
                container_id: created.clone(),
            }))
            .unwrap_or_else(|e| panic!("{handler}: start: {e}"));
        let r = cri
            .rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: created.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo in-exec; exit 4".into()],
                timeout: 10,
            }))
            .unwrap_or_else(|e| panic!("{handler}: exec_sync: {e}"))
            .into_inner();
        assert_eq!(
            (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
            ("in-exec\n", 4),
            "{handler}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        // The handler's model: the exec driver's lays the host's /usr over
        // the image; isoexec-image (its ConfigPath) keeps the image alone.
        let r = cri
            .rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: created.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "test -e /usr/bin/env && echo host-usr || echo image-only".into(),
                ],
                timeout: 10,
            }))
            .unwrap()
            .into_inner();
        let want = if handler == "isoexec" {
            "host-usr\n"
        } else {
            "image-only\n"
        };
        assert_eq!(String::from_utf8_lossy(&r.stdout), want, "{handler}");
        // Logs in the CRI format: "TIME stdout F started".
        let log = cri.logs().join(format!("p-{handler}")).join("main.log");
        assert!(
            eventually(5, || std::fs::read_to_string(&log)
                .is_ok_and(|l| l.lines().any(|l| l.ends_with(" stdout F started")))),
            "{handler}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let status = cri
            .rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: created.clone(),
                verbose: false,
            }))
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(
            status.state,
            ContainerState::ContainerRunning as i32,
            "{handler}"
        );
        cri.rt
            .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            }))
            .unwrap_or_else(|e| panic!("{handler}: stopp: {e}"));
        cri.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            }))
            .unwrap_or_else(|e| panic!("{handler}: rmp: {e}"));
        let left = cri
            .rt
            .block_on(c.list_containers(ListContainersRequest::default()))
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{handler}: {left:?}");
    }
    // Nothing of the pods left: no shim, no isoexec state.
    let sock = cri.dir.path().join("c.sock").display().to_string();
    let shims = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("containerd-shim-isoexec-v1") && cmd.contains(&sock)
            })
            .count()
    };
    assert!(eventually(10, || shims() == 0), "{} shims left", shims());
    let state = cri.dir.path().join("state/isoexec/k8s.io");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in {}", state.display());
}
