//! The translation from an OCI runtime spec to a [`Plan`]: everything the
//! executor needs to start a container, validated and resolved, with no
//! system call made. This is the one place that decides *what* happens; the
//! `sys` module only carries it out.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, LinuxResources, Spec};

use crate::error::{Error, Result};

/// A container, ready to be executed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub bundle: PathBuf,
    pub root: RootPlan,
    pub namespaces: NamespacePlan,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    /// Symlinks made in `/dev` after the devices (`/dev/fd`, `/dev/stdin`, ...).
    pub dev_symlinks: Vec<(PathBuf, PathBuf)>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub cgroup: CgroupPlan,
    pub annotations: BTreeMap<String, String>,
    /// The exec driver's root assembly; `None` for image semantics.
    pub chroot: Option<crate::driver::ChrootPlan>,
    /// The spec's hooks.
    pub hooks: crate::hooks::Hooks,
    /// What the front end should tell the user (policy adjustments, ...).
    pub warnings: Vec<String>,
    /// The init gets a session keyring of its own (runc's default; off with
    /// `--no-new-keyring`): keys of whoever started the runtime stay theirs.
    pub new_session_keyring: bool,
    /// The new user namespace's mappings; `None` when the task has none
    /// of its own (host ids, or a user namespace joined by path).
    pub userns: Option<UserNsPlan>,
}

/// One line of a uid_map or gid_map: `size` ids from `container` up are
/// the host's ids from `host` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A user namespace the runtime creates, and how its ids map to the host's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserNsPlan {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// The driver pool's slot (`userns = "auto"`), freed at delete.
    #[serde(default)]
    pub pool_slot: Option<u32>,
}

impl UserNsPlan {
    /// The mappings of slot `slot` of the driver's pool: the task's ids
    /// 0..size are the slot's host ids.
    pub fn from_pool(pool: &crate::config::UserNsPool, slot: u32) -> UserNsPlan {
        let map = vec![IdMap {
            container: 0,
            host: pool.base(slot),
            size: pool.size,
        }];
        UserNsPlan {
            uid_map: map.clone(),
            gid_map: map,
            pool_slot: Some(slot),
        }
    }

    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uid_map, id)
    }

    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gid_map, id)
    }

    /// A map as /proc/PID/uid_map takes it: one `inside host size` per line.
    pub fn map_text(map: &[IdMap]) -> String {
        map.iter()
            .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
            .collect()
    }
}

fn to_host(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        let off = id.checked_sub(m.container)?;
        (off < m.size).then(|| m.host + off)
    })
}

/// The container's root filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct RootPlan {
    /// Absolute host path of the root directory.
    pub path: PathBuf,
    pub readonly: bool,
    /// Propagation applied to `/` inside the container (`linux.rootfsPropagation`).
    pub propagation: Option<MsFlags>,
    /// `pivot_root` (default), or MS_MOVE + chroot with `--no-pivot`.
    pub pivot: bool,
}

/// A Linux namespace kind, with what the kernel calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsKind {
    User,
    Mount,
    Uts,
    Ipc,
    Net,
    Pid,
    Cgroup,
    Time,
}

impl NsKind {
    pub fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::User => CloneFlags::CLONE_NEWUSER,
            NsKind::Mount => CloneFlags::CLONE_NEWNS,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
            NsKind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            NsKind::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        }
    }

    /// The name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Mount => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    /// The name config.json gives it (`linux.namespaces[].type`).
    pub fn oci_name(self) -> &'static str {
        match self {
            NsKind::Net => "network",
            NsKind::Mount => "mount",
            k => k.proc_name(),
        }
    }

    /// Every kind, in the order a process joins them (user first, so the
    /// others are joined with its privileges; mount last but pid, which only
    /// affects children).
    pub const JOIN_ORDER: [NsKind; 8] = [
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Net,
        NsKind::Cgroup,
        NsKind::Time,
        NsKind::Mount,
        NsKind::Pid,
    ];

    fn from_oci(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::User => NsKind::User,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Network => NsKind::Net,
            LinuxNamespaceType::Time => NsKind::Time,
        }
    }
}

/// Which namespaces the init creates and which it joins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespacePlan {
    /// Namespaces created for the container.
    pub new: Vec<NsKind>,
    /// Existing namespaces joined, by path (e.g. a pod's network namespace).
    pub join: Vec<(NsKind, PathBuf)>,
}

impl NamespacePlan {
    pub fn creates(&self, kind: NsKind) -> bool {
        self.new.contains(&kind)
    }

    /// True when the container has a namespace of this kind, new or joined.
    pub fn has(&self, kind: NsKind) -> bool {
        self.creates(kind) || self.join.iter().any(|(k, _)| *k == kind)
    }
}

