//! The exec driver's model through `isoexec`: tasks in empty roots running
//! host binaries, the chroot_env modes, the task directory, the policy and
//! the driver's config file, checked as a user of Nomad's exec driver would.

mod common;

use common::*;
use serde_json::json;

/// A host directory for chroot_env tests: a file, a subdirectory, a
/// symlink and a fifo.
fn host_tree() -> TempDir {
    let d = TempDir::new("isoexec-hostdir");
    std::fs::write(d.path().join("file"), "host content\n").unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/inner"), "inner\n").unwrap();
    std::os::unix::fs::symlink("sub/inner", d.path().join("link")).unwrap();
    let fifo = std::ffi::CString::new(d.path().join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    d
}

#[test]
fn empty_root_runs_host_binaries() {
    let iso = Isoexec::new();
    let b = Bundle::empty(
        &sh(
            "echo pid=$$; /usr/bin/env | grep -c NOMAD_; ls /usr/bin/env; \
             if [ -x /usr/bin/python3 ]; then python3 -c 'print(6*7)'; else echo 42; fi",
        ),
        |_| {},
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "pid=1\n3\n/usr/bin/env\n42\n");
    // The root is left as it was: empty.
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
}

#[test]
fn bind_mode_cannot_change_host_files() {
    let iso = Isoexec::new();
    let before = std::fs::read("/etc/hostname").unwrap();
    let b = Bundle::empty(
        &sh("echo x >> /etc/hostname; touch /usr/bin/isoexec-was-here; \
             mount | grep ' /usr ' | grep -c '(ro,'"),
        |c| c["root"]["readonly"] = json!(false),
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n");
    assert_eq!(err.matches("Read-only file system").count(), 2, "{err}");
    assert_eq!(std::fs::read("/etc/hostname").unwrap(), before);
    assert!(!std::path::Path::new("/usr/bin/isoexec-was-here").exists());
}

#[test]
fn task_directory_layout() {
    let iso = Isoexec::new();
    let b = Bundle::empty(
        &sh("stat -c '%n %a' /tmp /local /alloc /secrets; \
             mount | grep ' /secrets ' | grep -o 'tmpfs.*noexec' | cut -c1-5; \
             touch /local/a /tmp/b /alloc/c /secrets/d && echo writable; \
             cp /bin/true /secrets/t && /secrets/t || echo secrets-noexec; \
             env | grep -E '^NOMAD_(TASK|ALLOC|SECRETS)_DIR' | sort"),
        |_| {},
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "/tmp 1777\n/local 755\n/alloc 755\n/secrets 700\ntmpfs\nwritable\nsecrets-noexec\n\
         NOMAD_ALLOC_DIR=/alloc\nNOMAD_SECRETS_DIR=/secrets\nNOMAD_TASK_DIR=/local\n"
    );
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn task_user_owns_its_writable_directories() {
    let iso = Isoexec::new();
    let b = Bundle::empty(
        &sh("id -u; touch /local/a /alloc/b /secrets/c /tmp/d && echo ok; touch /usr/x 2>/dev/null || echo ro"),
        |c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}),
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1000\nok\nro\n");
}

#[test]
fn overlay_mode_changes_stay_in_the_task() {
    let host = host_tree();
    let cfg = format!(
        "chroot_mode = \"overlay\"\n[chroot_env]\n\"/usr\" = \"/usr\"\n\"/bin\" = \"/bin\"\n\
         \"/lib\" = \"/lib\"\n\"/lib64\" = \"/lib64\"\n\"{}\" = \"/data\"\n",
        host.path().display()
    );
    let iso = Isoexec::with_config(&cfg);
    let b = Bundle::empty(
        &sh("echo task content > /data/file; cat /data/file; rm /data/sub/inner; ls /data/sub | wc -l; \
             touch /usr/overlay-new && echo usr-writable"),
        |_| {},
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "task content\n0\nusr-writable\n");
    // The host saw none of it.
    assert_eq!(
        std::fs::read_to_string(host.path().join("file")).unwrap(),
        "host content\n"
    );
    assert!(host.path().join("sub/inner").exists());
    assert!(!std::path::Path::new("/usr/overlay-new").exists());
    // The upper layers went with the state.
    assert_eq!(
        std::fs::read_dir(iso.root.path())
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count(),
        0
    );
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
}

#[test]
fn link_mode_copies_like_the_driver() {
    let host = host_tree();
    let bb = TempDir::new("isoexec-bb");
    busybox_rootfs(bb.path());
    let cfg = format!(
        "chroot_mode = \"link\"\n[chroot_env]\n\"{}\" = \"/bin\"\n\"{}\" = \"/data\"\n",
        bb.path().join("bin").display(),
        host.path().display()
    );
    let iso = Isoexec::with_config(&cfg);
    let b = Bundle::empty(
        &sh("cat /data/file /data/link; ls /data | tr '\\n' ' '; echo; \
             readlink /data/link; echo changed > /data/file || echo refused"),
        |c| c["root"]["readonly"] = json!(false),
    );
    let id = unique("link");
    iso.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    // Hardlinked, not copied: the same inode as the host's file.
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(
        ino(&b.rootfs().join("data/file")),
        ino(&host.path().join("file"))
    );
    iso.ok(&["start", &id]);
    assert!(eventually(5, || iso.status(&id) == "stopped"));
    iso.ok(&["delete", &id]);
    // create/start/delete sent the task's output to this test's files; run again to read it.
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    // The fifo is skipped; the symlink is recreated.
    assert_eq!(
        out,
        "host content\ninner\nfile link sub \nsub/inner\nrefused\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("file")).unwrap(),
        "host content\n"
    );
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
}

#[test]
fn sandbox_tasks_share_alloc() {
    let iso = Isoexec::new();
    let ann = json!({"io.isoexec.sandbox": "alloc-1"});
    let writer = Bundle::empty(&sh("echo from-writer > /alloc/msg; sleep 1000"), |c| {
        c["annotations"] = ann.clone()
    });
    let w = unique("writer");
    iso.start_detached(&writer, &w);
    let reader = Bundle::empty(&sh("cat /alloc/msg"), |c| c["annotations"] = ann.clone());
    let mut out = String::new();
    assert!(
        eventually(5, || {
            out = iso.run_bundle(&reader, &[]).0;
            out == "from-writer\n"
        }),
        "{out:?}"
    );
    // A task of another sandbox does not see it.
    let other = Bundle::empty(&sh("ls /alloc | wc -l"), |c| {
        c["annotations"] = json!({"io.kubernetes.cri.sandbox-id": "alloc-2"})
    });
    assert_eq!(iso.run_bundle(&other, &[]).0, "0\n");
    let shared = iso.root.path().join(".sandboxes/alloc-1/alloc/msg");
    assert!(shared.exists());
    iso.ok(&["delete", "--force", &w]);
    // The last task of the sandbox took its directory with it.
    assert!(!iso.root.path().join(".sandboxes/alloc-1").exists());
    assert!(!iso.root.path().join(".sandboxes/alloc-2").exists());
}

#[test]
fn denied_uid_and_gid_are_refused_before_anything_starts() {
    let iso = Isoexec::with_config("denied_host_uids = \"0,10-15\"\ndenied_host_gids = \"2,4-8\"");
    let b = Bundle::empty(&["true"], |_| {});
    let id = unique("denied");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(e.contains("running as uid 0 is disallowed"), "{e}");
    let b2 = Bundle::empty(&["true"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 5})
    });
    let e = iso.fails(&["create", "--bundle", b2.path().to_str().unwrap(), &id]);
    assert!(e.contains("running as gid 5 is disallowed"), "{e}");
    // Nothing left: no state, no cgroup, the root untouched.
    assert!(!iso.state_dir(&id).exists());
    assert!(!cgroup_dir("pids", &format!("/isoexec/{id}")).exists());
    assert!(b.root_entries().is_empty());
    // An allowed user runs; exec as a denied user is refused.
    let ok = Bundle::empty(&["sleep", "1000"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000})
    });
    iso.start_detached(&ok, &id);
    let e = iso.fails(&["exec", "--user", "0:0", &id, "true"]);
    assert!(e.contains("running as uid 0 is disallowed"), "{e}");
    iso.ok(&["delete", "--force", &id]);
}

