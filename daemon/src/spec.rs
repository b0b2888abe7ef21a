//! The exec driver's task config -> an OCI spec, as every other front end
//! hands the engine. Pure: the host's passwd/group text, CPU count and the
//! driver config come in as arguments. Errors name the request field.

use std::collections::BTreeSet;

use nix::sys::signal::Signal;
use runtime::config::{AllowCaps, DriverConfig, DEFAULT_ALLOW_CAPS};
use serde_json::{json, Value};

use crate::api::{Mount, Resources, TaskConfig};

/// An invalid request: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

type Result<T> = std::result::Result<T, FieldError>;

/// What the host tells the translation.
pub struct Host<'a> {
    pub passwd: &'a str,
    pub group: &'a str,
    pub cpus: u32,
    /// Reads a host file a request names (a `localhost/` seccomp profile).
    pub read: fn(&std::path::Path) -> std::io::Result<String>,
}

/// Where the task runs.
pub struct Placement<'a> {
    pub sandbox_id: &'a str,
    pub name: &'a str,
    /// The sandbox's network namespace (GROUP mode); None: the host's.
    pub netns: Option<&'a str>,
}

/// Sandbox ids and task names become directory names and container ids.
pub fn validate_name(field: &str, v: &str, dots: bool) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b) || (dots && b == b'.'));
    if ok {
        Ok(())
    } else {
        let allowed = if dots {
            "letters, digits, '_', '-' and '.' (not first)"
        } else {
            "letters, digits, '_' and '-'"
        };
        Err(invalid(
            field,
            format!("{v:?} is not a valid name: use {allowed}"),
        ))
    }
}

/// The task's id: SANDBOX.NAME.
pub fn task_id(sandbox_id: &str, name: &str) -> String {
    format!("{sandbox_id}.{name}")
}

/// (uid, gid, additional gids) of `user`: a host user name, "uid" or
/// "uid:gid"; empty is `nobody`, the exec driver's default.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<(u32, u32, Vec<u32>)> {
    let user = if user.is_empty() { "nobody" } else { user };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let (name, uid, gid) = if let Some((u, g)) = user.split_once(':') {
        let num = |v: &str, what: &str| {
            v.parse::<u32>().map_err(|_| {
                invalid(
                    "config.user",
                    format!("{user:?}: the {what} in uid:gid must be a number"),
                )
            })
        };
        (None, num(u, "uid")?, num(g, "gid")?)
    } else if let Ok(uid) = user.parse::<u32>() {
        let gid = entries
            .iter()
            .find(|f| f[2].parse() == Ok(uid))
            .and_then(|f| f[3].parse().ok())
            .unwrap_or(0);
        (None, uid, gid)
    } else {
        let f = entries.iter().find(|f| f[0] == user).ok_or_else(|| {
            invalid(
                "config.user",
                format!(
                    "no user {user:?} on this host (a name of /etc/passwd, \"uid\" or \"uid:gid\")"
                ),
            )
        })?;
        let n = |v: &str| {
            v.parse::<u32>().map_err(|_| {
                invalid(
                    "config.user",
                    format!("/etc/passwd entry of {user:?} is malformed"),
                )
            })
        };
        (Some(f[0]), n(f[2])?, n(f[3])?)
    };
    let mut extra = Vec::new();
    if let Some(name) = name {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !extra.contains(&g) {
                        extra.push(g);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra))
}

/// A signal by name ("SIGTERM", "TERM", "term") or number.
pub fn parse_signal(field: &str, s: &str, default: Signal) -> Result<Signal> {
    if s.is_empty() {
        return Ok(default);
    }
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| invalid(field, format!("{n} is not a signal")));
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| invalid(field, format!("{s:?} is not a signal name")))
}

/// The driver's default capabilities: `allow_caps` (or the default list
/// when it is "all"), as the exec driver starts from.
fn default_caps(driver: &DriverConfig) -> BTreeSet<String> {
    match &driver.allow_caps {
        AllowCaps::Only(list) => list.iter().map(|c| c.to_string()).collect(),
        AllowCaps::All => DEFAULT_ALLOW_CAPS
            .iter()
            .map(|c| format!("CAP_{}", c.to_ascii_uppercase()))
            .collect(),
    }
}

