//! The `isoexec` command line against the real kernel, on busybox bundles:
//! what a user of runc would try, and what they would check.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;

#[test]
fn run_passes_stdio_and_exit_status() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("echo out; echo err >&2; exit 3"), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    assert_eq!(code, 3);
    // run deletes the container afterwards.
    assert_eq!(std::fs::read_dir(iso.root.path()).unwrap().count(), 0);
}

#[test]
fn task_is_pid_1_with_its_hostname() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("echo $$; hostname"), |c| c["hostname"] = json!("box-7"));
    let (out, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0);
    assert_eq!(out, "1\nbox-7\n");
}

#[test]
fn readonly_root_refuses_writes() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("touch /x"), |_| {});
    let (_, err, code) = iso.run_bundle(&b, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");

    let b = Bundle::busybox(&sh("touch /x && echo made"), |c| {
        c["root"]["readonly"] = json!(false)
    });
    let (out, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!((out.as_str(), code), ("made\n", 0));
    assert!(b.rootfs().join("x").exists());
}

#[test]
fn masked_and_readonly_paths() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(
        &sh("wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/printk || echo ro"),
        |_| {},
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0\n0\nro\n");
    // The host still has them.
    assert!(std::fs::read_dir("/sys/firmware").unwrap().count() > 0);
}

#[test]
fn dev_has_only_the_standard_nodes() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("ls /dev | tr '\\n' ' '; echo; ls -l /dev/null"), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "
    );
    assert!(
        out.contains("crw-rw-rw-") && out.contains("1,   3"),
        "{out}"
    );
}

fn cap_lines(uid: u32) -> String {
    let iso = Isoexec::new();
    let b = Bundle::busybox(
        &sh("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"),
        |c| {
            c["process"]["user"] = json!({"uid": uid, "gid": uid});
            c["process"]["capabilities"] = json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_CHROOT"],
                "effective": ["CAP_CHOWN", "CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_KILL"],
                "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL"]
            });
            c["process"]["noNewPrivileges"] = json!(false);
        },
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn host_devices_stay_closed_even_with_cap_mknod() {
    // The attack: CAP_MKNOD is in the default set, so a task makes nodes of
    // the host's kernel log and of the disk under / and writes or reads
    // them. The nodes can be made, never opened (v1: the devices
    // controller; v2: the eBPF device program).
    let iso = Isoexec::new();
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").expect("stat /"));
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let canary = unique("isoexec-kmsg-canary");
    let script = format!(
        "mknod /dev/kmsg c 1 11 && echo made; echo {canary} > /dev/kmsg || echo kmsg-refused; \
         mknod /dev/disk b {major} {minor} && echo made; head -c 512 /dev/disk >/dev/null || echo disk-refused; \
         mknod /dev/host-serial c 4 64 && echo made; echo x > /dev/host-serial || echo tty-refused; \
         echo ok > /dev/null && echo null-ok"
    );
    let b = Bundle::busybox(&sh(&script), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "made\nkmsg-refused\nmade\ndisk-refused\nmade\ntty-refused\nnull-ok\n",
        "{err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    let dmesg = std::process::Command::new("dmesg").output().expect("dmesg");
    assert!(dmesg.status.success());
    assert!(
        !String::from_utf8_lossy(&dmesg.stdout).contains(&canary),
        "the task wrote to the host's kernel log"
    );
}

#[test]
fn capabilities_as_requested_for_a_user() {
    // CHOWN = bit 0, KILL = bit 5, SYS_CHROOT = bit 18. A non-root process
    // keeps across exec what is ambient; the bounding set is as given.
    let out = cap_lines(1000);
    assert_eq!(
        out,
        "CapInh:\t0000000000000020\nCapPrm:\t0000000000000020\nCapEff:\t0000000000000020\n\
         CapBnd:\t0000000000040021\nCapAmb:\t0000000000000020\n"
    );
}

#[test]
fn capabilities_of_root_are_the_bounding_set() {
    // For uid 0 the kernel grants the whole bounding set on exec (as with runc).
    let out = cap_lines(0);
    assert_eq!(
        out,
        "CapInh:\t0000000000000020\nCapPrm:\t0000000000040021\nCapEff:\t0000000000040021\n\
         CapBnd:\t0000000000040021\nCapAmb:\t0000000000000020\n"
    );
}

#[test]
fn default_capabilities_are_dockers_without_net_raw() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(
        &sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status"),
        |_| {},
    );
    let (out, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("CapEff:\t00000000a80405fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80405fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn user_groups_and_umask() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("id; umask; grep CapEff /proc/self/status"), |c| {
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6], "umask": 0o27});
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uid=1000 gid=1001 groups=5,6"), "{out}");
    assert!(out.contains("0027"), "{out}");
    // A non-root user has no effective capability without ambient ones.
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
}

#[test]
fn rlimits_apply() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("ulimit -n; ulimit -Hn; ulimit -u"), |c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
            {"type": "RLIMIT_NPROC", "soft": 77, "hard": 77}
        ]);
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "123\n456\n77\n");
}

#[test]
fn environment_and_cwd() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("pwd; echo $GREETING"), |c| {
        c["process"]["cwd"] = json!("/tmp/work");
        c["process"]["env"] = json!(["PATH=/bin", "GREETING=hello there"]);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]
        }));
        c["root"]["readonly"] = json!(false);
    });
    std::fs::create_dir_all(b.rootfs().join("tmp")).unwrap();
    let (out, err, code) = iso.run_bundle(&b, &[]);
    // /tmp/work does not exist in the tmpfs: a clear error.
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid process.cwd in config.json: cannot enter /tmp/work in the container: No such file or directory"),
        "{err}"
    );

    let mut b = b;
    b.config["process"]["cwd"] = json!("/tmp");
    b.save();
    let (out2, err2, code2) = iso.run_bundle(&b, &[]);
    assert_eq!(code2, 0, "{err2} {out}");
    assert_eq!(out2, "/tmp\nhello there\n");
}

#[test]
fn sysctl_in_the_containers_namespace() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("cat /proc/sys/net/ipv4/ip_forward"), |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before
    );
}

#[test]
fn read_only_bind_mount() {
    let iso = Isoexec::new();
    let data = TempDir::new("isoexec-data");
    std::fs::write(data.path().join("f"), "host data\n").unwrap();
    let b = Bundle::busybox(&sh("cat /data/f; echo x > /data/f || echo refused"), |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data.path(),
            "options": ["rbind", "ro", "nosuid"]
        }));
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "host data\nrefused\n");
    assert_eq!(
        std::fs::read_to_string(data.path().join("f")).unwrap(),
        "host data\n"
    );
    assert!(mounts_under(data.path()).is_empty());
}

#[test]
fn no_pivot_root() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("echo $$; ls /bin/busybox"), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &["--no-pivot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n/bin/busybox\n");
}

#[test]
fn no_runtime_descriptor_leaks_into_the_task() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("ls /proc/self/fd | tr '\\n' ' '"), |_| {});
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    // 0-2, and ls's own directory descriptor.
    assert_eq!(out, "0 1 2 3 ");
}

#[test]
fn lifecycle_states() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    let bundle = b.path().to_str().unwrap();
    let id = unique("life");
    let pid_file = b.path().join("init.pid");
    iso.ok(&[
        "create",
        "--bundle",
        bundle,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let st = iso.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["bundle"], bundle);
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert_eq!(read_trimmed(&pid_file), pid.to_string());
    assert!(alive(pid));
    // The init waits: its command is still ours, not sleep.
    let comm = read_trimmed(std::path::Path::new(&format!("/proc/{pid}/comm")));
    assert_ne!(comm, "sleep");

    iso.ok(&["start", &id]);
    assert_eq!(iso.status(&id), "running");
    assert!(eventually(5, || read_trimmed(std::path::Path::new(
        &format!("/proc/{pid}/comm")
    )) == "sleep"));
    let e = iso.fails(&["start", &id]);
    assert!(e.contains(&format!("container \"{id}\" is running")), "{e}");
    let e = iso.fails(&["delete", &id]);
    assert!(e.contains("delete --force"), "{e}");

    let list = iso.ok(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(iso.ok(&["list", "-q"]), format!("{id}\n"));

    iso.ok(&["kill", &id, "KILL"]);
    assert!(eventually(5, || iso.status(&id) == "stopped"));
    assert_eq!(iso.state(&id)["pid"], 0);
    let e = iso.fails(&["kill", &id, "TERM"]);
    assert!(e.contains("stopped"), "{e}");
    iso.ok(&["delete", &id]);
    assert!(!iso.state_dir(&id).exists());
    let e = iso.fails(&["state", &id]);
    assert!(
        e.contains(&format!("container \"{id}\" does not exist")),
        "{e}"
    );
    // delete --force of a container that is gone is not an error (runc).
    iso.ok(&["delete", "--force", &id]);
}

#[test]
fn kill_signal_forms_and_run_exit_status() {
    let iso = Isoexec::new();
    // The init traps TERM, so pid 1 does receive it.
    let b = Bundle::busybox(
        &sh("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"),
        |_| {},
    );
    let id = unique("sig");
    let mut child = iso
        .command()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    iso.ok(&["kill", &id, "SIGTERM"]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));

    // Killed by a signal: 128 + signal.
    let b = Bundle::busybox(&sh("echo ready; exec sleep 1000"), |_| {});
    let id = unique("sig");
    let mut child = iso
        .command()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    iso.ok(&["kill", &id, "9"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    let e = iso.fails(&["kill", "nope", "BOGUS"]);
    assert!(
        e.contains("does not exist") || e.contains("unknown signal"),
        "{e}"
    );
}

#[test]
fn kill_all_signals_every_process() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("sleep 1000 & sleep 1000 & wait"), |c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
    });
    let id = unique("all");
    iso.start_detached(&b, &id);
    assert!(eventually(5, || {
        let pids: Vec<i32> =
            serde_json::from_str(&iso.ok(&["ps", "--format", "json", &id])).unwrap();
        pids.len() == 3
    }));
    let pids: Vec<i32> = serde_json::from_str(&iso.ok(&["ps", "--format", "json", &id])).unwrap();
    iso.ok(&["kill", "--all", &id, "KILL"]);
    assert!(eventually(5, || pids.iter().all(|p| !alive(*p))));
    iso.ok(&["delete", &id]);
}

