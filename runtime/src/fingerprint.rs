//! `isoexec fingerprint`: whether this host can run exec-driver tasks, as
//! the exec driver fingerprints a Nomad client: Linux, root, cgroups
//! mounted, and which controllers there are. [`evaluate`] is pure; only
//! [`gather`] reads the host.

use serde::Serialize;

/// The controllers the exec driver's documentation lists.
pub const CONTROLLERS: [&str; 12] = [
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
];

/// Controllers isoexec's resource controls and policy need. Without one of
/// them, resource controls are disabled (tasks still run), as the driver
/// does.
pub const REQUIRED: [&str; 7] = [
    "cpuset", "cpu", "cpuacct", "memory", "devices", "freezer", "pids",
];

/// On cgroup v2 these are part of the core (freezer, devices via eBPF,
/// cpuacct's statistics in cpu.stat), not controllers to enable.
const V2_BUILTIN: [&str; 3] = ["cpuacct", "devices", "freezer"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    /// `driver.exec = "1"`: the host can run tasks.
    pub detected: bool,
    /// healthy, unhealthy or undetected.
    pub health: &'static str,
    pub health_description: String,
    pub linux: bool,
    pub root: bool,
    pub cgroups_mounted: bool,
    /// 1 or 2; 0 when no cgroups are mounted.
    pub cgroup_version: u8,
    pub controllers_present: Vec<String>,
    pub controllers_missing: Vec<String>,
    /// Required controllers that are missing: resource controls are off.
    pub required_missing: Vec<String>,
    pub resource_controls: bool,
    /// How device access is enforced: v1's devices controller, v2's eBPF
    /// device program (checked by loading one), or why it cannot be.
    pub device_control: String,
    /// Whether the chroot_env can be idmapped for a task in a user
    /// namespace: "yes", or why not (such a task is then refused).
    pub idmapped_mounts: String,
}

impl Fingerprint {
    /// The client attributes, as the exec driver sets them.
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut a = Vec::new();
        if self.detected {
            a.push(("driver.exec".into(), "1".into()));
            a.push(("driver.exec.version".into(), crate::VERSION.into()));
            a.push((
                "driver.exec.cgroup_version".into(),
                self.cgroup_version.to_string(),
            ));
        }
        a
    }

    /// The one warning every task start gives while resource controls are off.
    pub fn resource_warning(&self) -> Option<String> {
        (!self.resource_controls && self.detected).then(|| missing_warning(&self.required_missing))
    }
}

fn missing_warning(missing: &[String]) -> String {
    format!(
        "resource controls disabled: cgroup controllers missing: {} (see `isoexec fingerprint`)",
        missing.join(", ")
    )
}

/// Whether controller `c` is there: on v1 among `v1` (enabled and
/// mounted), on v2 listed by the root's cgroup.controllers (`v2`) or part
/// of the core.
fn controller_present(cgroup_version: u8, c: &str, v1: &[&str], v2: &[&str]) -> bool {
    match cgroup_version {
        // v2's io is v1's blkio.
        2 => v2.contains(&c) || V2_BUILTIN.contains(&c) || (c == "blkio" && v2.contains(&"io")),
        1 => v1.contains(&c),
        _ => false,
    }
}

/// The warning a task start gives, from what its cgroup's hierarchies
/// show (a create knows them already, without reading the host's mount
/// table again): on v1 the controllers mounted, on v2 the root's
/// cgroup.controllers. `None` when every required controller is there.
pub fn resource_warning_of(cgroup_version: u8, v1: &[&str], v2: &[&str]) -> Option<String> {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|c| !controller_present(cgroup_version, c, v1, v2))
        .map(|c| c.to_string())
        .collect();
    (!missing.is_empty()).then(|| missing_warning(&missing))
}

