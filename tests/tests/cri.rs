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
        let sb = cri.run_pod(handler, &pod);
        let created = cri
            .start_in(
                &sb,
                &pod,
                container_config("main", &["sh", "-c", "echo started; exec sleep 1000"]),
            )
            .unwrap_or_else(|e| panic!("{handler}: create and start: {e}"));
        assert_eq!(
            cri.exec(&created, "echo in-exec; exit 4"),
            ("in-exec\n".to_string(), 4),
            "{handler}"
        );
        // The handler's model: the exec driver's lays the host's /usr over
        // the image; isoexec-image (its ConfigPath) keeps the image alone.
        let want = if handler == "isoexec" {
            "host-usr\n"
        } else {
            "image-only\n"
        };
        assert_eq!(
            cri.exec(
                &created,
                "test -e /usr/bin/env && echo host-usr || echo image-only"
            )
            .0,
            want,
            "{handler}"
        );
        // Logs in the CRI format: "TIME stdout F started".
        let log = cri.logs().join(format!("p-{handler}")).join("main.log");
        assert!(
            eventually(5, || std::fs::read_to_string(&log)
                .is_ok_and(|l| l.lines().any(|l| l.ends_with(" stdout F started")))),
            "{handler}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert_eq!(
            cri.status(&created).state,
            ContainerState::ContainerRunning as i32,
            "{handler}"
        );
        cri.remove_pod(&sb);
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

impl Cri {
    /// RunPodSandbox on `handler`, with `pod` as its config.
    fn run_pod(&self, handler: &str, pod: &PodSandboxConfig) -> String {
        let mut c = self.client();
        self.rt
            .block_on(c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: handler.into(),
            }))
            .unwrap_or_else(|e| panic!("{handler}: runp: {e}"))
            .into_inner()
            .pod_sandbox_id
    }

    /// CreateContainer then StartContainer; the container's id, or the
    /// status of the step that failed.
    fn start_in(
        &self,
        sb: &str,
        pod: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let mut c = self.client();
        let id = self
            .rt
            .block_on(c.create_container(CreateContainerRequest {
                pod_sandbox_id: sb.into(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            }))?
            .into_inner()
            .container_id;
        self.rt.block_on(c.start_container(StartContainerRequest {
            container_id: id.clone(),
        }))?;
        Ok(id)
    }

    /// ExecSync: (stdout, exit code).
    fn exec(&self, id: &str, script: &str) -> (String, i32) {
        let mut c = self.client();
        let r = self
            .rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            }))
            .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
            .into_inner();
        (String::from_utf8_lossy(&r.stdout).into_owned(), r.exit_code)
    }

    fn status(&self, id: &str) -> ContainerStatus {
        let mut c = self.client();
        self.rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    fn remove_pod(&self, sb: &str) {
        let mut c = self.client();
        self.rt
            .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sb.into(),
            }))
            .unwrap_or_else(|e| panic!("stopp: {e}"));
        self.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sb.into(),
            }))
            .unwrap_or_else(|e| panic!("rmp: {e}"));
    }
}

#[test]
fn containers_of_a_pod_share_alloc_and_localhost_and_their_limits_hold() {
    let cri = Cri::start();
    let pod = pod_config("shared", &cri.logs());
    let sb = cri.run_pod("isoexec", &pod);
    let sleeper = |name: &str, script: &str| container_config(name, &["sh", "-c", script]);
    let a = cri
        .start_in(
            &sb,
            &pod,
            sleeper("a", "echo from-a > /alloc/note; exec sleep 1000"),
        )
        .expect("a");
    let b = cri
        .start_in(&sb, &pod, sleeper("b", "exec sleep 1000"))
        .expect("b");
    // One /alloc and one network namespace for the pod's containers.
    assert!(eventually(5, || cri.exec(&b, "cat /alloc/note").0 == "from-a\n"));
    let net = |id: &str| cri.exec(id, "readlink /proc/self/ns/net").0;
    assert_eq!(net(&a), net(&b));
    assert_ne!(
        net(&a),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .display()
            .to_string()
            + "\n"
    );

    // Stats of one container and of all.
    let mut c = cri.client();
    let stats = cri
        .rt
        .block_on(c.container_stats(ContainerStatsRequest {
            container_id: a.clone(),
        }))
        .expect("container stats")
        .into_inner()
        .stats
        .unwrap();
    assert!(
        stats.memory.is_some_and(|m| m.working_set_bytes.is_some()),
        "no memory stats"
    );
    let all = cri
        .rt
        .block_on(c.list_container_stats(ListContainerStatsRequest::default()))
        .expect("list container stats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 2, "{all:?}");

    // UpdateContainerResources: the new memory limit holds.
    cri.rt
        .block_on(
            c.update_container_resources(UpdateContainerResourcesRequest {
                container_id: a.clone(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 48 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .expect("update");
    let (out, _) = cri.exec(
        &a,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    );
    assert_eq!(out.trim(), (48u64 << 20).to_string());

    // A container over its memory limit is reported OOMKilled.
    let mut hog = sleeper("hog", "dd if=/dev/zero of=/dev/null bs=64M count=1");
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = cri.start_in(&sb, &pod, hog).expect("hog");
    assert!(
        eventually(10, || cri.status(&hog).state
            == ContainerState::ContainerExited as i32),
        "the hog still runs"
    );
    let st = cri.status(&hog);
    assert_eq!(
        (st.reason.as_str(), st.exit_code),
        ("OOMKilled", 137),
        "{st:?}"
    );

    // securityContext: the user, groups, capabilities and a read-only root.
    let mut secure = sleeper(
        "secure",
        "id -u; id -G; grep CapEff /proc/self/status; touch /x 2>/dev/null || echo ro; exec sleep 1000",
    );
    secure.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 1000 }),
            supplemental_groups: vec![2000],
            readonly_rootfs: true,
            capabilities: Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let secure = cri.start_in(&sb, &pod, secure).expect("secure");
    let log = cri.logs().join("shared").join("secure.log");
    assert!(
        eventually(5, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains(" F ro"))),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" F 1000\n"), "{text}");
    assert!(text.contains(" F 1000 2000\n"), "{text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    let _ = secure;

    // A privileged container (in a privileged pod, as the CRI requires):
    // refused by the driver's policy, saying which option would allow it.
    let mut ppod = pod_config("privileged", &cri.logs());
    ppod.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let psb = cri.run_pod("isoexec", &ppod);
    let mut privileged = sleeper("root-of-all", "true");
    privileged.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = cri
        .start_in(&psb, &ppod, privileged)
        .expect_err("a privileged container is refused");
    assert!(
        e.message()
            .contains("driver does not allow the following capabilities")
            && e.message().contains("allow_caps"),
        "{e}"
    );
    cri.remove_pod(&psb);

    cri.remove_pod(&sb);
    let state = cri.dir.path().join("state/isoexec/k8s.io");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in {}", state.display());
}
