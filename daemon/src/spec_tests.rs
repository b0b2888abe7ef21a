use super::*;
use crate::api::{Mount, Resources, TaskConfig};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
    alice:x:1000:1000::/home/alice:/bin/sh\n";
const GROUP: &str = "root:x:0:\nadm:x:4:alice\naudio:x:29:bob,alice\nalice:x:1000:\n";

fn host() -> Host<'static> {
    Host {
        passwd: PASSWD,
        group: GROUP,
        cpus: 2,
        read: |p| match p.to_str() {
            Some("/profiles/deny-mkdir.json") => Ok(r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#
                .into()),
            Some("/profiles/bad.json") => Ok(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#.into()),
            _ => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
        },
    }
}

fn at() -> Placement<'static> {
    Placement {
        sandbox_id: "web",
        name: "server",
        netns: None,
    }
}

fn cfg(command: &str) -> TaskConfig {
    TaskConfig {
        command: command.into(),
        ..Default::default()
    }
}

fn spec_of(c: &TaskConfig) -> Value {
    task_spec(c, &DriverConfig::default(), &host(), &at()).expect("valid")
}

fn err_of(c: &TaskConfig) -> FieldError {
    task_spec(c, &DriverConfig::default(), &host(), &at()).expect_err("invalid")
}

#[test]
fn the_spec_parses_as_an_oci_spec() {
    let mut c = cfg("/bin/sh");
    c.args = vec!["-c".into(), "echo hi".into()];
    let v = spec_of(&c);
    let s: oci_spec::runtime::Spec = serde_json::from_value(v).expect("an OCI spec");
    let p = s.process().as_ref().expect("process");
    assert_eq!(
        p.args().as_ref().expect("args"),
        &["/bin/sh", "-c", "echo hi"]
    );
    assert_eq!(p.cwd().to_str(), Some("/"));
    assert_eq!(s.hostname().as_deref(), Some("server"));
    assert_eq!(s.root().as_ref().map(|r| r.readonly()), Some(Some(false)));
    let cg = s.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    assert_eq!(cg, Some("/isoexecd/web.server".into()));
}

#[test]
fn the_default_user_is_nobody() {
    let v = spec_of(&cfg("/bin/true"));
    assert_eq!(v["process"]["user"]["uid"], 65534);
    assert_eq!(v["process"]["user"]["gid"], 65534);
}

#[test]
fn users_by_name_number_and_pair() {
    assert_eq!(
        resolve_user("alice", PASSWD, GROUP),
        Ok((1000, 1000, vec![4, 29]))
    );
    assert_eq!(resolve_user("1", PASSWD, GROUP), Ok((1, 1, vec![])));
    assert_eq!(resolve_user("4242", PASSWD, GROUP), Ok((4242, 0, vec![])));
    assert_eq!(resolve_user("7:8", PASSWD, GROUP), Ok((7, 8, vec![])));
    let e = resolve_user("mallory", PASSWD, GROUP).expect_err("unknown");
    assert_eq!(e.field, "config.user");
    assert!(e.message.contains("no user \"mallory\""), "{e}");
    let e = resolve_user("7:x", PASSWD, GROUP).expect_err("bad gid");
    assert!(e.message.contains("gid"), "{e}");
}

#[test]
fn env_is_added_sorted_and_may_replace_path() {
    let mut c = cfg("/bin/true");
    c.env.insert("B".into(), "2".into());
    c.env.insert("A".into(), "1".into());
    c.env.insert("PATH".into(), "/bin".into());
    let v = spec_of(&c);
    assert_eq!(v["process"]["env"], json!(["A=1", "B=2", "PATH=/bin"]));
    let mut c = cfg("/bin/true");
    c.env.insert("X=Y".into(), "1".into());
    assert!(err_of(&c).field.starts_with("config.env"));
}

#[test]
fn capabilities_start_from_the_driver_defaults() {
    let v = spec_of(&cfg("/bin/true"));
    let caps = v["process"]["capabilities"]["bounding"]
        .as_array()
        .expect("caps")
        .clone();
    assert_eq!(caps.len(), DEFAULT_ALLOW_CAPS.len());
    assert!(caps.contains(&json!("CAP_CHOWN")));
    assert!(!caps.contains(&json!("CAP_NET_RAW")));

    let mut c = cfg("/bin/true");
    c.cap_drop = vec!["chown".into(), "CAP_KILL".into()];
    c.cap_add = vec!["net_raw".into()];
    let got = capabilities(&c, &DriverConfig::default()).expect("caps");
    assert!(!got.contains(&"CAP_CHOWN".to_string()));
    assert!(!got.contains(&"CAP_KILL".to_string()));
    assert!(got.contains(&"CAP_NET_RAW".to_string()));

    let mut c = cfg("/bin/true");
    c.cap_drop = vec!["all".into()];
    c.cap_add = vec!["kill".into()];
    assert_eq!(
        capabilities(&c, &DriverConfig::default()),
        Ok(vec!["CAP_KILL".to_string()])
    );

    let mut c = cfg("/bin/true");
    c.cap_add = vec!["kill".into(), "flying".into()];
    let e = err_of(&c);
    assert_eq!(e.field, "config.cap_add[1]");
    assert!(e.message.contains("unknown capability \"flying\""));
}

