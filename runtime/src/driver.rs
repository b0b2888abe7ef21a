//! The exec driver's model on top of an OCI plan: the chroot assembled from
//! host directories, the task directory layout, the capability and user
//! policy, per-task pid/ipc modes, and the NOMAD_* environment. Pure: it
//! decides; `sys::chroot` carries it out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::config::{
    cap_name, parse_cap, ChrootMode, DriverConfig, NsMode, CONTAINERD_DEFAULT_CAPS,
};
use crate::error::{Error, Result};
use crate::plan::{NamespacePlan, NsKind, ProcessPlan, UserNsPlan};

/// Per-task annotations.
pub const ANN_CHROOT_ENV: &str = "io.isoexec.chroot_env";
pub const ANN_CHROOT_MODE: &str = "io.isoexec.chroot_mode";
pub const ANN_PID_MODE: &str = "io.isoexec.pid_mode";
pub const ANN_IPC_MODE: &str = "io.isoexec.ipc_mode";
pub const ANN_SANDBOX: &str = "io.isoexec.sandbox";
pub const ANN_EPHEMERAL_DISK: &str = "io.isoexec.ephemeral_disk_mb";
pub const ANN_CRI_SANDBOX: &str = "io.kubernetes.cri.sandbox-id";
pub const ANN_USERNS: &str = "io.isoexec.userns";

/// Whether a task without a user namespace in its spec gets one from the
/// driver's pool: `io.isoexec.userns` ("auto" or "host"), else the
/// config's `userns`.
pub fn userns_auto(annotations: &BTreeMap<String, String>, driver: &DriverConfig) -> Result<bool> {
    match annotations.get(ANN_USERNS).map(String::as_str) {
        None | Some("") => Ok(driver.userns_auto),
        Some("auto") => Ok(true),
        Some("host") => Ok(false),
        Some(other) => Err(Error::invalid(
            format!("annotations[{ANN_USERNS:?}]"),
            format!("{other:?}: use \"auto\" (a user namespace with a range of host ids from the driver's userns_range) or \"host\" (host ids)"),
        )),
    }
}

/// The task directory's layout, as the exec driver makes it.
pub const TASK_LOCAL: &str = "/local";
pub const TASK_SECRETS: &str = "/secrets";
pub const TASK_TMP: &str = "/tmp";
pub const TASK_ALLOC: &str = "/alloc";

/// How a task's root is assembled.
#[derive(Debug, Clone, PartialEq)]
pub struct ChrootPlan {
    pub mode: ChrootMode,
    /// (host path, task path), parents first. Host paths that do not
    /// exist are skipped when the root is assembled.
    pub entries: Vec<(PathBuf, PathBuf)>,
    /// The sandbox (allocation) the task belongs to.
    pub sandbox: Option<String>,
    /// Host directory mounted at /alloc: shared by the sandbox's tasks.
    pub alloc_host: PathBuf,
    /// Where overlay mode keeps the task's upper layers.
    pub overlay_dir: PathBuf,
    /// Host paths (globs) kept out of the task (`chroot_env_hide`).
    pub hide: Vec<String>,
    /// `ephemeral_disk_mb`: `/local` and `/tmp` share one filesystem of
    /// this many MiB, mounted (in the task's namespace) at `disk_dir`.
    pub disk_mb: Option<u64>,
    pub disk_dir: PathBuf,
}

/// Whether `name` (one path component) matches `pattern`: `*` is any run of
/// characters, `?` any one. Pure.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Host directory of a sandbox's shared files, below the state root.
pub fn sandbox_dir(state_root: &Path, sandbox: &str) -> PathBuf {
    state_root.join(".sandboxes").join(sandbox)
}

/// The sandbox a task belongs to: isoexec's annotation, else the CRI's.
pub fn sandbox_of(annotations: &BTreeMap<String, String>) -> Result<Option<String>> {
    let Some((key, v)) = [ANN_SANDBOX, ANN_CRI_SANDBOX]
        .iter()
        .find_map(|k| annotations.get(*k).map(|v| (*k, v)))
    else {
        return Ok(None);
    };
    crate::plan::validate_id(v).map_err(|_| {
        Error::invalid(
            format!("annotations[{key:?}]"),
            format!("{v:?} is not a valid sandbox id (letters, digits, '_', '+', '-', '.')"),
        )
    })?;
    Ok(Some(v.clone()))
}

