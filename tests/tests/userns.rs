//! User namespaces through `isoexec`: a task's root is not the host's root.
//! Each test is written as what a hostile task would try, and checks the
//! host afterwards: the ids its files get, what it can read and write of
//! the host's, the limits it stays under, and that nothing is left.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use serde_json::{json, Value};

/// Host ids the tests map a task's 0..65536 onto.
const HOST_UID: u32 = 100000;
const HOST_GID: u32 = 110000;

/// A new user namespace: the task's ids 0..65536 are the host's
/// HOST_UID.. and HOST_GID...
fn mapped(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST_UID, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST_GID, "size": 65536}]);
}

/// A bind of host directory `src` at `dest`, read-write.
fn volume(c: &mut Value, src: &std::path::Path, dest: &str) {
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": dest, "type": "bind", "source": src, "options": ["rbind", "rw"]
    }));
}

/// A host directory anyone may write (as /tmp), and in it a file only the
/// host's root may read.
fn host_volume() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = TempDir::new("isoexec-volume");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = d.path().join("root-only");
    std::fs::write(&secret, "host secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    d
}

/// What `isoexec fingerprint` says of idmapped mounts of the default
/// chroot_env: "yes", or why not.
fn idmap_of_the_chroot_env(iso: &Isoexec) -> String {
    let f: Value = serde_json::from_str(&iso.ok(&["fingerprint", "--format", "json"])).unwrap();
    f["idmapped_mounts"].as_str().unwrap().to_string()
}

/// Nothing of a task is left in the state root (but the config file).
fn assert_state_root_empty(iso: &Isoexec) {
    let left: Vec<_> = std::fs::read_dir(iso.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".config.toml")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_tasks_root_is_the_mapped_host_uid_and_not_the_hosts_root() {
    // The exec driver's task: an empty root, the host's binaries through
    // the chroot_env; the task holds CAP_DAC_OVERRIDE and CAP_CHOWN.
    let iso = Isoexec::with_config("allow_caps = [\"all\"]");
    let idmap = idmap_of_the_chroot_env(&iso);
    if idmap != "yes" {
        // This kernel cannot idmap the host's directories (the v2 guest's
        // are overlayfs on 9p, before Linux 6.3 neither idmaps): the task
        // is refused, naming the directory, and leaves nothing.
        assert!(idmap.starts_with("no ("), "{idmap}");
        let b = Bundle::empty(&["true"], mapped);
        let (_, err, code) = iso.run_bundle(&b, &[]);
        assert_ne!(code, 0);
        assert!(
            err.contains("an idmapped mount of it failed") && err.contains("chroot_env /"),
            "{err}"
        );
        assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
        assert!(mounts_under(b.path()).is_empty());
        assert_state_root_empty(&iso);
        return;
    }
    let vol = host_volume();
    let caps = json!([
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_CHOWN",
        "CAP_FOWNER",
        "CAP_SETUID",
        "CAP_SETGID"
    ]);
    let b = Bundle::empty(
        &sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
             echo made > /vol/by-task; \
             cat /vol/root-only || echo no-read; \
             chown 0:0 /vol/root-only || echo no-chown; \
             stat -c '%u:%g' /usr/bin/env /etc/passwd; \
             echo x >> /etc/passwd || echo no-etc; \
             touch /usr/bin/isoexec-userns || echo no-usr; \
             stat -c '%u:%g' /local /alloc /secrets; touch /local/ok /alloc/ok && echo own-dirs; \
             if [ -x /usr/bin/python3 ]; then python3 -c 'print(6*7)'; else echo 42; fi"),
        |c| {
            mapped(c);
            volume(c, vol.path(), "/vol");
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set] = caps.clone();
            }
            c["root"]["readonly"] = json!(false);
        },
    );
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let map = |host: u32| format!("0 {host} 65536");
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(lines[..2], ["0", "0"], "{out}");
    assert_eq!(squeeze(lines[2]), map(HOST_UID));
    assert_eq!(squeeze(lines[3]), map(HOST_GID));
    // Its root's CAP_DAC_OVERRIDE does not open a root-only host file, nor
    // CAP_CHOWN give it away: they hold over the namespace's own ids only.
    assert_eq!(lines[4], "no-read", "{out}");
    assert_eq!(lines[5], "no-chown", "{out}");
    // The chroot_env is idmapped: the host's root files are its root's,
    // and read-only.
    assert_eq!(lines[6..8], ["0:0", "0:0"], "{out}");
    assert_eq!(lines[8..10], ["no-etc", "no-usr"], "{out}");
    assert_eq!(lines[10..13], ["0:0", "0:0", "0:0"], "{out}");
    assert_eq!(lines[13..], ["own-dirs", "42"], "{out}");
    assert!(err.contains("Read-only file system"), "{err}");

    // On the host: what it made is the mapped uid's, the host unchanged.
    let made = std::fs::metadata(vol.path().join("by-task")).unwrap();
    assert_eq!((made.uid(), made.gid()), (HOST_UID, HOST_GID));
    let secret = std::fs::metadata(vol.path().join("root-only")).unwrap();
    assert_eq!((secret.uid(), secret.gid()), (0, 0));
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert!(!std::path::Path::new("/usr/bin/isoexec-userns").exists());
    // The task directory is left as it was found, and nothing else stays.
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
    assert!(mounts_under(b.path()).is_empty());
    assert_state_root_empty(&iso);
}

