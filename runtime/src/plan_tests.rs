//! Unit tests of the spec → plan translation: no root, no system calls.

use super::*;
use serde_json::{json, Value};

const BUNDLE: &str = "/bundles/b";

/// The `isoexec spec` template, changed by `patch`.
fn spec_with(patch: impl FnOnce(&mut Value)) -> Spec {
    let mut v = crate::features::spec_template();
    patch(&mut v);
    serde_json::from_value(v).expect("test spec must parse")
}

fn plan_of(patch: impl FnOnce(&mut Value)) -> Result<Plan> {
    plan(
        "c1",
        Path::new(BUNDLE),
        &spec_with(patch),
        &PlanOptions::default(),
    )
}

/// The error message of a plan that must fail.
fn err_of(patch: impl FnOnce(&mut Value)) -> String {
    match plan_of(patch) {
        Ok(_) => panic!("plan should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn template_translates_completely() {
    let p = plan_of(|_| {}).unwrap();
    assert_eq!(p.id, "c1");
    assert_eq!(p.root.path, PathBuf::from("/bundles/b/rootfs"));
    assert!(p.root.readonly);
    assert!(p.root.pivot);
    assert_eq!(p.root.propagation, None);
    assert_eq!(
        p.namespaces.new,
        vec![
            NsKind::Mount,
            NsKind::Uts,
            NsKind::Ipc,
            NsKind::Net,
            NsKind::Pid,
            NsKind::Cgroup
        ]
    );
    assert!(p.namespaces.join.is_empty());
    assert_eq!(p.hostname.as_deref(), Some("isoexec"));
    let dests: Vec<_> = p
        .mounts
        .iter()
        .map(|m| m.destination.to_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup"
        ]
    );
    assert_eq!(p.mounts[6].kind, MountKind::Cgroup);
    assert_eq!(p.devices, default_devices());
    assert!(p.masked_paths.contains(&PathBuf::from("/proc/kcore")));
    assert!(p.readonly_paths.contains(&PathBuf::from("/proc/sys")));
    assert_eq!(p.process.args, ["sh"]);
    assert_eq!(p.process.cwd, PathBuf::from("/"));
    assert!(p.process.no_new_privileges);
    assert_eq!(p.process.capabilities.bounding.len(), 13);
    assert!(p
        .process
        .capabilities
        .bounding
        .contains(&caps::Capability::CAP_KILL));
    assert!(!p
        .process
        .capabilities
        .bounding
        .contains(&caps::Capability::CAP_NET_RAW));
    assert!(p.process.capabilities.ambient.is_empty());
    assert_eq!(
        p.process.rlimits,
        [Rlimit {
            // (u32 with glibc already, c_int with musl.)
            #[allow(clippy::unnecessary_cast)]
            resource: libc::RLIMIT_NOFILE as u32,
            soft: 1024,
            hard: 1024
        }]
    );
    assert_eq!(p.cgroup.path, "/isoexec/c1");
}

#[test]
fn dev_is_always_a_fresh_tmpfs() {
    let p = plan_of(|v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev");
    })
    .unwrap();
    assert_eq!(p.mounts[0].destination, PathBuf::from("/dev"));
    assert_eq!(
        p.mounts[0].kind,
        MountKind::Fs {
            fstype: "tmpfs".into()
        }
    );
    assert!(p.mounts[0].flags.contains(MsFlags::MS_NOSUID));
}

#[test]
fn process_is_required() {
    let e = err_of(|v| {
        v.as_object_mut().unwrap().remove("process");
    });
    assert!(e.contains("invalid process in config.json"), "{e}");
}

#[test]
fn empty_args_name_the_field() {
    let e = err_of(|v| v["process"]["args"] = json!([]));
    assert!(e.contains("process.args"), "{e}");
}

#[test]
fn relative_cwd_is_refused() {
    let e = err_of(|v| v["process"]["cwd"] = json!("tmp"));
    assert!(e.contains("process.cwd") && e.contains("absolute"), "{e}");
}

#[test]
fn env_must_be_name_value() {
    let e = err_of(|v| v["process"]["env"] = json!(["PATH=/bin", "oops"]));
    assert!(e.contains("process.env[1]") && e.contains("oops"), "{e}");
}