/// What a mount is.
#[derive(Debug, Clone, PartialEq)]
pub enum MountKind {
    /// A bind mount of `source`; `recursive` for `rbind`.
    Bind { recursive: bool },
    /// A filesystem mount (`proc`, `tmpfs`, `sysfs`, ...).
    Fs { fstype: String },
    /// The container's own cgroup directories, read-only unless `rw`.
    Cgroup,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub source: Option<PathBuf>,
    pub kind: MountKind,
    /// MS_* flags other than bind and propagation (MS_RDONLY, MS_NOSUID, ...).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755,size=65536k`).
    pub data: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    /// Absolute path inside the container (under `/dev`).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits (0o666 when the spec does not say).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The five capability sets, as kernel capabilities.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapabilityPlan {
    pub bounding: Vec<caps::Capability>,
    pub effective: Vec<caps::Capability>,
    pub inheritable: Vec<caps::Capability>,
    pub permitted: Vec<caps::Capability>,
    pub ambient: Vec<caps::Capability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// `libc::RLIMIT_*`.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// The process the container runs (the init, or one exec'd into it).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub capabilities: CapabilityPlan,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    /// (rows, columns) of the terminal.
    pub console_size: Option<(u16, u16)>,
    /// The seccomp filter the process runs under (`linux.seccomp`).
    pub seccomp: Option<crate::seccomp::SeccompPlan>,
}

/// Where the container's cgroup is and what it limits.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupPlan {
    /// Path below each hierarchy's root (absolute) or below the runtime's
    /// own cgroup (relative).
    pub path: String,
    pub resources: Option<LinuxResources>,
    /// Device access rules, in the order they are written.
    pub devices: Vec<DeviceRule>,
}

/// One rule of the devices cgroup: `allow`/deny `kind major:minor access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a` (all), `c` or `b`.
    pub kind: char,
    /// `None` is `*`.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of `rwm`.
    pub access: String,
}

impl DeviceRule {
    fn new(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Self {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// The rule as devices.allow / devices.deny take it: `c 1:3 rwm`, `a`.
    pub fn to_cgroup_v1(&self) -> String {
        if self.kind == 'a' {
            return "a".to_string();
        }
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// Devices every container may use (runc's list): mknod of anything (access
/// is what the rules guard), the standard nodes, the pty devices and tun.
fn default_device_rules() -> Vec<DeviceRule> {
    let c = |major, minor| DeviceRule::new(true, 'c', Some(major), minor, "rwm");
    vec![
        DeviceRule::new(true, 'c', None, None, "m"),
        DeviceRule::new(true, 'b', None, None, "m"),
        c(1, Some(3)),
        c(1, Some(5)),
        c(1, Some(7)),
        c(1, Some(8)),
        c(1, Some(9)),
        c(5, Some(0)),
        c(5, Some(2)),
        c(136, None),
        c(10, Some(200)),
    ]
}

/// Device rules: deny everything, then the spec's rules in order, then the
/// defaults and the nodes the spec creates. A spec cannot open the host's
/// devices by leaving the rules out.
pub fn device_rules(
    spec_rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    devices: &[DevicePlan],
) -> Result<Vec<DeviceRule>> {
    let mut rules = vec![DeviceRule::new(false, 'a', None, None, "rwm")];
    for (i, r) in spec_rules.iter().enumerate() {
        let field = format!("linux.resources.devices[{i}]");
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => {
                return Err(Error::invalid(
                    field,
                    "type \"p\" (fifo) has no device cgroup rule",
                ))
            }
        };
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(Error::invalid(
                field,
                format!("access {access:?} must be made of r, w and m"),
            ));
        }
        push_rule(
            &mut rules,
            DeviceRule::new(r.allow(), kind, r.major(), r.minor(), &access),
        );
    }
    for r in default_device_rules() {
        push_rule(&mut rules, r);
    }
    for d in devices {
        let kind = match d.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
            DeviceKind::Fifo => continue,
        };
        let rule = DeviceRule::new(
            true,
            kind,
            Some(d.major as i64),
            Some(d.minor as i64),
            "rwm",
        );
        push_rule(&mut rules, rule);
    }
    Ok(rules)
}

/// Appends `r` unless it would change nothing: the same rule stands
/// earlier and every rule since has its polarity (none can have undone
/// it). Each v1 rule is a write of its own at every start, and containerd's
/// default spec repeats most of isoexec's defaults.
fn push_rule(rules: &mut Vec<DeviceRule>, r: DeviceRule) {
    let redundant = rules
        .iter()
        .rposition(|x| *x == r)
        .is_some_and(|i| rules[i + 1..].iter().all(|x| x.allow == r.allow));
    if !redundant {
        rules.push(r);
    }
}

/// Options that come from the command line rather than the bundle.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub no_pivot: bool,
    /// `--no-new-keyring`: the init keeps the caller's session keyring.
    pub no_new_keyring: bool,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
    /// The driver's options (config.toml).
    pub driver: crate::config::DriverConfig,
    /// The state root: sandboxes' shared directories and overlay layers
    /// live below it.
    pub state_root: PathBuf,
    /// The slot of the driver's user namespace pool allocated for this
    /// task (`userns = "auto"`): used when the spec has no user namespace.
    pub userns_slot: Option<u32>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            no_pivot: false,
            no_new_keyring: false,
            systemd_cgroup: false,
            driver: crate::config::DriverConfig::default(),
            state_root: PathBuf::from("/run/isoexec"),
            userns_slot: None,
        }
    }
}