#[test]
fn capabilities_against_allow_caps() {
    let iso = Isoexec::new();
    // containerd's default set includes net_raw: dropped, with a warning.
    let caps = json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]);
    let b = Bundle::empty(&sh("grep CapBnd /proc/self/status"), |c| {
        c["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "CapBnd:\t0000000000000021\n");
    // Without a log, stderr that is not a terminal (conmon's exec gives the
    // exec'd process's own) gets no warning.
    assert!(!err.contains("warning"), "{err}");
    // A person at a terminal sees it.
    let cmd = format!(
        "{} --root {} run --bundle {} {}",
        binary("isoexec").display(),
        iso.root.path().display(),
        b.path().display(),
        unique("tty")
    );
    let o = in_terminal(&cmd).output().unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("warning: dropping capabilities not in allow_caps: net_raw")
            && text.contains("CapBnd:\t0000000000000021"),
        "{text}"
    );
    // With --log (as conmon, Docker and the runc shim run it, the
    // container's stderr being the runtime's) the warning goes there alone.
    let log = iso.root.path().join("warn.json");
    let (out, err, code) = iso.run_bundle(
        &b,
        &["--log", log.to_str().unwrap(), "--log-format", "json"],
    );
    assert_eq!(
        (out.as_str(), code),
        ("CapBnd:\t0000000000000021\n", 0),
        "{err}"
    );
    assert_eq!(
        err, "",
        "nothing of the runtime's in the container's stderr"
    );
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["level"], "warning");
    assert_eq!(
        line["msg"],
        "dropping capabilities not in allow_caps: net_raw"
    );

    // Anything else outside allow_caps is refused.
    let b = Bundle::empty(&["true"], |c| {
        c["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]);
    });
    let id = unique("caps");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("driver does not allow the following capabilities: sys_admin"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    assert!(b.root_entries().is_empty());

    // allow_caps = ["all"] lets it through.
    let all = Isoexec::with_config("allow_caps = [\"all\"]");
    let b = Bundle::empty(&sh("grep CapBnd /proc/self/status"), |c| {
        c["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN", "CAP_NET_RAW"]});
    });
    let (out, err, code) = all.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "CapBnd:\t0000000000202000\n");
}