#[test]
fn modes_become_annotations() {
    let mut c = cfg("/bin/true");
    c.pid_mode = "host".into();
    c.ipc_mode = "private".into();
    let v = spec_of(&c);
    assert_eq!(v["annotations"]["io.isoexec.pid_mode"], "host");
    assert_eq!(v["annotations"]["io.isoexec.ipc_mode"], "private");
    assert_eq!(v["annotations"]["io.isoexec.sandbox"], "web");
    let v = spec_of(&cfg("/bin/true"));
    assert!(
        v["annotations"].get("io.isoexec.pid_mode").is_none(),
        "unset: the driver default"
    );
    let mut c = cfg("/bin/true");
    c.pid_mode = "shared".into();
    assert_eq!(err_of(&c).field, "config.pid_mode");
}

#[test]
fn network_host_has_no_namespace_group_joins_the_sandboxs() {
    let types =
        |v: &Value| -> Vec<Value> { v["linux"]["namespaces"].as_array().expect("ns").clone() };
    let v = spec_of(&cfg("/bin/true"));
    assert!(!types(&v).iter().any(|n| n["type"] == "network"));
    let mut p = at();
    p.netns = Some("/run/isoexec/netns/web");
    let v = task_spec(&cfg("/bin/true"), &DriverConfig::default(), &host(), &p).expect("spec");
    assert!(types(&v).contains(&json!({"type": "network", "path": "/run/isoexec/netns/web"})));
}

#[test]
fn resources_as_the_exec_driver_maps_them() {
    let r = |cpu_mhz, cores, memory_mb, memory_max_mb, pids| Resources {
        cpu_mhz,
        cores,
        memory_mb,
        memory_max_mb,
        pids,
    };
    assert_eq!(
        resources(&r(500, 1, 64, 0, 10), 2, "r").expect("ok"),
        json!({"cpu": {"shares": 500, "cpus": "0-0"}, "memory": {"limit": 64 * MIB}, "pids": {"limit": 10}})
    );
    assert_eq!(
        resources(&r(0, 0, 64, 128, 0), 2, "r").expect("ok"),
        json!({"memory": {"limit": 128 * MIB, "reservation": 64 * MIB}})
    );
    assert_eq!(
        resources(&r(1, 0, 0, 0, 0), 2, "r").expect("ok"),
        json!({"cpu": {"shares": 2}})
    );
    assert_eq!(resources(&r(0, 0, 0, 0, 0), 2, "r").expect("ok"), json!({}));
    let e = resources(&r(0, 3, 0, 0, 0), 2, "r").expect_err("too many cores");
    assert_eq!(e.field, "r.cores");
    let e = resources(&r(0, 0, 256, 128, 0), 2, "r").expect_err("max below");
    assert_eq!(e.field, "r.memory_max_mb");
    let e = resources(&r(0, 0, -1, 0, 0), 2, "r").expect_err("negative");
    assert_eq!(e.field, "r.memory_mb");

    let mut c = cfg("/bin/true");
    c.resources = Some(r(0, 0, 32, 0, 0));
    let v = spec_of(&c);
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 32 * MIB);
    assert_eq!(
        v["linux"]["resources"]["devices"][0]["allow"], false,
        "the template's device rules stay"
    );
}

#[test]
fn mounts_are_binds_and_checked() {
    let mut c = cfg("/bin/true");
    c.mounts = vec![Mount {
        host_path: "/srv/data".into(),
        task_path: "/data".into(),
        readonly: true,
        propagation: String::new(),
    }];
    let v = spec_of(&c);
    let last = v["mounts"]
        .as_array()
        .and_then(|m| m.last())
        .expect("mount")
        .clone();
    assert_eq!(last["destination"], "/data");
    assert_eq!(
        last["options"],
        json!(["rbind", "ro", "rprivate", "nosuid", "nodev"])
    );
    c.mounts[0].task_path = "data".into();
    assert_eq!(err_of(&c).field, "config.mounts[0].task_path");
    c.mounts[0].task_path = "/data".into();
    c.mounts[0].propagation = "sideways".into();
    assert_eq!(err_of(&c).field, "config.mounts[0].propagation");
}

#[test]
fn command_work_dir_and_log_paths_are_checked() {
    assert_eq!(err_of(&cfg("")).field, "config.command");
    let mut c = cfg("/bin/true");
    c.stdout_path = "out.log".into();
    assert_eq!(err_of(&c).field, "config.stdout_path");
    c.stdout_path = "/var/log/out.log".into();
    c.stderr_path = "err.log".into();
    assert_eq!(err_of(&c).field, "config.stderr_path");
    let mut c = cfg("/bin/true");
    c.work_dir = "tmp".into();
    assert_eq!(err_of(&c).field, "config.work_dir");
}