#[test]
fn exec_into_a_running_container() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "FROM=spec"])
    });
    let id = unique("exec");
    iso.start_detached(&b, &id);

    let out = iso.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; echo $FROM",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(
        lines[0], "1",
        "exec'd process shares the pid namespace, not pid 1"
    );
    assert_eq!(lines[1], "sleep 1000 ");
    assert_eq!(lines[2], "isoexec");
    assert_eq!(lines[3], "spec");

    // Exit status, env, cwd and user overrides.
    let out = iso.run(&["exec", &id, "sh", "-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9));
    let out = iso.ok(&[
        "exec",
        "--env",
        "FROM=flag",
        "--cwd",
        "/bin",
        "--user",
        "123:456",
        &id,
        "sh",
        "-c",
        "echo $FROM; pwd; id",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["flag", "/bin"]);
    assert!(lines[2].starts_with("uid=123 gid=456"), "{out}");

    // --process with a process.json.
    let pj = b.path().join("process.json");
    std::fs::write(
        &pj,
        json!({"args": ["sh", "-c", "echo from process.json"], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        iso.ok(&["exec", "--process", pj.to_str().unwrap(), &id]),
        "from process.json\n"
    );

    // Detached exec with a pid file.
    let pf = b.path().join("exec.pid");
    iso.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pf.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    let epid: i32 = read_trimmed(&pf).parse().unwrap();
    assert!(alive(epid));
    let pids: Vec<i32> = serde_json::from_str(&iso.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&epid), "{pids:?} should contain {epid}");

    // A missing binary is an error naming it.
    let e = iso.fails(&["exec", &id, "no-such-binary"]);
    assert!(
        e.contains("exec: process.args[0]: \"no-such-binary\": executable file not found"),
        "{e}"
    );

    iso.ok(&["delete", "--force", &id]);
    assert!(!alive(epid));
    let e = iso.fails(&["exec", &id, "true"]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn pause_and_resume() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    let id = unique("pause");
    iso.start_detached(&b, &id);
    iso.ok(&["pause", &id]);
    assert_eq!(iso.status(&id), "paused");
    let freezer = cgroup_dir("freezer", &format!("/isoexec/{id}"));
    if cgroup_v2() {
        assert_eq!(read_trimmed(&freezer.join("cgroup.freeze")), "1");
        let events = read_trimmed(&freezer.join("cgroup.events"));
        assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    } else {
        assert_eq!(read_trimmed(&freezer.join("freezer.state")), "FROZEN");
    }

    let e = iso.fails(&["pause", &id]);
    assert!(e.contains("paused"), "{e}");
    iso.ok(&["resume", &id]);
    assert_eq!(iso.status(&id), "running");
    let e = iso.fails(&["resume", &id]);
    assert!(e.contains("only a paused container can be resumed"), "{e}");
    // A paused container can still be force-deleted.
    iso.ok(&["pause", &id]);
    iso.ok(&["delete", "--force", &id]);
    assert!(!freezer.exists());
}

#[test]
fn memory_limit_oom_kills() {
    let iso = Isoexec::new();
    // dd allocates its 64 MiB block and fills it: over a 32 MiB limit.
    let b = Bundle::busybox(
        &sh("dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd exit $?"),
        |c| {
            c["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
        },
    );
    let (out, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!((out.as_str(), code), ("dd exit 137\n", 0));

    // Under the limit the same job runs.
    let b = Bundle::busybox(
        &sh("dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null; echo survived"),
        |c| {
            c["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
        },
    );
    let (out, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!((out.as_str(), code), ("survived\n", 0));
}

#[test]
fn oom_killed_init_exits_137() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        |c| {
            c["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
        },
    );
    let (_, _, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 137);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("for i in $(seq 40); do sleep 2 & done; wait"), |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 10}});
    });
    let (_, err, _) = iso.run_bundle(&b, &[]);
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn cpu_limits_written_to_the_cgroup() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |c| {
        c["linux"]["resources"] = json!({
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "memory": {"limit": 64 << 20, "reservation": 32 << 20},
            "pids": {"limit": 50}
        });
        if cgroup_v2() {
            c["linux"]["resources"]["memory"]["swap"] = json!(96 << 20);
            c["linux"]["resources"]["unified"] = json!({"memory.high": "50331648"});
        }
    });
    let id = unique("cpu");
    iso.start_detached(&b, &id);
    let path = format!("/isoexec/{id}");
    if cgroup_v2() {
        let d = cgroup_dir("", &path);
        assert_eq!(read_trimmed(&d.join("cpu.max")), "50000 100000");
        // shares 512 as runc converts them: 1 + (512 - 2) * 9999 / 262142.
        assert_eq!(read_trimmed(&d.join("cpu.weight")), "20");
        assert_eq!(read_trimmed(&d.join("cpuset.cpus")), "0");
        assert_eq!(
            read_trimmed(&d.join("memory.max")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read_trimmed(&d.join("memory.low")),
            (32u64 << 20).to_string()
        );
        // The spec's swap is memory+swap; v2's is swap alone.
        assert_eq!(
            read_trimmed(&d.join("memory.swap.max")),
            (32u64 << 20).to_string()
        );
        assert_eq!(read_trimmed(&d.join("memory.high")), "50331648");
        assert_eq!(read_trimmed(&d.join("pids.max")), "50");
        // Every controller the limits need is enabled for the cgroup.
        let on = read_trimmed(&d.join("cgroup.controllers"));
        for c in ["cpu", "cpuset", "memory", "pids"] {
            assert!(on.split(' ').any(|x| x == c), "{c} not in {on}");
        }
    } else {
        assert_eq!(
            read_trimmed(&cgroup_dir("cpu", &path).join("cpu.shares")),
            "512"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("cpu", &path).join("cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("cpu", &path).join("cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("cpuset", &path).join("cpuset.cpus")),
            "0"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("memory", &path).join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("memory", &path).join("memory.soft_limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("pids", &path).join("pids.max")),
            "50"
        );
    }
    // The container sees its own cgroup at /sys/fs/cgroup.
    let own = if cgroup_v2() {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    assert_eq!(iso.ok(&["exec", &id, "cat", own]), "50\n");
    // Read-only, every controller's directory: the task cannot raise its
    // own limits.
    let out = iso.run(&["exec", &id, "sh", "-c", &format!("echo 1000 > {own}")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(iso.ok(&["exec", &id, "cat", own]), "50\n");

    // update changes the limits in place.
    let res = b.path().join("res.json");
    std::fs::write(
        &res,
        json!({"pids": {"limit": 60}, "cpu": {"shares": 256}}).to_string(),
    )
    .unwrap();
    iso.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    iso.ok(&["update", "--memory", &(128u64 << 20).to_string(), &id]);
    if cgroup_v2() {
        let d = cgroup_dir("", &path);
        assert_eq!(read_trimmed(&d.join("pids.max")), "60");
        assert_eq!(read_trimmed(&d.join("cpu.weight")), "10");
        assert_eq!(
            read_trimmed(&d.join("memory.max")),
            (128u64 << 20).to_string()
        );
    } else {
        assert_eq!(
            read_trimmed(&cgroup_dir("pids", &path).join("pids.max")),
            "60"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("cpu", &path).join("cpu.shares")),
            "256"
        );
        assert_eq!(
            read_trimmed(&cgroup_dir("memory", &path).join("memory.limit_in_bytes")),
            (128u64 << 20).to_string()
        );
    }
    // --resources - reads standard input.
    let mut child = iso
        .command()
        .args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#"{"pids": {"limit": 70}}"#)
        .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        read_trimmed(&cgroup_dir("pids", &path).join("pids.max")),
        "70"
    );
    let e = iso.fails(&["update", "--pids-limit", "0", &id]);
    assert!(e.contains("linux.resources.pids.limit"), "{e}");

    iso.ok(&["delete", "--force", &id]);
    for c in ["cpu", "cpuset", "memory", "pids", "freezer"] {
        assert!(!cgroup_dir(c, &path).exists(), "{c} cgroup left behind");
    }
}

#[test]
fn delete_leaves_nothing_behind() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    let id = unique("gone");
    let pid = iso.start_detached(&b, &id);
    let exec_pf = b.path().join("e.pid");
    iso.ok(&[
        "exec",
        "-d",
        "--pid-file",
        exec_pf.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    let epid: i32 = read_trimmed(&exec_pf).parse().unwrap();
    // The container's mounts are in its own namespace, never the host's.
    assert!(mounts_under(b.path()).is_empty());
    // v2: one device program guards the cgroup, and goes with it.
    let progs = device_programs(&format!("/isoexec/{id}"));
    assert_eq!(progs.len(), usize::from(cgroup_v2()), "{progs:?}");
    iso.ok(&["delete", "--force", &id]);
    assert!(
        eventually(5, || !progs.iter().any(|p| bpf_program_exists(*p))),
        "device program {progs:?} outlived its cgroup"
    );
    assert!(!alive(pid));
    assert!(!alive(epid));
    assert!(!iso.state_dir(&id).exists());
    for c in ["cpu", "memory", "pids", "freezer", "cpuset"] {
        assert!(!cgroup_dir(c, &format!("/isoexec/{id}")).exists());
    }
    assert!(mounts_under(b.path()).is_empty());
    // Nothing was written into the bundle's root (it is read-only).
    let mut entries: Vec<String> = std::fs::read_dir(b.rootfs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["bin", "dev", "proc", "sys"]);
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing() {
    let iso = Isoexec::new();
    let empty = TempDir::new("isoexec-empty");
    let id = unique("bad");
    let e = iso.fails(&["create", "--bundle", empty.path().to_str().unwrap(), &id]);
    assert!(e.contains("config.json: no such file"), "{e}");
    assert!(!iso.state_dir(&id).exists());

    std::fs::write(
        empty.path().join("config.json"),
        "{\"ociVersion\": \"1.2.0\",\n \"process\": [",
    )
    .unwrap();
    let e = iso.fails(&["create", "--bundle", empty.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("config.json: not a valid OCI runtime spec") && e.contains("line 2"),
        "{e}"
    );

    let e = iso.fails(&["state", "no-such-id"]);
    assert!(e.contains("container \"no-such-id\" does not exist"), "{e}");
    let e = iso.fails(&[
        "create",
        "--bundle",
        empty.path().to_str().unwrap(),
        "bad/id",
    ]);
    assert!(e.contains("invalid container id"), "{e}");

    // A missing binary: reported by create, nothing left.
    let b = Bundle::busybox(&["/bin/no-such-thing"], |_| {});
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("\"/bin/no-such-thing\"") && e.contains("No such file"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    assert!(!cgroup_dir("pids", &format!("/isoexec/{id}")).exists());

    // A limit the kernel refuses (a cpu this machine does not have).
    let b = Bundle::busybox(&["true"], |c| {
        c["linux"]["resources"] = json!({"cpu": {"cpus": "1023"}});
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("cgroup /isoexec/")
            && e.contains("the kernel refused linux.resources.cpu.cpus = \"1023\""),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    for c in ["cpuset", "memory", "pids"] {
        assert!(
            !cgroup_dir(c, &format!("/isoexec/{id}")).exists(),
            "{c} left behind"
        );
    }

    // linux.resources.unified: a file the kernel does not have (v2), or
    // any key on a v1 host.
    let b = Bundle::busybox(&["true"], |c| {
        c["linux"]["resources"] = json!({"unified": {"memory.no_such_file": "1"}});
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    if cgroup_v2() {
        assert!(
            e.contains("linux.resources.unified[\"memory.no_such_file\"]")
                && e.contains("no such file"),
            "{e}"
        );
    } else {
        assert!(
            e.contains("linux.resources.unified") && e.contains("cgroup v2 host"),
            "{e}"
        );
    }
    assert!(!iso.state_dir(&id).exists());
    assert!(!cgroup_dir("memory", &format!("/isoexec/{id}")).exists());

    // A spec error names the field.
    let b = Bundle::busybox(&["true"], |c| c["process"]["cwd"] = json!("relative"));
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(e.contains("process.cwd"), "{e}");

    // Duplicate ids.
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    iso.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains(&format!("container with id \"{id}\" already exists")),
        "{e}"
    );
    // delete of a created container works without --force.
    iso.ok(&["delete", &id]);
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn json_log_format() {
    let iso = Isoexec::new();
    let log = iso.root.path().join("log.json");
    let out = iso.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "missing",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container \"missing\" does not exist");
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn flags_after_the_id() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("echo ok"), |_| {});
    let id = unique("order");
    let out = iso.run(&["run", &id, "--bundle", b.path().to_str().unwrap()]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let out = iso.run(&["state", &id, "--root", "/nonexistent"]);
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn spec_features_and_version() {
    let iso = Isoexec::new();
    let dir = TempDir::new("isoexec-spec");
    iso.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    let e = iso.fails(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(e.contains("exists"), "{e}");
    let f: serde_json::Value = serde_json::from_str(&iso.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    let v = iso.ok(&["--version"]);
    assert!(
        v.starts_with("isoexec ") && v.contains("spec: 1.2.0"),
        "{v}"
    );
}

#[test]
fn terminal_goes_to_the_console_socket() {
    use std::os::unix::net::UnixListener;
    let iso = Isoexec::new();
    let b = Bundle::busybox(&sh("tty; echo hello-tty"), |c| {
        c["process"]["terminal"] = json!(true)
    });
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let fd = recv_fd(&conn);
        // Read all the task writes on its terminal.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let (_, err, code) = iso.run_bundle(&b, &["--console-socket", sock.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = receiver.join().unwrap();
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("hello-tty"), "{out:?}");

    // Detached without a console socket there is nowhere to send it.
    let id = unique("tty");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("process.terminal is true: give --console-socket"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn recv_fd(conn: &std::os::unix::net::UnixStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: msghdr points at live buffers for the duration of recvmsg.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        let n = libc::recvmsg(conn.as_raw_fd(), &mut msg, 0);
        assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no descriptor received");
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32)
    }
}

#[test]
fn joining_another_containers_namespaces() {
    let iso = Isoexec::new();
    let a = Bundle::busybox(&["sleep", "1000"], |c| c["hostname"] = json!("pod"));
    let a_id = unique("pod");
    let a_pid = iso.start_detached(&a, &a_id);
    // B joins A's network, ipc, uts and pid namespaces, as a pod's containers do.
    let b = Bundle::busybox(
        &sh("hostname; ps -o comm | grep -c sleep; readlink /proc/self/ns/net"),
        |c| {
            c["linux"]["namespaces"] = json!([
                {"type": "mount"},
                {"type": "network", "path": format!("/proc/{a_pid}/ns/net")},
                {"type": "ipc", "path": format!("/proc/{a_pid}/ns/ipc")},
                {"type": "uts", "path": format!("/proc/{a_pid}/ns/uts")},
                {"type": "pid", "path": format!("/proc/{a_pid}/ns/pid")}
            ]);
            c.as_object_mut().unwrap().remove("hostname");
        },
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    let a_net = std::fs::read_link(format!("/proc/{a_pid}/ns/net")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pod", "B sees A's hostname");
    assert_eq!(
        lines[1], "1",
        "B sees A's sleep in the shared pid namespace"
    );
    assert_eq!(lines[2], a_net.to_str().unwrap());

    // A hostname with a joined uts namespace is set in it, as runc does
    // (podman's pods and Kubernetes' containers share the pod's).
    let c = Bundle::busybox(&["hostname"], |c| {
        c["linux"]["namespaces"] = json!([
            {"type": "mount"},
            {"type": "uts", "path": format!("/proc/{a_pid}/ns/uts")}
        ]);
        c["hostname"] = json!("renamed");
    });
    let (out, err, code) = iso.run_bundle(&c, &[]);
    assert_eq!((out.as_str(), code), ("renamed\n", 0), "{err}");
    assert_eq!(iso.ok(&["exec", &a_id, "hostname"]), "renamed\n");

    // A path that is not a namespace is a clear error, and nothing is left.
    let bad = Bundle::busybox(&["true"], |c| {
        c["linux"]["namespaces"] =
            json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/nope"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = unique("badns");
    let e = iso.fails(&["create", "--bundle", bad.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("linux.namespaces[network].path")
            && e.contains("cannot open /proc/self/ns/nope: No such file"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    iso.ok(&["delete", "--force", &a_id]);
}

#[test]
fn foreground_terminal_is_relayed() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sh"], |c| c["process"]["terminal"] = json!(true));
    let id = unique("fg");
    let out_path = b.path().join("out");
    let (code, out) = iso.interact(
        &["run", "--bundle", b.path().to_str().unwrap(), &id],
        b"tty; echo relayed-$((6*7)); exit 5\n",
        &out_path,
    );
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("relayed-42"), "{out}");

    // exec -t into a running container, relayed the same way.
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    let id = unique("fgexec");
    iso.start_detached(&b, &id);
    let (code, out) = iso.interact(&["exec", "-t", &id, "sh"], b"tty; exit 3\n", &out_path);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    iso.ok(&["delete", "--force", &id]);
}

#[test]
fn seccomp_filter_applies_to_init_and_exec() {
    let iso = Isoexec::new();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["no_such_syscall_in_any_kernel"], "action": "SCMP_ACT_ERRNO"}
        ]
    });
    let script = "mkdir /dev/shm/d || echo mkdir-refused; \
                  kill -0 $$ && echo signal-0-ok; \
                  kill -USR1 $$ || echo usr1-refused; \
                  hostname other; echo hostname-status-$?";
    let b = Bundle::busybox(&sh(script), |c| c["linux"]["seccomp"] = profile.clone());
    let (out, err, code) = iso.run_bundle(&b, &[]);
    // sethostname is killed by SIGSYS (31): 128 + 31.
    assert_eq!(
        out, "mkdir-refused\nsignal-0-ok\nusr1-refused\nhostname-status-159\n",
        "{err}"
    );
    assert!(
        err.contains("Operation not permitted") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(code, 0);

    // Without the profile the same calls work.
    let b2 = Bundle::busybox(&sh("mkdir /dev/shm/d && uname -s"), |_| {});
    let (out, _, code) = iso.run_bundle(&b2, &[]);
    assert_eq!((out.as_str(), code), ("Linux\n", 0));

    // A process exec'd into the container gets the container's filter.
    let b3 = Bundle::busybox(&["sleep", "1000"], |c| {
        c["linux"]["seccomp"] = profile.clone()
    });
    let id = unique("seccomp");
    iso.start_detached(&b3, &id);
    let out = iso.run(&["exec", &id, "hostname", "x"]);
    assert_eq!(out.status.code(), Some(128 + 31), "killed by SIGSYS");
    let out = iso.run(&["exec", &id, "mkdir", "/dev/shm/e"]);
    assert!(stderr(&out).contains("Operation not permitted"));
    iso.ok(&["delete", "--force", &id]);

    // An unsupported action is refused before anything starts.
    let b4 = Bundle::busybox(&["true"], |c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY"});
    });
    let id = unique("seccomp");
    let e = iso.fails(&["create", "--bundle", b4.path().to_str().unwrap(), &id]);
    assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn systemd_cgroup_path_form() {
    // `slice:prefix:name`, as containerd and Kubernetes' systemd driver
    // give it: the slice nests as systemd would nest it, on v1 and v2.
    let iso = Isoexec::new();
    let id = unique("sd");
    let slice = format!("isoexectest{}", std::process::id());
    let b = Bundle::busybox(&["sleep", "1000"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("{slice}-pod.slice:isoexec:{id}"));
        c["linux"]["resources"] = json!({"pids": {"limit": 33}});
    });
    iso.ok(&[
        "--systemd-cgroup",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let path = format!("/{slice}.slice/{slice}-pod.slice/isoexec-{id}.scope");
    let pids = cgroup_dir("pids", &path);
    assert_eq!(read_trimmed(&pids.join("pids.max")), "33");
    iso.ok(&["delete", "--force", &id]);
    assert!(!pids.exists());
    // The slices are the caller's (systemd's) to remove.
    for c in [
        "pids", "cpu", "cpuacct", "cpuset", "memory", "freezer", "devices",
    ] {
        let top = cgroup_dir(c, &format!("/{slice}.slice"));
        let _ = std::fs::remove_dir(top.join(format!("{slice}-pod.slice")));
        let _ = std::fs::remove_dir(&top);
        if cgroup_v2() {
            break;
        }
    }
}

#[test]
fn state_is_readable_by_root_only() {
    // The attack: any host user reads a task's environment (its secrets)
    // from the runtime's state. Roots are 0700, state files 0600.
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["sleep", "1000"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "API_TOKEN=hunter2-secret"]);
    });
    let id = unique("secret");
    iso.start_detached(&b, &id);
    let dir = iso.state_dir(&id);
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode(dir.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let state = dir.join("state.json");
    assert!(std::fs::read_to_string(&state)
        .unwrap()
        .contains("hunter2-secret"));
    assert_eq!(mode(&state), 0o600);
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && !stdout(&o).contains("hunter2"),
        "{}",
        stdout(&o)
    );
    iso.ok(&["delete", "--force", &id]);
}

/// A process of no container's, for a cgroup a create must not take.
fn bystander() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap()
}

/// A create in cgroupsPath `path`, which holds the bystander: refused,
/// naming the field and its pid, with no state left and the bystander
/// alive.
fn create_refused_for(iso: &Isoexec, path: &str, bystander: &std::process::Child) {
    let pid = bystander.id().to_string();
    let b = Bundle::busybox(&["true"], |c| c["linux"]["cgroupsPath"] = json!(path));
    let id = unique("occupied");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("linux.cgroupsPath")
            && e.contains("already holds processes")
            && e.contains(&pid),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    assert!(alive(bystander.id() as i32), "the bystander was killed");
}

#[test]
fn an_occupied_cgroup_is_refused_and_its_processes_untouched() {
    // The hazard: a cgroupsPath naming a cgroup that holds someone else's
    // processes. Taken as the container's, delete (or a failed create's
    // undo) would SIGKILL them. runc 1.2 refuses it; so does isoexec.
    let iso = Isoexec::new();
    let path = format!("/{}", unique("isoexec-occupied"));
    let mut bystander = bystander();
    let pid = bystander.id().to_string();
    let controllers = task_hierarchies();
    for c in controllers {
        let d = cgroup_dir(c, &path);
        std::fs::create_dir_all(&d).unwrap();
        if *c == "cpuset" {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(cgroup_dir(c, "/").join(f)).unwrap();
                std::fs::write(d.join(f), v.trim()).unwrap();
            }
        }
        std::fs::write(d.join("cgroup.procs"), &pid).unwrap();
    }
    create_refused_for(&iso, &path, &bystander);
    assert!(cgroup_dir(controllers[0], &path).exists());
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    for c in controllers {
        let d = cgroup_dir(c, &path);
        assert!(eventually(5, || std::fs::remove_dir(&d).is_ok() || !d.exists()));
    }
}

#[test]
fn a_cgroup_occupied_in_one_hierarchy_is_refused_and_the_others_undone() {
    // The same hazard where only one v1 hierarchy (here the freezer, the
    // last one a create makes) holds the bystander: the create finds it
    // at its mkdir there, after it made the cgroup in the others. It is
    // refused all the same; what it made goes, what it found stays.
    let iso = Isoexec::new();
    let top = unique("isoexec-occupied1");
    let path = format!("/{top}/leaf");
    let mut bystander = bystander();
    let pid = bystander.id().to_string();
    let controllers = task_hierarchies();
    let occupied = if cgroup_v2() { "" } else { "freezer" };
    let d = cgroup_dir(occupied, &path);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("cgroup.procs"), &pid).unwrap();
    create_refused_for(&iso, &path, &bystander);
    assert_eq!(read_trimmed(&d.join("cgroup.procs")), pid);
    for c in controllers.iter().filter(|c| **c != occupied) {
        let top_dir = cgroup_dir(c, &format!("/{top}"));
        assert!(!top_dir.exists(), "{} left behind", top_dir.display());
    }
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert!(eventually(5, || std::fs::remove_dir(&d).is_ok()));
    let _ = std::fs::remove_dir(cgroup_dir(occupied, &format!("/{top}")));
}

#[test]
fn a_new_cgroup_path_gets_its_cpus_and_passes_them_on() {
    // v1 cpuset: a cgroup without CPUs or memory nodes takes no task, so
    // every directory a create makes there gets its parent's, and the
    // parents it makes hand theirs to later children themselves
    // (cgroup.clone_children), which spares each next create the copy.
    if cgroup_v2() {
        return; // v2 cpusets are inherited by the kernel.
    }
    let iso = Isoexec::new();
    let top = unique("isoexec-cpuset");
    let b = Bundle::busybox(&["cat", "/proc/self/status"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/{top}/mid/leaf"))
    });
    let id = unique("cpuset");
    let out = iso.ok(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let root = |f: &str| read_trimmed(&Path::new("/sys/fs/cgroup/cpuset").join(f));
    let allowed = out
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    assert_eq!(allowed, root("cpuset.cpus"), "{out}");
    for dir in [format!("/{top}"), format!("/{top}/mid")] {
        let d = cgroup_dir("cpuset", &dir);
        assert_eq!(read_trimmed(&d.join("cgroup.clone_children")), "1");
        assert_eq!(read_trimmed(&d.join("cpuset.cpus")), root("cpuset.cpus"));
        assert_eq!(read_trimmed(&d.join("cpuset.mems")), root("cpuset.mems"));
    }
    // The task's own directory went with it; its parents stay, as runc
    // leaves them.
    assert!(!cgroup_dir("cpuset", &format!("/{top}/mid/leaf")).exists());
    for c in task_hierarchies() {
        let _ = std::fs::remove_dir(cgroup_dir(c, &format!("/{top}/mid")));
        let _ = std::fs::remove_dir(cgroup_dir(c, &format!("/{top}")));
    }
}

#[test]
fn a_namespace_path_must_be_a_namespace_of_its_kind() {
    // The hazard: a linux.namespaces[].path naming a fifo made create hang
    // forever (the init blocked opening it). Now refused before the init
    // exists, as is a plain file or a namespace of another kind.
    let iso = Isoexec::new();
    let dir = TempDir::new("isoexec-ns");
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let cases = [
        (fifo.display().to_string(), "network"),
        (file.display().to_string(), "network"),
        ("/proc/self/ns/uts".to_string(), "network"),
        (fifo.display().to_string(), "pid"),
    ];
    for (path, kind) in cases {
        let b = Bundle::busybox(&["true"], |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != kind);
            ns.push(json!({"type": kind, "path": path}));
        });
        let id = unique("ns");
        let start = std::time::Instant::now();
        let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "create hung"
        );
        assert!(
            e.contains(&format!("linux.namespaces[{kind}].path"))
                && e.contains(&format!("is not a {kind} namespace")),
            "{path} as {kind}: {e}"
        );
        assert!(!iso.state_dir(&id).exists());
        assert!(!cgroup_dir("pids", &format!("/isoexec/{id}")).exists());
    }
}

#[test]
fn delete_force_cleans_up_a_create_that_died() {
    // A create killed while its init is still setting up (here: the init
    // joined a frozen cgroup) left a state directory `list` showed as
    // creating, which delete --force could not remove.
    let iso = Isoexec::new();
    let path = format!("/{}", unique("isoexec-frozen"));
    let freezer = cgroup_dir("freezer", &path);
    std::fs::create_dir_all(&freezer).unwrap();
    if cgroup_v2() {
        std::fs::write(freezer.join("cgroup.freeze"), "1").unwrap();
    } else {
        std::fs::write(freezer.join("freezer.state"), "FROZEN").unwrap();
    }
    let b = Bundle::busybox(&["true"], |c| c["linux"]["cgroupsPath"] = json!(path));
    let id = unique("stuck");
    let mut create = iso
        .command()
        .args(["create", "--bundle", b.path().to_str().unwrap(), &id])
        .spawn()
        .unwrap();
    assert!(
        eventually(10, || iso
            .ok(&["list"])
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("creating"))),
        "{}",
        iso.ok(&["list"])
    );
    let procs = || std::fs::read_to_string(freezer.join("cgroup.procs")).unwrap_or_default();
    assert!(
        eventually(10, || !procs().trim().is_empty()),
        "the init joined its cgroup"
    );
    create.kill().unwrap();
    create.wait().unwrap();
    let stuck: Vec<i32> = procs()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(iso.state(&id)["status"], "creating");
    let e = iso.fails(&["delete", &id]);
    assert!(e.contains("delete --force"), "{e}");
    iso.ok(&["delete", "--force", &id]);
    assert!(!iso.state_dir(&id).exists());
    assert!(
        eventually(5, || stuck.iter().all(|p| !alive(*p))),
        "{stuck:?}"
    );
    let controllers = task_hierarchies();
    for c in controllers {
        let d = cgroup_dir(c, &path);
        assert!(
            eventually(5, || !d.exists() || std::fs::remove_dir(&d).is_ok()),
            "{}",
            d.display()
        );
    }
}

/// CVE-2019-5736, as the attack: the task plants `#!/proc/self/exe` and
/// waits; the operator runs `isoexec exec` of it, which makes the kernel
/// run the runtime's own binary inside the task; the task stops that
/// process, keeps its exe open, kills it and writes through the handle.
/// The runtime runs from a read-only copy of itself: the write is refused
/// and the binary (a copy, so a failure harms nothing) is unchanged; the
/// runtime's processes are not dumpable before they exec, so no early
/// handle opens either.
#[test]
fn cve_2019_5736_a_task_cannot_overwrite_the_runtime_binary() {
    let bin = TempDir::new("isoexec-bin");
    let mut iso = Isoexec::new();
    let exe = binary_copy("isoexec", bin.path());
    let before = std::fs::read(&exe).unwrap();
    iso.exe = Some(exe.clone());
    exec_attack(&iso, &exe, &before, |_| {});
}

/// The attack of CVE-2019-5736 through `isoexec exec` (see above) against
/// `iso`'s binary `exe` (`before`: its bytes), in a container whose spec
/// `patch` changes: it must fail.
fn exec_attack(
    iso: &Isoexec,
    exe: &Path,
    before: &[u8],
    patch: impl FnOnce(&mut serde_json::Value),
) {
    let b = Bundle::busybox(
        &sh("printf '#!/proc/self/exe\\n' > /attack; chmod 755 /attack; exec /watch /result"),
        |c| {
            c["root"]["readonly"] = json!(false);
            patch(c);
        },
    );
    exe_watch(&b.rootfs().join("watch"));
    copy_libraries(exe, &b.rootfs());
    let id = unique("cve-2019-5736");
    iso.start_detached(&b, &id);
    assert!(eventually(10, || b.rootfs().join("attack").exists()));

    let result = b.rootfs().join("result");
    exe_attack_catch(&result, 20, || {
        iso.run(&["exec", &id, "/attack"]);
    });
    let verdict = exe_attack_verdict(&result);
    assert_exe_attack_failed(&verdict, exe, before, &result);
    iso.ok(&["delete", "--force", &id]);
}

/// CVE-2019-5736 with an immutable binary, as `make install` leaves the
/// command line: it runs as it is, without the sealed re-exec, and the
/// same attack fails: the task can neither clear the flag (it does not
/// hold CAP_LINUX_IMMUTABLE) nor write. A task that holds the capability
/// could clear it: for that one the runtime re-executes from its
/// read-only overlay first, and the attack, clearing the flag before it
/// writes, fails too. Both ways the binary is unchanged and immutable.
#[test]
fn cve_2019_5736_an_immutable_binary_runs_as_it_is_and_stays_unwritten() {
    for holds_cap in [false, true] {
        let bin = ImmutableBinary::new("isoexec");
        let before = std::fs::read(&bin.path).unwrap();
        let mut iso = if holds_cap {
            Isoexec::with_config("allow_caps = [\"all\"]\n")
        } else {
            Isoexec::new()
        };
        iso.exe = Some(bin.path.clone());
        let caps = |c: &mut serde_json::Value| {
            if holds_cap {
                for set in ["bounding", "effective", "permitted"] {
                    c["process"]["capabilities"][set]
                        .as_array_mut()
                        .unwrap()
                        .push(json!("CAP_LINUX_IMMUTABLE"));
                }
            }
        };
        // How the runtime ran: sealed by the flag alone, or re-executed.
        let quick = Bundle::busybox(&["true"], caps);
        let out = iso.run(&[
            "--debug",
            "run",
            "--bundle",
            quick.path().to_str().unwrap(),
            &unique("immutable"),
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        if holds_cap {
            assert!(
                err.contains("re-executing sealed") && err.contains("exe sealed: ReadOnly"),
                "{err}"
            );
        } else {
            assert!(
                err.contains("exe sealed: Immutable") && !err.contains("re-executing"),
                "{err}"
            );
        }

        exec_attack(&iso, &bin.path, &before, caps);
        assert!(
            isoexec_tests::is_immutable(&bin.path),
            "the flag was cleared (holds_cap {holds_cap})"
        );
    }
}

/// The mount-destination race (CVE-2021-30465, CVE-2024-45310), as the
/// attack: a running container swaps, as fast as it can, a directory of a
/// volume it shares with another container for a symlink to a host
/// directory, while the operator creates that other container with a
/// mount under the directory. Destinations are resolved inside the root by
/// descriptor and mounted onto: the host directory's file is never
/// truncated and it gets no new entry, whatever each create answered.
#[test]
fn mount_destinations_swapped_for_symlinks_never_reach_the_host() {
    let iso = Isoexec::new();
    let victim = race_victim();
    let vol = TempDir::new("isoexec-volume");
    let src = vol.path().join("src");
    std::fs::write(&src, "bound").unwrap();
    let volume = json!({"destination": "/vol", "type": "bind",
        "source": vol.path(), "options": ["rbind", "rw"]});
    let attacker = Bundle::busybox(
        &sh(&format!(
            "mkdir /vol/x && ln -s {} /vol/l && exec /swap /vol/x /vol/l",
            victim.path().display()
        )),
        |c| c["mounts"].as_array_mut().unwrap().push(volume.clone()),
    );
    swapper(&attacker.rootfs().join("swap"));
    let a = unique("swapper");
    iso.start_detached(&attacker, &a);
    assert!(eventually(5, || vol.path().join("l").exists()));

    let (mut made, mut refused) = (0, 0);
    for i in 0..40 {
        let dest = if i % 2 == 0 {
            "/vol/x/f"
        } else {
            "/vol/x/new/f"
        };
        let b = Bundle::busybox(&["true"], |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(volume.clone());
            m.push(json!({"destination": dest, "type": "bind",
                "source": src, "options": ["bind", "ro"]}));
        });
        let id = unique("victim");
        let out = iso.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        if out.status.success() {
            made += 1;
            iso.ok(&["delete", "--force", &id]);
        } else {
            refused += 1;
        }
    }
    eprintln!("containers created under the swapping directory: {made}, refused: {refused}");
    iso.ok(&["delete", "--force", &a]);
    assert_victim_untouched(victim.path());
}

/// CVE-2019-19921 / CVE-2019-16884: an image whose /proc is a symlink
/// (here to /tmp/fake) would have proc mounted elsewhere, and the
/// runtime's later writes through /proc (sysctls, masks) land on what the
/// image put there. Refused with the reason, and nothing is left.
#[test]
fn proc_on_a_symlink_is_refused() {
    let iso = Isoexec::new();
    let b = Bundle::busybox(&["true"], |_| {});
    std::fs::create_dir_all(b.rootfs().join("tmp/fake")).unwrap();
    std::os::unix::fs::symlink("/tmp/fake", b.rootfs().join("proc")).unwrap();
    let id = unique("proclink");
    let err = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("proc at /proc: the root's /proc is a symlink (it leads to /tmp/fake)"),
        "{err}"
    );
    assert!(iso.fails(&["state", &id]).contains("does not exist"));
    assert!(mounts_under(&b.rootfs()).is_empty());
}

/// Mount propagation as runc does it: with `rootfsPropagation: rshared`
/// and an `rshared` volume (Kubernetes' Bidirectional), a mount made in
/// the container under the volume appears on the host; by default
/// (rslave) it does not.
#[test]
fn rshared_volume_mounts_reach_the_host() {
    // Mounting needs CAP_SYS_ADMIN, which the driver's policy must allow.
    let iso = Isoexec::with_config("allow_caps = [\"all\"]\n");
    let vol = TempDir::new("isoexec-shared");
    let host_mount = |args: &[&str]| {
        let o = std::process::Command::new("mount")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount {args:?}: {}", stderr(&o));
    };
    // A shared mount on the host, as a kubelet's volume is; unmounted
    // (with whatever reached it) even when an assertion fails.
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for sub in ["shared-root", "shared", "private", ""] {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(self.0.join(sub))
                    .output();
            }
        }
    }
    let v = vol.path().to_str().unwrap();
    host_mount(&["--bind", v, v]);
    let _unmount = Unmount(vol.path().to_path_buf());
    host_mount(&["--make-shared", v]);
    let run = |root_prop: Option<&str>, sub: &str, root_mounted: bool| {
        let b = Bundle::busybox(
            &sh(&format!(
                "mkdir -p /vol/{sub} && mount -t tmpfs -o size=1m tmpfs /vol/{sub} && echo mounted"
            )),
            |c| {
                let caps = json!(["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE"]);
                c["process"]["capabilities"] =
                    json!({"bounding": caps, "effective": caps, "permitted": caps});
                if let Some(p) = root_prop {
                    c["linux"]["rootfsPropagation"] = json!(p);
                }
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/vol", "type": "bind", "source": v,
                    "options": ["rbind", "rshared"]}));
            },
        );
        // containerd's rootfs is a mount of its own (the snapshot), shared
        // in a shared tree: pivot_root refuses a shared new root.
        let rootfs = b.dir.path().join("rootfs");
        let _root_unmount = root_mounted.then(|| {
            let r = rootfs.to_str().unwrap();
            host_mount(&["--bind", r, r]);
            host_mount(&["--make-shared", r]);
            Unmount(rootfs.clone())
        });
        iso.run_bundle(&b, &[])
    };
    let on_host = |sub: &str| mounts_under(vol.path()).iter().any(|m| m.ends_with(sub));
    let (out, err, code) = run(Some("rshared"), "shared", false);
    assert_eq!((out.as_str(), code), ("mounted\n", 0), "{err}");
    let reached = on_host("shared");
    let (out, err, code) = run(Some("rshared"), "shared-root", true);
    assert_eq!(
        (out.as_str(), code),
        ("mounted\n", 0),
        "rootfs a shared mount: {err}"
    );
    assert!(
        on_host("shared-root"),
        "with the rootfs a mount point, the rshared volume's mount is not on the host"
    );
    let (out, err, code) = run(None, "private", false);
    assert_eq!((out.as_str(), code), ("mounted\n", 0), "{err}");
    let leaked = on_host("private");
    assert!(
        reached,
        "the container's mount under the rshared volume is not on the host"
    );
    assert!(
        !leaked,
        "a container without rootfsPropagation rshared propagated to the host"
    );
}

/// A hook that logs one line to `log`: its kind, its mount namespace, the
/// state it read and its whole environment, then exits with `code`.
fn logging_hook(kind: &str, script: &Path, log: &str, code: i32) -> serde_json::Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", script.to_str().unwrap(), kind, log, code.to_string()],
        "env": [format!("HOOK_KIND={kind}")],
    })
}