#[test]
fn pid_and_ipc_modes_by_annotation() {
    let iso = Isoexec::new();
    let b = Bundle::empty(&sh("echo $$; readlink /proc/self/ns/ipc"), |c| {
        c["annotations"] = json!({"io.isoexec.pid_mode": "host", "io.isoexec.ipc_mode": "host"});
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1", "host pid mode: not pid 1");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(lines[1], host_ipc.to_str().unwrap());
}

#[test]
fn resources_appear_in_the_nomad_environment() {
    let iso = Isoexec::new();
    let b = Bundle::empty(&sh("env | grep -E '^NOMAD_(CPU|MEMORY)' | sort"), |c| {
        c["linux"]["resources"] = json!({
            "cpu": {"shares": 500, "cpus": "0"},
            "memory": {"reservation": 64 << 20, "limit": 128 << 20}
        });
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "NOMAD_CPU_CORES=0\nNOMAD_CPU_LIMIT=500\nNOMAD_MEMORY_LIMIT=64\nNOMAD_MEMORY_MAX_LIMIT=128\n"
    );
}

#[test]
fn config_file_errors_name_file_and_key() {
    let iso = Isoexec::with_config("default_pid_mode = \"sometimes\"\n");
    let b = Bundle::empty(&["true"], |_| {});
    let e = iso.fails(&["run", "--bundle", b.path().to_str().unwrap(), "x"]);
    let cfg = iso.config.as_ref().unwrap().display().to_string();
    assert!(e.contains(&cfg), "{e}");
    assert!(
        e.contains("default_pid_mode must be \"private\" or \"host\", got \"sometimes\""),
        "{e}"
    );
    assert!(b.root_entries().is_empty());

    // ISOEXEC_CONFIG names the file when --config does not.
    let plain = Isoexec::new();
    let bad = plain.root.path().join(".bad.toml");
    std::fs::write(&bad, "allow_caps = [\"chown\", \"bogus\"]\n").unwrap();
    let out = plain
        .command()
        .env("ISOEXEC_CONFIG", &bad)
        .args(["run", "--bundle", b.path().to_str().unwrap(), "x"])
        .output()
        .unwrap();
    let e = stderr(&out);
    assert!(
        e.contains(".bad.toml") && e.contains("allow_caps: unknown capability \"bogus\""),
        "{e}"
    );
    // A missing explicit file is an error too.
    let out = plain
        .command()
        .args([
            "--config",
            "/nonexistent/isoexec.toml",
            "run",
            "--bundle",
            b.path().to_str().unwrap(),
            "x",
        ])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("/nonexistent/isoexec.toml: cannot read the driver config"));
}

#[test]
fn no_pivot_root_option() {
    let iso = Isoexec::with_config("no_pivot_root = true");
    let b = Bundle::empty(&sh("echo $$; ls /usr/bin/env"), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n/usr/bin/env\n");
}

#[test]
fn exec_joins_the_task_root() {
    let iso = Isoexec::new();
    let b = Bundle::empty(&sh("echo hi > /local/note; sleep 1000"), |_| {});
    let id = unique("exec");
    iso.start_detached(&b, &id);
    assert!(eventually(5, || b.rootfs().join("local/note").exists()));
    let out = iso.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /local/note; echo $NOMAD_TASK_DIR",
    ]);
    assert_eq!(out, "hi\n/local\n");
    iso.ok(&["delete", "--force", &id]);
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
    assert!(mounts_under(b.path()).is_empty());
}

#[test]
fn fingerprint_of_this_host() {
    let iso = Isoexec::new();
    let table = iso.ok(&["fingerprint"]);
    assert!(table.contains("driver.exec                  1"), "{table}");
    assert!(
        table.contains("root                         yes"),
        "{table}"
    );
    let f: serde_json::Value =
        serde_json::from_str(&iso.ok(&["fingerprint", "--format", "json"])).unwrap();
    assert_eq!(f["attributes"]["driver.exec"], "1");
    assert_eq!(f["detected"], true);
    let version = f["cgroup_version"].as_u64().unwrap();
    assert_eq!(version, if cgroup_v2() { 2 } else { 1 });
    // What the kernel mounted is what fingerprint reports present.
    let present: Vec<String> = serde_json::from_value(f["controllers_present"].clone()).unwrap();
    if !cgroup_v2() {
        for c in ["cpu", "memory", "pids", "freezer", "cpuset", "devices"] {
            let mounted = std::path::Path::new("/sys/fs/cgroup")
                .join(c)
                .join("cgroup.procs")
                .exists();
            assert_eq!(present.contains(&c.to_string()), mounted, "{c}");
        }
    }
    assert_eq!(
        f["resource_controls"],
        f["required_missing"].as_array().unwrap().is_empty()
    );
    if cgroup_v2() {
        // Every controller the kernel offers, and devices by eBPF (loaded).
        let offered = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
        for c in ["cpu", "cpuset", "memory", "pids", "hugetlb"] {
            assert_eq!(
                present.contains(&c.to_string()),
                offered.split_whitespace().any(|x| x == c),
                "{c}"
            );
        }
        assert!(
            present.contains(&"devices".to_string()) && present.contains(&"freezer".to_string())
        );
        assert_eq!(f["device_control"], "eBPF device program");
        assert!(table.contains("eBPF device program"), "{table}");
    } else {
        assert_eq!(f["device_control"], "devices controller");
    }

    // Not root: undetected, with the reason.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary("isoexec"))
        .args(["fingerprint", "--format", "json"])
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["detected"], false);
    assert_eq!(f["health"], "undetected");
    assert!(f["health_description"]
        .as_str()
        .unwrap()
        .contains("must run as root"));
    assert!(f["attributes"].as_object().unwrap().is_empty());
}