fn dev_tmpfs() -> MountPlan {
    MountPlan {
        destination: PathBuf::from("/dev"),
        source: Some(PathBuf::from("tmpfs")),
        kind: MountKind::Fs {
            fstype: "tmpfs".into(),
        },
        flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        propagation: vec![],
        data: Some("mode=755,size=65536k".into()),
    }
}

/// The default device nodes every container gets (as runc creates them).
pub fn default_devices() -> Vec<DevicePlan> {
    let dev = |name: &str, major, minor| DevicePlan {
        path: PathBuf::from("/dev").join(name),
        kind: DeviceKind::Char,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    vec![
        dev("null", 1, 3),
        dev("zero", 1, 5),
        dev("full", 1, 7),
        dev("random", 1, 8),
        dev("urandom", 1, 9),
        dev("tty", 5, 0),
    ]
}

fn default_dev_symlinks() -> Vec<(PathBuf, PathBuf)> {
    [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ]
    .iter()
    .map(|(target, link)| (PathBuf::from(target), PathBuf::from(link)))
    .collect()
}

/// Translates `spec` (from the bundle at `bundle`) into a plan for container `id`.
pub fn plan(id: &str, bundle: &Path, spec: &Spec, opts: &PlanOptions) -> Result<Plan> {
    validate_id(id)?;
    if !bundle.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "bundle path {} must be absolute",
            bundle.display()
        )));
    }
    let annotations = annotations_of(spec);
    let root = root_plan(bundle, spec, opts)?;
    let mut namespaces = namespace_plan(spec)?;
    crate::driver::apply_ns_modes(&mut namespaces, &annotations)?;
    let linux = spec.linux().as_ref();
    let userns = userns_plan(spec, &mut namespaces, opts)?;

    // As runc: a uts namespace of the container's own, new or joined
    // (the hostname is then set in the joined one); never the host's.
    if spec.hostname().is_some() && !namespaces.has(NsKind::Uts) {
        return Err(Error::invalid(
            "hostname",
            "setting a hostname needs a uts namespace (add {\"type\": \"uts\"} to linux.namespaces, or join one with a path)",
        ));
    }

    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mounts.push(mount_plan(i, m)?);
    }
    // The root is built in the container's own mount namespace, new or
    // joined (by path; never the runtime's own, see create): never in the
    // host's mount table.
    if !namespaces.has(NsKind::Mount) {
        return Err(Error::invalid(
            "linux.namespaces",
            "isoexec needs a mount namespace of the container's own to build the root without touching the host's mounts (add {\"type\": \"mount\"}, or join one with a path)",
        ));
    }
    // /dev is always a fresh tmpfs with only the standard nodes, never the
    // root directory's own /dev (nor the host's).
    if !mounts.iter().any(|m| m.destination == Path::new("/dev")) {
        mounts.insert(0, dev_tmpfs());
    }

    let mut devices = default_devices();
    for (i, d) in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("linux.devices[{i}]");
        let path = inside_root(&field, d.path())?;
        if !path.starts_with("/dev") {
            return Err(Error::invalid(
                field,
                format!("device path {} is not under /dev", d.path().display()),
            ));
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::P => DeviceKind::Fifo,
            LinuxDeviceType::A => {
                return Err(Error::invalid(field, "type \"a\" is not a device type"))
            }
        };
        let (major, minor) = (d.major(), d.minor());
        if kind != DeviceKind::Fifo && (major < 0 || minor < 0) {
            return Err(Error::invalid(
                field,
                "major and minor must not be negative",
            ));
        }
        let plan = DevicePlan {
            path,
            kind,
            major: major.max(0) as u64,
            minor: minor.max(0) as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        // A device the spec names replaces the default of the same path.
        devices.retain(|x| x.path != plan.path);
        devices.push(plan);
    }

    let paths = |field: &str, list: Option<&Vec<String>>| -> Result<Vec<PathBuf>> {
        list.into_iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| inside_root(&format!("{field}[{i}]"), Path::new(p)))
            .collect()
    };
    let masked_paths = paths(
        "linux.maskedPaths",
        linux.and_then(|l| l.masked_paths().as_ref()),
    )?;
    let readonly_paths = paths(
        "linux.readonlyPaths",
        linux.and_then(|l| l.readonly_paths().as_ref()),
    )?;

    let mut sysctl: Vec<(String, String)> = linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sysctl.sort();
    for (k, _) in &sysctl {
        validate_sysctl(k, &namespaces)?;
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing: the spec must say what to run"))?;
    let mut process = process_plan(process, "process")?;
    if let Some(u) = &userns {
        check_mapped(&process, u, "process.user")?;
    }
    let warnings = crate::driver::apply_policy(&mut process, &opts.driver, userns.as_ref())?;
    let chroot = crate::driver::chroot_plan(id, &annotations, &opts.driver, &opts.state_root)?;
    if let Some(c) = &chroot {
        if userns.is_some() {
            crate::driver::check_userns_chroot(c, &process)?;
        } else if namespaces.has(NsKind::User) {
            return Err(Error::invalid(
                "linux.namespaces",
                "the exec driver's chroot_env cannot be given a user namespace joined by path (its mappings are not known to the runtime): create one with linux.uidMappings, or use image semantics (io.isoexec.chroot_env=none)",
            ));
        }
    }
    if chroot.is_some() {
        crate::driver::add_task_env(&mut process, linux.and_then(|l| l.resources().as_ref()));
    }
    process.seccomp = linux
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::plan)
        .transpose()?;

    let cgroup = cgroup_plan(id, spec, opts, &devices)?;
    let hooks = crate::hooks::plan(spec.hooks().as_ref())?;

    Ok(Plan {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        root,
        namespaces,
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        mounts,
        devices,
        dev_symlinks: default_dev_symlinks(),
        masked_paths,
        readonly_paths,
        sysctl,
        process,
        cgroup,
        annotations,
        chroot,
        hooks,
        warnings,
        new_session_keyring: !opts.no_new_keyring,
        userns,
    })
}

