//! The container's cgroup: created with its limits before the init runs,
//! joined by every exec, frozen by pause, removed by delete. cgroups v1 or v2
//! is chosen once, by what the host has mounted (cgroups-rs `hierarchies::auto`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::{hierarchies, Cgroup, MaxValue};
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::plan::DeviceRule;

pub struct CgroupManager {
    cg: Cgroup,
    path: String,
}

/// The relative form cgroups-rs wants (it appends the path to each
/// hierarchy's root, so a leading `/` would replace the root).
fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The v1 hierarchies every task's cgroup lives in: the controllers
/// isoexec limits, accounts, freezes or guards devices with. Not named
/// hierarchies such as name=systemd, nor the controllers below unless the
/// task's resources use them: each would cost a mkdir, a join and an
/// rmdir on every task start for nothing.
const V1_CONTROLLERS: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices",
];

/// v1 controllers a task's cgroup is made in only when its resources ask
/// (blockIO, hugepageLimits, network).
const V1_ON_DEMAND: [&str; 4] = ["blkio", "hugetlb", "net_cls", "net_prio"];

/// The host's cgroup hierarchies, found once per process: cgroups-rs's
/// `auto()` parses /proc/self/mountinfo on every call, and a long-lived
/// shim or daemon would pay that on every create, exec and delete.
fn hierarchy() -> Box<dyn cgroups_rs::Hierarchy> {
    static V1: std::sync::OnceLock<Option<hierarchies::V1>> = std::sync::OnceLock::new();
    match V1.get_or_init(|| (!hierarchies::is_cgroup2_unified_mode()).then(hierarchies::V1::new)) {
        Some(v1) => Box::new(v1.clone()),
        None => Box::new(hierarchies::V2::new()),
    }
}

/// A handle on cgroup `path` (made or not) in the hierarchies isoexec uses.
/// Create and load both go through here, so they always agree.
fn handle(path: &str, extra: &[&str]) -> cgroups_rs::error::Result<Cgroup> {
    let hier = hierarchy();
    if !path.starts_with('/') {
        // Relative cgroupsPath: below the runtime's own cgroup, per controller.
        let own = cgroups_rs::cgroup::get_cgroups_relative_paths()?;
        return Ok(Cgroup::load_with_relative_paths(hier, path, own));
    }
    Ok(if hier.v2() {
        Cgroup::load(hier, rel(path))
    } else {
        let controllers = V1_CONTROLLERS
            .iter()
            .chain(extra)
            .map(|c| c.to_string())
            .collect();
        Cgroup::load_with_specified_controllers(hier, rel(path), controllers)
    })
}