#[test]
fn spec_writes_the_driver_defaults() {
    let iso = Isoexec::with_config(
        "default_pid_mode = \"host\"\ndefault_ipc_mode = \"private\"\nallow_caps = [\"chown\", \"kill\"]",
    );
    let dir = TempDir::new("isoexec-spec");
    iso.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let ns: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(!ns.contains(&"pid"), "{ns:?}");
    assert!(ns.contains(&"ipc"), "{ns:?}");
    assert_eq!(
        spec["process"]["capabilities"]["bounding"],
        json!(["CAP_CHOWN", "CAP_KILL"])
    );
}

#[test]
fn example_bundles_do_what_they_say() {
    let iso = Isoexec::new();
    let bundles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles");
    let b = |name: &str| bundles.join(name).to_str().unwrap().to_string();

    let out = iso.ok(&["run", "--bundle", &b("hello"), "hello"]);
    assert!(out.contains("pid:          1\n"), "{out}");
    assert!(
        out.contains("write /usr:   cannot touch '/usr/hello': Read-only file system"),
        "{out}"
    );
    assert!(out.contains("write /local: ok"), "{out}");
    assert!(out.contains("env:          NOMAD_TASK_DIR=/local"), "{out}");
    assert!(out.contains("env:          NOMAD_CPU_LIMIT=500"), "{out}");

    let out = iso.ok(&["run", "--bundle", &b("limits"), "limits"]);
    assert!(out.contains("memory limit: 32 MiB"), "{out}");
    assert!(out.contains("dd exited with 137"), "{out}");

    iso.ok(&[
        "run",
        "--detach",
        "--bundle",
        &b("sandbox/producer"),
        "producer",
    ]);
    let msg = iso.root.path().join(".sandboxes/demo-alloc/alloc/message");
    assert!(eventually(5, || msg.exists()
        && std::fs::metadata(&msg).unwrap().len() > 0));
    let out = iso.ok(&["run", "--bundle", &b("sandbox/consumer"), "consumer"]);
    assert!(
        out.starts_with("consumer reads /alloc/message: written by the producer"),
        "{out}"
    );
    iso.ok(&["delete", "--force", "producer"]);

    iso.ok(&["run", "--detach", "--bundle", &b("web"), "web"]);
    let mut body = String::new();
    assert!(eventually(5, || {
        let o = std::process::Command::new("busybox")
            .args(["wget", "-qO-", "http://127.0.0.1:18080/"])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success()
    }));
    assert!(body.starts_with("hello from an isoexec task"), "{body}");
    iso.ok(&["delete", "--force", "web"]);

    for name in [
        "hello",
        "limits",
        "web",
        "sandbox/producer",
        "sandbox/consumer",
    ] {
        assert!(
            !bundles.join(name).join("rootfs").exists(),
            "{name}/rootfs left behind"
        );
    }
}

