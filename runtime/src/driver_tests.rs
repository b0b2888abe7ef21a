//! Unit tests of the exec driver's layer: no root, no system calls.

use super::*;
use crate::config::DriverConfig;
use crate::plan::{plan, PlanOptions};
use caps::Capability as C;
use serde_json::{json, Value};

fn driver(toml: &str) -> DriverConfig {
    DriverConfig::parse(Path::new("/etc/isoexec/config.toml"), toml).unwrap()
}

fn plan_with(toml: &str, patch: impl FnOnce(&mut Value)) -> Result<crate::plan::Plan> {
    let mut v = crate::features::spec_template();
    patch(&mut v);
    let spec = serde_json::from_value(v).unwrap();
    let opts = PlanOptions {
        driver: driver(toml),
        state_root: PathBuf::from("/run/isoexec"),
        ..PlanOptions::default()
    };
    plan("t1", Path::new("/bundles/b"), &spec, &opts)
}

fn err_with(toml: &str, patch: impl FnOnce(&mut Value)) -> String {
    plan_with(toml, patch)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn default_task_gets_the_chroot_env_and_layout() {
    let p = plan_with("", |_| {}).unwrap();
    let c = p.chroot.expect("driver semantics by default");
    assert_eq!(c.mode, ChrootMode::Bind);
    assert_eq!(c.entries, DriverConfig::default().chroot_env);
    assert_eq!(c.sandbox, None);
    assert_eq!(c.alloc_host, PathBuf::from("/run/isoexec/t1/alloc"));
    assert_eq!(c.overlay_dir, PathBuf::from("/run/isoexec/t1/overlay"));
    assert!(p.process.env.contains(&"NOMAD_TASK_DIR=/local".to_string()));
    assert!(p
        .process
        .env
        .contains(&"NOMAD_ALLOC_DIR=/alloc".to_string()));
    assert!(p
        .process
        .env
        .contains(&"NOMAD_SECRETS_DIR=/secrets".to_string()));
}

#[test]
fn image_semantics_by_annotation() {
    let p = plan_with("", |v| v["annotations"] = json!({ANN_CHROOT_ENV: "none"})).unwrap();
    assert!(p.chroot.is_none());
    assert!(!p.process.env.iter().any(|e| e.starts_with("NOMAD_")));
    let e = err_with("", |v| v["annotations"] = json!({ANN_CHROOT_ENV: "some"}));
    assert!(
        e.contains("io.isoexec.chroot_env") && e.contains("\"some\""),
        "{e}"
    );
}

#[test]
fn image_semantics_by_default_for_clients_without_annotations() {
    let image = "default_root = \"image\"";
    assert!(plan_with(image, |_| {}).unwrap().chroot.is_none());
    let p = plan_with(image, |v| {
        v["annotations"] = json!({ANN_CHROOT_ENV: "default"})
    })
    .unwrap();
    assert!(p.chroot.is_none(), "default is the config's default");
    // A task can still ask for the driver's root.
    let p = plan_with(image, |v| {
        v["annotations"] = json!({ANN_CHROOT_ENV: "driver"})
    })
    .unwrap();
    assert!(p.chroot.is_some());
    let p = plan_with("default_root = \"chroot_env\"", |_| {}).unwrap();
    assert!(p.chroot.is_some());
    let e = DriverConfig::parse(Path::new("/c.toml"), "default_root = \"images\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("default_root") && e.contains("\"images\""),
        "{e}"
    );
}

#[test]
fn chroot_mode_from_config_or_annotation() {
    let p = plan_with("chroot_mode = \"link\"", |_| {}).unwrap();
    assert_eq!(p.chroot.unwrap().mode, ChrootMode::Link);
    let p = plan_with("chroot_mode = \"link\"", |v| {
        v["annotations"] = json!({ANN_CHROOT_MODE: "overlay"})
    })
    .unwrap();
    assert_eq!(p.chroot.unwrap().mode, ChrootMode::Overlay);
    let e = err_with("", |v| v["annotations"] = json!({ANN_CHROOT_MODE: "copy"}));
    assert!(
        e.contains("io.isoexec.chroot_mode") && e.contains("\"copy\""),
        "{e}"
    );
}