/// The user namespace: the spec's mappings for a new one (checked as the
/// kernel would, so the error names the field), none for one joined by
/// path, or the driver pool's slot when the spec has no user namespace
/// and the driver gives every task one (`userns = "auto"`).
fn userns_plan(
    spec: &Spec,
    ns: &mut NamespacePlan,
    opts: &PlanOptions,
) -> Result<Option<UserNsPlan>> {
    let linux = spec.linux().as_ref();
    let uid_map = to_id_maps(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid_map = to_id_maps(linux.and_then(|l| l.gid_mappings().as_ref()));
    let given = !uid_map.is_empty() || !gid_map.is_empty();
    if ns.join.iter().any(|(k, _)| *k == NsKind::User) {
        if given {
            return Err(Error::invalid(
                "linux.uidMappings",
                "given with a user namespace joined by path, which has its mappings already: leave them out, or create the namespace (no path)",
            ));
        }
        // A pid namespace made by the runtime's fork belongs to the
        // runtime's user namespace: the task could not mount its /proc.
        if ns.creates(NsKind::Pid) {
            return Err(Error::invalid(
                "linux.namespaces",
                "a new pid namespace with a user namespace joined by path is not supported: join the pid namespace too (a path), or create the user namespace",
            ));
        }
        return Ok(None);
    }
    if !ns.creates(NsKind::User) {
        if given {
            return Err(Error::invalid(
                "linux.uidMappings",
                "mappings need a new user namespace: add {\"type\": \"user\"} to linux.namespaces",
            ));
        }
        let Some(slot) = opts.userns_slot else {
            return Ok(None);
        };
        ns.new.push(NsKind::User);
        ns.new.sort();
        check_joinable_with_new_userns(ns)?;
        return Ok(Some(UserNsPlan::from_pool(&opts.driver.userns_pool, slot)));
    }
    for (field, map) in [
        ("linux.uidMappings", &uid_map),
        ("linux.gidMappings", &gid_map),
    ] {
        check_id_map(field, map)?;
        // The init sets the container up as the namespace's root.
        if to_host(map, 0).is_none() {
            return Err(Error::invalid(
                field,
                "must map containerID 0: isoexec sets the container up as the user namespace's root",
            ));
        }
    }
    check_joinable_with_new_userns(ns)?;
    Ok(Some(UserNsPlan {
        uid_map,
        gid_map,
        pool_slot: None,
    }))
}

fn to_id_maps(m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMap> {
    m.into_iter()
        .flatten()
        .map(|m| IdMap {
            container: m.container_id(),
            host: m.host_id(),
            size: m.size(),
        })
        .collect()
}

/// A map the kernel takes: at least one line and at most 340, no empty
/// line, none past the last id, no two lines overlapping on either side.
fn check_id_map(field: &str, map: &[IdMap]) -> Result<()> {
    if map.is_empty() {
        return Err(Error::invalid(
            field,
            "missing: a new user namespace needs uid and gid mappings ({\"containerID\": 0, \"hostID\": 100000, \"size\": 65536})",
        ));
    }
    if map.len() > 340 {
        return Err(Error::invalid(
            field,
            format!("{} lines: the kernel takes at most 340", map.len()),
        ));
    }
    let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
    for (i, m) in map.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if m.size == 0 {
            return Err(Error::invalid(f, "size is 0: map at least one id"));
        }
        if end(m.container, m.size) > u64::from(u32::MAX)
            || end(m.host, m.size) > u64::from(u32::MAX)
        {
            return Err(Error::invalid(
                f,
                format!(
                    "{} ids from containerID {} or hostID {} run past the last id (4294967294)",
                    m.size, m.container, m.host
                ),
            ));
        }
        for (j, o) in map[..i].iter().enumerate() {
            let inter =
                |a: u32, b: u32| u64::from(a) < end(b, o.size) && u64::from(b) < end(a, m.size);
            if inter(m.container, o.container) {
                return Err(Error::invalid(
                    f,
                    format!("its containerIDs overlap those of {field}[{j}]"),
                ));
            }
            if inter(m.host, o.host) {
                return Err(Error::invalid(
                    f,
                    format!("its hostIDs overlap those of {field}[{j}]"),
                ));
            }
        }
    }
    Ok(())
}

/// With a new user namespace, the namespaces joined by path are entered by
/// the runtime before its fork (they belong to the host's user namespace,
/// where the task has no capability); a mount namespace cannot be: the
/// task could not build its root in it.
fn check_joinable_with_new_userns(ns: &NamespacePlan) -> Result<()> {
    if ns.join.iter().any(|(k, _)| *k == NsKind::Mount) {
        return Err(Error::invalid(
            "linux.namespaces",
            "a mount namespace joined by path cannot hold a root built in a new user namespace: create the mount namespace (no path)",
        ));
    }
    Ok(())
}

/// The process's ids must exist in the user namespace, or the kernel
/// refuses them at the last step (setresuid: EINVAL).
pub fn check_mapped(p: &ProcessPlan, u: &UserNsPlan, field: &str) -> Result<()> {
    if u.host_uid(p.uid).is_none() {
        return Err(Error::invalid(
            format!("{field}.uid"),
            format!("{} is not mapped by linux.uidMappings", p.uid),
        ));
    }
    for g in std::iter::once(&p.gid).chain(&p.additional_gids) {
        if u.host_gid(*g).is_none() {
            return Err(Error::invalid(
                format!("{field}.gid"),
                format!("{g} is not mapped by linux.gidMappings"),
            ));
        }
    }
    Ok(())
}

/// The spec's annotations, ordered.
pub fn annotations_of(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Container ids are used as directory names: keep them to what runc allows.
pub fn validate_id(id: &str) -> Result<()> {
    // A leading dot is kept for the runtime's own entries in the state root.
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'"
        )))
    }
}