#[test]
fn layout_symlinks_in_the_root_cannot_reach_the_host() {
    use std::os::unix::fs::PermissionsExt;
    let iso = Isoexec::new();
    // A root whose tmp and local are symlinks to a host directory.
    // Outside /tmp, so that the root's tmp -> victim does not loop into itself.
    let victim = TempDir(std::path::PathBuf::from("/var/tmp").join(unique("isoexec-victim")));
    std::fs::create_dir_all(victim.path()).unwrap();
    std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let b = Bundle::empty(
        &sh("ls -ld /tmp | cut -c1-10; touch /tmp/x && echo tmp-writable"),
        |_| {},
    );
    std::os::unix::fs::symlink(victim.path(), b.rootfs().join("tmp")).unwrap();
    std::os::unix::fs::symlink(victim.path(), b.rootfs().join("local")).unwrap();
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("tmp-writable\n"), "{out}");
    // The host directory kept its mode and got nothing.
    let mode = std::fs::metadata(victim.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700);
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
}

/// What a directory holds, recursively: names, kinds, modes and contents.
fn snapshot(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let mut line = format!(
            "{} {:o}",
            e.file_name().to_string_lossy(),
            m.permissions().mode()
        );
        if m.is_file() {
            line += &format!(" {:?}", std::fs::read_to_string(e.path()).unwrap());
        }
        out.push(line);
        if m.is_dir() {
            out.extend(snapshot(&e.path()).into_iter().map(|l| format!("  {l}")));
        }
    }
    out.sort();
    out
}