#[test]
fn sandbox_shares_alloc() {
    for key in [ANN_SANDBOX, ANN_CRI_SANDBOX] {
        let p = plan_with("", |v| v["annotations"] = json!({key: "web-1"})).unwrap();
        let c = p.chroot.unwrap();
        assert_eq!(c.sandbox.as_deref(), Some("web-1"));
        assert_eq!(
            c.alloc_host,
            PathBuf::from("/run/isoexec/.sandboxes/web-1/alloc")
        );
    }
    // isoexec's own annotation wins over the CRI's.
    let p = plan_with("", |v| {
        v["annotations"] = json!({ANN_SANDBOX: "mine", ANN_CRI_SANDBOX: "cri"})
    })
    .unwrap();
    assert_eq!(p.chroot.unwrap().sandbox.as_deref(), Some("mine"));
    let e = err_with("", |v| v["annotations"] = json!({ANN_SANDBOX: "../etc"}));
    assert!(e.contains("not a valid sandbox id"), "{e}");
}

#[test]
fn pid_and_ipc_modes_by_annotation() {
    let p = plan_with("", |v| {
        v["annotations"] = json!({ANN_PID_MODE: "host", ANN_IPC_MODE: "host"})
    })
    .unwrap();
    assert!(!p.namespaces.has(NsKind::Pid));
    assert!(!p.namespaces.has(NsKind::Ipc));
    assert!(p.namespaces.creates(NsKind::Mount));
    // private adds the namespace even when the spec lacks it.
    let p = plan_with("", |v| {
        v["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}]);
        v["annotations"] = json!({ANN_PID_MODE: "private"});
    })
    .unwrap();
    assert!(p.namespaces.creates(NsKind::Pid));
    let e = err_with("", |v| v["annotations"] = json!({ANN_PID_MODE: "shared"}));
    assert!(
        e.contains("io.isoexec.pid_mode")
            && e.contains("must be \"private\" or \"host\", got \"shared\""),
        "{e}"
    );
}

#[test]
fn containerd_default_caps_outside_allow_caps_are_dropped() {
    let p = plan_with("", |v| {
        let set = json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]);
        v["process"]["capabilities"] = json!({"bounding": set, "effective": set, "permitted": set});
    })
    .unwrap();
    assert_eq!(p.process.capabilities.bounding, [C::CAP_CHOWN, C::CAP_KILL]);
    assert_eq!(
        p.process.capabilities.effective,
        [C::CAP_CHOWN, C::CAP_KILL]
    );
    assert_eq!(
        p.warnings,
        ["dropping capabilities not in allow_caps: net_raw"]
    );
}

#[test]
fn other_caps_outside_allow_caps_are_refused() {
    let e = err_with("", |v| {
        v["process"]["capabilities"]["bounding"] =
            json!(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"]);
    });
    assert_eq!(
        e,
        "driver does not allow the following capabilities: sys_module, sys_admin \
         (allow_caps lists the capabilities a task may have)"
    );
    // allowed explicitly, or with "all"
    plan_with(
        "allow_caps = [\"chown\", \"sys_admin\", \"sys_module\", \"kill\"]",
        |v| {
            v["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN", "CAP_SYS_MODULE"]});
        },
    )
    .unwrap();
    let p = plan_with("allow_caps = [\"all\"]", |v| {
        v["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN", "CAP_NET_RAW"]});
    })
    .unwrap();
    assert!(p.warnings.is_empty());
    assert_eq!(
        p.process.capabilities.bounding,
        [C::CAP_NET_RAW, C::CAP_SYS_ADMIN]
    );
}

#[test]
fn denied_uids_and_gids() {
    let cfg = "denied_host_uids = \"0,10-15\"\ndenied_host_gids = \"4-8\"";
    let e = err_with(cfg, |_| {});
    assert_eq!(e, "running as uid 0 is disallowed");
    let e = err_with(cfg, |v| {
        v["process"]["user"] = json!({"uid": 12, "gid": 100})
    });
    assert_eq!(e, "running as uid 12 is disallowed");
    let e = err_with(cfg, |v| {
        v["process"]["user"] = json!({"uid": 1000, "gid": 5})
    });
    assert_eq!(e, "running as gid 5 is disallowed");
    let e = err_with(cfg, |v| {
        v["process"]["user"] = json!({"uid": 1000, "gid": 100, "additionalGids": [3, 8]})
    });
    assert_eq!(e, "running as gid 8 is disallowed");
    plan_with(cfg, |v| v["process"]["user"] = json!({"uid": 16, "gid": 9})).unwrap();
}