/// The task's capability set: the defaults, minus cap_drop, plus cap_add.
/// Whether the result is allowed is the engine's policy check.
pub fn capabilities(cfg: &TaskConfig, driver: &DriverConfig) -> Result<Vec<String>> {
    let parse = |field: &str, i: usize, name: &str| -> Result<Vec<String>> {
        if name.eq_ignore_ascii_case("all") {
            return Ok(caps::all().iter().map(|c| c.to_string()).collect());
        }
        runtime::config::parse_cap(name)
            .map(|c| vec![c.to_string()])
            .ok_or_else(|| {
                invalid(
                    format!("{field}[{i}]"),
                    format!("unknown capability {name:?}"),
                )
            })
    };
    let mut set = default_caps(driver);
    for (i, c) in cfg.cap_drop.iter().enumerate() {
        for c in parse("config.cap_drop", i, c)? {
            set.remove(&c);
        }
    }
    for (i, c) in cfg.cap_add.iter().enumerate() {
        set.extend(parse("config.cap_add", i, c)?);
    }
    Ok(set.into_iter().collect())
}

fn ns_mode(field: &str, v: &str) -> Result<Option<&'static str>> {
    match v {
        "" => Ok(None),
        "private" => Ok(Some("private")),
        "host" => Ok(Some("host")),
        other => Err(invalid(
            field,
            format!("{other:?} is not a mode: use \"private\" or \"host\""),
        )),
    }
}

const MIB: i64 = 1024 * 1024;

/// The exec driver's resources as linux.resources.
pub fn resources(r: &Resources, cpus: u32, field: &str) -> Result<Value> {
    let mut out = json!({});
    let neg = |name: &str, v: i64| {
        if v < 0 {
            Err(invalid(
                format!("{field}.{name}"),
                format!("{v} is negative"),
            ))
        } else {
            Ok(())
        }
    };
    neg("cpu_mhz", r.cpu_mhz)?;
    neg("memory_mb", r.memory_mb)?;
    neg("memory_max_mb", r.memory_max_mb)?;
    neg("pids", r.pids)?;
    let mut cpu = serde_json::Map::new();
    if r.cpu_mhz > 0 {
        // cpu.shares has a floor of 2.
        cpu.insert("shares".into(), json!(r.cpu_mhz.max(2)));
    }
    if r.cores > 0 {
        if r.cores > cpus {
            return Err(invalid(
                format!("{field}.cores"),
                format!("{} cores asked for, this host has {cpus}", r.cores),
            ));
        }
        cpu.insert("cpus".into(), json!(format!("0-{}", r.cores - 1)));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    match (r.memory_mb, r.memory_max_mb) {
        (0, 0) => {}
        (m, 0) => out["memory"] = json!({ "limit": m * MIB }),
        (m, max) => {
            if m > max {
                return Err(invalid(
                    format!("{field}.memory_max_mb"),
                    format!("{max} is below memory_mb ({m})"),
                ));
            }
            out["memory"] = if m > 0 {
                json!({ "limit": max * MIB, "reservation": m * MIB })
            } else {
                json!({ "limit": max * MIB })
            };
        }
    }
    if r.pids > 0 {
        out["pids"] = json!({ "limit": r.pids });
    }
    Ok(out)
}

fn mount(m: &Mount, i: usize) -> Result<Value> {
    let field = |k: &str| format!("config.mounts[{i}].{k}");
    if !m.host_path.starts_with('/') {
        return Err(invalid(
            field("host_path"),
            format!("{:?} is not an absolute path", m.host_path),
        ));
    }
    if !m.task_path.starts_with('/') {
        return Err(invalid(
            field("task_path"),
            format!("{:?} is not an absolute path", m.task_path),
        ));
    }
    let propagation = match m.propagation.as_str() {
        "" => "rprivate",
        p @ ("private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared") => p,
        other => {
            return Err(invalid(
                field("propagation"),
                format!("{other:?}: use private, rprivate, slave, rslave, shared or rshared"),
            ))
        }
    };
    Ok(json!({
        "destination": m.task_path,
        "type": "bind",
        "source": m.host_path,
        "options": ["rbind", if m.readonly { "ro" } else { "rw" }, propagation, "nosuid", "nodev"],
    }))
}

/// `config.seccomp_profile` as `linux.seccomp` (None: unconfined).
pub fn seccomp(profile: &str, caps: &[String], host: &Host) -> Result<Option<Value>> {
    const FIELD: &str = "config.seccomp_profile";
    match profile {
        "" | "runtime/default" => Ok(Some(runtime::seccomp_default::profile(caps))),
        "unconfined" => Ok(None),
        p if p.starts_with("localhost/") => {
            let path = std::path::Path::new(&p["localhost/".len()..]);
            if !path.is_absolute() {
                return Err(invalid(
                    FIELD,
                    format!("{p:?}: localhost/ takes an absolute path on the host"),
                ));
            }
            let text = (host.read)(path)
                .map_err(|e| invalid(FIELD, format!("reading {}: {e}", path.display())))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| invalid(FIELD, format!("{}: not JSON: {e}", path.display())))?;
            let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(value.clone())
                .map_err(|e| {
                    invalid(
                        FIELD,
                        format!("{}: not a linux.seccomp object: {e}", path.display()),
                    )
                })?;
            runtime::seccomp::plan(&parsed)
                .map_err(|e| invalid(FIELD, format!("{}: {e}", path.display())))?;
            Ok(Some(value))
        }
        other => Err(invalid(
            FIELD,
            format!("{other:?}: use runtime/default, unconfined or localhost/PATH"),
        )),
    }
}