/// An ext4 filesystem (which idmaps on every kernel since 5.12) made from
/// a busybox tree, mounted read-only at `mnt`; unmounted when dropped.
struct Ext4Tree {
    mnt: TempDir,
    _image: TempDir,
}

impl Ext4Tree {
    fn busybox() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let image = TempDir::new("isoexec-ext4");
        let tree = image.path().join("tree");
        busybox_rootfs(&tree);
        std::fs::create_dir(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/root-only"), "chroot_env secret\n").unwrap();
        std::fs::set_permissions(
            tree.join("etc/root-only"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let img = image.path().join("fs.img");
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&tree)
            .arg(&img)
            .arg("16M")
            .output()
            .unwrap();
        assert!(
            mkfs.status.success(),
            "{}",
            String::from_utf8_lossy(&mkfs.stderr)
        );
        let mnt = TempDir::new("isoexec-ext4-mnt");
        let m = std::process::Command::new("mount")
            .args(["-o", "loop,ro"])
            .arg(&img)
            .arg(mnt.path())
            .output()
            .unwrap();
        assert!(
            m.status.success(),
            "mount -o loop: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        Ext4Tree { mnt, _image: image }
    }
}

impl Drop for Ext4Tree {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.mnt.path())
            .status();
    }
}

#[test]
fn an_idmapped_chroot_env_shows_host_root_files_as_the_tasks_root_read_only() {
    // A chroot_env from an ext4 filesystem: idmapped on both hierarchies'
    // kernels. Its files, the host's root's, are the task root's, and the
    // task still cannot change them: the mount is read-only and the task
    // cannot hold CAP_SYS_ADMIN to remount it.
    let fs = Ext4Tree::busybox();
    let m = fs.mnt.path().display();
    let iso = Isoexec::with_config(&format!(
        "chroot_env = {{ \"{m}/bin\" = \"/bin\", \"{m}/etc\" = \"/etc\" }}"
    ));
    let b = Bundle::empty(
        &sh(
            "stat -c '%u:%g %a' /bin/busybox /etc/root-only; cat /etc/root-only; \
             echo x >> /etc/root-only || echo no-write; \
             mount -o remount,rw /etc 2>/dev/null || echo no-remount; \
             grep -c ' /bin .*ro[, ]' /proc/self/mountinfo",
        ),
        mapped,
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "0:0 755",
            "0:0 600",
            "chroot_env secret",
            "no-write",
            "no-remount",
            "1"
        ],
        "{err}"
    );
    // Seen from the host the files are unchanged and still root's.
    let meta = std::fs::metadata(fs.mnt.path().join("etc/root-only")).unwrap();
    assert_eq!((meta.uid(), meta.len()), (0, 18));
    assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
    assert_state_root_empty(&iso);
}