/// A new user namespace: uids 0.. are the host's 100000.., gids 0.. the
/// host's 200000...
fn userns(v: &mut Value) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
}

#[test]
fn denied_ids_are_judged_on_host_ids_in_a_user_namespace() {
    // Root in the task is host uid 100000: allowed where uid 0 is denied.
    plan_with("denied_host_uids = \"0\"", userns).unwrap();
    let e = err_with("denied_host_uids = \"100000-100010\"", userns);
    assert_eq!(
        e,
        "running as uid 0 (host uid 100000 in the task's user namespace) is disallowed"
    );
    let e = err_with("denied_host_gids = \"200005\"", |v| {
        userns(v);
        v["process"]["user"] = json!({"uid": 1000, "gid": 5});
    });
    assert!(e.contains("gid 5 (host gid 200005"), "{e}");
}

#[test]
fn the_chroot_env_in_a_user_namespace_refuses_sys_admin_and_overlay() {
    plan_with("", userns).unwrap();
    let e = err_with("allow_caps = [\"all\"]", |v| {
        userns(v);
        v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
    });
    assert!(
        e.contains("cannot have CAP_SYS_ADMIN") && e.contains("remount"),
        "{e}"
    );
    // Image semantics: the root is the bundle's, nothing idmapped.
    plan_with("allow_caps = [\"all\"]", |v| {
        userns(v);
        v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
        v["annotations"] = json!({ANN_CHROOT_ENV: "none"});
    })
    .unwrap();
    let e = err_with("chroot_mode = \"overlay\"", userns);
    assert!(
        e.contains("\"overlay\" cannot be used in a user namespace"),
        "{e}"
    );
    let e = err_with("", |v| {
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        ns.push(json!({"type": "pid", "path": "/proc/1/ns/pid"}));
        ns.push(json!({"type": "user", "path": "/proc/1/ns/user"}));
    });
    assert!(e.contains("user namespace joined by path"), "{e}");
}