#[test]
fn hostname_needs_uts() {
    let e = err_of(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "uts");
    });
    assert!(e.contains("hostname") && e.contains("uts"), "{e}");
}

#[test]
fn hostname_in_a_joined_uts_namespace() {
    let p = plan_of(|v| {
        for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "uts" {
                n["path"] = json!("/proc/1/ns/uts");
            }
        }
    })
    .expect("a joined uts namespace takes the hostname");
    assert_eq!(p.hostname.as_deref(), Some("isoexec"));
    assert!(!p.namespaces.creates(NsKind::Uts));
    assert!(p.namespaces.has(NsKind::Uts));
}

#[test]
fn mount_namespace_is_required() {
    let e = err_of(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "mount");
    });
    assert!(e.contains("linux.namespaces") && e.contains("mount"), "{e}");
}

/// A spec with a new user namespace mapping 0..65536 to 100000.. (and
/// whatever `patch` changes after).
fn userns_spec(v: &mut Value) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

#[test]
fn user_namespace_with_mappings() {
    let p = plan_of(userns_spec).unwrap();
    assert!(p.namespaces.creates(NsKind::User));
    let u = p.userns.unwrap();
    assert_eq!(u.host_uid(0), Some(100000));
    assert_eq!(u.host_uid(65535), Some(165535));
    assert_eq!(u.host_uid(65536), None);
    assert_eq!(UserNsPlan::map_text(&u.uid_map), "0 100000 65536\n");
    assert_eq!(u.pool_slot, None);
    // Two lines, as the kernel takes them.
    let p = plan_of(|v| {
        userns_spec(v);
        v["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 1000, "hostID": 5000, "size": 10}
        ]);
        v["process"]["user"] = json!({"uid": 1005, "gid": 0});
    })
    .unwrap();
    let u = p.userns.unwrap();
    assert_eq!(u.host_uid(1005), Some(5005));
    assert_eq!(
        UserNsPlan::map_text(&u.uid_map),
        "0 100000 1000\n1000 5000 10\n"
    );
}