/// The symlink-exchange race of CVE-2021-30465 (runc's mounts), turned
/// on the work isoexec does by path in a task's root: the link-mode copy
/// and delete's removal of it. Something else writing the same root (a
/// task of another runtime instance on a shared task directory) swaps
/// the directory `prepare` made, `/x`, with a symlink to a host directory
/// holding a `y` of its own, back and forth with renameat2(RENAME_EXCHANGE),
/// while tasks whose chroot_env copies a tree to `/x/y` run and are
/// deleted. A copy or chmod that went by the path `/x/y` would land in the
/// host's `y`, and a removal by path would delete it. The host directory
/// must come out as it went in, whatever the runs themselves did.
#[test]
fn cve_2021_30465_a_swapped_in_symlink_never_leads_the_copy_or_its_removal_to_the_host() {
    use std::os::unix::fs::PermissionsExt;
    let host = host_tree();
    let bb = TempDir::new("isoexec-bb");
    busybox_rootfs(bb.path());
    let cfg = format!(
        "chroot_mode = \"link\"\n[chroot_env]\n\"{}\" = \"/bin\"\n\"{}\" = \"/x/y\"\n",
        bb.path().join("bin").display(),
        host.path().display()
    );
    let iso = Isoexec::with_config(&cfg);
    // Outside /tmp: the root's symlink to it must not loop into the root.
    let victim = TempDir(std::path::PathBuf::from("/var/tmp").join(unique("isoexec-victim")));
    std::fs::create_dir_all(victim.path().join("y")).unwrap();
    std::fs::write(victim.path().join("y/canary"), "the host's\n").unwrap();
    std::fs::set_permissions(
        victim.path().join("y"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let before = snapshot(victim.path());

    let b = Bundle::empty(&["/bin/true"], |c| c["root"]["readonly"] = json!(false));
    let root = b.rootfs();
    std::os::unix::fs::symlink(victim.path(), root.join("x.swap")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attacker = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let a =
            std::ffi::CString::new(root.join("x").into_os_string().into_encoded_bytes()).unwrap();
        let b = std::ffi::CString::new(root.join("x.swap").into_os_string().into_encoded_bytes())
            .unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: renameat2 with two valid paths.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if r == 0 {
                    swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let mut ran = 0;
    for _ in 0..30 {
        let (_, _, code) = iso.run_bundle(&b, &[]);
        ran += usize::from(code == 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attacker.join().unwrap();
    assert!(
        swaps.load(std::sync::atomic::Ordering::Relaxed) > 100,
        "the attacker never got to swap"
    );
    assert_eq!(
        snapshot(victim.path()),
        before,
        "the host directory changed"
    );
    // Without the attacker, the same task runs and leaves the root as the
    // attacker left it.
    if std::fs::symlink_metadata(root.join("x")).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::rename(root.join("x"), root.join("x.tmp")).unwrap();
        std::fs::rename(root.join("x.swap"), root.join("x")).unwrap();
        std::fs::rename(root.join("x.tmp"), root.join("x.swap")).unwrap();
    }
    let left = b.root_entries();
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert_eq!(b.root_entries(), left);
    eprintln!("{ran} of 30 runs under attack succeeded");
}

#[test]
fn tasks_cannot_read_the_operators_session_keys() {
    // The attack: a task (root, or any user, through possession) reads the
    // keys of the session that started the runtime: an operator's shell,
    // containerd, isoexecd. runc gives each container a new session keyring.
    let iso = Isoexec::new();
    let name = unique("isoexec-secret");
    session_key(&name, "s3cret-payload");
    // The test can fail: a process that keeps the session reads the key.
    let host = std::process::Command::new("keyctl")
        .args(["request", "user", &name])
        .output()
        .expect("keyctl (make test installs keyutils)");
    assert!(
        host.status.success(),
        "the operator's own shell finds its key"
    );

    let script = format!(
        "keyctl request user {name} && echo found; keyctl pipe %user:{name} || echo unreadable"
    );
    let b = Bundle::empty(&sh(&script), |c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0})
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "unreadable\n", "{err}");

    // Nor through exec into a running task.
    let b = Bundle::empty(&["sleep", "1000"], |c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0})
    });
    let id = unique("keys");
    iso.start_detached(&b, &id);
    let o = iso.run(&["exec", &id, "sh", "-c", &script]);
    assert_eq!(stdout(&o), "unreadable\n", "{}", stderr(&o));
    iso.ok(&["delete", "--force", &id]);

    // --no-new-keyring keeps the caller's keyring, as runc's does.
    let b = Bundle::empty(&sh(&script), |c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0})
    });
    let (out, err, code) = iso.run_bundle(&b, &["--no-new-keyring"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("found\ns3cret-payload"), "{out}{err}");
}