#[test]
fn limits_cgroups_devices_and_proc_hold_in_a_user_namespace() {
    let iso = Isoexec::new();
    // Over its memory limit the task is killed, as without a namespace.
    let b = Bundle::busybox(
        &sh("dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd exit $?"),
        |c| {
            mapped(c);
            c["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
        },
    );
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!((out.as_str(), code), ("dd exit 137\n", 0), "{err}");

    // The devices are the host's nodes (no mknod in a user namespace) and
    // work; /proc and /sys are the task's own; then a fork bomb stops at
    // its pids limit.
    let b = Bundle::busybox(
        &sh("echo x > /dev/null && head -c 4 /dev/zero | wc -c; \
             mknod /dev/sda b 8 0 2>/dev/null || echo no-mknod; \
             ls /sys/class/net; grep -c '^Uid:.0.*0.*0.*0' /proc/1/status; \
             for i in $(seq 40); do sleep 2 & done; wait"),
        |c| {
            mapped(c);
            c["linux"]["resources"] = json!({"pids": {"limit": 10}});
        },
    );
    let (out, err, _) = iso.run_bundle(&b, &[]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["4", "no-mknod", "lo", "1"], "{out}{err}");
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn exec_joins_the_user_namespace_and_its_ids() {
    use std::os::unix::fs::PermissionsExt;
    let iso = Isoexec::new();
    let vol = host_volume();
    // A volume below a directory only the host's root may enter (as
    // containerd's and the state root's are): the runtime reaches it for
    // the task, whose root could not.
    let private = TempDir::new("isoexec-private");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let inner = private.path().join("vol");
    std::fs::create_dir(&inner).unwrap();
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let b = Bundle::busybox(&["sleep", "1000"], |c| {
        mapped(c);
        volume(c, vol.path(), "/vol");
        volume(c, &inner, "/inner");
    });
    let id = unique("ux");
    let pid = iso.start_detached(&b, &id);
    // The init runs as the mapped uid on the host.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(HOST_UID.to_string().as_str())
    );
    let out = iso.ok(&["exec", &id, "cat", "/proc/self/uid_map"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", &HOST_UID.to_string(), "65536"]
    );
    iso.ok(&[
        "exec",
        "--user",
        "1000:1000",
        &id,
        "touch",
        "/vol/by-exec",
        "/inner/by-exec",
    ]);
    let m = std::fs::metadata(inner.join("by-exec")).unwrap();
    assert_eq!(m.uid(), HOST_UID + 1000);
    let m = std::fs::metadata(vol.path().join("by-exec")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST_UID + 1000, HOST_GID + 1000));
    // A user the namespace does not map is refused by name.
    let e = iso.fails(&["exec", "--user", "70000", &id, "true"]);
    assert!(
        e.contains("process.user.uid") && e.contains("70000 is not mapped"),
        "{e}"
    );
    iso.ok(&["delete", "--force", &id]);
    assert!(!alive(pid));
    assert!(!iso.state_dir(&id).exists());
}

#[test]
fn userns_auto_gives_each_task_its_own_range_from_the_pool() {
    // Three ranges of 65536 ids; uid 0 denied, judged on host ids.
    let iso = Isoexec::with_config(
        "userns = \"auto\"\nuserns_range = \"300000-496607\"\ndenied_host_uids = \"0\"",
    );
    let b = Bundle::busybox(&["sleep", "1000"], |_| {});
    let ids: Vec<String> = (0..3).map(|_| unique("pool")).collect();
    let mut bases = Vec::new();
    for id in &ids {
        iso.start_detached(&b, id);
        let map = iso.ok(&["exec", id, "cat", "/proc/self/uid_map"]);
        bases.push(map.split_whitespace().nth(1).unwrap().to_string());
    }
    bases.sort();
    assert_eq!(bases, ["300000", "365536", "431072"]);
    let claims = std::fs::read_dir(iso.root.path().join(".userns"))
        .unwrap()
        .count();
    assert_eq!(claims, 3);
    // The pool is full: a fourth task is refused, and leaves nothing.
    let e = iso.fails(&["run", "--bundle", b.path().to_str().unwrap(), "fourth"]);
    assert!(e.contains("user namespace pool is full"), "{e}");
    assert!(!iso.state_dir("fourth").exists());
    // A deleted task's range goes to the next task.
    iso.ok(&["delete", "--force", &ids[1]]);
    let (out, err, code) = iso.run_bundle(
        &Bundle::busybox(&["cat", "/proc/self/uid_map"], |_| {}),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().nth(1), Some("365536"));
    // A task may ask for host ids (io.isoexec.userns = "host").
    let (out, err, code) = iso.run_bundle(
        &Bundle::busybox(&["cat", "/proc/self/uid_map"], |c| {
            c["annotations"]["io.isoexec.userns"] = json!("host");
        }),
        &[],
    );
    assert_eq!(code, 1, "uid 0 is denied on the host: {out}{err}");
    assert!(err.contains("running as uid 0 is disallowed"), "{err}");
    for id in [&ids[0], &ids[2]] {
        iso.ok(&["delete", "--force", id]);
    }
    assert!(!iso.root.path().join(".userns").exists());
}

#[test]
fn user_namespace_mistakes_are_refused_by_name_and_leave_nothing() {
    let iso = Isoexec::with_config("allow_caps = [\"all\"]");
    type Patch = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Patch, &str)> = vec![
        (
            Box::new(|c: &mut Value| {
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1, "size": 1}]);
            }),
            "mappings need a new user namespace",
        ),
        (
            Box::new(|c: &mut Value| {
                mapped(c);
                c["process"]["user"] = json!({"uid": 70000, "gid": 0});
            }),
            "process.user.uid",
        ),
        // An idmapped chroot_env could be remounted writable with it.
        (
            Box::new(|c: &mut Value| {
                mapped(c);
                c["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
            }),
            "cannot have CAP_SYS_ADMIN",
        ),
    ];
    for (patch, want) in cases {
        let b = Bundle::empty(&["true"], |c| patch(c));
        let (_, err, code) = iso.run_bundle(&b, &[]);
        assert_ne!(code, 0);
        assert!(err.contains(want), "want {want:?}: {err}");
        assert!(b.root_entries().is_empty(), "{:?}", b.root_entries());
        assert_state_root_empty(&iso);
    }
}

#[test]
fn a_user_namespace_joined_by_path_is_shared() {
    // A second container joins the first one's user and pid namespaces
    // (as a pod's containers would): the same mappings, the same ids.
    let iso = Isoexec::new();
    let a = Bundle::busybox(&["sleep", "1000"], mapped);
    let id = unique("owner");
    let pid = iso.start_detached(&a, &id);
    let b = Bundle::busybox(&["cat", "/proc/self/uid_map"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        ns.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
        ns.push(json!({"type": "user", "path": format!("/proc/{pid}/ns/user")}));
    });
    let (out, err, code) = iso.run_bundle(&b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", &HOST_UID.to_string(), "65536"]
    );
    iso.ok(&["delete", "--force", &id]);
}