#[test]
fn user_namespace_mistakes_are_named() {
    type Patch = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Patch, &str)> = vec![
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["uidMappings"] = json!([]);
            }),
            "invalid linux.uidMappings in config.json: missing",
        ),
        (
            Box::new(|v: &mut Value| {
                v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1, "size": 1}]);
            }),
            "mappings need a new user namespace",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1, "size": 0}]);
            }),
            "linux.gidMappings[0] in config.json: size is 0",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["uidMappings"] = json!([
                    {"containerID": 0, "hostID": 100000, "size": 100},
                    {"containerID": 50, "hostID": 300000, "size": 100}
                ]);
            }),
            "linux.uidMappings[1] in config.json: its containerIDs overlap those of linux.uidMappings[0]",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["uidMappings"] = json!([
                    {"containerID": 0, "hostID": 100000, "size": 100},
                    {"containerID": 100, "hostID": 100099, "size": 100}
                ]);
            }),
            "its hostIDs overlap",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 4294967000u64, "size": 1000}]);
            }),
            "run past the last id",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["linux"]["uidMappings"] = json!([{"containerID": 1, "hostID": 100000, "size": 10}]);
                v["process"]["user"] = json!({"uid": 1, "gid": 0});
            }),
            "must map containerID 0",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["process"]["user"] = json!({"uid": 70000, "gid": 0});
            }),
            "process.user.uid in config.json: 70000 is not mapped by linux.uidMappings",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                v["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": [99999]});
            }),
            "process.user.gid in config.json: 99999 is not mapped by linux.gidMappings",
        ),
        (
            Box::new(|v: &mut Value| {
                userns_spec(v);
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "mount");
                ns.push(json!({"type": "mount", "path": "/proc/1/ns/mnt"}));
            }),
            "a mount namespace joined by path cannot hold a root built in a new user namespace",
        ),
        (
            Box::new(|v: &mut Value| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user", "path": "/proc/1/ns/user"}));
                v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1, "size": 1}]);
            }),
            "given with a user namespace joined by path",
        ),
        (
            Box::new(|v: &mut Value| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user", "path": "/proc/1/ns/user"}));
            }),
            "a new pid namespace with a user namespace joined by path",
        ),
    ];
    for (patch, want) in cases {
        let e = err_of(patch);
        assert!(e.contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn a_joined_user_namespace_with_its_pid_namespace_plans() {
    let p = plan_of(|v| {
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        ns.push(json!({"type": "pid", "path": "/proc/1/ns/pid"}));
        ns.push(json!({"type": "user", "path": "/proc/1/ns/user"}));
        v["annotations"] = json!({"io.isoexec.chroot_env": "none"});
    })
    .unwrap();
    assert_eq!(p.userns, None);
    assert_eq!(p.namespaces.join[0].0, NsKind::User, "joined first");
}

#[test]
fn the_driver_pool_gives_a_user_namespace_unless_the_spec_has_one() {
    let mut opts = PlanOptions {
        userns_slot: Some(3),
        ..PlanOptions::default()
    };
    opts.driver.userns_pool = crate::config::UserNsPool {
        first: 1_000_000,
        size: 65536,
        slots: 10,
    };
    let p = plan("c1", Path::new(BUNDLE), &spec_with(|_| {}), &opts).unwrap();
    assert!(p.namespaces.creates(NsKind::User));
    let u = p.userns.unwrap();
    assert_eq!(u.host_uid(0), Some(1_000_000 + 3 * 65536));
    assert_eq!(u.host_gid(7), Some(1_000_000 + 3 * 65536 + 7));
    assert_eq!(u.pool_slot, Some(3));
    // The spec's own namespace wins.
    let p = plan("c1", Path::new(BUNDLE), &spec_with(userns_spec), &opts).unwrap();
    assert_eq!(p.userns.unwrap().host_uid(0), Some(100000));
    // No slot, no namespace (host ids).
    opts.userns_slot = None;
    let p = plan("c1", Path::new(BUNDLE), &spec_with(|_| {}), &opts).unwrap();
    assert!(!p.namespaces.has(NsKind::User));
}

#[test]
fn namespace_listed_twice_is_refused() {
    let e = err_of(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "pid"}));
    });
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn namespace_paths_are_joined_in_order() {
    let p = plan_of(|v| {
        v["linux"]["namespaces"] = json!([
            {"type": "mount"}, {"type": "uts"},
            {"type": "pid", "path": "/proc/7/ns/pid"},
            {"type": "network", "path": "/var/run/netns/pod"},
            {"type": "ipc", "path": "/proc/7/ns/ipc"}
        ]);
    })
    .unwrap();
    assert_eq!(p.namespaces.new, vec![NsKind::Mount, NsKind::Uts]);
    let kinds: Vec<_> = p.namespaces.join.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![NsKind::Ipc, NsKind::Net, NsKind::Pid]);
    assert!(p.namespaces.has(NsKind::Net));
    assert!(!p.namespaces.creates(NsKind::Net));
}

#[test]
fn relative_namespace_path_is_refused() {
    let e = err_of(|v| v["linux"]["namespaces"][0]["path"] = json!("proc/1/ns/pid"));
    assert!(e.contains("linux.namespaces[0].path"), "{e}");
}

#[test]
fn mount_destination_must_be_absolute() {
    let e = err_of(|v| v["mounts"][2]["destination"] = json!("dev/pts"));
    assert!(e.contains("mounts[2].destination"), "{e}");
}

#[test]
fn mount_destination_is_normalized() {
    let p = plan_of(|v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data/../../../srv/./x", "type": "tmpfs", "source": "tmpfs"
        }));
    })
    .unwrap();
    assert_eq!(
        p.mounts.last().unwrap().destination,
        PathBuf::from("/srv/x")
    );
}

#[test]
fn bind_mounts_need_an_absolute_source() {
    let e = err_of(|v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "options": ["rbind"]
        }));
    });
    assert!(
        e.contains("mounts[7].source") && e.contains("needs a source"),
        "{e}"
    );
    let e = err_of(|v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "source": "data", "options": ["bind"]
        }));
    });
    assert!(e.contains("absolute"), "{e}");
}

#[test]
fn mount_without_type_or_bind_is_refused() {
    let e = err_of(|v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/x", "source": "/x"}));
    });
    assert!(e.contains("mounts[7].type"), "{e}");
}