/// Whether a cgroups-rs error comes from a directory that already exists.
fn already_exists(e: &cgroups_rs::error::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

impl CgroupManager {
    /// Creates the cgroup `path` and applies `resources`. On failure nothing
    /// is left behind.
    pub fn create(
        path: &str,
        resources: Option<&LinuxResources>,
        devices: &[DeviceRule],
    ) -> Result<Self> {
        let cg = Self::planned(path, resources)?;
        cg.make(resources, devices)?;
        Ok(cg)
    }

    /// The cgroup `path` as [`create`](Self::create) would make it, not made
    /// yet: its directories are known (for the init's cgroup mount) before
    /// anything exists. No system call.
    pub fn planned(path: &str, resources: Option<&LinuxResources>) -> Result<Self> {
        let extra: Vec<&str> = resources
            .and_then(|r| v1_writes(r).ok())
            .map(|w| {
                V1_ON_DEMAND
                    .into_iter()
                    .filter(|c| w.iter().any(|x| x.controller == *c))
                    .collect()
            })
            .unwrap_or_default();
        let cg = handle(path, &extra).map_err(|e| cg_err(path, e))?;
        Ok(CgroupManager {
            cg,
            path: path.to_string(),
        })
    }

    /// Makes a [`planned`](Self::planned) cgroup's directories with its
    /// device rules and limits. On failure nothing is left behind.
    pub fn make(&self, resources: Option<&LinuxResources>, devices: &[DeviceRule]) -> Result<()> {
        let (cg, path) = (&self.cg, self.path.as_str());
        if cg.v2() {
            self.refuse_busy(cg.procs().into_iter().map(|p| p.pid as i32).collect())?;
            // Two creates that start together on a fresh hierarchy race to
            // make the same parent (isoexec/): the loser sees EEXIST for
            // it. The parent exists then; a second try goes past it.
            let mut tries = 0;
            while let Err(e) = cg.create() {
                tries += 1;
                if tries >= 3 || !already_exists(&e) {
                    return Err(cg_err(path, e));
                }
            }
        } else {
            self.make_v1()?;
        }
        let applied = self
            .set_devices(devices)
            .and_then(|_| resources.map_or(Ok(()), |r| self.apply(r)));
        if let Err(e) = applied {
            let _ = self.destroy();
            return Err(e);
        }
        Ok(())
    }

    /// An existing cgroup with processes is someone else's: putting the
    /// task there would make delete (or this create's undo) kill them.
    fn refuse_busy(&self, mut others: Vec<i32>) -> Result<()> {
        if others.is_empty() {
            return Ok(());
        }
        others.sort_unstable();
        others.dedup();
        Err(Error::invalid(
            "linux.cgroupsPath",
            format!(
                "cgroup {} already holds processes {others:?}: give the container a new or empty cgroup",
                self.path
            ),
        ))
    }

    /// v1: the cgroup's directory in each of its hierarchies, one mkdir
    /// each when the parents exist. A directory that is there already is
    /// only taken while it holds no process (asked only then: a look
    /// before every mkdir cost an open per hierarchy). A failure removes
    /// the directories this call made, and only those.
    fn make_v1(&self) -> Result<()> {
        let mut made: Vec<PathBuf> = Vec::new();
        let result = self.dirs().into_iter().try_for_each(|(name, dir)| {
            let cpuset = name == "cpuset";
            match make_dir_v1(&dir, cpuset, &mut made) {
                Ok(true) => Ok(()),
                Ok(false) => self.refuse_busy(pids_in(&dir)),
                Err(e) => Err(Error::Cgroup {
                    path: self.path.clone(),
                    reason: format!("cannot make {}: {e}", dir.display()),
                }),
            }
        });
        if result.is_err() {
            for dir in made.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        result
    }

    /// A handle on an existing cgroup (for state, kill --all, exec, delete).
    pub fn load(path: &str) -> Self {
        // On v1, the on-demand controllers the cgroup was made in: those
        // where its directory exists (v2 has one directory).
        let present: Vec<&str> = match hierarchy().v2() {
            true => vec![],
            false => handle(path, &V1_ON_DEMAND)
                .map(|all| {
                    all.subsystems()
                        .iter()
                        .filter_map(|s| {
                            let name = s.controller_name();
                            let on_demand = V1_ON_DEMAND.into_iter().find(|c| *c == name)?;
                            s.to_controller().path().exists().then_some(on_demand)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        CgroupManager {
            cg: handle(path, &present).unwrap_or_else(|_| Cgroup::load(hierarchy(), path)),
            path: path.to_string(),
        }
    }

    pub fn is_v2(&self) -> bool {
        self.cg.v2()
    }

    /// The warning of a task whose host lacks a controller that resource
    /// controls need (as the exec driver, it then runs without them), from
    /// the hierarchies this cgroup already knows: on v1 its controllers'
    /// mounts, on v2 the root's cgroup.controllers. Found once per process:
    /// the host's controllers do not come and go under a running shim or
    /// daemon.
    pub fn resource_warning(&self) -> Option<String> {
        static WARNING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        WARNING
            .get_or_init(|| {
                use crate::fingerprint::resource_warning_of;
                if self.is_v2() {
                    let root = crate::sys::read_proc("/sys/fs/cgroup/cgroup.controllers")
                        .unwrap_or_default();
                    resource_warning_of(2, &[], &root.split_whitespace().collect::<Vec<_>>())
                } else {
                    let dirs = self.dirs();
                    let v1: Vec<&str> = dirs.iter().map(|(name, _)| name.as_str()).collect();
                    resource_warning_of(1, &v1, &[])
                }
            })
            .clone()
    }

    /// Applies limits one by one; the kernel's refusal of one comes back
    /// naming the spec field and the value.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        crate::plan::validate_resources(r)?;
        if self.is_v2() {
            return self.apply_v2(r);
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::invalid(
                "linux.resources.unified",
                "this host's cgroups are v1: unified keys need a cgroup v2 host",
            ));
        }
        let limits = limits(r);
        // On v1 memory.limit must stay <= memory.memsw.limit: when raising
        // both, the swap limit has to go first.
        let mem_first_fails = limits
            .iter()
            .position(|l| matches!(l, Limit::MemoryLimit(_)));
        for (i, l) in limits.iter().enumerate() {
            if let Err(e) = self.set(l) {
                let retry_after_swap = Some(i) == mem_first_fails
                    && limits.iter().any(|x| matches!(x, Limit::MemorySwap(_)));
                if retry_after_swap {
                    if let Some(swap) = limits.iter().find(|x| matches!(x, Limit::MemorySwap(_))) {
                        self.set(swap).map_err(|e| self.refused(swap, e))?;
                        self.set(l).map_err(|e| self.refused(l, e))?;
                        continue;
                    }
                }
                return Err(self.refused(l, e));
            }
        }
        for w in v1_writes(r)? {
            self.write_v1(&w)?;
        }
        Ok(())
    }

    /// One [`V1Write`] into its controller's directory of the cgroup.
    fn write_v1(&self, w: &V1Write) -> Result<()> {
        let dir = self
            .controller_dir(w.controller)
            .ok_or_else(|| Error::Cgroup {
                path: self.path.clone(),
                reason: format!(
                    "{} needs the {} controller, which this host has not mounted",
                    w.field, w.controller
                ),
            })?;
        // BFQ (the only proportional scheduler of recent kernels) names
        // the weights blkio.bfq.*.
        let mut file = dir.join(&w.file);
        if !file.exists() {
            if let Some(bfq) = w.file.strip_prefix("blkio.") {
                let alt = dir.join(format!("blkio.bfq.{bfq}"));
                if alt.exists() {
                    file = alt;
                }
            }
        }
        self.write_limit(
            &file,
            &w.value,
            &w.field,
            "not in this kernel, or the block device's scheduler has no weights",
        )
    }

    /// Writes one limit's file; a refusal names the field, the value and
    /// the file, and a file the cgroup lacks is said to be missing
    /// (cgroupfs answers EACCES, not ENOENT, for one), with `why_missing`.
    fn write_limit(&self, file: &Path, value: &str, field: &str, why_missing: &str) -> Result<()> {
        crate::sys::write_kernel(file, value).map_err(|e| {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let hint = if file.exists() {
                String::new()
            } else {
                format!(": no such file in the cgroup ({why_missing})")
            };
            Error::Cgroup {
                path: self.path.clone(),
                reason: format!("the kernel refused {field} = {value:?} as {name} ({e}){hint}"),
            }
        })
    }

    /// cgroup v2: every file [`v2_writes`] gives, in order, into the
    /// cgroup's directory.
    fn apply_v2(&self, r: &LinuxResources) -> Result<()> {
        let writes = v2_writes(r)?;
        if writes.is_empty() {
            return Ok(());
        }
        let dir = self.controller_dir("").ok_or_else(|| Error::Cgroup {
            path: self.path.clone(),
            reason: "cannot find the cgroup's directory".into(),
        })?;
        for w in writes {
            self.write_limit(
                &dir.join(&w.file),
                &w.value,
                &w.field,
                "a controller not enabled in the parent's cgroup.subtree_control, or not in this kernel",
            )?;
        }
        Ok(())
    }

    fn refused(&self, l: &Limit, cause: String) -> Error {
        Error::Cgroup {
            path: self.path.clone(),
            reason: format!("the kernel refused {} = {} ({cause})", l.field(), l.value()),
        }
    }

    /// Applies the device rules: on v1 written in order to devices.allow /
    /// devices.deny, on v2 as an eBPF device program with the same meaning
    /// (see [`crate::device_filter`]) attached to the cgroup.
    fn set_devices(&self, rules: &[DeviceRule]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let dir = self.controller_dir("devices");
        if self.is_v2() {
            // Fail closed: a v2 cgroup without its device program would
            // leave every host device open to CAP_MKNOD.
            let dir = dir.ok_or_else(|| Error::Cgroup {
                path: self.path.clone(),
                reason: "cannot find the cgroup's directory to attach its device rules".into(),
            })?;
            let code = crate::device_filter::program_bytes(rules);
            return crate::sys::bpf::attach_device_program(&dir, &code).map_err(|reason| {
                Error::Cgroup {
                    path: self.path.clone(),
                    reason: format!("device rules (linux.resources.devices): {reason}"),
                }
            });
        }
        let Some(dir) = dir else {
            return Ok(());
        };
        // Each file opened once: the kernel takes one rule per write.
        let mut files: [Option<std::fs::File>; 2] = [None, None];
        for r in rules {
            let (file, slot) = if r.allow {
                ("devices.allow", 0)
            } else {
                ("devices.deny", 1)
            };
            let rule = r.to_cgroup_v1();
            let refused = |e: std::io::Error| Error::Cgroup {
                path: self.path.clone(),
                reason: format!("the kernel refused device rule {rule:?} in {file}: {e}"),
            };
            let f = match &mut files[slot] {
                Some(f) => f,
                empty => empty.insert(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join(file))
                        .map_err(&refused)?,
                ),
            };
            std::io::Write::write_all(f, rule.as_bytes()).map_err(refused)?;
        }
        Ok(())
    }

    /// Writes one limit; the error is the kernel's reason.
    fn set(&self, l: &Limit) -> std::result::Result<(), String> {
        use cgroups_rs::{cpu::CpuController, cpuset::CpuSetController};
        use cgroups_rs::{memory::MemController, pid::PidController};
        use std::error::Error as _;
        let missing = || format!("the controller for {} is not mounted", l.field());
        let mem = || self.cg.controller_of::<MemController>().ok_or_else(missing);
        let cpu = || self.cg.controller_of::<CpuController>().ok_or_else(missing);
        let cpuset = || {
            self.cg
                .controller_of::<CpuSetController>()
                .ok_or_else(missing)
        };
        let r = match l {
            Limit::MemoryLimit(v) => mem()?.set_limit(*v),
            Limit::MemoryReservation(v) => mem()?.set_soft_limit(*v),
            Limit::MemorySwap(v) => mem()?.set_memswap_limit(*v),
            Limit::Swappiness(v) => mem()?.set_swappiness(*v),
            Limit::CpuShares(v) => cpu()?.set_shares(*v),
            Limit::CpuQuota(v) => cpu()?.set_cfs_quota(*v),
            Limit::CpuPeriod(v) => cpu()?.set_cfs_period(*v),
            Limit::Cpus(v) => cpuset()?.set_cpus(v),
            Limit::Mems(v) => cpuset()?.set_mems(v),
            Limit::Pids(v) => self
                .cg
                .controller_of::<PidController>()
                .ok_or_else(missing)?
                .set_pid_max(if *v > 0 {
                    MaxValue::Value(*v)
                } else {
                    MaxValue::Max
                }),
        };
        r.map_err(|e| {
            e.source()
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string())
        })
    }

    /// How many processes the kernel killed in the cgroup for its memory
    /// limit (v2 `memory.events`, v1 `memory.oom_control`: `oom_kill N`).
    pub fn oom_kills(&self) -> u64 {
        let (controller, file) = if self.is_v2() {
            ("", "memory.events")
        } else {
            ("memory", "memory.oom_control")
        };
        self.controller_dir(controller)
            .and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// The processes in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.cg.procs().into_iter().map(|p| p.pid as i32).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Freezes every process of the cgroup and returns once the kernel says
    /// the cgroup is frozen (v1 `freezer.state` FROZEN, v2 `cgroup.events`
    /// `frozen 1`), not merely freezing: a `state` right after `pause` must
    /// say paused. A freeze that does not complete in 5 s is undone and
    /// reported.
    pub fn freeze(&self) -> Result<()> {
        let dir = self.freezer_dir()?;
        let (file, value) = if self.is_v2() {
            ("cgroup.freeze", "1")
        } else {
            ("freezer.state", "FROZEN")
        };
        let write = |v: &str| {
            crate::sys::write_kernel(dir.join(file), v).map_err(|e| Error::Cgroup {
                path: self.path.clone(),
                reason: format!("cannot write {v} to {file}: {e}"),
            })
        };
        write(value)?;
        for pause in backoff(Duration::from_secs(5)) {
            if self.is_frozen() {
                return Ok(());
            }
            // v1: a task that was in the middle of something when the
            // first write came can keep the cgroup FREEZING; writing
            // FROZEN again retries it (runc does the same).
            if !self.is_v2() {
                write(value)?;
            }
            std::thread::sleep(pause);
        }
        if self.is_frozen() {
            return Ok(());
        }
        let _ = self.thaw();
        Err(Error::Cgroup {
            path: self.path.clone(),
            reason: format!("the cgroup did not freeze within 5 s ({file}); it was thawed again"),
        })
    }

    pub fn thaw(&self) -> Result<()> {
        let dir = self.freezer_dir()?;
        let (file, value) = if self.is_v2() {
            ("cgroup.freeze", "0")
        } else {
            ("freezer.state", "THAWED")
        };
        crate::sys::write_kernel(dir.join(file), value).map_err(|e| Error::Cgroup {
            path: self.path.clone(),
            reason: format!("cannot write {value} to {file}: {e}"),
        })
    }

    /// True once the cgroup is completely frozen.
    pub fn is_frozen(&self) -> bool {
        let Ok(dir) = self.freezer_dir() else {
            return false;
        };
        if self.is_v2() {
            std::fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
        } else {
            std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        }
    }

    /// The directory with the freezer's files: v1's freezer hierarchy, or
    /// the v2 cgroup itself (the freezer is part of every v2 cgroup).
    fn freezer_dir(&self) -> Result<PathBuf> {
        self.controller_dir("freezer").ok_or_else(|| Error::Cgroup {
            path: self.path.clone(),
            reason: "the freezer controller is not available: pause/resume need it".into(),
        })
    }

    /// Host directory of this cgroup in the hierarchy of `controller`
    /// (v1: `memory`, `cpu`, ...; v2: any name gives the unified dir).
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.dirs()
            .into_iter()
            .find(|(name, _)| self.is_v2() || name == controller)
            .map(|(_, p)| p)
    }

    /// (controller name, host directory) of every hierarchy the cgroup is in.
    pub fn dirs(&self) -> Vec<(String, PathBuf)> {
        self.cg
            .subsystems()
            .iter()
            .map(|s| {
                let c = s.to_controller();
                let name = s.controller_name();
                (name, c.path().to_path_buf())
            })
            .collect()
    }

    /// Kills whatever is left in the cgroup, waits for it, and removes the
    /// cgroup directories. Idempotent.
    pub fn destroy(&self) -> Result<()> {
        // Usually the task is gone and its cgroup empty: an rmdir in each
        // hierarchy is all it takes. One that is still busy (a process
        // left, or the kernel still freeing the last one) is emptied below.
        let dirs = self.dirs();
        let busy = dirs.iter().any(|(_, dir)| match std::fs::remove_dir(dir) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
        if !busy {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pauses = backoff(Duration::from_secs(10));
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                break;
            }
            for p in &procs {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: self.path.clone(),
                    reason: format!("processes {procs:?} did not exit after SIGKILL"),
                });
            }
            // A frozen cgroup never delivers the SIGKILL.
            let _ = self.thaw();
            std::thread::sleep(pauses.next().unwrap_or(Duration::from_millis(5)));
        }
        let mut last_err = None;
        for (_, dir) in self.dirs() {
            if let Err(e) = remove_dir_retry(&dir) {
                last_err = Some(Error::Cgroup {
                    path: dir.display().to_string(),
                    reason: format!("cannot remove: {e}"),
                });
            }
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Makes `dir` (and any missing parent) in a v1 hierarchy, recording in
/// `made` each directory it made; false when `dir` was there already. A
/// cpuset directory gets its CPUs and memory nodes (a cgroup without them
/// takes no task): parents this makes copy theirs to every later child
/// (`cgroup.clone_children`), so the next task's mkdir comes with them; a
/// directory that still has none copies the nearest ancestor's, as runc
/// does.
fn make_dir_v1(dir: &Path, cpuset: bool, made: &mut Vec<PathBuf>) -> std::io::Result<bool> {
    use std::io::ErrorKind;
    let mut made_dir = std::fs::create_dir(dir);
    if let (Err(e), Some(parent)) = (&made_dir, dir.parent()) {
        if e.kind() == ErrorKind::NotFound {
            // Another create may make the same parent meanwhile: both
            // then go on.
            if make_dir_v1(parent, cpuset, made)? && cpuset {
                crate::sys::write_kernel(parent.join("cgroup.clone_children"), "1")?;
            }
            made_dir = std::fs::create_dir(dir);
        }
    }
    match made_dir {
        Ok(()) => made.push(dir.to_path_buf()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    if cpuset {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            copy_from_ancestor(dir, file)?;
        }
    }
    Ok(true)
}

/// Gives a new cpuset directory the value of `file` of its nearest
/// ancestor that has one, when it has none yet (every directory between
/// them gets it too: a child's set must be inside its parent's).
fn copy_from_ancestor(dir: &Path, file: &str) -> std::io::Result<()> {
    let mut empty: Vec<&Path> = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        let value = crate::sys::read_proc(d.join(file))?;
        let value = value.trim();
        if !value.is_empty() {
            for e in empty.iter().rev() {
                crate::sys::write_kernel(e.join(file), value)?;
            }
            return Ok(());
        }
        empty.push(d);
        at = d.parent();
    }
    Ok(())
}

/// The processes in one hierarchy's directory of a cgroup.
fn pids_in(dir: &Path) -> Vec<i32> {
    crate::sys::read_proc(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// A back-off for what the kernel finishes asynchronously: 50 µs, doubling
/// up to 5 ms, for about `total`. A fixed 5 ms sleep cost most deletes a
/// whole 5 ms for a wait that usually takes microseconds.
fn backoff(total: Duration) -> impl Iterator<Item = Duration> {
    let mut elapsed = Duration::ZERO;
    std::iter::successors(Some(Duration::from_micros(50)), |d| {
        Some((*d * 2).min(Duration::from_millis(5)))
    })
    .take_while(move |d| {
        elapsed += *d;
        elapsed <= total
    })
}

/// rmdir of a cgroup fails with EBUSY for a moment after its last process
/// died (the kernel frees it asynchronously).
fn remove_dir_retry(dir: &Path) -> std::io::Result<()> {
    for pause in backoff(Duration::from_secs(1)) {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(pause),
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(dir)
}

fn cg_err(path: &str, e: cgroups_rs::error::Error) -> Error {
    use std::error::Error as _;
    let mut reason = e.to_string();
    if let Some(src) = e.source() {
        reason = format!("{reason}: {src}");
    }
    Error::Cgroup {
        path: path.to_string(),
        reason,
    }
}

/// One limit of `linux.resources`, as the cgroup file it becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    MemoryLimit(i64),
    MemoryReservation(i64),
    MemorySwap(i64),
    Swappiness(u64),
    CpuShares(u64),
    CpuPeriod(u64),
    CpuQuota(i64),
    Cpus(String),
    Mems(String),
    /// -1 (or 0) is unlimited.
    Pids(i64),
}

impl Limit {
    /// The spec field the limit comes from, for error messages.
    pub fn field(&self) -> &'static str {
        match self {
            Limit::MemoryLimit(_) => "linux.resources.memory.limit",
            Limit::MemoryReservation(_) => "linux.resources.memory.reservation",
            Limit::MemorySwap(_) => "linux.resources.memory.swap",
            Limit::Swappiness(_) => "linux.resources.memory.swappiness",
            Limit::CpuShares(_) => "linux.resources.cpu.shares",
            Limit::CpuPeriod(_) => "linux.resources.cpu.period",
            Limit::CpuQuota(_) => "linux.resources.cpu.quota",
            Limit::Cpus(_) => "linux.resources.cpu.cpus",
            Limit::Mems(_) => "linux.resources.cpu.mems",
            Limit::Pids(_) => "linux.resources.pids.limit",
        }
    }

    fn value(&self) -> String {
        match self {
            Limit::MemoryLimit(v) | Limit::MemoryReservation(v) | Limit::MemorySwap(v) => {
                v.to_string()
            }
            Limit::CpuQuota(v) | Limit::Pids(v) => v.to_string(),
            Limit::Swappiness(v) | Limit::CpuShares(v) | Limit::CpuPeriod(v) => v.to_string(),
            Limit::Cpus(v) | Limit::Mems(v) => format!("{v:?}"),
        }
    }
}

/// The limits `r` sets, in the order they are written (cpuset before the
/// rest, period before quota). Pure.
pub fn limits(r: &LinuxResources) -> Vec<Limit> {
    let mut out = Vec::new();
    if let Some(c) = r.cpu() {
        if let Some(v) = c.cpus().clone().filter(|s| !s.is_empty()) {
            out.push(Limit::Cpus(v));
        }
        if let Some(v) = c.mems().clone().filter(|s| !s.is_empty()) {
            out.push(Limit::Mems(v));
        }
        if let Some(v) = c.shares().filter(|s| *s > 0) {
            out.push(Limit::CpuShares(v));
        }
        if let Some(v) = c.period().filter(|p| *p > 0) {
            out.push(Limit::CpuPeriod(v));
        }
        if let Some(v) = c.quota() {
            out.push(Limit::CpuQuota(v));
        }
    }
    if let Some(m) = r.memory() {
        if let Some(v) = m.limit() {
            out.push(Limit::MemoryLimit(v));
        }
        if let Some(v) = m.swap() {
            out.push(Limit::MemorySwap(v));
        }
        if let Some(v) = m.reservation() {
            out.push(Limit::MemoryReservation(v));
        }
        if let Some(v) = m.swappiness() {
            out.push(Limit::Swappiness(v));
        }
    }
    if let Some(p) = r.pids() {
        out.push(Limit::Pids(p.limit()));
    }
    out
}

/// One write of a cgroup v1 controller's file the typed limits do not
/// cover, with the spec field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    pub field: String,
}

/// The blockIO throttles: (v1 file, v2 `io.max` key, devices, spec name).
type Throttle<'a> = (
    &'static str,
    &'static str,
    &'a Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>,
    &'static str,
);

fn throttles(b: &oci_spec::runtime::LinuxBlockIo) -> [Throttle<'_>; 4] {
    [
        (
            "blkio.throttle.read_bps_device",
            "rbps",
            b.throttle_read_bps_device(),
            "throttleReadBpsDevice",
        ),
        (
            "blkio.throttle.write_bps_device",
            "wbps",
            b.throttle_write_bps_device(),
            "throttleWriteBpsDevice",
        ),
        (
            "blkio.throttle.read_iops_device",
            "riops",
            b.throttle_read_iops_device(),
            "throttleReadIOPSDevice",
        ),
        (
            "blkio.throttle.write_iops_device",
            "wiops",
            b.throttle_write_iops_device(),
            "throttleWriteIOPSDevice",
        ),
    ]
}

/// The rest of `linux.resources` on cgroup v1, in write order: the OOM
/// killer switch, the kernel memory limits, blkio weights and throttles,
/// hugetlb limits, net_cls and net_prio. Pure. (blkio weights are written
/// to the BFQ files where CFQ's are missing: see [`CgroupManager::apply`].)
pub fn v1_writes(r: &LinuxResources) -> Result<Vec<V1Write>> {
    let mut out = Vec::new();
    let mut push = |controller, file: &str, value: String, field: String| {
        out.push(V1Write {
            controller,
            file: file.to_string(),
            value,
            field,
        })
    };
    if let Some(m) = r.memory() {
        if m.disable_oom_killer() == Some(true) {
            push(
                "memory",
                "memory.oom_control",
                "1".into(),
                "linux.resources.memory.disableOOMKiller".into(),
            );
        }
        if let Some(v) = m.kernel() {
            push(
                "memory",
                "memory.kmem.limit_in_bytes",
                v.to_string(),
                "linux.resources.memory.kernel".into(),
            );
        }
        if let Some(v) = m.kernel_tcp() {
            push(
                "memory",
                "memory.kmem.tcp.limit_in_bytes",
                v.to_string(),
                "linux.resources.memory.kernelTCP".into(),
            );
        }
    }
    if let Some(b) = r.block_io() {
        const BLKIO: &str = "linux.resources.blockIO";
        // 0 is "not set" (Docker sends it), as runc reads it.
        if let Some(v) = b.weight().filter(|w| *w > 0) {
            push(
                "blkio",
                "blkio.weight",
                v.to_string(),
                format!("{BLKIO}.weight"),
            );
        }
        if let Some(v) = b.leaf_weight().filter(|w| *w > 0) {
            push(
                "blkio",
                "blkio.leaf_weight",
                v.to_string(),
                format!("{BLKIO}.leafWeight"),
            );
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            let field = format!("{BLKIO}.weightDevice[{i}]");
            if let Some(v) = d.weight().filter(|w| *w > 0) {
                let value = format!("{}:{} {v}", d.major(), d.minor());
                push("blkio", "blkio.weight_device", value, field.clone());
            }
            if let Some(v) = d.leaf_weight().filter(|w| *w > 0) {
                let value = format!("{}:{} {v}", d.major(), d.minor());
                push("blkio", "blkio.leaf_weight_device", value, field);
            }
        }
        for (file, _, devices, name) in throttles(b) {
            for (i, d) in devices.iter().flatten().enumerate() {
                let value = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                push("blkio", file, value, format!("{BLKIO}.{name}[{i}]"));
            }
        }
    }
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                field,
                format!("pageSize {size:?} is not a page size such as \"2MB\""),
            ));
        }
        let file = format!("hugetlb.{size}.limit_in_bytes");
        push("hugetlb", &file, h.limit().to_string(), field);
    }
    if let Some(n) = r.network() {
        if let Some(v) = n.class_id() {
            push(
                "net_cls",
                "net_cls.classid",
                v.to_string(),
                "linux.resources.network.classID".into(),
            );
        }
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let name = p.name();
            let field = format!("linux.resources.network.priorities[{i}]");
            if name.is_empty() || name.contains(['/', ' ', '\n']) {
                return Err(Error::invalid(
                    field,
                    format!("{name:?} is not an interface name"),
                ));
            }
            push(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{name} {}", p.priority()),
                field,
            );
        }
    }
    Ok(out)
}

