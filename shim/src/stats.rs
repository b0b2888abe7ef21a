//! A task's statistics, read from its cgroup, as containerd's cgroups
//! Metrics messages (v1 or v2, with the bare type URLs containerd expects).

use std::path::Path;

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use runtime::cgroup::CgroupManager;

fn read_u64(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat) as a lookup.
fn keyed(dir: &Path, file: &str) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

pub fn metrics(cg: &CgroupManager) -> Any {
    let mut any = Any::new();
    if cg.is_v2() {
        let Some(dir) = cg.controller_dir("") else {
            return any;
        };
        let mut m = v2::Metrics::new();
        let mut pids = v2::PidsStat::new();
        pids.current = read_u64(&dir, "pids.current");
        pids.limit = read_u64(&dir, "pids.max");
        m.pids = MessageField::some(pids);
        let cpu_stat = keyed(&dir, "cpu.stat");
        let mut cpu = v2::CPUStat::new();
        cpu.usage_usec = cpu_stat.get("usage_usec").copied().unwrap_or(0);
        cpu.user_usec = cpu_stat.get("user_usec").copied().unwrap_or(0);
        cpu.system_usec = cpu_stat.get("system_usec").copied().unwrap_or(0);
        m.cpu = MessageField::some(cpu);
        let ms = keyed(&dir, "memory.stat");
        let mut mem = v2::MemoryStat::new();
        mem.usage = read_u64(&dir, "memory.current");
        mem.usage_limit = read_u64(&dir, "memory.max");
        mem.swap_usage = read_u64(&dir, "memory.swap.current");
        mem.anon = ms.get("anon").copied().unwrap_or(0);
        mem.file = ms.get("file").copied().unwrap_or(0);
        m.memory = MessageField::some(mem);
        any.type_url = "io.containerd.cgroups.v2.Metrics".into();
        any.value = m.write_to_bytes().unwrap_or_default();
        return any;
    }
    let mut m = v1::Metrics::new();
    if let Some(dir) = cg.controller_dir("pids") {
        let mut pids = v1::PidsStat::new();
        pids.current = read_u64(&dir, "pids.current");
        pids.limit = read_u64(&dir, "pids.max");
        m.pids = MessageField::some(pids);
    }
    if let Some(dir) = cg.controller_dir("cpuacct") {
        let mut usage = v1::CPUUsage::new();
        usage.total = read_u64(&dir, "cpuacct.usage");
        usage.user = read_u64(&dir, "cpuacct.usage_user");
        usage.kernel = read_u64(&dir, "cpuacct.usage_sys");
        let mut cpu = v1::CPUStat::new();
        cpu.usage = MessageField::some(usage);
        m.cpu = MessageField::some(cpu);
    }
    if let Some(dir) = cg.controller_dir("memory") {
        let ms = keyed(&dir, "memory.stat");
        let mut mem = v1::MemoryStat::new();
        mem.cache = ms.get("cache").copied().unwrap_or(0);
        mem.rss = ms.get("rss").copied().unwrap_or(0);
        mem.total_cache = ms.get("total_cache").copied().unwrap_or(0);
        mem.total_rss = ms.get("total_rss").copied().unwrap_or(0);
        let entry = |prefix: &str| {
            let mut e = v1::MemoryEntry::new();
            e.usage = read_u64(&dir, &format!("{prefix}usage_in_bytes"));
            e.limit = read_u64(&dir, &format!("{prefix}limit_in_bytes"));
            e.max = read_u64(&dir, &format!("{prefix}max_usage_in_bytes"));
            e.failcnt = read_u64(&dir, &format!("{prefix}failcnt"));
            e
        };
        mem.usage = MessageField::some(entry("memory."));
        mem.swap = MessageField::some(entry("memory.memsw."));
        m.memory = MessageField::some(mem);
    }
    any.type_url = "io.containerd.cgroups.v1.Metrics".into();
    any.value = m.write_to_bytes().unwrap_or_default();
    any
}