#[test]
fn bind_mount_translation() {
    let p = plan_of(|v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "source": "/srv/data",
            "options": ["rbind", "ro", "nosuid", "nodev", "rslave"]
        }));
    })
    .unwrap();
    let m = p.mounts.last().unwrap();
    assert_eq!(m.kind, MountKind::Bind { recursive: true });
    assert_eq!(m.source, Some(PathBuf::from("/srv/data")));
    assert_eq!(
        m.flags,
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
    );
    assert_eq!(m.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    assert_eq!(m.data, None);
}

#[test]
fn mount_option_parsing() {
    let o = parse_mount_options(&[
        "ro", "rw", "noexec", "bind", "mode=755", "size=1k", "private",
    ]);
    assert_eq!(o.flags, MsFlags::MS_NOEXEC);
    assert_eq!(o.bind, Some(false));
    assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE]);
    assert_eq!(o.data, ["mode=755", "size=1k"]);
    let o = parse_mount_options(&[
        "bind",
        "rbind",
        "defaults",
        "relatime",
        "norelatime",
        "strictatime",
    ]);
    assert_eq!(o.bind, Some(true));
    assert_eq!(o.flags, MsFlags::MS_STRICTATIME);
    let o = parse_mount_options::<&str>(&[]);
    assert_eq!(o, MountOptions::default());
}

#[test]
fn fs_mount_keeps_data() {
    let p = plan_of(|_| {}).unwrap();
    let pts = &p.mounts[2];
    assert_eq!(
        pts.kind,
        MountKind::Fs {
            fstype: "devpts".into()
        }
    );
    assert_eq!(
        pts.data.as_deref(),
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5")
    );
    assert_eq!(pts.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
}

#[test]
fn rootfs_propagation() {
    let p = plan_of(|v| v["linux"]["rootfsPropagation"] = json!("rshared")).unwrap();
    assert_eq!(
        p.root.propagation,
        Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
    );
    let e = err_of(|v| v["linux"]["rootfsPropagation"] = json!("sideways"));
    assert!(
        e.contains("linux.rootfsPropagation") && e.contains("sideways"),
        "{e}"
    );
}

#[test]
fn root_is_relative_to_the_bundle_or_absolute() {
    let p = plan_of(|v| v["root"]["path"] = json!("../shared/./root")).unwrap();
    assert_eq!(p.root.path, PathBuf::from("/bundles/shared/root"));
    let p = plan_of(|v| v["root"]["path"] = json!("/srv/root")).unwrap();
    assert_eq!(p.root.path, PathBuf::from("/srv/root"));
    let e = err_of(|v| {
        v.as_object_mut().unwrap().remove("root");
    });
    assert!(e.contains("invalid root"), "{e}");
}

#[test]
fn no_pivot_option() {
    let p = plan(
        "c1",
        Path::new(BUNDLE),
        &spec_with(|_| {}),
        &PlanOptions {
            no_pivot: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!p.root.pivot);
}

#[test]
fn bundle_must_be_absolute() {
    let e = plan(
        "c1",
        Path::new("rel"),
        &spec_with(|_| {}),
        &PlanOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("must be absolute"), "{e}");
}

#[test]
fn spec_devices_replace_defaults_and_stay_in_dev() {
    let p = plan_of(|v| {
        v["linux"]["devices"] = json!([
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "uid": 5, "gid": 6}
        ]);
    })
    .unwrap();
    assert_eq!(p.devices.len(), 7);
    let null = p
        .devices
        .iter()
        .find(|d| d.path == Path::new("/dev/null"))
        .unwrap();
    assert_eq!(null.mode, 0o600);
    let fuse = p
        .devices
        .iter()
        .find(|d| d.path == Path::new("/dev/fuse"))
        .unwrap();
    assert_eq!(
        (fuse.major, fuse.minor, fuse.uid, fuse.gid),
        (10, 229, 5, 6)
    );
    assert_eq!(fuse.mode, 0o666);
    let e = err_of(|v| {
        v["linux"]["devices"] = json!([{"path": "/etc/evil", "type": "b", "major": 8, "minor": 0}]);
    });
    assert!(
        e.contains("linux.devices[0]") && e.contains("not under /dev"),
        "{e}"
    );
}

#[test]
fn sysctls_must_be_namespaced() {
    let p = plan_of(|v| {
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"})
    })
    .unwrap();
    assert_eq!(
        p.sysctl,
        vec![
            ("kernel.shmmax".to_string(), "1000".to_string()),
            ("net.ipv4.ip_forward".to_string(), "1".to_string())
        ]
    );
    let e = err_of(|v| v["linux"]["sysctl"] = json!({"vm.swappiness": "0"}));
    assert!(
        e.contains("vm.swappiness") && e.contains("not namespaced"),
        "{e}"
    );
    let e = err_of(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    assert!(e.contains("needs a network namespace"), "{e}");
}

#[test]
fn rlimits_are_checked() {
    let e = err_of(|v| {
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}])
    });
    assert!(
        e.contains("process.rlimits[0]") && e.contains("above hard"),
        "{e}"
    );
    let e = err_of(|v| {
        v["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NPROC", "soft": 1, "hard": 1},
            {"type": "RLIMIT_NPROC", "soft": 2, "hard": 2}
        ])
    });
    assert!(
        e.contains("process.rlimits[1]") && e.contains("twice"),
        "{e}"
    );
}