fn root_plan(bundle: &Path, spec: &Spec, opts: &PlanOptions) -> Result<RootPlan> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root", "missing: the spec must name a root directory"))?;
    if root.path().as_os_str().is_empty() {
        return Err(Error::invalid("root.path", "empty"));
    }
    let path = normalize(&bundle.join(root.path()));
    let propagation = match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        None | Some("") => None,
        Some(p) => Some(propagation_flag(p).ok_or_else(|| {
            Error::invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?} (use private, rprivate, shared, rshared, slave, rslave, unbindable or runbindable)"),
            )
        })?),
    };
    Ok(RootPlan {
        path,
        readonly: root.readonly().unwrap_or(false),
        propagation,
        pivot: !(opts.no_pivot || opts.driver.no_pivot_root),
    })
}

fn namespace_plan(spec: &Spec) -> Result<NamespacePlan> {
    let mut plan = NamespacePlan::default();
    let mut seen = Vec::new();
    for (i, ns) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = NsKind::from_oci(ns.typ());
        if seen.contains(&kind) {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} is listed twice", kind.proc_name()),
            ));
        }
        seen.push(kind);
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.is_absolute() {
                    return Err(Error::invalid(
                        format!("linux.namespaces[{i}].path"),
                        format!("{} is not an absolute path", p.display()),
                    ));
                }
                plan.join.push((kind, p.clone()));
            }
            _ => plan.new.push(kind),
        }
    }
    plan.new.sort();
    plan.join
        .sort_by_key(|(k, _)| NsKind::JOIN_ORDER.iter().position(|o| o == k));
    Ok(plan)
}

fn mount_plan(index: usize, m: &oci_spec::runtime::Mount) -> Result<MountPlan> {
    let field = format!("mounts[{index}]");
    let destination = inside_root(&format!("{field}.destination"), m.destination())?;
    if destination == Path::new("/") {
        return Err(Error::invalid(
            format!("{field}.destination"),
            "cannot mount over / (set root.path instead)",
        ));
    }
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().clone().unwrap_or_default();
    let kind = if opts.bind.is_some() || fstype == "bind" {
        MountKind::Bind {
            recursive: opts.bind.unwrap_or(false),
        }
    } else if fstype == "cgroup" || fstype == "cgroup2" {
        MountKind::Cgroup
    } else if fstype.is_empty() {
        return Err(Error::invalid(
            format!("{field}.type"),
            format!(
                "missing for {} (use a filesystem type, or the \"bind\"/\"rbind\" option)",
                m.destination().display()
            ),
        ));
    } else {
        MountKind::Fs { fstype }
    };
    let source = m.source().clone();
    if matches!(kind, MountKind::Bind { .. }) {
        match &source {
            Some(s) if s.is_absolute() => {}
            Some(s) => {
                return Err(Error::invalid(
                    format!("{field}.source"),
                    format!("bind source {} must be an absolute path", s.display()),
                ))
            }
            None => {
                return Err(Error::invalid(
                    format!("{field}.source"),
                    "a bind mount needs a source",
                ))
            }
        }
    }
    Ok(MountPlan {
        destination,
        source,
        kind,
        flags: opts.flags,
        propagation: opts.propagation,
        data: if opts.data.is_empty() {
            None
        } else {
            Some(opts.data.join(","))
        },
    })
}