/// `config.hooks` as the spec's `hooks`, checked here so a mistake names
/// the request's field.
pub fn hooks(h: &crate::api::Hooks) -> Result<Value> {
    let kinds = [
        ("prestart", "prestart", &h.prestart),
        ("create_runtime", "createRuntime", &h.create_runtime),
        ("create_container", "createContainer", &h.create_container),
        ("start_container", "startContainer", &h.start_container),
        ("poststart", "poststart", &h.poststart),
        ("poststop", "poststop", &h.poststop),
    ];
    let mut out = serde_json::Map::new();
    for (field, oci, list) in kinds {
        let mut hooks = Vec::new();
        for (i, hook) in list.iter().enumerate() {
            let at = format!("config.hooks.{field}[{i}]");
            if !hook.path.starts_with('/') {
                return Err(invalid(
                    format!("{at}.path"),
                    format!("{:?} is not an absolute path", hook.path),
                ));
            }
            if let Some(e) = hook.env.iter().position(|e| !e.contains('=')) {
                return Err(invalid(format!("{at}.env[{e}]"), "is not NAME=value"));
            }
            let mut v = json!({ "path": hook.path, "env": hook.env });
            if !hook.args.is_empty() {
                v["args"] = json!(hook.args);
            }
            if hook.timeout_seconds > 0 {
                v["timeout"] = json!(hook.timeout_seconds);
            }
            hooks.push(v);
        }
        if !hooks.is_empty() {
            out.insert(oci.to_string(), Value::Array(hooks));
        }
    }
    Ok(Value::Object(out))
}

/// The request's field an OCI spec field of [`task_spec`] comes from.
pub fn request_field(oci: &str) -> Option<String> {
    let direct = [
        ("process.cwd", "config.work_dir"),
        ("process.args[0]", "config.command"),
        ("process.user", "config.user"),
        ("process.env", "config.env"),
        ("linux.seccomp", "config.seccomp_profile"),
        ("hooks", "config.hooks"),
    ];
    if let Some(i) = oci
        .strip_prefix("process.args[")
        .and_then(|r| r.strip_suffix(']'))
    {
        // args[0] is the command; the request's args start at args[1].
        return match i.parse::<usize>().ok()? {
            0 => Some("config.command".into()),
            n => Some(format!("config.args[{}]", n - 1)),
        };
    }
    direct
        .iter()
        .find(|(o, _)| {
            oci == *o || oci.starts_with(&format!("{o}.")) || oci.starts_with(&format!("{o}["))
        })
        .map(|(o, r)| format!("{r}{}", &oci[o.len()..]))
}

