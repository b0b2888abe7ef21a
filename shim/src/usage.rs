//! A task's resource usage, read from its cgroup (v1 or v2): what the
//! shim's Stats (containerd Metrics) and isoexecd's TaskStats report.

use std::collections::HashMap;
use std::path::Path;

use runtime::cgroup::CgroupManager;

/// One reading. Zero where the host does not account it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub v2: bool,
    /// CPU time in nanoseconds: total, user, system.
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Memory in bytes: usage, its limit, peak and failures (v1).
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_max_usage: u64,
    pub memory_failcnt: u64,
    /// Anonymous (rss) and page cache (file) memory.
    pub memory_rss: u64,
    pub memory_cache: u64,
    /// v1 hierarchical totals.
    pub memory_total_rss: u64,
    pub memory_total_cache: u64,
    /// Swap in use (v2), or memory+swap (v1: memsw).
    pub swap_usage: u64,
    pub swap_limit: u64,
    pub swap_max_usage: u64,
    pub swap_failcnt: u64,
    pub pids_current: u64,
    pub pids_limit: u64,
    /// Processes the kernel killed for the memory limit.
    pub oom_kills: u64,
}

fn read_u64(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat) as a lookup.
pub(crate) fn keyed(dir: &Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

pub fn read(cg: &CgroupManager) -> Usage {
    let mut u = Usage {
        v2: cg.is_v2(),
        ..Default::default()
    };
    if u.v2 {
        let Some(dir) = cg.controller_dir("") else {
            return u;
        };
        u.pids_current = read_u64(&dir, "pids.current");
        u.pids_limit = read_u64(&dir, "pids.max");
        let cpu = keyed(&dir, "cpu.stat");
        let usec = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
        u.cpu_total_ns = usec("usage_usec");
        u.cpu_user_ns = usec("user_usec");
        u.cpu_system_ns = usec("system_usec");
        let ms = keyed(&dir, "memory.stat");
        u.memory_usage = read_u64(&dir, "memory.current");
        u.memory_limit = read_u64(&dir, "memory.max");
        u.memory_max_usage = read_u64(&dir, "memory.peak");
        u.swap_usage = read_u64(&dir, "memory.swap.current");
        u.swap_limit = read_u64(&dir, "memory.swap.max");
        u.memory_rss = ms.get("anon").copied().unwrap_or(0);
        u.memory_cache = ms.get("file").copied().unwrap_or(0);
        u.oom_kills = cg.oom_kills();
        return u;
    }
    if let Some(dir) = cg.controller_dir("pids") {
        u.pids_current = read_u64(&dir, "pids.current");
        u.pids_limit = read_u64(&dir, "pids.max");
    }
    if let Some(dir) = cg.controller_dir("cpuacct") {
        u.cpu_total_ns = read_u64(&dir, "cpuacct.usage");
        u.cpu_user_ns = read_u64(&dir, "cpuacct.usage_user");
        u.cpu_system_ns = read_u64(&dir, "cpuacct.usage_sys");
    }
    if let Some(dir) = cg.controller_dir("memory") {
        let ms = keyed(&dir, "memory.stat");
        u.memory_rss = ms.get("rss").copied().unwrap_or(0);
        u.memory_cache = ms.get("cache").copied().unwrap_or(0);
        u.memory_total_rss = ms.get("total_rss").copied().unwrap_or(0);
        u.memory_total_cache = ms.get("total_cache").copied().unwrap_or(0);
        u.memory_usage = read_u64(&dir, "memory.usage_in_bytes");
        u.memory_limit = read_u64(&dir, "memory.limit_in_bytes");
        u.memory_max_usage = read_u64(&dir, "memory.max_usage_in_bytes");
        u.memory_failcnt = read_u64(&dir, "memory.failcnt");
        u.swap_usage = read_u64(&dir, "memory.memsw.usage_in_bytes");
        u.swap_limit = read_u64(&dir, "memory.memsw.limit_in_bytes");
        u.swap_max_usage = read_u64(&dir, "memory.memsw.max_usage_in_bytes");
        u.swap_failcnt = read_u64(&dir, "memory.memsw.failcnt");
        u.oom_kills = cg.oom_kills();
    }
    u
}