/// Decides from the host's facts: `euid`, the text of /proc/cgroups, of
/// /proc/self/mountinfo, and of the v2 root's cgroup.controllers (if any).
pub fn evaluate(
    linux: bool,
    euid: u32,
    proc_cgroups: &str,
    mountinfo: &str,
    v2_controllers: Option<&str>,
) -> Fingerprint {
    let mut v1_mounted: Vec<String> = Vec::new();
    let mut v2_root = false;
    for line in mountinfo.lines() {
        // ... mount-point options - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        let mount_point = left.split_whitespace().nth(4).unwrap_or("");
        match fstype {
            "cgroup" => v1_mounted.extend(super_opts.split(',').map(str::to_string)),
            "cgroup2" if mount_point == "/sys/fs/cgroup" => v2_root = true,
            _ => {}
        }
    }
    let enabled: Vec<&str> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then_some(f[0])
        })
        .collect();
    let v2_list: Vec<&str> = v2_controllers.unwrap_or("").split_whitespace().collect();
    let cgroup_version = if v2_root {
        2
    } else if !v1_mounted.is_empty() {
        1
    } else {
        0
    };
    let v1_present: Vec<&str> = enabled
        .iter()
        .copied()
        .filter(|c| v1_mounted.iter().any(|m| m == c))
        .collect();
    let present = |c: &str| controller_present(cgroup_version, c, &v1_present, &v2_list);
    let (controllers_present, controllers_missing): (Vec<String>, Vec<String>) = CONTROLLERS
        .iter()
        .map(|c| c.to_string())
        .partition(|c| present(c));
    let required_missing: Vec<String> = REQUIRED
        .iter()
        .filter(|c| !present(c))
        .map(|c| c.to_string())
        .collect();
    let root = euid == 0;
    let cgroups_mounted = cgroup_version != 0;
    let (detected, health, health_description) = if !linux {
        (
            false,
            "undetected",
            "isoexec runs tasks on Linux only".to_string(),
        )
    } else if !root {
        (
            false,
            "undetected",
            format!("isoexec must run as root to isolate tasks (running as uid {euid})"),
        )
    } else if !cgroups_mounted {
        (
            false,
            "unhealthy",
            "no cgroup filesystem is mounted at /sys/fs/cgroup".to_string(),
        )
    } else if !required_missing.is_empty() {
        (
            true,
            "healthy",
            format!(
                "tasks run; resource controls are disabled: missing {}",
                required_missing.join(", ")
            ),
        )
    } else {
        (
            true,
            "healthy",
            "every required cgroup controller is present".to_string(),
        )
    };
    Fingerprint {
        detected,
        health,
        health_description,
        linux,
        root,
        cgroups_mounted,
        cgroup_version,
        controllers_present,
        controllers_missing,
        resource_controls: cgroups_mounted && required_missing.is_empty(),
        device_control: match cgroup_version {
            1 if present("devices") => "devices controller".to_string(),
            2 => "eBPF device program".to_string(),
            _ => "none".to_string(),
        },
        required_missing,
        idmapped_mounts: "not checked".to_string(),
    }
}

/// Folds in whether an idmapped mount of the chroot_env's directories was
/// made (`Err`: the first that failed, and why). Pure.
pub fn with_idmap(
    mut f: Fingerprint,
    made: std::result::Result<(), (String, String)>,
) -> Fingerprint {
    f.idmapped_mounts = match made {
        Ok(()) => "yes".to_string(),
        Err((path, why)) => format!(
            "no ({path}: {why}): tasks in a user namespace need image semantics (io.isoexec.chroot_env=none)"
        ),
    };
    f
}

/// Folds in whether this kernel loads a cgroup v2 device program: without
/// one isoexec refuses to create tasks (it never runs one with every
/// device open), so the host is unhealthy. Pure.
pub fn with_device_program(
    mut f: Fingerprint,
    loaded: std::result::Result<(), String>,
) -> Fingerprint {
    if f.cgroup_version != 2 {
        return f;
    }
    if let Err(why) = loaded {
        f.device_control = format!("unavailable: {why}");
        f.detected = false;
        f.health = "unhealthy";
        f.health_description = format!(
            "cgroup v2 device rules need an eBPF device program and this kernel refused one: {why}"
        );
        f.resource_controls = false;
        f.required_missing.push("devices".into());
    }
    f
}