const HOOK_SCRIPT: &str = "state=$(cat)\n\
    echo \"$1 $(readlink /proc/self/ns/mnt) $state $(cat /proc/self/environ | tr '\\0' ' ')\" >> \"$2\"\n\
    [ \"$3\" = 0 ] || echo \"$1 says no\" >&2\n\
    exit \"$3\"\n";

/// (kind, mount namespace, state, environment) of each logged hook.
fn hook_log(path: &Path) -> Vec<(String, String, serde_json::Value, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            // Lines of the hooks only: the container's process writes too.
            let mut f = l.splitn(4, ' ');
            let kind = f.next()?.to_string();
            let ns = f.next()?.to_string();
            let state = serde_json::from_str(f.next()?).unwrap();
            Some((kind, ns, state, f.next().unwrap_or("").trim().to_string()))
        })
        .collect()
}

#[test]
fn hooks_run_in_order_in_their_namespaces_with_the_state() {
    let iso = Isoexec::new();
    let mut b = Bundle::busybox(&["sh", "-c", "echo main >> /hooks.log"], |c| {
        c["root"]["readonly"] = json!(false);
    });
    let script = b.path().join("hook.sh");
    std::fs::write(&script, HOOK_SCRIPT).unwrap();
    // Inside the container for startContainer: its own sh and a copy.
    std::fs::write(b.rootfs().join("hook.sh"), HOOK_SCRIPT).unwrap();
    let log = b.path().join("hooks.log");
    let host_log = log.to_str().unwrap();
    b.config["hooks"] = json!({
        "prestart": [logging_hook("prestart", &script, host_log, 0)],
        "createRuntime": [logging_hook("createRuntime", &script, host_log, 0)],
        "createContainer": [logging_hook("createContainer", &script, host_log, 0)],
        "startContainer": [logging_hook("startContainer", Path::new("/hook.sh"), "/hooks.log", 0)],
        "poststart": [logging_hook("poststart", &script, host_log, 0)],
        "poststop": [logging_hook("poststop", &script, host_log, 0)],
    });
    b.save();
    let id = unique("hooks");
    iso.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = iso.state(&id)["pid"].as_i64().unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_ns = host_ns.to_str().unwrap();
    let container_ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let container_ns = container_ns.to_str().unwrap();

    let created = hook_log(&log);
    let kinds: Vec<&str> = created.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(kinds, ["prestart", "createRuntime", "createContainer"]);
    for (kind, ns, state, env) in &created {
        assert_eq!(state["status"], "created", "{kind}: {state}");
        assert_eq!(state["pid"], pid, "{kind}: {state}");
        assert_eq!(state["id"], json!(id));
        assert_eq!(state["bundle"], json!(b.path()));
        assert_eq!(
            state["annotations"]["io.isoexec.chroot_env"], "none",
            "{state}"
        );
        // Exactly the hook's environment: nothing of the runtime's.
        assert!(env.contains(&format!("HOOK_KIND={kind}")), "{kind}: {env}");
        assert!(
            !env.contains("PATH=") && !env.contains("HOME="),
            "{kind}: {env}"
        );
        let want = if kind == "createContainer" {
            container_ns
        } else {
            host_ns
        };
        assert_eq!(ns, want, "{kind} ran in the wrong mount namespace");
    }
    assert!(
        !b.rootfs().join("hooks.log").exists(),
        "startContainer ran at create"
    );

    iso.ok(&["start", &id]);
    assert!(eventually(5, || iso.status(&id) == "stopped"));
    // startContainer: in the container (its root, its namespace), before
    // the process, which then ran.
    let inside = hook_log(&b.rootfs().join("hooks.log"));
    assert_eq!(inside.len(), 1, "{inside:?}");
    assert_eq!(inside[0].0, "startContainer");
    assert_eq!(inside[0].1, container_ns);
    assert_eq!(inside[0].2["status"], "created");
    assert_eq!(inside[0].2["pid"], pid);
    let text = std::fs::read_to_string(b.rootfs().join("hooks.log")).unwrap();
    assert!(text.ends_with("main\n"), "{text}");
    let after_start = hook_log(&log);
    assert_eq!(after_start.len(), 4);
    assert_eq!(after_start[3].0, "poststart");
    assert_eq!(after_start[3].1, host_ns);
    assert_eq!(after_start[3].2["status"], "running");

    iso.ok(&["delete", &id]);
    let all = hook_log(&log);
    assert_eq!(all.len(), 5);
    let (kind, ns, state, _) = &all[4];
    assert_eq!((kind.as_str(), ns.as_str()), ("poststop", host_ns));
    assert_eq!(state["status"], "stopped");
    assert!(state.get("pid").is_none(), "{state}");
    assert!(!iso.state_dir(&id).exists());
    let f: serde_json::Value = serde_json::from_str(&iso.ok(&["features"])).unwrap();
    assert_eq!(
        f["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
}

#[test]
fn failing_hooks_fail_the_step_naming_the_hook_and_leave_nothing() {
    let iso = Isoexec::new();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut b = Bundle::busybox(&["true"], |_| {});
        let script = b.path().join("hook.sh");
        std::fs::write(&script, HOOK_SCRIPT).unwrap();
        let log = b.path().join("hooks.log");
        let log = log.to_str().unwrap();
        b.config["hooks"] = json!({
            kind: [logging_hook(kind, &script, log, 3)],
            "poststop": [logging_hook("poststop", &script, log, 0)],
        });
        b.save();
        let id = unique("hookfail");
        let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(
            e.contains(&format!(
                "hook hooks.{kind}[0] (/bin/sh): exited with status 3: {kind} says no"
            )),
            "{e}"
        );
        assert!(!iso.state_dir(&id).exists(), "{kind}: state left");
        for c in ["memory", "pids", "cpu", "freezer"] {
            assert!(
                !cgroup_dir(c, &format!("/isoexec/{id}")).exists(),
                "{kind}: {c} cgroup left"
            );
        }
        assert!(mounts_under(b.path()).is_empty());
        // As after a delete: the container existed, its poststop ran.
        let kinds: Vec<String> = hook_log(Path::new(log)).into_iter().map(|h| h.0).collect();
        assert_eq!(kinds, [kind, "poststop"]);
    }

    // startContainer: start fails, the process never ran.
    let mut b = Bundle::busybox(&["sh", "-c", "echo ran > /ran"], |c| {
        c["root"]["readonly"] = json!(false);
    });
    std::fs::write(b.rootfs().join("hook.sh"), HOOK_SCRIPT).unwrap();
    b.config["hooks"] = json!({
        "startContainer": [logging_hook("startContainer", Path::new("/hook.sh"), "/hooks.log", 4)],
    });
    b.save();
    let id = unique("hookfail");
    iso.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let e = iso.fails(&["start", &id]);
    assert!(
        e.contains(
            "hooks.startContainer[0] (/bin/sh): exited with status 4: startContainer says no"
        ),
        "{e}"
    );
    assert!(eventually(5, || iso.status(&id) == "stopped"));
    assert!(
        !b.rootfs().join("ran").exists(),
        "the process ran after a failed startContainer"
    );
    iso.ok(&["delete", &id]);

    // poststart and poststop: warnings (to --log), the lifecycle goes on.
    let mut b = Bundle::busybox(&["true"], |_| {});
    let script = b.path().join("hook.sh");
    std::fs::write(&script, HOOK_SCRIPT).unwrap();
    let log = b.path().join("hooks.log");
    let log = log.to_str().unwrap();
    b.config["hooks"] = json!({
        "poststart": [logging_hook("poststart", &script, log, 5), logging_hook("poststart", &script, log, 0)],
        "poststop": [logging_hook("poststop", &script, log, 6)],
    });
    b.save();
    let runtime_log = b.path().join("runtime.log");
    let (out, err, code) = iso.run_bundle(&b, &["--log", runtime_log.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let kinds: Vec<String> = hook_log(Path::new(log)).into_iter().map(|h| h.0).collect();
    assert_eq!(kinds, ["poststart", "poststart", "poststop"]);
    let text = std::fs::read_to_string(&runtime_log).unwrap();
    assert!(
        text.contains("hooks.poststart[0] (/bin/sh): exited with status 5"),
        "{text}"
    );
    assert!(
        text.contains("hooks.poststop[0] (/bin/sh): exited with status 6"),
        "{text}"
    );
    assert!(!err.contains("hooks."), "warnings went to stderr: {err}");
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_fails_the_create() {
    let iso = Isoexec::new();
    let marker = TempDir::new("isoexec-hook");
    let pidfile = marker.path().join("hook.pid");
    let b = Bundle::busybox(&["true"], |c| {
        c["hooks"] = json!({
            "createRuntime": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 60", pidfile.display())],
                "timeout": 1,
            }],
        });
    });
    let id = unique("hooktime");
    let t = std::time::Instant::now();
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    assert!(
        e.contains("hooks.createRuntime[0] (/bin/sh): did not finish within its timeout of 1 s and was killed"),
        "{e}"
    );
    let hook: i32 = read_trimmed(&pidfile).parse().unwrap();
    assert!(!alive(hook), "the hook outlived its timeout");
    assert!(!iso.state_dir(&id).exists());

    let b = Bundle::busybox(&["true"], |c| {
        c["hooks"] = json!({ "prestart": [{ "path": "bin/true" }] });
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(e.contains("invalid hooks.prestart[0].path"), "{e}");
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn seccomp_is_loaded_last_so_a_profile_may_deny_the_runtimes_own_calls() {
    // What the runtime calls after its set-up (the working directory, the
    // credentials, the executable's lookup, the start fifo) may be denied
    // by a profile: the filter comes right before execve, with and without
    // noNewPrivileges. Without it, CAP_SYS_ADMIN (which the load needs)
    // does not reach the process.
    let iso = Isoexec::new();
    let denied = [
        "getcwd",
        "capset",
        "setresuid",
        "setresgid",
        "setgroups",
        "close_range",
        "fcntl",
        "prctl",
        "chdir",
        "poll",
        "sendmsg",
        "sendto",
        "newfstatat",
        "statx",
        "access",
    ];
    for (nnp, uid) in [(true, 0), (false, 0), (false, 1000)] {
        let args = [
            "/bin/grep",
            "-E",
            "^(Seccomp|CapEff|CapPrm):",
            "/proc/self/status",
        ];
        let b = Bundle::busybox(&args, |c| {
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["process"]["user"] = json!({"uid": uid, "gid": uid});
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO"}],
            });
        });
        let (out, err, code) = iso.run_bundle(&b, &[]);
        assert_eq!(code, 0, "nnp {nnp} uid {uid}: {out}{err}");
        assert!(out.contains("Seccomp:\t2"), "{out}");
        let eff = out
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:\t"))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(
            eff & (1 << 21),
            0,
            "CAP_SYS_ADMIN reached the process: {out}"
        );
        if uid != 0 {
            assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
            assert!(out.contains("CapPrm:\t0000000000000000"), "{out}");
        }
    }
}

/// MAJOR:MINOR of a block device of this machine (a disk if there is one).
fn a_block_device() -> Option<String> {
    let mut devs: Vec<(String, String)> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            Some((name, dev.trim().to_string()))
        })
        .collect();
    devs.sort_by_key(|(n, _)| {
        n.starts_with("loop") || n.starts_with("zram") || n.starts_with("ram")
    });
    devs.into_iter().next().map(|(_, d)| d)
}