/// One write of a cgroup v2 interface file, with the spec field it comes
/// from (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Write {
    pub file: String,
    pub value: String,
    pub field: String,
}

fn w(file: impl Into<String>, value: impl Into<String>, field: impl Into<String>) -> V2Write {
    V2Write {
        file: file.into(),
        value: value.into(),
        field: field.into(),
    }
}

/// cpu.shares (2..262144, v1) as cpu.weight (1..10000), the conversion
/// runc, crun and the kernel's documentation use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000, v1) as io.weight (1..10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// `linux.resources` as the cgroup v2 files they become, in write order:
/// cpuset before cpu, memory.max before memory.swap.max (the spec's swap
/// is memory+swap, v2's swap alone), then pids, io, hugetlb and the
/// `unified` keys as given (last, so they can override). Pure.
pub fn v2_writes(r: &LinuxResources) -> Result<Vec<V2Write>> {
    let mut out = Vec::new();
    if let Some(c) = r.cpu() {
        if let Some(v) = c.cpus().clone().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.cpus", v, "linux.resources.cpu.cpus"));
        }
        if let Some(v) = c.mems().clone().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.mems", v, "linux.resources.cpu.mems"));
        }
        if let Some(v) = c.shares().filter(|s| *s > 0) {
            out.push(w(
                "cpu.weight",
                shares_to_weight(v).to_string(),
                "linux.resources.cpu.shares",
            ));
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let mut v = match quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            if let Some(p) = period {
                v = format!("{v} {p}");
            }
            let field = if quota.is_some() {
                "linux.resources.cpu.quota"
            } else {
                "linux.resources.cpu.period"
            };
            out.push(w("cpu.max", v, field));
        }
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(Error::invalid(
                "linux.resources.cpu.realtimeRuntime",
                "cgroup v2 has no real-time CPU bandwidth: remove realtimeRuntime/realtimePeriod",
            ));
        }
    }
    if let Some(m) = r.memory() {
        let max = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        let limit = m.limit().filter(|l| *l != 0);
        if let Some(l) = limit {
            out.push(w("memory.max", max(l), "linux.resources.memory.limit"));
        }
        if let Some(v) = m.reservation().filter(|v| *v > 0) {
            out.push(w(
                "memory.low",
                v.to_string(),
                "linux.resources.memory.reservation",
            ));
        }
        match (m.swap().filter(|s| *s != 0), limit) {
            (None, Some(-1)) => {
                out.push(w("memory.swap.max", "max", "linux.resources.memory.swap"))
            }
            (None, _) => {}
            (Some(s), _) if s < 0 => {
                out.push(w("memory.swap.max", "max", "linux.resources.memory.swap"))
            }
            (Some(s), Some(l)) if l > 0 => {
                if s < l {
                    return Err(Error::invalid(
                        "linux.resources.memory.swap",
                        format!("{s} is below memory.limit {l}: swap is memory+swap, so it must be at least the limit"),
                    ));
                }
                out.push(w(
                    "memory.swap.max",
                    (s - l).to_string(),
                    "linux.resources.memory.swap",
                ));
            }
            (Some(_), _) => {
                return Err(Error::invalid(
                    "linux.resources.memory.swap",
                    "on cgroup v2 a swap limit needs memory.limit too (swap is memory+swap)",
                ))
            }
        }
        if m.swappiness().is_some() {
            return Err(Error::invalid(
                "linux.resources.memory.swappiness",
                "cgroup v2 has no per-cgroup swappiness: remove it",
            ));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::invalid(
                "linux.resources.memory.disableOOMKiller",
                "cgroup v2 cannot turn the OOM killer off for a cgroup",
            ));
        }
        for (set, field) in [(m.kernel(), "kernel"), (m.kernel_tcp(), "kernelTCP")] {
            if set.is_some() {
                return Err(Error::invalid(
                    format!("linux.resources.memory.{field}"),
                    "cgroup v2 has no separate kernel memory limit (memory.max counts it): remove it",
                ));
            }
        }
    }
    if r.network().as_ref().is_some_and(|n| {
        n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty())
    }) {
        return Err(Error::invalid(
            "linux.resources.network",
            "cgroup v2 has no net_cls or net_prio controller: remove classID and priorities",
        ));
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        out.push(w("pids.max", v, "linux.resources.pids.limit"));
    }
    if let Some(b) = r.block_io() {
        // 0 is "not set" (Docker sends it), as runc reads it.
        if let Some(v) = b.weight().filter(|w| *w > 0) {
            out.push(w(
                "io.weight",
                format!("default {}", blkio_weight_to_io_weight(v)),
                "linux.resources.blockIO.weight",
            ));
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            if let Some(v) = d.weight().filter(|w| *w > 0) {
                out.push(w(
                    "io.weight",
                    format!(
                        "{}:{} {}",
                        d.major(),
                        d.minor(),
                        blkio_weight_to_io_weight(v)
                    ),
                    format!("linux.resources.blockIO.weightDevice[{i}]"),
                ));
            }
        }
        for (_, key, devices, name) in throttles(b) {
            for (i, d) in devices.iter().flatten().enumerate() {
                let rate = if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                };
                out.push(w(
                    "io.max",
                    format!("{}:{} {key}={rate}", d.major(), d.minor()),
                    format!("linux.resources.blockIO.{name}[{i}]"),
                ));
            }
        }
    }
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                field,
                format!("pageSize {size:?} is not a page size such as \"2MB\""),
            ));
        }
        out.push(w(
            format!("hugetlb.{size}.max"),
            h.limit().to_string(),
            field,
        ));
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            let field = format!("linux.resources.unified[{k:?}]");
            let ok = k.contains('.')
                && !k.starts_with('.')
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !k.starts_with("cgroup.");
            if !ok {
                return Err(Error::invalid(
                    field,
                    "not a controller's interface file of the container's cgroup (such as \"memory.high\"); cgroup.* files and paths are not allowed",
                ));
            }
            out.push(w(k.clone(), u[k].clone(), field));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    #[test]
    fn resources_become_limits_in_write_order() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .reservation(32i64 << 20)
                    .swap(128i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            limits(&r),
            vec![
                Limit::Cpus("0".into()),
                Limit::CpuShares(512),
                Limit::CpuPeriod(100_000),
                Limit::CpuQuota(50_000),
                Limit::MemoryLimit(64 << 20),
                Limit::MemorySwap(128 << 20),
                Limit::MemoryReservation(32 << 20),
                Limit::Pids(20),
            ]
        );
    }

    fn v2(json: serde_json::Value) -> Result<Vec<(String, String)>> {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        v2_writes(&r).map(|v| v.into_iter().map(|w| (w.file, w.value)).collect())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn v2_files_in_write_order() {
        let got = v2(serde_json::json!({
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
            "pids": {"limit": 20},
            "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "unified": {"memory.high": "50000000", "cpu.idle": "0"}
        }))
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("memory.max", "67108864"),
                ("memory.low", "33554432"),
                ("memory.swap.max", "67108864"),
                ("pids.max", "20"),
                ("io.weight", "default 4950"),
                ("io.weight", "8:0 910"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:16 wiops=max"),
                ("hugetlb.2MB.max", "4194304"),
                ("cpu.idle", "0"),
                ("memory.high", "50000000"),
            ])
        );
    }

    #[test]
    fn v2_shares_become_weights_as_runc_converts_them() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn v2_unlimited_and_partial_values() {
        assert_eq!(
            v2(serde_json::json!({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}})).unwrap(),
            pairs(&[("cpu.max", "max"), ("memory.max", "max"), ("memory.swap.max", "max"), ("pids.max", "max")])
        );
        assert_eq!(
            v2(serde_json::json!({"cpu": {"period": 50000}})).unwrap(),
            pairs(&[("cpu.max", "max 50000")])
        );
        assert_eq!(
            v2(serde_json::json!({"memory": {"limit": 1048576, "swap": -1}})).unwrap(),
            pairs(&[("memory.max", "1048576"), ("memory.swap.max", "max")])
        );
        assert_eq!(
            v2(serde_json::json!({"memory": {"limit": 1048576, "swap": 1048576}})).unwrap(),
            pairs(&[("memory.max", "1048576"), ("memory.swap.max", "0")])
        );
        assert!(v2(serde_json::json!({})).unwrap().is_empty());
    }

    #[test]
    fn v2_refusals_name_the_field() {
        let err = |j| v2(j).unwrap_err().to_string();
        let e = err(serde_json::json!({"memory": {"swap": 1048576}}));
        assert!(
            e.contains("linux.resources.memory.swap") && e.contains("needs memory.limit"),
            "{e}"
        );
        let e = err(serde_json::json!({"memory": {"limit": 2097152, "swap": 1048576}}));
        assert!(e.contains("below memory.limit"), "{e}");
        let e = err(serde_json::json!({"memory": {"swappiness": 10}}));
        assert!(e.contains("linux.resources.memory.swappiness"), "{e}");
        let e = err(serde_json::json!({"memory": {"disableOOMKiller": true}}));
        assert!(e.contains("disableOOMKiller"), "{e}");
        let e = err(serde_json::json!({"cpu": {"realtimeRuntime": 1000}}));
        assert!(e.contains("realtimeRuntime"), "{e}");
        for bad in [
            "../../etc/passwd",
            "cgroup.procs",
            "memory",
            "memory.high/x",
            ".x",
        ] {
            let e = err(serde_json::json!({"unified": {bad: "1"}}));
            assert!(
                e.contains("linux.resources.unified") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let e = err(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB/../x", "limit": 1}]}));
        assert!(e.contains("hugepageLimits[0]"), "{e}");
        let e = err(serde_json::json!({"memory": {"kernelTCP": 1048576}}));
        assert!(e.contains("linux.resources.memory.kernelTCP"), "{e}");
        let e = err(serde_json::json!({"network": {"classID": 1}}));
        assert!(e.contains("linux.resources.network"), "{e}");
    }

    fn v1(json: serde_json::Value) -> Result<Vec<(&'static str, String, String, String)>> {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        v1_writes(&r).map(|v| {
            v.into_iter()
                .map(|w| (w.controller, w.file, w.value, w.field))
                .collect()
        })
    }

    #[test]
    fn v1_files_beyond_the_typed_limits_in_write_order() {
        let got = v1(serde_json::json!({
            "memory": {"disableOOMKiller": true, "kernel": 8388608, "kernelTCP": 4194304},
            "blockIO": {
                "weight": 300, "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
        }))
        .unwrap();
        let files: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(c, f, v, _)| (*c, f.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("memory", "memory.oom_control", "1"),
                ("memory", "memory.kmem.limit_in_bytes", "8388608"),
                ("memory", "memory.kmem.tcp.limit_in_bytes", "4194304"),
                ("blkio", "blkio.weight", "300"),
                ("blkio", "blkio.leaf_weight", "200"),
                ("blkio", "blkio.weight_device", "8:0 500"),
                ("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio", "blkio.throttle.write_iops_device", "8:16 100"),
                ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
                ("net_cls", "net_cls.classid", "1048577"),
                ("net_prio", "net_prio.ifpriomap", "eth0 5"),
            ]
        );
        assert_eq!(got[0].3, "linux.resources.memory.disableOOMKiller");
        assert_eq!(
            got[7].3,
            "linux.resources.blockIO.throttleWriteIOPSDevice[0]"
        );
        assert_eq!(got[10].3, "linux.resources.network.priorities[0]");
        // The OOM killer left on (false) writes nothing; nor do empty lists.
        assert!(
            v1(serde_json::json!({"memory": {"disableOOMKiller": false}, "blockIO": {}}))
                .unwrap()
                .is_empty()
        );
        // A weight of 0 is not set (Docker's default), on both.
        assert!(
            v1(serde_json::json!({"blockIO": {"weight": 0, "leafWeight": 0}}))
                .unwrap()
                .is_empty()
        );
        assert!(v2(serde_json::json!({"blockIO": {"weight": 0}}))
            .unwrap()
            .is_empty());
        let e =
            v1(serde_json::json!({"network": {"priorities": [{"name": "a b", "priority": 1}]}}))
                .unwrap_err()
                .to_string();
        assert!(e.contains("priorities[0]"), "{e}");
    }

    #[test]
    fn limits_name_their_field() {
        assert_eq!(Limit::Cpus("9".into()).field(), "linux.resources.cpu.cpus");
        assert_eq!(Limit::Cpus("9".into()).value(), "\"9\"");
        assert_eq!(Limit::Pids(-1).field(), "linux.resources.pids.limit");
    }

    #[test]
    fn empty_resources_set_nothing() {
        assert!(limits(&LinuxResources::default()).is_empty());
    }

    #[test]
    fn backoff_starts_short_and_is_bounded() {
        let v: Vec<Duration> = backoff(Duration::from_millis(20)).collect();
        assert_eq!(v[0], Duration::from_micros(50));
        assert_eq!(v[1], Duration::from_micros(100));
        assert!(v.iter().all(|d| *d <= Duration::from_millis(5)));
        assert!(v.iter().sum::<Duration>() <= Duration::from_millis(20));
    }

    #[test]
    fn relative_path_drops_the_leading_slash() {
        assert_eq!(rel("/isoexec/a"), "isoexec/a");
        assert_eq!(rel("a/b"), "a/b");
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("isoexec-cg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_missing_directory_is_made_with_its_parents_and_recorded() {
        let d = scratch("make");
        let leaf = d.join("a/b/leaf");
        let mut made = Vec::new();
        assert!(make_dir_v1(&leaf, false, &mut made).unwrap());
        assert_eq!(made, [d.join("a"), d.join("a/b"), leaf.clone()]);
        // There already: not made, nothing recorded.
        let mut again = Vec::new();
        assert!(!make_dir_v1(&leaf, false, &mut again).unwrap());
        assert!(again.is_empty());
        // A parent that is a file: the error comes back.
        std::fs::write(d.join("file"), "").unwrap();
        assert!(make_dir_v1(&d.join("file/leaf"), false, &mut Vec::new()).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_empty_cpuset_takes_its_nearest_ancestors_value() {
        let d = scratch("cpuset");
        let (a, b, c) = (d.join("a"), d.join("a/b"), d.join("a/b/c"));
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(d.join("cpuset.cpus"), "0-7\n").unwrap();
        std::fs::write(a.join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(b.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(c.join("cpuset.cpus"), "").unwrap();
        copy_from_ancestor(&c, "cpuset.cpus").unwrap();
        for x in [&b, &c] {
            assert_eq!(
                std::fs::read_to_string(x.join("cpuset.cpus")).unwrap(),
                "0-1"
            );
        }
        assert_eq!(
            std::fs::read_to_string(d.join("cpuset.cpus")).unwrap(),
            "0-7\n"
        );
        // One that has a value keeps it, and nothing above is read.
        std::fs::write(c.join("cpuset.mems"), "1\n").unwrap();
        copy_from_ancestor(&c, "cpuset.mems").unwrap();
        assert_eq!(
            std::fs::read_to_string(c.join("cpuset.mems")).unwrap(),
            "1\n"
        );
        assert!(!b.join("cpuset.mems").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