#[test]
fn oom_score_adj_range() {
    let p = plan_of(|v| v["process"]["oomScoreAdj"] = json!(500)).unwrap();
    assert_eq!(p.process.oom_score_adj, Some(500));
    let e = err_of(|v| v["process"]["oomScoreAdj"] = json!(1001));
    assert!(e.contains("process.oomScoreAdj"), "{e}");
}

#[test]
fn user_and_terminal() {
    let p = plan_of(|v| {
        v["process"]["user"] =
            json!({"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o27});
        v["process"]["terminal"] = json!(true);
        v["process"]["consoleSize"] = json!({"height": 40, "width": 120});
    })
    .unwrap();
    assert_eq!((p.process.uid, p.process.gid), (1000, 100));
    assert_eq!(p.process.additional_gids, [5, 6]);
    assert_eq!(p.process.umask, Some(0o27));
    assert!(p.process.terminal);
    assert_eq!(p.process.console_size, Some((40, 120)));
}

#[test]
fn capability_sets_are_separate() {
    let p = plan_of(|v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        })
    })
    .unwrap();
    let c = &p.process.capabilities;
    assert_eq!(
        c.bounding,
        [
            caps::Capability::CAP_CHOWN,
            caps::Capability::CAP_KILL,
            caps::Capability::CAP_SETUID
        ]
    );
    assert_eq!(c.effective, [caps::Capability::CAP_CHOWN]);
    assert_eq!(
        c.permitted,
        [caps::Capability::CAP_CHOWN, caps::Capability::CAP_KILL]
    );
    assert_eq!(c.inheritable, [caps::Capability::CAP_KILL]);
    assert_eq!(c.ambient, [caps::Capability::CAP_KILL]);
}