#[test]
fn host_secrets_stay_out_of_the_chroot_env_in_every_mode() {
    // The attack: the default chroot_env has all of /etc (as Nomad's does),
    // so a task running as root reads /etc/shadow. chroot_env_hide keeps
    // the host's secrets out: masked (bind, overlay), never copied (link).
    let host = host_tree();
    std::fs::write(host.path().join("secret.pem"), "PRIVATE KEY\n").unwrap();
    std::fs::write(host.path().join("secret-2.pem"), "PRIVATE KEY\n").unwrap();
    let shadow = std::fs::read("/etc/shadow").expect("the host has /etc/shadow");
    assert!(!shadow.is_empty());
    let root = |c: &mut serde_json::Value| c["process"]["user"] = json!({"uid": 0, "gid": 0});
    let script = "wc -c < /etc/shadow; wc -c < /etc/gshadow; wc -c < /data/secret.pem; \
                  wc -c < /data/secret-2.pem; cat /data/file; grep -c root /etc/passwd";
    for mode in ["bind", "overlay"] {
        let cfg = format!(
            "chroot_mode = \"{mode}\"\nchroot_env_hide = [\"/etc/shadow*\", \"/etc/gshadow*\", \"{0}/secret*.pem\"]\n\
             [chroot_env]\n\"/usr\" = \"/usr\"\n\"/bin\" = \"/bin\"\n\"/lib\" = \"/lib\"\n\"/lib64\" = \"/lib64\"\n\
             \"/etc\" = \"/etc\"\n\"{0}\" = \"/data\"\n",
            host.path().display()
        );
        let iso = Isoexec::with_config(&cfg);
        let b = Bundle::empty(&sh(script), root);
        let (out, err, code) = iso.run_bundle(&b, &[]);
        assert_eq!(code, 0, "{mode}: {err}");
        assert_eq!(out, "0\n0\n0\n0\nhost content\n1\n", "{mode}: {err}");
    }
    // Link mode (the driver's copy), on a small tree: the hidden files are
    // never copied, the rest is.
    let cfg = format!(
        "chroot_mode = \"link\"\nchroot_env_hide = [\"{0}/secret*.pem\"]\n[chroot_env]\n\"{0}\" = \"/data\"\n",
        host.path().display()
    );
    let iso = Isoexec::with_config(&cfg);
    let b = Bundle::busybox(&sh("ls /data | sort | tr '\\n' ' '"), |c| {
        c["annotations"] = json!({});
        root(c);
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("secret"), "{out}");
    assert!(out.contains("file") && out.contains("sub"), "{out}");
    // The test can fail: with an empty list the task reads the host's file.
    let cfg = "chroot_env_hide = []\n[chroot_env]\n\"/usr\" = \"/usr\"\n\"/bin\" = \"/bin\"\n\
               \"/lib\" = \"/lib\"\n\"/lib64\" = \"/lib64\"\n\"/etc\" = \"/etc\"\n";
    let iso = Isoexec::with_config(cfg);
    let b = Bundle::empty(&sh("wc -c < /etc/shadow"), root);
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}\n", shadow.len()));
    // The host's files are as they were.
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), shadow);
    assert_eq!(
        std::fs::read_to_string(host.path().join("secret.pem")).unwrap(),
        "PRIVATE KEY\n"
    );
}