/// Mount options split as the kernel wants them.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// `Some(false)` for `bind`, `Some(true)` for `rbind`.
    pub bind: Option<bool>,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            bind: None,
            propagation: vec![],
            data: vec![],
        }
    }
}

/// Splits OCI mount options into flags, bind, propagation and filesystem
/// data, as mount(8) and runc read them. Unknown options are passed to the
/// filesystem as data (`mode=755`, `newinstance`, ...).
pub fn parse_mount_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    for opt in options {
        let opt = opt.as_ref();
        let (set, flag) = match opt {
            "defaults" => continue,
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "dev" => (false, MsFlags::MS_NODEV),
            "nodev" => (true, MsFlags::MS_NODEV),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "async" => (false, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (true, MsFlags::MS_DIRSYNC),
            "remount" => (true, MsFlags::MS_REMOUNT),
            "mand" => (true, MsFlags::MS_MANDLOCK),
            "nomand" => (false, MsFlags::MS_MANDLOCK),
            "atime" => (false, MsFlags::MS_NOATIME),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "diratime" => (false, MsFlags::MS_NODIRATIME),
            "nodiratime" => (true, MsFlags::MS_NODIRATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "norelatime" => (false, MsFlags::MS_RELATIME),
            "strictatime" => (true, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
            "bind" => {
                out.bind = Some(out.bind.unwrap_or(false));
                continue;
            }
            "rbind" => {
                out.bind = Some(true);
                continue;
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    out.propagation.push(p);
                } else {
                    out.data.push(other.to_string());
                }
                continue;
            }
        };
        if set {
            out.flags |= flag;
        } else {
            out.flags &= !flag;
        }
    }
    out
}

/// The MS_* flags of a propagation name (`rslave` → MS_SLAVE|MS_REC).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Checks that `path` is an absolute path with no `..` leaving the root, and
/// returns it normalized. (Symlinks are resolved at mount time, inside the
/// root, by `sys::at::Root`.)
fn inside_root(field: &str, path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::invalid(
            field,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    Ok(normalize(path))
}

/// Lexically normalizes a path: drops `.`, applies `..` (never above `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => {}
        }
    }
    if out.as_os_str().is_empty() {
        out.push(if path.is_absolute() { "/" } else { "." });
    }
    out
}

/// Sysctls are namespaced; only the ones the container's namespaces own may
/// be set, as runc enforces.
fn validate_sysctl(key: &str, ns: &NamespacePlan) -> Result<()> {
    let field = format!("linux.sysctl[{key:?}]");
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        if !ns.has(NsKind::Ipc) {
            return Err(Error::invalid(field, "needs an ipc namespace"));
        }
    } else if key.starts_with("net.") {
        if !ns.has(NsKind::Net) {
            return Err(Error::invalid(field, "needs a network namespace"));
        }
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        if !ns.has(NsKind::Uts) {
            return Err(Error::invalid(field, "needs a uts namespace"));
        }
    } else {
        return Err(Error::invalid(
            field,
            "is not namespaced: setting it would change the host",
        ));
    }
    if key.contains("..") || key.contains('/') {
        return Err(Error::invalid(field, "not a sysctl name"));
    }
    Ok(())
}