#[test]
fn block_io_oom_killer_kernel_tcp_hugepages_and_network_applied_or_refused_by_name() {
    let iso = Isoexec::new();
    let v2 = cgroup_v2();
    let create = |resources: serde_json::Value, args: &[&str]| {
        let b = Bundle::busybox(args, |c| c["linux"]["resources"] = resources);
        let id = unique("res");
        let o = iso.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        (b, id, o)
    };
    let refused = |o: &std::process::Output, words: &[&str]| {
        assert!(!o.status.success(), "should have failed");
        let e = stderr(o);
        for w in words {
            assert!(e.contains(w), "{w:?} not in {e}");
        }
    };

    // blockIO throttles: blkio.throttle.* on v1, io.max on v2.
    if let Some(dev) = a_block_device() {
        let (maj, min) = dev.split_once(':').unwrap();
        let (maj, min): (i64, i64) = (maj.parse().unwrap(), min.parse().unwrap());
        let (_b, id, o) = create(
            json!({"blockIO": {"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                               "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 120}]}}),
            &["sleep", "100"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let path = format!("/isoexec/{id}");
        if v2 {
            let max = read_trimmed(&cgroup_dir("", &path).join("io.max"));
            assert!(
                max.contains(&format!("{dev} rbps=1048576")) && max.contains("wiops=120"),
                "{max}"
            );
        } else {
            let dir = cgroup_dir("blkio", &path);
            assert_eq!(
                read_trimmed(&dir.join("blkio.throttle.read_bps_device")),
                format!("{dev} 1048576")
            );
            assert_eq!(
                read_trimmed(&dir.join("blkio.throttle.write_iops_device")),
                format!("{dev} 120")
            );
        }
        iso.ok(&["delete", "--force", &id]);
        assert!(
            !cgroup_dir("blkio", &path).exists(),
            "the blkio cgroup outlived the task"
        );
    } else {
        eprintln!("no block device on this machine: blockIO not tried");
    }

    // The OOM killer off: a task over its limit waits instead of dying.
    // (The shell grows its string in user space: a fault there waits, where
    // one inside a system call would fail the call instead.)
    let (_b, id, o) = create(
        json!({"memory": {"limit": 16 << 20, "disableOOMKiller": true}}),
        &sh("x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo survived"),
    );
    if v2 {
        refused(
            &o,
            &[
                "disableOOMKiller",
                "cgroup v2 cannot turn the OOM killer off",
            ],
        );
    } else {
        assert!(o.status.success(), "{}", stderr(&o));
        iso.ok(&["start", &id]);
        let control = cgroup_dir("memory", &format!("/isoexec/{id}")).join("memory.oom_control");
        assert!(
            eventually(10, || read_trimmed(&control).contains("under_oom 1")),
            "{}",
            read_trimmed(&control)
        );
        assert!(read_trimmed(&control).contains("oom_kill_disable 1"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            iso.status(&id),
            "running",
            "killed although the OOM killer is off"
        );
        iso.ok(&["delete", "--force", &id]);
    }

    // Kernel TCP memory: memory.kmem.tcp on v1; v2 has none apart.
    let (_b, id, o) = create(json!({"memory": {"kernelTCP": 4 << 20}}), &["true"]);
    if v2 {
        refused(
            &o,
            &[
                "linux.resources.memory.kernelTCP",
                "cgroup v2 has no separate kernel memory",
            ],
        );
    } else {
        assert!(o.status.success(), "{}", stderr(&o));
        let f =
            cgroup_dir("memory", &format!("/isoexec/{id}")).join("memory.kmem.tcp.limit_in_bytes");
        assert_eq!(read_trimmed(&f), (4 << 20).to_string());
        iso.ok(&["delete", "--force", &id]);
    }

    // Hugepages and the network classes: applied where the controller is,
    // refused by name where it is not.
    let (_b, id, o) = create(
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}),
        &["true"],
    );
    let hugetlb = if v2 {
        read_trimmed(Path::new("/sys/fs/cgroup/cgroup.controllers")).contains("hugetlb")
    } else {
        Path::new("/sys/fs/cgroup/hugetlb").exists()
    };
    if hugetlb {
        assert!(o.status.success(), "{}", stderr(&o));
        let file = if v2 {
            "hugetlb.2MB.max"
        } else {
            "hugetlb.2MB.limit_in_bytes"
        };
        let f = cgroup_dir("hugetlb", &format!("/isoexec/{id}")).join(file);
        assert_eq!(read_trimmed(&f), (4 << 20).to_string());
        iso.ok(&["delete", "--force", &id]);
    } else if v2 {
        refused(
            &o,
            &["linux.resources.hugepageLimits[0]", "hugetlb.2MB.max"],
        );
    } else {
        refused(
            &o,
            &["linux.resources.hugepageLimits[0] needs the hugetlb controller"],
        );
    }
    assert!(!iso.state_dir(&id).exists());
    let (_b, id, o) = create(json!({"network": {"classID": 1048577}}), &["true"]);
    if v2 {
        refused(&o, &["linux.resources.network", "no net_cls or net_prio"]);
    } else if Path::new("/sys/fs/cgroup/net_cls").exists() {
        assert!(o.status.success(), "{}", stderr(&o));
        iso.ok(&["delete", "--force", &id]);
    } else {
        refused(
            &o,
            &["linux.resources.network.classID needs the net_cls controller"],
        );
    }
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn an_init_that_dies_during_its_set_up_is_reported_with_how_and_where() {
    let iso = Isoexec::new();
    // Killed from outside while it waits for the runtime's hooks.
    let b = Bundle::busybox(&["true"], |c| {
        c["hooks"] = json!({"prestart": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "pid=$(cat | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); kill -9 $pid"],
        }]});
    });
    let id = unique("died");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("the container init was killed by SIGKILL during its set-up (at \"init: hooks of create\")"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    // Killed by the kernel for its memory limit: said so, with the field.
    let b = Bundle::busybox(&["true"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", format!("BIG={}", "x".repeat(8 << 20))]);
        c["linux"]["resources"] = json!({"memory": {"limit": 2 << 20}});
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains(
            "the container init was killed by SIGKILL during its set-up (at \"init: credentials\")"
        ) && e.contains("linux.resources.memory.limit is too low"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    for c in ["memory", "pids"] {
        assert!(!cgroup_dir(c, &format!("/isoexec/{id}")).exists());
    }
    // A wrong type names the field; capability sets the kernel refuses
    // name the set and the capability.
    let b = Bundle::busybox(&["true"], |c| c["process"]["user"]["uid"] = json!("root"));
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(e.contains("not a valid OCI runtime spec: process.user.uid: invalid type: string \"root\", expected u32"), "{e}");
    let b = Bundle::busybox(&["true"], |c| {
        c["process"]["capabilities"] =
            json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": []});
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains(
            "invalid process.capabilities.effective in config.json: CAP_KILL not in permitted"
        ),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn a_mount_namespace_joined_by_path_but_never_the_hosts() {
    let iso = Isoexec::new();
    // A mount namespace of its own that still shows the host's paths (as
    // the OCI validation suite makes one): a helper started here.
    let mut helper = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "1000"])
        .spawn()
        .unwrap();
    let pid = helper.id();
    let ns = format!("/proc/{pid}/ns/mnt");
    assert!(eventually(5, || std::fs::read_link(&ns).ok()
        != std::fs::read_link("/proc/self/ns/mnt").ok()));
    let ns_of_a = std::fs::read_link(&ns).unwrap();
    let join = |path: &str| {
        Bundle::busybox(&["readlink", "/proc/self/ns/mnt"], |c| {
            let list: Vec<serde_json::Value> = c["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["type"] != "mount")
                .cloned()
                .chain([json!({"type": "mount", "path": path})])
                .collect();
            c["linux"]["namespaces"] = json!(list);
        })
    };
    // The helper's: the root is built there, not on the host.
    let before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let (out, err, code) = iso.run_bundle(&join(&ns), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), ns_of_a.to_str().unwrap());
    // The runtime's own (the host's): refused, nothing made.
    let b = join("/proc/self/ns/mnt");
    let id = unique("mnth");
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("linux.namespaces[mount].path")
            && e.contains("the runtime's own mount namespace"),
        "{e}"
    );
    assert!(!iso.state_dir(&id).exists());
    let after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(before, after, "the host's mounts changed");
    // No mount namespace at all: refused too.
    let b = Bundle::busybox(&["true"], |c| {
        let list: Vec<serde_json::Value> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "mount")
            .cloned()
            .collect();
        c["linux"]["namespaces"] = json!(list);
    });
    let e = iso.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        e.contains("a mount namespace of the container's own"),
        "{e}"
    );
    let _ = helper.kill();
    let _ = helper.wait();
}