/// The chroot plan for task `id`, or `None` when the task asked for plain
/// image semantics (`io.isoexec.chroot_env = "none"`, or no annotation
/// with `default_root = "image"`; `"driver"` asks for the chroot_env
/// whatever the default).
pub fn chroot_plan(
    id: &str,
    annotations: &BTreeMap<String, String>,
    driver: &DriverConfig,
    state_root: &Path,
) -> Result<Option<ChrootPlan>> {
    match annotations.get(ANN_CHROOT_ENV).map(String::as_str) {
        None | Some("") | Some("default") if driver.image_by_default => return Ok(None),
        None | Some("") | Some("default") | Some("driver") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(Error::invalid(
                format!("annotations[{ANN_CHROOT_ENV:?}]"),
                format!("{other:?}: use \"none\" (image semantics), \"driver\" (the driver's chroot_env), or leave it out (the config's default_root)"),
            ))
        }
    }
    let mode = match annotations.get(ANN_CHROOT_MODE) {
        None => driver.chroot_mode,
        Some(m) => ChrootMode::parse(&format!("annotations[{ANN_CHROOT_MODE:?}]"), m)
            .map_err(|e| Error::invalid("annotations", e))?,
    };
    let disk_mb = match annotations.get(ANN_EPHEMERAL_DISK) {
        None => driver.ephemeral_disk_mb,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(mb) if mb <= 1 << 30 => Some(mb),
            _ => {
                return Err(Error::invalid(
                    format!("annotations[{ANN_EPHEMERAL_DISK:?}]"),
                    format!("{v:?} is not a size in MiB (a whole number; 0 for no limit)"),
                ))
            }
        },
    };
    let sandbox = sandbox_of(annotations)?;
    let alloc_host = match &sandbox {
        Some(s) => sandbox_dir(state_root, s).join("alloc"),
        None => state_root.join(id).join("alloc"),
    };
    Ok(Some(ChrootPlan {
        mode,
        entries: driver.chroot_env.clone(),
        sandbox,
        alloc_host,
        overlay_dir: state_root.join(id).join("overlay"),
        hide: driver.chroot_env_hide.clone(),
        disk_mb,
        disk_dir: state_root.join(id).join("disk"),
    }))
}

/// Applies `io.isoexec.pid_mode` / `io.isoexec.ipc_mode`: `host` shares the
/// host's namespace, `private` gives the task its own.
pub fn apply_ns_modes(
    ns: &mut NamespacePlan,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    for (key, kind) in [(ANN_PID_MODE, NsKind::Pid), (ANN_IPC_MODE, NsKind::Ipc)] {
        let Some(v) = annotations.get(key) else {
            continue;
        };
        let mode = NsMode::parse(&format!("annotations[{key:?}]"), v)
            .map_err(|e| Error::invalid("annotations", e))?;
        ns.new.retain(|k| *k != kind);
        ns.join.retain(|(k, _)| *k != kind);
        if mode == NsMode::Private {
            ns.new.push(kind);
            ns.new.sort();
        }
    }
    Ok(())
}