#[test]
fn capability_sets_the_kernel_refuses_are_refused_naming_set_and_capability() {
    let cases = [
        (
            json!({"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_CHOWN"]}),
            "process.capabilities.effective",
            "CAP_KILL not in permitted",
        ),
        (
            json!({"bounding": ["CAP_CHOWN"], "inheritable": ["CAP_SYS_TIME"]}),
            "process.capabilities.inheritable",
            "CAP_SYS_TIME not in bounding",
        ),
        (
            json!({"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}),
            "process.capabilities.ambient",
            "CAP_KILL not in both permitted and inheritable",
        ),
    ];
    for (sets, field, why) in cases {
        let e = err_of(|v| v["process"]["capabilities"] = sets.clone());
        assert!(e.contains(field) && e.contains(why), "{e}");
    }
}

#[test]
fn cgroup_paths() {
    let p = plan_of(|v| v["linux"]["cgroupsPath"] = json!("/pods/c1")).unwrap();
    assert_eq!(p.cgroup.path, "/pods/c1");
    let p = plan_of(|v| v["linux"]["cgroupsPath"] = json!("mine/c1")).unwrap();
    assert_eq!(p.cgroup.path, "mine/c1");
    let e = err_of(|v| v["linux"]["cgroupsPath"] = json!("/a/../../etc"));
    assert!(e.contains("linux.cgroupsPath"), "{e}");
    let p = plan(
        "c1",
        Path::new(BUNDLE),
        &spec_with(|v| v["linux"]["cgroupsPath"] = json!("system.slice:cri:abc")),
        &PlanOptions {
            systemd_cgroup: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.cgroup.path, "/system.slice/cri-abc.scope");
    assert_eq!(
        systemd_to_cgroupfs(":x:y").unwrap(),
        "/system.slice/x-y.scope"
    );
    assert!(systemd_to_cgroupfs("/plain/path").is_err());
    // Slices nest as systemd nests them (Kubernetes' pod slices).
    assert_eq!(
        systemd_to_cgroupfs("kubepods-besteffort-pod12.slice:cri-containerd:abc").unwrap(),
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
    );
    assert_eq!(systemd_to_cgroupfs("-.slice:p:n").unwrap(), "/p-n.scope");
    assert_eq!(
        systemd_to_cgroupfs("user.slice::n").unwrap(),
        "/user.slice/n.scope"
    );
    for bad in [
        "a--b.slice:p:n",
        "-a.slice:p:n",
        "a-.slice:p:n",
        "notaslice:p:n",
        "a.slice:p/x:n",
        "a.slice:p:n/../x",
    ] {
        let e = systemd_to_cgroupfs(bad).unwrap_err().to_string();
        assert!(e.contains("linux.cgroupsPath"), "{bad}: {e}");
    }
    // The form is recognised without --systemd-cgroup (the shim and
    // isoexecd have no such flag); plain relative paths stay as they are.
    let p =
        plan_of(|v| v["linux"]["cgroupsPath"] = json!("machine-pods.slice:isoexec:c1")).unwrap();
    assert_eq!(
        p.cgroup.path,
        "/machine.slice/machine-pods.slice/isoexec-c1.scope"
    );
    let p = plan_of(|v| v["linux"]["cgroupsPath"] = json!("a:b")).unwrap();
    assert_eq!(p.cgroup.path, "a:b");
}

#[test]
fn resources_are_validated() {
    let p = plan_of(|v| {
        v["linux"]["resources"] = json!({
            "memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
            "pids": {"limit": 10}
        })
    })
    .unwrap();
    let r = p.cgroup.resources.unwrap();
    assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
    let cases = [
        (
            json!({"memory": {"limit": 0}}),
            "linux.resources.memory.limit",
        ),
        (
            json!({"memory": {"limit": 100, "swap": 50}}),
            "linux.resources.memory.swap",
        ),
        (
            json!({"memory": {"swappiness": 101}}),
            "linux.resources.memory.swappiness",
        ),
        (json!({"cpu": {"period": 10}}), "linux.resources.cpu.period"),
        (json!({"cpu": {"quota": 10}}), "linux.resources.cpu.quota"),
        (json!({"cpu": {"shares": 1}}), "linux.resources.cpu.shares"),
        (json!({"cpu": {"cpus": "0-x"}}), "linux.resources.cpu.cpus"),
        (json!({"cpu": {"mems": "3-1"}}), "linux.resources.cpu.mems"),
        (json!({"pids": {"limit": 0}}), "linux.resources.pids.limit"),
    ];
    for (res, field) in cases {
        let e = err_of(|v| v["linux"]["resources"] = res.clone());
        assert!(e.contains(field), "{field}: {e}");
    }
}

#[test]
fn annotations_are_carried() {
    let p = plan_of(|v| v["annotations"] = json!({"io.isoexec.sandbox": "s1"})).unwrap();
    assert_eq!(
        p.annotations.get("io.isoexec.sandbox").map(String::as_str),
        Some("s1")
    );
}

#[test]
fn ids() {
    for ok in ["abc", "a-b_c.d+e", "0"] {
        validate_id(ok).unwrap();
    }
    for bad in ["", ".", "..", "a/b", "a b", "../x", "é"] {
        assert!(validate_id(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn normalization() {
    assert_eq!(
        normalize(Path::new("/a/../../b/./c")),
        PathBuf::from("/b/c")
    );
    assert_eq!(normalize(Path::new("/")), PathBuf::from("/"));
    assert_eq!(normalize(Path::new("/..")), PathBuf::from("/"));
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
    assert_eq!(parse_cpu_list("3").unwrap(), vec![3]);
    assert!(parse_cpu_list("").is_err());
    assert!(parse_cpu_list("2-1").is_err());
}

#[test]
fn device_rules_deny_first_then_spec_then_defaults() {
    let p = plan_of(|v| {
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ]);
        v["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
    })
    .unwrap();
    assert_eq!(
        rule_lines(&p),
        [
            "deny a",
            "allow c 10:229 rw",
            "allow c *:* m",
            "allow b *:* m",
            "allow c 1:3 rwm",
            "allow c 1:5 rwm",
            "allow c 1:7 rwm",
            "allow c 1:8 rwm",
            "allow c 1:9 rwm",
            "allow c 5:0 rwm",
            "allow c 5:2 rwm",
            "allow c 136:* rwm",
            "allow c 10:200 rwm",
            "allow c 10:229 rwm",
        ]
    );
}

/// The rules as `allow c 1:3 rwm` / `deny a`.
fn rule_lines(p: &Plan) -> Vec<String> {
    p.cgroup
        .devices
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                if r.allow { "allow" } else { "deny" },
                r.to_cgroup_v1()
            )
        })
        .collect()
}

#[test]
fn device_rules_that_change_nothing_are_not_written_twice() {
    // containerd's default spec: deny all, then the same standard nodes
    // isoexec allows anyway.
    let p = plan_of(|v| {
        v["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"}
        ]);
    })
    .unwrap();
    let lines = rule_lines(&p);
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(lines.len(), unique.len(), "{lines:?}");
    assert_eq!(lines[0], "deny a");
    assert_eq!(lines.len(), 12, "deny a and the 11 defaults: {lines:?}");

    // A rule the spec denied after allowing it is allowed again by the
    // defaults: the later allow is kept, since the deny came between.
    let p = plan_of(|v| {
        v["linux"]["resources"]["devices"] = json!([
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ]);
    })
    .unwrap();
    let lines = rule_lines(&p);
    assert_eq!(
        lines.iter().filter(|l| *l == "allow c 1:3 rwm").count(),
        2,
        "{lines:?}"
    );
    let deny = lines
        .iter()
        .position(|l| l == "deny c 1:3 rwm")
        .expect("the deny");
    assert!(lines[deny + 1..].contains(&"allow c 1:3 rwm".to_string()));
}