/// Translates a `process` object (of config.json, or of `exec --process`).
pub fn process_plan(p: &oci_spec::runtime::Process, field: &str) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid(
            format!("{field}.args"),
            "empty: name the program to run",
        ));
    }
    let cwd = p.cwd().clone();
    if !cwd.is_absolute() {
        return Err(Error::invalid(
            format!("{field}.cwd"),
            format!("{:?} is not an absolute path", cwd.display().to_string()),
        ));
    }
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(Error::invalid(
            format!("{field}.args[{i}]"),
            "contains a NUL byte",
        ));
    }
    let env = p.env().clone().unwrap_or_default();
    for (i, e) in env.iter().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(Error::invalid(
                format!("{field}.env[{i}]"),
                format!("{e:?} is not NAME=value"),
            ));
        }
        if e.contains('\0') {
            return Err(Error::invalid(
                format!("{field}.env[{i}]"),
                "contains a NUL byte",
            ));
        }
    }
    let user = p.user();
    let capabilities = match p.capabilities() {
        None => CapabilityPlan::default(),
        Some(c) => {
            let set = |name: &str, s: Option<&oci_spec::runtime::Capabilities>| {
                capability_set(&format!("{field}.capabilities.{name}"), s)
            };
            let plan = CapabilityPlan {
                bounding: set("bounding", c.bounding().as_ref())?,
                effective: set("effective", c.effective().as_ref())?,
                inheritable: set("inheritable", c.inheritable().as_ref())?,
                permitted: set("permitted", c.permitted().as_ref())?,
                ambient: set("ambient", c.ambient().as_ref())?,
            };
            check_capability_sets(&format!("{field}.capabilities"), &plan)?;
            plan
        }
    };
    let mut rlimits = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err(Error::invalid(
                format!("{field}.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
        let resource = rlimit_resource(r.typ());
        if rlimits.iter().any(|x: &Rlimit| x.resource == resource) {
            return Err(Error::invalid(
                format!("{field}.rlimits[{i}]"),
                format!("{:?} is given twice", r.typ()),
            ));
        }
        rlimits.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::invalid(
                format!("{field}.oomScoreAdj"),
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd: normalize(&cwd),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        capabilities,
        rlimits,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        terminal: p.terminal().unwrap_or(false),
        console_size: p.console_size().map(|b| {
            (
                b.height().min(u16::MAX as u64) as u16,
                b.width().min(u16::MAX as u64) as u16,
            )
        }),
        seccomp: None,
    })
}

/// The kernel's rules between the sets (capset(2), PR_CAP_AMBIENT), checked
/// here so a spec that breaks them is told which capability and why, not
/// "Operation not permitted" from inside the container.
fn check_capability_sets(field: &str, c: &CapabilityPlan) -> Result<()> {
    let outside = |set: &[caps::Capability], of: &[&[caps::Capability]]| -> Vec<String> {
        set.iter()
            .filter(|x| !of.iter().all(|o| o.contains(x)))
            .map(|x| x.to_string())
            .collect()
    };
    let check = |name: &str, set: &[caps::Capability], of: &[&[caps::Capability]], why: &str| {
        let bad = outside(set, of);
        if bad.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(
            format!("{field}.{name}"),
            format!("{} {why}", bad.join(", ")),
        ))
    };
    check(
        "effective",
        &c.effective,
        &[&c.permitted],
        "not in permitted: a process's effective set is part of its permitted set",
    )?;
    check(
        "inheritable",
        &c.inheritable,
        &[&c.bounding],
        "not in bounding: the kernel refuses an inheritable capability outside the bounding set",
    )?;
    check(
        "ambient",
        &c.ambient,
        &[&c.permitted, &c.inheritable],
        "not in both permitted and inheritable: the kernel raises an ambient capability only from those",
    )?;
    Ok(())
}

fn capability_set(
    field: &str,
    set: Option<&oci_spec::runtime::Capabilities>,
) -> Result<Vec<caps::Capability>> {
    let mut out = Vec::new();
    for c in set.into_iter().flatten() {
        out.push(to_kernel_cap(field, *c)?);
    }
    out.sort_by_key(|c| c.index());
    Ok(out)
}

/// Maps oci-spec's capability to the `caps` crate's.
pub fn to_kernel_cap(field: &str, c: oci_spec::runtime::Capability) -> Result<caps::Capability> {
    let name = format!("CAP_{c}");
    name.parse::<caps::Capability>()
        .map_err(|_| Error::invalid(field, format!("unknown capability {name}")))
}

// The casts are needed with musl only.
#[allow(clippy::unnecessary_cast)]
fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> u32 {
    use oci_spec::runtime::PosixRlimitType as T;
    // (The libc type differs: u32 with glibc, c_int with musl.)
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU as u32,
        T::RlimitFsize => libc::RLIMIT_FSIZE as u32,
        T::RlimitData => libc::RLIMIT_DATA as u32,
        T::RlimitStack => libc::RLIMIT_STACK as u32,
        T::RlimitCore => libc::RLIMIT_CORE as u32,
        T::RlimitRss => libc::RLIMIT_RSS as u32,
        T::RlimitNproc => libc::RLIMIT_NPROC as u32,
        T::RlimitNofile => libc::RLIMIT_NOFILE as u32,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK as u32,
        T::RlimitAs => libc::RLIMIT_AS as u32,
        T::RlimitLocks => libc::RLIMIT_LOCKS as u32,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING as u32,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE as u32,
        T::RlimitNice => libc::RLIMIT_NICE as u32,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO as u32,
        T::RlimitRttime => libc::RLIMIT_RTTIME as u32,
    }
}

fn cgroup_plan(
    id: &str,
    spec: &Spec,
    opts: &PlanOptions,
    devices: &[DevicePlan],
) -> Result<CgroupPlan> {
    let linux = spec.linux().as_ref();
    let raw = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = if raw.is_empty() {
        format!("/isoexec/{id}")
    } else if opts.systemd_cgroup || looks_like_systemd_form(&raw) {
        systemd_to_cgroupfs(&raw)?
    } else {
        raw
    };
    if path.split('/').any(|c| c == "..") {
        return Err(Error::invalid(
            "linux.cgroupsPath",
            format!("{path:?} must not contain \"..\""),
        ));
    }
    let resources = linux.and_then(|l| l.resources().clone());
    if let Some(r) = &resources {
        validate_resources(r)?;
    }
    let spec_rules = resources
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    Ok(CgroupPlan {
        path,
        resources,
        devices: device_rules(&spec_rules, devices)?,
    })
}