#[test]
fn userns_auto_from_the_config_or_the_annotation() {
    let ann = |v: Option<&str>| {
        v.map(|v| {
            [(ANN_USERNS.to_string(), v.to_string())]
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
    };
    let host = driver("");
    let auto = driver("userns = \"auto\"");
    assert!(!userns_auto(&ann(None), &host).unwrap());
    assert!(userns_auto(&ann(None), &auto).unwrap());
    assert!(userns_auto(&ann(Some("auto")), &host).unwrap());
    assert!(!userns_auto(&ann(Some("host")), &auto).unwrap());
    let e = userns_auto(&ann(Some("on")), &host)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("io.isoexec.userns") && e.contains("\"on\""),
        "{e}"
    );
}

#[test]
fn policy_errors_are_policy() {
    let r = plan_with("denied_host_uids = \"0\"", |_| {});
    assert!(matches!(r, Err(Error::Policy(_))));
}

#[test]
fn nomad_environment_from_resources() {
    let p = plan_with("", |v| {
        v["linux"]["resources"] = json!({
            "cpu": {"shares": 500, "cpus": "3,0,2"},
            "memory": {"reservation": 256 << 20, "limit": 512 << 20}
        });
    })
    .unwrap();
    let env = &p.process.env;
    for want in [
        "NOMAD_CPU_LIMIT=500",
        "NOMAD_CPU_CORES=0,2-3",
        "NOMAD_MEMORY_LIMIT=256",
        "NOMAD_MEMORY_MAX_LIMIT=512",
    ] {
        assert!(env.contains(&want.to_string()), "{want} in {env:?}");
    }
    // A hard limit alone is memory, without a max.
    let p = plan_with("", |v| {
        v["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}})
    })
    .unwrap();
    assert!(p.process.env.contains(&"NOMAD_MEMORY_LIMIT=64".to_string()));
    assert!(!p
        .process
        .env
        .iter()
        .any(|e| e.starts_with("NOMAD_MEMORY_MAX_LIMIT")));
    // The task's own values win.
    let p = plan_with("", |v| {
        v["process"]["env"] = json!(["PATH=/bin", "NOMAD_TASK_DIR=/elsewhere"]);
    })
    .unwrap();
    let dirs: Vec<_> = p
        .process
        .env
        .iter()
        .filter(|e| e.starts_with("NOMAD_TASK_DIR="))
        .collect();
    assert_eq!(dirs, ["NOMAD_TASK_DIR=/elsewhere"]);
}

#[test]
fn no_pivot_root_from_config() {
    let p = plan_with("no_pivot_root = true", |_| {}).unwrap();
    assert!(!p.root.pivot);
}

#[test]
fn cpu_range_form() {
    assert_eq!(cpu_ranges(&[0, 2, 3]), "0,2-3");
    assert_eq!(cpu_ranges(&[5, 4, 1, 0, 2]), "0-2,4-5");
    assert_eq!(cpu_ranges(&[7]), "7");
    assert_eq!(cpu_ranges(&[]), "");
}

#[test]
fn glob_patterns_match_one_component() {
    assert!(glob_match("shadow*", "shadow"));
    assert!(glob_match("shadow*", "shadow-"));
    assert!(!glob_match("shadow*", "gshadow"));
    assert!(glob_match("ssh_host_*_key", "ssh_host_ed25519_key"));
    assert!(!glob_match("ssh_host_*_key", "ssh_host_ed25519_key.pub"));
    assert!(glob_match("*-secrets", "chap-secrets"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*", ""));
    assert!(glob_match("**x", "abx"));
    assert!(!glob_match("sudoers", "sudoers.d"));
}

#[test]
fn secrets_are_hidden_by_default_and_configurable() {
    let p = plan_with("", |_| {}).unwrap();
    let hide = p.chroot.unwrap().hide;
    for s in [
        "/etc/shadow*",
        "/etc/gshadow*",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/etc/ssh/ssh_host_*_key",
    ] {
        assert!(hide.contains(&s.to_string()), "{s} in {hide:?}");
    }
    let p = plan_with("chroot_env_hide = []", |_| {}).unwrap();
    assert!(p.chroot.unwrap().hide.is_empty());
    let p = plan_with("chroot_env_hide = [\"/srv/keys/*.pem\"]", |_| {}).unwrap();
    assert_eq!(p.chroot.unwrap().hide, ["/srv/keys/*.pem"]);
    for bad in ["\"etc/shadow\"", "\"/etc/../root\"", "\"/\""] {
        let e = DriverConfig::parse(Path::new("/c.toml"), &format!("chroot_env_hide = [{bad}]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/c.toml") && e.contains("chroot_env_hide"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn ephemeral_disk_from_the_driver_or_the_task() {
    let c = plan_with("", |_| {}).unwrap().chroot.unwrap();
    assert_eq!(c.disk_mb, None, "unlimited by default");
    assert_eq!(c.disk_dir, PathBuf::from("/run/isoexec/t1/disk"));
    let c = plan_with("ephemeral_disk_mb = 300", |_| {})
        .unwrap()
        .chroot
        .unwrap();
    assert_eq!(c.disk_mb, Some(300));
    let ann = |v: &str| {
        let v = v.to_string();
        move |s: &mut Value| s["annotations"] = json!({ANN_EPHEMERAL_DISK: v})
    };
    let c = plan_with("ephemeral_disk_mb = 300", ann("64"))
        .unwrap()
        .chroot
        .unwrap();
    assert_eq!(c.disk_mb, Some(64));
    let c = plan_with("ephemeral_disk_mb = 300", ann("0"))
        .unwrap()
        .chroot
        .unwrap();
    assert_eq!(c.disk_mb, None);
    for bad in ["-1", "1.5", "lots", "99999999999"] {
        let e = err_with("", ann(bad));
        assert!(
            e.contains("io.isoexec.ephemeral_disk_mb") && e.contains("MiB"),
            "{bad}: {e}"
        );
    }
}