/// Checks a process against the driver's policy, before anything starts:
/// capabilities outside `allow_caps` are dropped when containerd asks for
/// them by default, refused otherwise; a denied uid or gid is refused.
/// Returns the warnings to log.
///
/// In a user namespace the denied ids are the host's: a task's uid 0
/// mapped onto host uid 100000 is judged as 100000.
pub fn apply_policy(
    p: &mut ProcessPlan,
    driver: &DriverConfig,
    userns: Option<&UserNsPlan>,
) -> Result<Vec<String>> {
    let host_uid = |id: u32| userns.map_or(Some(id), |u| u.host_uid(id));
    let host_gid = |id: u32| userns.map_or(Some(id), |u| u.host_gid(id));
    for (what, id, host, denied) in
        std::iter::once(("uid", p.uid, host_uid(p.uid), &driver.denied_host_uids))
            .chain(std::iter::once((
                "gid",
                p.gid,
                host_gid(p.gid),
                &driver.denied_host_gids,
            )))
            .chain(
                p.additional_gids
                    .iter()
                    .map(|g| ("gid", *g, host_gid(*g), &driver.denied_host_gids)),
            )
    {
        let Some(host) = host else {
            return Err(Error::Policy(format!(
                "{what} {id} is not mapped in the task's user namespace"
            )));
        };
        if denied.contains(host) {
            let mapped = if host != id {
                format!(" (host {what} {host} in the task's user namespace)")
            } else {
                String::new()
            };
            return Err(Error::Policy(format!(
                "running as {what} {id}{mapped} is disallowed"
            )));
        }
    }
    let c = &mut p.capabilities;
    let mut asked: Vec<caps::Capability> = [
        &c.bounding,
        &c.effective,
        &c.inheritable,
        &c.permitted,
        &c.ambient,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    asked.sort_by_key(|c| c.index());
    asked.dedup();
    let defaults: Vec<caps::Capability> = CONTAINERD_DEFAULT_CAPS
        .iter()
        .filter_map(|n| parse_cap(n))
        .collect();
    let (dropped, refused): (Vec<_>, Vec<_>) = asked
        .into_iter()
        .filter(|cap| !driver.allow_caps.allows(*cap))
        .partition(|cap| defaults.contains(cap));
    if !refused.is_empty() {
        let names: Vec<String> = refused.iter().map(|c| cap_name(*c)).collect();
        let file = driver
            .source
            .as_ref()
            .map(|f| format!(" in {}", f.display()))
            .unwrap_or_default();
        return Err(Error::Policy(format!(
            "driver does not allow the following capabilities: {} (allow_caps{file} lists the capabilities a task may have)",
            names.join(", ")
        )));
    }
    let mut warnings = Vec::new();
    if !dropped.is_empty() {
        for set in [
            &mut c.bounding,
            &mut c.effective,
            &mut c.inheritable,
            &mut c.permitted,
            &mut c.ambient,
        ] {
            set.retain(|cap| !dropped.contains(cap));
        }
        let names: Vec<String> = dropped.iter().map(|c| cap_name(*c)).collect();
        warnings.push(format!(
            "dropping capabilities not in allow_caps: {}",
            names.join(", ")
        ));
    }
    Ok(warnings)
}

/// A chroot_env in a user namespace is mounted idmapped: the host's root
/// files appear as the task's root's, read-only. Only the mount's flags
/// keep the task from writing them, so the task must not hold
/// CAP_SYS_ADMIN, which could remount them writable; overlay mode has
/// no idmapped layers here.
pub fn check_userns_chroot(c: &ChrootPlan, p: &ProcessPlan) -> Result<()> {
    if c.mode == ChrootMode::Overlay {
        return Err(Error::invalid(
            "annotations",
            "chroot_mode \"overlay\" cannot be used in a user namespace: use \"bind\" (idmapped, read-only) or \"link\"",
        ));
    }
    if p.capabilities
        .bounding
        .contains(&caps::Capability::CAP_SYS_ADMIN)
    {
        return Err(Error::Policy(
            "a task in a user namespace cannot have CAP_SYS_ADMIN with the chroot_env: it could remount the host's directories (idmapped to its root) writable; drop sys_admin, or use image semantics".into(),
        ));
    }
    Ok(())
}

/// The exec driver's task environment, added where the task does not set
/// the variable itself.
pub fn add_task_env(p: &mut ProcessPlan, resources: Option<&LinuxResources>) {
    let mut vars: Vec<(&str, String)> = vec![
        ("NOMAD_TASK_DIR", TASK_LOCAL.into()),
        ("NOMAD_ALLOC_DIR", TASK_ALLOC.into()),
        ("NOMAD_SECRETS_DIR", TASK_SECRETS.into()),
    ];
    if let Some(r) = resources {
        if let Some(cpu) = r.cpu() {
            // The exec driver gives a task cpu.shares = its MHz.
            if let Some(s) = cpu.shares().filter(|s| *s > 0) {
                vars.push(("NOMAD_CPU_LIMIT", s.to_string()));
            }
            if let Some(list) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
                if let Ok(cpus) = crate::plan::parse_cpu_list(list) {
                    vars.push(("NOMAD_CPU_CORES", cpu_ranges(&cpus)));
                }
            }
        }
        if let Some(m) = r.memory() {
            let mib = |b: i64| (b / (1 << 20)).to_string();
            let limit = m.limit().filter(|l| *l > 0);
            let reservation = m.reservation().filter(|r| *r > 0);
            // memory (MB) is the soft limit when memory_max is set, the hard
            // limit otherwise.
            match (reservation, limit) {
                (Some(r), Some(l)) if l > r => {
                    vars.push(("NOMAD_MEMORY_LIMIT", mib(r)));
                    vars.push(("NOMAD_MEMORY_MAX_LIMIT", mib(l)));
                }
                (_, Some(l)) => vars.push(("NOMAD_MEMORY_LIMIT", mib(l))),
                (Some(r), None) => vars.push(("NOMAD_MEMORY_LIMIT", mib(r))),
                (None, None) => {}
            }
        }
    }
    for (k, v) in vars {
        let set = p.env.iter().any(|e| e.split('=').next() == Some(k));
        if !set {
            p.env.push(format!("{k}={v}"));
        }
    }
}

/// A cpu list in its short form: `[0, 2, 3]` → `0,2-3`.
pub fn cpu_ranges(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
