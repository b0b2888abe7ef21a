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
use isoexec_tests::cri::{Client, RuntimeServiceClient, *};
use tonic::transport::Channel;

const PAUSE: &str = "localhost/isoexec-test/pause:1";
const BUSYBOX: &str = "localhost/isoexec-test/busybox:1";

struct Cri {
    dir: TempDir,
    child: Option<Child>,
    api: Client,
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
        let api = Client::new(&d.join("c.sock")).unwrap();
        let cri = Cri {
            dir,
            child: Some(child),
            api,
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
        self.api.service().unwrap()
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        let mut c = self.client();
        let pods = self
            .api
            .rt
            .block_on(c.list_pod_sandbox(ListPodSandboxRequest::default()))
            .map(|r| r.into_inner().items)
            .unwrap_or_default();
        for p in pods {
            let _ = self
                .api
                .rt
                .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                }));
            let _ = self
                .api
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
    isoexec_tests::cri::pod_config(name, &unique(name), logs)
}

fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
    isoexec_tests::cri::container_config(name, BUSYBOX, cmd)
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
        // While it runs, the cgroups are where containerd's CRI asked.
        let cg = |id: &str| cgroup_dir(task_hierarchies()[0], &format!("k8s.io/{id}"));
        assert!(
            cg(&created).is_dir(),
            "{handler}: {}",
            cg(&created).display()
        );
        cri.remove_pod(&sb);
        for id in [&sb, &created] {
            for h in task_hierarchies() {
                let dir = cgroup_dir(h, &format!("k8s.io/{id}"));
                assert!(!dir.exists(), "{handler}: {} left", dir.display());
            }
        }
        let left = cri
            .api
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
    let mounts = mounts_under(cri.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

/// The suite's calls: a failed step fails the test, but for start_in.
impl Cri {
    fn run_pod(&self, handler: &str, pod: &PodSandboxConfig) -> String {
        self.api
            .run_pod(handler, pod)
            .unwrap_or_else(|e| panic!("{handler}: runp: {e}"))
    }

    fn start_in(
        &self,
        sb: &str,
        pod: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.api.start_in(sb, pod, config)
    }

    fn exec(&self, id: &str, script: &str) -> (String, i32) {
        self.api
            .exec(id, script)
            .unwrap_or_else(|e| panic!("exec {script:?} in {id}: {e}"))
    }

    fn status(&self, id: &str) -> ContainerStatus {
        self.api.status(id).unwrap()
    }

    fn remove_pod(&self, sb: &str) {
        self.api
            .remove_pod(sb)
            .unwrap_or_else(|e| panic!("removing pod {sb}: {e}"))
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
        .api
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
        .api
        .rt
        .block_on(c.list_container_stats(ListContainerStatsRequest::default()))
        .expect("list container stats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 2, "{all:?}");

    // UpdateContainerResources: the new memory limit holds.
    cri.api
        .rt
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
    secure.linux = security(LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        run_as_group: Some(Int64Value { value: 1000 }),
        supplemental_groups: vec![2000],
        readonly_rootfs: true,
        capabilities: Some(Capability {
            drop_capabilities: vec!["ALL".into()],
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
    privileged.linux = security(LinuxContainerSecurityContext {
        privileged: true,
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

/// What a streaming session (Exec or Attach) gave: stdout, stderr, and the
/// status the server sent on the error channel (JSON; empty if none).
#[derive(Debug, Default)]
struct Streamed {
    stdout: String,
    stderr: String,
    status: String,
}

impl Streamed {
    /// The exit code the status reports: 0 for Success, the ExitCode cause
    /// otherwise.
    fn exit_code(&self) -> Option<i64> {
        let v: serde_json::Value = serde_json::from_str(&self.status).ok()?;
        if v["status"] == "Success" {
            return Some(0);
        }
        v["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// A session with the CRI streaming server at `url` (what Exec or Attach
/// answered) as kubectl has it through the API server: a WebSocket of the
/// v4.channel.k8s.io protocol, each message's first byte its channel (0
/// stdin, 1 stdout, 2 stderr, 3 the status). Sends `input` on stdin, then
/// reads until the server closes or `done` holds for what was read. With
/// `typing`, sends `input` again every 10 ms while nothing comes, as a
/// user typing at `kubectl exec -it` does while the process exits.
fn stream(url: &str, input: &[u8], typing: bool, done: impl Fn(&Streamed) -> bool) -> Streamed {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().expect("stream url");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let tcp = std::net::TcpStream::connect(&host).expect("connecting to the stream server");
    // The handshake waits as long as a reply may take; a typing session
    // then polls with a short timeout so that it can keep typing.
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(req, tcp).expect("websocket handshake");
    if typing {
        ws.get_ref()
            .set_read_timeout(Some(std::time::Duration::from_millis(10)))
            .unwrap();
    }
    let stdin = [&[0u8][..], input].concat();
    if !input.is_empty() {
        ws.send(Message::Binary(stdin.clone().into()))
            .expect("stdin");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = Streamed::default();
    while !done(&got) && std::time::Instant::now() < deadline {
        let data = match ws.read() {
            Ok(Message::Binary(b)) => b.to_vec(),
            Ok(Message::Text(t)) => t.as_bytes().to_vec(),
            Err(tungstenite::Error::Io(e))
                if typing
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                // The server may have closed its side: a refused write
                // ends the typing, not the session.
                let _ = ws.send(Message::Binary(stdin.clone().into()));
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&channel, rest)) = data.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(rest);
        match channel {
            1 => got.stdout.push_str(&text),
            2 => got.stderr.push_str(&text),
            3 => got.status.push_str(&text),
            _ => {}
        }
    }
    let _ = ws.close(None);
    got
}

impl Cri {
    /// Exec through the streaming server: the session's output and status.
    fn exec_streaming(&self, id: &str, cmd: &[&str], tty: bool, input: &[u8]) -> Streamed {
        let mut c = self.client();
        let url = self
            .api
            .rt
            .block_on(c.exec(ExecRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin: !input.is_empty(),
                stdout: true,
                stderr: !tty,
            }))
            .unwrap_or_else(|e| panic!("exec {cmd:?} in {id}: {e}"))
            .into_inner()
            .url;
        stream(&url, input, tty, |_| false)
    }

    /// What the container `name` of the pod `pod` has logged so far.
    fn log_of(&self, pod: &str, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(pod).join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

/// What the kubelet asks for a container of the default procMount
/// (k8s.io/kubernetes pkg/securitycontext: DefaultMaskedPaths and
/// DefaultReadonlyPaths); containerd's CRI plugin adds none of its own.
const KUBELET_MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const KUBELET_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn security(ctx: LinuxContainerSecurityContext) -> Option<LinuxContainerConfig> {
    Some(LinuxContainerConfig {
        security_context: Some(ctx),
        ..Default::default()
    })
}

#[test]
fn streaming_host_network_and_security_contexts_on_both_handlers() {
    let cri = Cri::start();
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let host_pid = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .display()
        .to_string();
    for handler in ["isoexec-image", "isoexec"] {
        let name = format!("s-{handler}");
        let pod = pod_config(&name, &cri.logs());
        let sb = cri.run_pod(handler, &pod);

        // Attach to a container reading its stdin, as `kubectl attach -i`.
        let mut echo = container_config(
            "echo",
            &[
                "sh",
                "-c",
                "echo ready; while read l; do echo \"got $l\"; done",
            ],
        );
        echo.stdin = true;
        let echo = cri.start_in(&sb, &pod, echo).expect("echo");
        assert!(
            eventually(5, || cri.log_of(&name, "echo").contains(" F ready")),
            "{handler}: {}",
            cri.log_of(&name, "echo")
        );
        let mut c = cri.client();
        let url = cri
            .api
            .rt
            .block_on(c.attach(AttachRequest {
                container_id: echo.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            }))
            .unwrap_or_else(|e| panic!("{handler}: attach: {e}"))
            .into_inner()
            .url;
        let got = stream(&url, b"hello\n", false, |s| s.stdout.contains("got hello"));
        assert!(got.stdout.contains("got hello\n"), "{handler}: {got:?}");

        // Exec with stdin, stdout and stderr apart, the exit code in the
        // status; and with a terminal, as `kubectl exec -it`.
        let got = cri.exec_streaming(
            &echo,
            &["sh", "-c", "read x; echo out-$x; echo err >&2; exit 3"],
            false,
            b"hi\n",
        );
        assert_eq!(
            (got.stdout.as_str(), got.stderr.as_str(), got.exit_code()),
            ("out-hi\n", "err\n", Some(3)),
            "{handler}: {got:?}"
        );
        // Several times, typing all along (the terminal echoes it): output
        // racing the exit was lost in one exec of five when the stdin fifo
        // closed at the exit (containerd's CRI then closes the output).
        for _ in 0..10 {
            let got = cri.exec_streaming(&echo, &["sh", "-c", "tty; test -t 0"], true, b"x");
            assert!(
                got.stdout.contains("/dev/pts/") && got.stdout.contains("\r\n"),
                "{handler}: {got:?}"
            );
            assert_eq!(got.exit_code(), Some(0), "{handler}: {got:?}");
        }

        // seccomp: RuntimeDefault filters, Unconfined does not.
        for (kind, want) in [
            (security_profile::ProfileType::RuntimeDefault, "2"),
            (security_profile::ProfileType::Unconfined, "0"),
        ] {
            let mut s = container_config(
                &format!("seccomp-{}", kind as i32),
                &["sh", "-c", "exec sleep 1000"],
            );
            s.linux = security(LinuxContainerSecurityContext {
                seccomp: Some(SecurityProfile {
                    profile_type: kind as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            });
            let s = cri.start_in(&sb, &pod, s).expect("seccomp");
            let (out, _) = cri.exec(&s, "sed -n 's/^Seccomp:\\t//p' /proc/self/status");
            assert_eq!(out.trim(), want, "{handler}: {kind:?}");
        }

        // Masked and read-only paths: the CRI plugin applies the lists it
        // is given, the kubelet's defaults (here) or a pod's own.
        let mut m = container_config("masked", &["sh", "-c", "exec sleep 1000"]);
        m.linux = security(LinuxContainerSecurityContext {
            masked_paths: KUBELET_MASKED
                .iter()
                .chain(&["/etc"])
                .map(|s| s.to_string())
                .collect(),
            readonly_paths: KUBELET_READONLY
                .iter()
                .chain(&["/tmp"])
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        });
        let m = cri.start_in(&sb, &pod, m).expect("masked");
        let (out, _) = cri.exec(
            &m,
            "wc -c < /proc/keys; ls -A /etc | wc -l; \
             echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo sys-ro; \
             touch /tmp/x 2>/dev/null || echo tmp-ro",
        );
        assert_eq!(out, "0\n0\nsys-ro\ntmp-ro\n", "{handler}");

        // Capabilities: added within allow_caps they hold; beyond it the
        // container is refused, naming the option.
        let mut capped = container_config(
            "capped",
            &["sh", "-c", "grep CapEff /proc/self/status; exec sleep 1000"],
        );
        capped.linux = security(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["CHOWN".into(), "KILL".into()],
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        cri.start_in(&sb, &pod, capped).expect("capped");
        assert!(
            eventually(5, || cri
                .log_of(&name, "capped")
                .contains("CapEff:\t0000000000000021")),
            "{handler}: {}",
            cri.log_of(&name, "capped")
        );
        let mut admin = container_config("admin", &["true"]);
        admin.linux = security(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = cri
            .start_in(&sb, &pod, admin)
            .expect_err("NET_ADMIN is not in allow_caps");
        assert!(
            e.message().contains("net_admin") && e.message().contains("allow_caps"),
            "{handler}: {e}"
        );
        cri.remove_pod(&sb);

        // A hostNetwork pod: its containers are in the host's network
        // namespace (no CNI), and still apart from its mounts and pids.
        let hname = format!("h-{handler}");
        let mut hpod = pod_config(&hname, &cri.logs());
        // The kubelet gives a hostNetwork pod no hostname: the node's is its.
        hpod.hostname = String::new();
        hpod.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let hsb = cri.run_pod(handler, &hpod);
        let h = cri
            .start_in(
                &hsb,
                &hpod,
                container_config("h", &["sh", "-c", "exec sleep 1000"]),
            )
            .expect("host network container");
        let (out, _) = cri.exec(&h, "readlink /proc/self/ns/net; readlink /proc/self/ns/pid");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(host_net.as_str()), "{handler}: {out}");
        assert_ne!(lines.next(), Some(host_pid.as_str()), "{handler}: {out}");
        cri.remove_pod(&hsb);
    }
}