#[test]
fn names_and_signals() {
    assert!(validate_name("id", "web-1_a", false).is_ok());
    assert!(validate_name("id", "web.1", true).is_ok());
    assert!(validate_name("id", "web.1", false).is_err());
    assert!(validate_name("id", ".hidden", true).is_err());
    assert!(validate_name("id", "", true).is_err());
    assert!(validate_name("id", "a/b", true).is_err());
    assert_eq!(task_id("web", "server"), "web.server");
    use nix::sys::signal::Signal::*;
    assert_eq!(parse_signal("s", "", SIGTERM), Ok(SIGTERM));
    assert_eq!(parse_signal("s", "SIGHUP", SIGTERM), Ok(SIGHUP));
    assert_eq!(parse_signal("s", "kill", SIGTERM), Ok(SIGKILL));
    assert_eq!(parse_signal("s", "10", SIGTERM), Ok(SIGUSR1));
    assert_eq!(
        parse_signal("s", "SIGNOPE", SIGTERM).map_err(|e| e.field),
        Err("s".to_string())
    );
    assert!(parse_signal("s", "999", SIGTERM).is_err());
}

#[test]
fn ephemeral_disk_becomes_the_engines_annotation() {
    let mut c = cfg("/bin/sh");
    assert!(spec_of(&c)["annotations"]
        .get("io.isoexec.ephemeral_disk_mb")
        .is_none());
    c.ephemeral_disk_mb = 64;
    assert_eq!(
        spec_of(&c)["annotations"]["io.isoexec.ephemeral_disk_mb"],
        "64"
    );
}

#[test]
fn userns_becomes_the_engines_annotation() {
    let mut c = cfg("/bin/sh");
    assert!(spec_of(&c)["annotations"]
        .get("io.isoexec.userns")
        .is_none());
    for m in ["auto", "host"] {
        c.userns = m.into();
        assert_eq!(spec_of(&c)["annotations"]["io.isoexec.userns"], m);
    }
    c.userns = "yes".into();
    let e = err_of(&c);
    assert_eq!(e.field, "config.userns");
    assert!(e.message.contains("\"auto\""), "{}", e.message);
}

#[test]
fn tasks_get_dockers_seccomp_profile_unless_they_opt_out() {
    let mut c = cfg("/bin/sh");
    let s = spec_of(&c);
    let caps: Vec<String> = s["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        s["linux"]["seccomp"],
        runtime::seccomp_default::profile(&caps)
    );
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    c.seccomp_profile = "runtime/default".into();
    assert_eq!(spec_of(&c)["linux"]["seccomp"], s["linux"]["seccomp"]);
    // The profile follows the task's capabilities.
    c.cap_add = vec!["sys_admin".into()];
    let with_admin = spec_of(&c)["linux"]["seccomp"].to_string();
    assert!(with_admin.contains("\"mount\""), "{with_admin}");
    assert!(!s["linux"]["seccomp"].to_string().contains("\"mount\""));
    c.cap_add.clear();
    c.seccomp_profile = "unconfined".into();
    assert!(spec_of(&c)["linux"].get("seccomp").is_none());
    c.seccomp_profile = "localhost/profiles/deny-mkdir.json".into();
    let e = err_of(&c);
    assert_eq!(e.field, "config.seccomp_profile");
    assert!(e.message.contains("absolute path"), "{}", e.message);
    c.seccomp_profile = "localhost//profiles/deny-mkdir.json".into();
    assert_eq!(
        spec_of(&c)["linux"]["seccomp"]["defaultAction"],
        "SCMP_ACT_ALLOW"
    );
    for (p, want) in [
        (
            "localhost//profiles/missing.json",
            "reading /profiles/missing.json",
        ),
        ("localhost//profiles/bad.json", "SCMP_ACT_NOTIFY"),
        (
            "docker/default",
            "use runtime/default, unconfined or localhost/PATH",
        ),
    ] {
        c.seccomp_profile = p.into();
        let e = err_of(&c);
        assert!(e.message.contains(want), "{p}: {}", e.message);
    }
}

#[test]
fn the_engines_spec_fields_become_the_requests() {
    for (oci, request) in [
        ("process.cwd", Some("config.work_dir")),
        ("process.args[0]", Some("config.command")),
        ("process.args[2]", Some("config.args[1]")),
        (
            "linux.seccomp.syscalls[3]",
            Some("config.seccomp_profile.syscalls[3]"),
        ),
        ("linux.resources.memory.limit", None),
        (
            "hooks.prestart[0].path",
            Some("config.hooks.prestart[0].path"),
        ),
        ("root.path", None),
        ("process.cwdx", None),
    ] {
        assert_eq!(request_field(oci).as_deref(), request, "{oci}");
    }
}

#[test]
fn nul_bytes_are_refused_naming_the_request_field() {
    let mut c = TaskConfig {
        command: "/bin/true".into(),
        ..Default::default()
    };
    c.env.insert("K".into(), "a\0b".into());
    assert_eq!(err_of(&c).field, "config.env[\"K\"]");
    c.env.clear();
    c.args = vec!["ok".into(), "x\0".into()];
    assert_eq!(err_of(&c).field, "config.args[1]");
    c.args.clear();
    c.command = "/bin/\0true".into();
    assert_eq!(err_of(&c).field, "config.command");
}
