//! A task's usage as containerd's cgroups Metrics messages (v1 or v2, with
//! the bare type URLs containerd expects).

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use isoexec_shim::usage::Usage;

pub fn metrics(u: &Usage) -> Any {
    let mut any = Any::new();
    if u.v2 {
        let mut m = v2::Metrics::new();
        let mut pids = v2::PidsStat::new();
        pids.current = u.pids_current;
        pids.limit = u.pids_limit;
        m.pids = MessageField::some(pids);
        let mut cpu = v2::CPUStat::new();
        cpu.usage_usec = u.cpu_total_ns / 1000;
        cpu.user_usec = u.cpu_user_ns / 1000;
        cpu.system_usec = u.cpu_system_ns / 1000;
        m.cpu = MessageField::some(cpu);
        let mut mem = v2::MemoryStat::new();
        mem.usage = u.memory_usage;
        mem.usage_limit = u.memory_limit;
        mem.swap_usage = u.swap_usage;
        mem.anon = u.memory_rss;
        mem.file = u.memory_cache;
        m.memory = MessageField::some(mem);
        any.type_url = "io.containerd.cgroups.v2.Metrics".into();
        any.value = m.write_to_bytes().unwrap_or_default();
        return any;
    }
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = u.pids_current;
    pids.limit = u.pids_limit;
    m.pids = MessageField::some(pids);
    let mut usage = v1::CPUUsage::new();
    usage.total = u.cpu_total_ns;
    usage.user = u.cpu_user_ns;
    usage.kernel = u.cpu_system_ns;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    m.cpu = MessageField::some(cpu);
    let mut mem = v1::MemoryStat::new();
    mem.cache = u.memory_cache;
    mem.rss = u.memory_rss;
    mem.total_cache = u.memory_total_cache;
    mem.total_rss = u.memory_total_rss;
    let entry = |usage, limit, max, failcnt| {
        let mut e = v1::MemoryEntry::new();
        (e.usage, e.limit, e.max, e.failcnt) = (usage, limit, max, failcnt);
        e
    };
    mem.usage = MessageField::some(entry(
        u.memory_usage,
        u.memory_limit,
        u.memory_max_usage,
        u.memory_failcnt,
    ));
    mem.swap = MessageField::some(entry(
        u.swap_usage,
        u.swap_limit,
        u.swap_max_usage,
        u.swap_failcnt,
    ));
    m.memory = MessageField::some(mem);
    any.type_url = "io.containerd.cgroups.v1.Metrics".into();
    any.value = m.write_to_bytes().unwrap_or_default();
    any
}