#[test]
fn device_rules_without_spec_rules_still_deny_first() {
    let p = plan_of(|v| {
        v["linux"].as_object_mut().unwrap().remove("resources");
    })
    .unwrap();
    assert_eq!(p.cgroup.devices[0].to_cgroup_v1(), "a");
    assert!(!p.cgroup.devices[0].allow);
    // The defaults are there once each.
    let null = p
        .cgroup
        .devices
        .iter()
        .filter(|r| r.to_cgroup_v1() == "c 1:3 rwm")
        .count();
    assert_eq!(null, 1);
}

#[test]
fn device_rule_access_is_checked() {
    let e = err_of(|v| {
        v["linux"]["resources"]["devices"] = json!([{"allow": true, "type": "c", "access": "rwx"}])
    });
    assert!(
        e.contains("linux.resources.devices[0]") && e.contains("rwx"),
        "{e}"
    );
}

#[test]
fn nul_bytes_in_args_or_env_are_refused_naming_the_entry() {
    let e = err_of(|v| v["process"]["args"] = json!(["sh", "a\u{0}b"]));
    assert!(e.contains("process.args[1]") && e.contains("NUL"), "{e}");
    let e = err_of(|v| v["process"]["env"] = json!(["PATH=/bin", "A=x\u{0}y"]));
    assert!(e.contains("process.env[1]") && e.contains("NUL"), "{e}");
}

#[test]
fn the_mount_namespace_is_new_or_joined_never_absent() {
    let without = |v: &mut serde_json::Value, join: Option<&str>| {
        let mut list: Vec<serde_json::Value> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "mount")
            .cloned()
            .collect();
        if let Some(p) = join {
            list.push(json!({"type": "mount", "path": p}));
        }
        v["linux"]["namespaces"] = json!(list);
    };
    let e = err_of(|v| without(v, None));
    assert!(
        e.contains("a mount namespace of the container's own"),
        "{e}"
    );
    let p = plan_of(|v| without(v, Some("/proc/42/ns/mnt"))).unwrap();
    assert!(p.namespaces.has(NsKind::Mount) && !p.namespaces.creates(NsKind::Mount));
}