/// Reads this host's facts, and on v2 loads a device program to check the
/// kernel takes one (`isoexec fingerprint`, isoexecd's Fingerprint).
pub fn gather() -> Fingerprint {
    gather_with(&crate::config::DriverConfig::default())
}

/// [`gather`], with the idmapped mounts checked on `driver`'s chroot_env.
pub fn gather_with(driver: &crate::config::DriverConfig) -> Fingerprint {
    let mut f = gather_controllers();
    if f.root {
        let made = driver
            .chroot_env
            .iter()
            .map(|(host, _)| host)
            .filter(|h| std::fs::symlink_metadata(h).is_ok_and(|m| m.is_dir()))
            .try_for_each(|h| {
                crate::sys::userns::idmap_supported(h).map_err(|e| (h.display().to_string(), e))
            });
        f = with_idmap(f, made);
    }
    if f.cgroup_version == 2 && f.root {
        let rules = crate::plan::device_rules(&[], &[]).unwrap_or_default();
        let code = crate::device_filter::program_bytes(&rules);
        let loaded = crate::sys::bpf::load_device_program(&code).map(drop);
        return with_device_program(f, loaded);
    }
    f
}

/// The host's cgroups and controllers only, without the device program
/// check. (A create does not read them: it decides its warning from the
/// hierarchies its cgroup knows, [`resource_warning_of`].)
fn gather_controllers() -> Fingerprint {
    let read = |p: &str| crate::sys::read_proc(p).unwrap_or_default();
    let v2 = crate::sys::read_proc("/sys/fs/cgroup/cgroup.controllers").ok();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    evaluate(
        cfg!(target_os = "linux"),
        euid,
        &read("/proc/cgroups"),
        &read("/proc/self/mountinfo"),
        v2.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpuset\t3\t2\t1\ncpu\t1\t2\t1\ncpuacct\t2\t2\t1\nblkio\t7\t2\t1\nmemory\t4\t49\t1\n\
        devices\t5\t2\t1\nfreezer\t6\t2\t1\nnet_cls\t0\t1\t1\nperf_event\t0\t1\t1\n\
        net_prio\t0\t1\t1\nhugetlb\t0\t1\t1\npids\t8\t2\t1\n";

    fn v1_mountinfo(controllers: &[&str]) -> String {
        let mut s =
            String::from("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n");
        for (i, c) in controllers.iter().enumerate() {
            s.push_str(&format!(
                "{} 31 0:{} / /sys/fs/cgroup/{c} rw,relatime - cgroup cgroup rw,{c}\n",
                40 + i,
                40 + i
            ));
        }
        s
    }

    const ALL_V1: [&str; 8] = [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    ];

    #[test]
    fn v1_host_with_every_required_controller() {
        let f = evaluate(true, 0, PROC_CGROUPS, &v1_mountinfo(&ALL_V1), None);
        assert!(f.detected && f.resource_controls);
        assert_eq!(f.health, "healthy");
        assert_eq!(f.cgroup_version, 1);
        assert_eq!(
            f.controllers_missing,
            ["net_cls", "perf_event", "net_prio", "hugetlb"]
        );
        assert!(f.required_missing.is_empty());
        assert_eq!(
            f.attributes()[..1],
            [("driver.exec".to_string(), "1".to_string())]
        );
        assert_eq!(f.resource_warning(), None);
    }

    #[test]
    fn a_missing_required_controller_disables_resource_controls() {
        let f = evaluate(
            true,
            0,
            PROC_CGROUPS,
            &v1_mountinfo(&["cpu", "cpuacct", "cpuset", "devices", "freezer", "pids"]),
            None,
        );
        assert!(f.detected, "tasks still run");
        assert!(!f.resource_controls);
        assert_eq!(f.required_missing, ["memory"]);
        assert_eq!(
            f.resource_warning().unwrap(),
            "resource controls disabled: cgroup controllers missing: memory (see `isoexec fingerprint`)"
        );
        // A controller the kernel has disabled counts as missing even if named.
        let disabled = PROC_CGROUPS.replace("pids\t8\t2\t1", "pids\t8\t2\t0");
        let f = evaluate(true, 0, &disabled, &v1_mountinfo(&ALL_V1), None);
        assert_eq!(f.required_missing, ["pids"]);
    }

    #[test]
    fn a_create_warns_from_its_cgroups_hierarchies() {
        assert_eq!(resource_warning_of(1, &REQUIRED, &[]), None);
        assert_eq!(
            resource_warning_of(1, &["cpu", "cpuacct", "cpuset", "devices", "pids"], &[]).unwrap(),
            "resource controls disabled: cgroup controllers missing: memory, freezer (see `isoexec fingerprint`)"
        );
        // v2: freezer, devices and cpuacct are the core's.
        assert_eq!(
            resource_warning_of(2, &[], &["cpuset", "cpu", "io", "memory", "pids"]),
            None
        );
        assert_eq!(
            resource_warning_of(2, &[], &["cpu", "io", "memory", "pids"]).unwrap(),
            "resource controls disabled: cgroup controllers missing: cpuset (see `isoexec fingerprint`)"
        );
        // The same answer as the fingerprint's, from the same host.
        let f = evaluate(
            true,
            0,
            PROC_CGROUPS,
            &v1_mountinfo(&["cpu", "cpuacct", "cpuset", "devices", "pids"]),
            None,
        );
        assert_eq!(
            f.resource_warning(),
            resource_warning_of(1, &["cpu", "cpuacct", "cpuset", "devices", "pids"], &[])
        );
    }

    #[test]
    fn combined_v1_mounts_count_for_each_controller() {
        let mi = "40 31 0:40 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  41 31 0:41 / /sys/fs/cgroup/others rw - cgroup cgroup rw,cpuset,memory,devices,freezer,pids\n";
        let f = evaluate(true, 0, PROC_CGROUPS, mi, None);
        assert!(f.resource_controls, "{:?}", f.required_missing);
    }

    #[test]
    fn v2_host() {
        let mi = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let f = evaluate(
            true,
            0,
            PROC_CGROUPS,
            mi,
            Some("cpuset cpu io memory hugetlb pids rdma misc\n"),
        );
        assert_eq!(f.cgroup_version, 2);
        assert!(f.resource_controls, "{:?}", f.required_missing);
        assert!(f.controllers_present.contains(&"freezer".to_string()));
        assert!(
            f.controllers_present.contains(&"blkio".to_string()),
            "io is blkio"
        );
        assert!(f.controllers_missing.contains(&"net_cls".to_string()));
        assert_eq!(f.device_control, "eBPF device program");
        let ok = with_device_program(f.clone(), Ok(()));
        assert_eq!(ok, f);
        // A kernel that refuses device programs: no task could be isolated.
        let bad = with_device_program(f, Err("Operation not permitted".into()));
        assert!(!bad.detected && !bad.resource_controls);
        assert_eq!(bad.health, "unhealthy");
        assert!(bad.health_description.contains("eBPF device program"));
        assert_eq!(bad.device_control, "unavailable: Operation not permitted");
        let v1 = evaluate(true, 0, PROC_CGROUPS, &v1_mountinfo(&ALL_V1), None);
        assert_eq!(v1.device_control, "devices controller");
        assert_eq!(with_device_program(v1.clone(), Err("x".into())), v1);
    }

    #[test]
    fn not_root_is_undetected_with_the_reason() {
        let f = evaluate(true, 1000, PROC_CGROUPS, &v1_mountinfo(&ALL_V1), None);
        assert!(!f.detected);
        assert_eq!(f.health, "undetected");
        assert!(
            f.health_description.contains("must run as root")
                && f.health_description.contains("1000")
        );
        assert!(f.attributes().is_empty());
        assert_eq!(f.resource_warning(), None);
    }

    #[test]
    fn no_cgroups_is_unhealthy() {
        let f = evaluate(true, 0, PROC_CGROUPS, "", None);
        assert!(!f.detected && !f.cgroups_mounted);
        assert_eq!(f.health, "unhealthy");
        let f = evaluate(false, 0, "", "", None);
        assert_eq!(f.health, "undetected");
    }
}