/// A cgroupsPath in systemd's form without `--systemd-cgroup` (the shim and
/// isoexecd have no such flag): `NAME.slice:prefix:name` or `:prefix:name`,
/// which no cgroupfs path a runtime is given looks like.
fn looks_like_systemd_form(raw: &str) -> bool {
    let parts: Vec<&str> = raw.split(':').collect();
    parts.len() == 3
        && !raw.contains('/')
        && (parts[0].is_empty() || parts[0].ends_with(".slice"))
        && !parts[2].is_empty()
}

/// `slice:prefix:name` (systemd's cgroupsPath form) as the cgroupfs path
/// systemd gives it: the slice expanded into its parents, as systemd names
/// them (`kubepods-besteffort.slice` is
/// `/kubepods.slice/kubepods-besteffort.slice`), then `prefix-name.scope`.
/// isoexec writes cgroupfs itself and does not talk to systemd; the path
/// is the same on v1 (below each controller) and v2.
pub fn systemd_to_cgroupfs(raw: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(
            "linux.cgroupsPath",
            format!("{raw:?} is not slice:prefix:name, as --systemd-cgroup expects: {why}"),
        )
    };
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.len() != 3 || parts[2].is_empty() {
        return Err(bad("three fields, the name not empty"));
    }
    let slice = if parts[0].is_empty() {
        "system.slice"
    } else {
        parts[0]
    };
    let mut path = expand_slice(slice).ok_or_else(|| {
        bad("the slice must be NAME.slice, NAME without '/', \"--\" or a leading or trailing '-'")
    })?;
    if parts.iter().any(|p| p.contains('/')) {
        return Err(bad("no field may contain '/'"));
    }
    let unit = if parts[1].is_empty() {
        format!("{}.scope", parts[2])
    } else {
        format!("{}-{}.scope", parts[1], parts[2])
    };
    path.push('/');
    path.push_str(&unit);
    Ok(path)
}

/// systemd's slice hierarchy: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`;
/// `-.slice` is the root.
fn expand_slice(slice: &str) -> Option<String> {
    let name = slice.strip_suffix(".slice")?;
    if name == "-" {
        return Some(String::new());
    }
    if name.is_empty()
        || name.contains('/')
        || name.contains("--")
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for (i, part) in name.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Some(path)
}

/// Checks the limits the kernel would refuse with an unhelpful EINVAL.
pub fn validate_resources(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            if l == 0 || l < -1 {
                return Err(Error::invalid(
                    "linux.resources.memory.limit",
                    format!("{l} bytes: give a positive number of bytes, or -1 for unlimited"),
                ));
            }
            if let Some(s) = m.swap() {
                if s > 0 && l > 0 && s < l {
                    return Err(Error::invalid(
                        "linux.resources.memory.swap",
                        format!("{s} is below memory.limit {l}: swap is memory+swap, so it must be at least the limit"),
                    ));
                }
            }
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(Error::invalid(
                    "linux.resources.memory.swappiness",
                    format!("{s} is above 100"),
                ));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(p) = c.period() {
            if p != 0 && !(1000..=1_000_000).contains(&p) {
                return Err(Error::invalid(
                    "linux.resources.cpu.period",
                    format!("{p} µs is outside 1000..1000000"),
                ));
            }
        }
        if let Some(q) = c.quota() {
            if q == 0 || (q > 0 && q < 1000) {
                return Err(Error::invalid(
                    "linux.resources.cpu.quota",
                    format!("{q} µs: give at least 1000, or -1 for unlimited"),
                ));
            }
        }
        if let Some(s) = c.shares() {
            if s != 0 && !(2..=262_144).contains(&s) {
                return Err(Error::invalid(
                    "linux.resources.cpu.shares",
                    format!("{s} is outside 2..262144"),
                ));
            }
        }
        for (name, v) in [("cpus", c.cpus()), ("mems", c.mems())] {
            if let Some(v) = v {
                if !v.is_empty() {
                    parse_cpu_list(v)
                        .map_err(|e| Error::invalid(format!("linux.resources.cpu.{name}"), e))?;
                }
            }
        }
    }
    if let Some(p) = r.pids() {
        if p.limit() == 0 || p.limit() < -1 {
            return Err(Error::invalid(
                "linux.resources.pids.limit",
                format!("{}: give a positive number, or -1 for unlimited", p.limit()),
            ));
        }
    }
    Ok(())
}

/// Parses a cpu/mem list (`0-3,6`) into its members.
pub fn parse_cpu_list(s: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let bad = || format!("{s:?} is not a list like \"0-3,6\"");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.parse().map_err(|_| bad())?;
                let b: u32 = b.parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