#[test]
fn ephemeral_disk_is_a_limit() {
    // The attack: a task writes without limit into /local and /tmp, on the
    // host's filesystem. With ephemeral_disk_mb both share a filesystem of
    // that size: ENOSPC at the limit, nothing on the host's disk.
    let iso = Isoexec::with_config("ephemeral_disk_mb = 8\n");
    let b = Bundle::empty(
        &sh("dd if=/dev/zero of=/local/big bs=1M count=16 2>/dev/null || echo local-full; \
             rm /local/big; dd if=/dev/zero of=/local/a bs=1M count=5 2>/dev/null && echo a-ok; \
             dd if=/dev/zero of=/tmp/b bs=1M count=5 2>&1 | grep -o 'No space left on device' | head -1; \
             stat -c %a /tmp; df -m /local | tail -1 | awk '{print $2}'"),
        |_| {},
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "local-full\na-ok\nNo space left on device\n1777\n8\n",
        "{err}"
    );
    // While a task writes there, nothing lands in its directory on the host.
    let b = Bundle::empty(
        &sh("dd if=/dev/zero of=/local/a bs=1M count=5 2>/dev/null; touch /tmp/t /local/done; sleep 100"),
        |_| {},
    );
    let id = unique("disk");
    iso.start_detached(&b, &id);
    assert!(eventually(10, || iso
        .run(&["exec", &id, "ls", "/local/done"])
        .status
        .success()));
    for d in ["local", "tmp"] {
        let n = std::fs::read_dir(b.rootfs().join(d))
            .expect("the task directory")
            .count();
        assert_eq!(n, 0, "{d} on the host");
    }
    iso.ok(&["delete", "--force", &id]);
    // A task's own size (the annotation), and a bad one.
    let b = Bundle::empty(&sh("df -m /tmp | tail -1 | awk '{print $2}'"), |c| {
        c["annotations"] = json!({"io.isoexec.ephemeral_disk_mb": "4"});
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!((out.as_str(), code), ("4\n", 0), "{err}");
    let b = Bundle::empty(&["true"], |c| {
        c["annotations"] = json!({"io.isoexec.ephemeral_disk_mb": "lots"});
    });
    let (_, err, code) = iso.run_bundle(&b, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("io.isoexec.ephemeral_disk_mb"), "{err}");
}

#[test]
fn a_hidden_or_masked_binary_is_not_reachable_through_its_merged_usr_twin() {
    // The attack: on a merged-/usr host /bin is a symlink to usr/bin; bound
    // as two directories, a binary hidden (chroot_env_hide) or masked
    // (linux.maskedPaths) under one name still ran under the other. The
    // twin is now the same symlink in the task: one directory, two names.
    let bin = std::fs::symlink_metadata("/bin").unwrap();
    assert!(
        bin.file_type().is_symlink(),
        "this test needs a merged-/usr host (Debian 12 and later)"
    );
    let probe = "readlink /bin; for p in /bin/ls /usr/bin/ls /bin/id /usr/bin/id; do \
                 if [ -s $p ]; then echo \"$p present\"; else echo \"$p hidden\"; fi; done";
    // Hidden by the driver, named through the twin.
    let iso = Isoexec::with_config("chroot_env_hide = [\"/bin/ls\"]\n");
    let b = Bundle::empty(&sh(probe), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "usr/bin\n/bin/ls hidden\n/usr/bin/ls hidden\n/bin/id present\n/usr/bin/id present\n"
    );
    // Masked by the spec under the other name.
    let iso = Isoexec::with_config("chroot_env_hide = []\n");
    let b = Bundle::empty(&sh(probe), |c| {
        c["linux"]["maskedPaths"] = json!(["/usr/bin/id"]);
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "usr/bin\n/bin/ls present\n/usr/bin/ls present\n/bin/id hidden\n/usr/bin/id hidden\n"
    );
    // The task directory holds nothing after the task, and the host's
    // binaries are as they were.
    assert_eq!(b.root_entries(), Vec::<String>::new());
    assert!(std::fs::metadata("/usr/bin/ls").unwrap().len() > 0);
}