/// The OCI spec of a task: the driver's template, with the task config.
pub fn task_spec(
    cfg: &TaskConfig,
    driver: &DriverConfig,
    host: &Host,
    at: &Placement,
) -> Result<Value> {
    if cfg.command.is_empty() {
        return Err(invalid(
            "config.command",
            "is empty: name the program to run",
        ));
    }
    let mut spec = runtime::features::spec_template_for(driver);
    let nul = |field: String, v: &str| {
        if v.contains('\0') {
            Err(invalid(field, "contains a NUL byte"))
        } else {
            Ok(())
        }
    };
    nul("config.command".into(), &cfg.command)?;
    for (i, a) in cfg.args.iter().enumerate() {
        nul(format!("config.args[{i}]"), a)?;
    }
    for (k, v) in &cfg.env {
        nul(format!("config.env[{k:?}]"), &format!("{k}{v}"))?;
    }
    nul("config.work_dir".into(), &cfg.work_dir)?;
    let mut args = vec![cfg.command.clone()];
    args.extend(cfg.args.iter().cloned());
    let (uid, gid, extra) = resolve_user(&cfg.user, host.passwd, host.group)?;
    let mut env: Vec<String> =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    let mut keys: Vec<&String> = cfg.env.keys().collect();
    keys.sort();
    for k in keys {
        if k.is_empty() || k.contains('=') {
            return Err(invalid(
                format!("config.env[{k:?}]"),
                "is not a variable name",
            ));
        }
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={}", cfg.env[k]));
    }
    for (f, v) in [
        ("config.stdout_path", &cfg.stdout_path),
        ("config.stderr_path", &cfg.stderr_path),
    ] {
        if !v.is_empty() && !v.starts_with('/') {
            return Err(invalid(
                f,
                format!("{v:?} is not an absolute path on the host"),
            ));
        }
    }
    let caps = capabilities(cfg, driver)?;
    let cwd = if cfg.work_dir.is_empty() {
        "/"
    } else {
        cfg.work_dir.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "config.work_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    spec["process"]["args"] = json!(args);
    spec["process"]["env"] = json!(env);
    spec["process"]["cwd"] = json!(cwd);
    spec["process"]["user"] = json!({ "uid": uid, "gid": gid, "additionalGids": extra });
    if let Some(profile) = seccomp(&cfg.seccomp_profile, &caps, host)? {
        spec["linux"]["seccomp"] = profile;
    }
    spec["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    spec["root"] = json!({ "path": "rootfs", "readonly": false });
    // The daemon's own cgroup parent: a container of the CLI named like a
    // task (SANDBOX.NAME) must not share its cgroup.
    spec["linux"]["cgroupsPath"] = json!(format!("/isoexecd/{}", task_id(at.sandbox_id, at.name)));
    spec["hostname"] = json!(at.name);

    let mut annotations = serde_json::Map::new();
    annotations.insert(runtime::driver::ANN_SANDBOX.into(), json!(at.sandbox_id));
    if let Some(m) = ns_mode("config.pid_mode", &cfg.pid_mode)? {
        annotations.insert(runtime::driver::ANN_PID_MODE.into(), json!(m));
    }
    if let Some(m) = ns_mode("config.ipc_mode", &cfg.ipc_mode)? {
        annotations.insert(runtime::driver::ANN_IPC_MODE.into(), json!(m));
    }
    if cfg.ephemeral_disk_mb > 0 {
        annotations.insert(
            runtime::driver::ANN_EPHEMERAL_DISK.into(),
            json!(cfg.ephemeral_disk_mb.to_string()),
        );
    }
    match cfg.userns.as_str() {
        "" => {}
        m @ ("auto" | "host") => {
            annotations.insert(runtime::driver::ANN_USERNS.into(), json!(m));
        }
        other => {
            return Err(invalid(
                "config.userns",
                format!("{other:?}: use \"auto\" (a user namespace of its own), \"host\" (host ids) or leave it empty (the config's userns)"),
            ))
        }
    }
    spec["annotations"] = Value::Object(annotations);

    let namespaces = spec["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|ns| match (ns["type"].as_str(), at.netns) {
            (Some("network"), None) => None,
            (Some("network"), Some(path)) => Some(json!({ "type": "network", "path": path })),
            _ => Some(ns),
        })
        .collect::<Vec<_>>();
    spec["linux"]["namespaces"] = json!(namespaces);

    if let Some(r) = &cfg.resources {
        let res = resources(r, host.cpus, "config.resources")?;
        if let (Some(out), Some(add)) =
            (spec["linux"]["resources"].as_object_mut(), res.as_object())
        {
            out.extend(add.clone());
        }
    }
    let mut mounts = spec["mounts"].as_array().cloned().unwrap_or_default();
    for (i, m) in cfg.mounts.iter().enumerate() {
        mounts.push(mount(m, i)?);
    }
    spec["mounts"] = json!(mounts);
    if let Some(h) = &cfg.hooks {
        spec["hooks"] = hooks(h)?;
    }
    Ok(spec)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
