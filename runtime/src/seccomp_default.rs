//! The default seccomp profile: Docker's, as `linux.seccomp` (pure).
//!
//! The same allow-list Docker and containerd give a container: everything
//! an ordinary program calls is allowed, everything else fails with EPERM
//! (ENOSYS for clone3, so libc falls back to clone, whose namespace flags
//! are then checked). Calls that need a capability are allowed only when
//! the process has it, as Docker decides them: the profile is made for a
//! capability set. isoexecd gives it to every task unless the request opts
//! out; `isoexec spec --seccomp` writes it into a bundle.

use serde_json::{json, Value};

/// Allowed for every process.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed only with a capability, as Docker decides.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The namespace flags of clone(2) (CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET): refused without CAP_SYS_ADMIN.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

/// The architectures of this build's native one and its compat modes.
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec![]
    }
}

fn arch_specific() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") || cfg!(target_arch = "x86") {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "aarch64") || cfg!(target_arch = "arm") {
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]
    } else {
        &[]
    }
}

/// Docker's default profile for a process with capabilities `caps`
/// (`CAP_*` names), as a `linux.seccomp` object.
pub fn profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    allowed.extend_from_slice(arch_specific());
    for (cap, calls) in BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(calls);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    // personality(2): the ordinary personalities only (Linux, its 32-bit
    // flavour, and the query).
    for p in [0x0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }));
    }
    // socket(2) of every family but AF_VSOCK (40): the host's hypervisor.
    syscalls.push(json!({
        "names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}],
    }));
    if !has("CAP_SYS_ADMIN") {
        // clone without namespace flags; clone3 (whose flags a filter
        // cannot read) answers ENOSYS, so libc falls back to clone.
        let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": CLONE_NAMESPACES, "valueTwo": 0,
                      "op": "SCMP_CMP_MASKED_EQ"}],
        }));
        syscalls.push(json!({
            "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{plan, Action, CmpOp, SeccompPlan};

    fn planned(caps: &[&str]) -> SeccompPlan {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        plan(&serde_json::from_value(profile(&caps)).expect("a valid linux.seccomp")).unwrap()
    }

    fn rules<'a>(p: &'a SeccompPlan, name: &str) -> Vec<&'a crate::seccomp::Rule> {
        p.rules.iter().filter(|r| r.syscall == name).collect()
    }

    #[test]
    fn everyday_calls_allowed_the_rest_refused_with_eperm() {
        let p = planned(&["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(p.default, Action::Errno(libc::EPERM as u32));
        for name in [
            "read",
            "execve",
            "openat",
            "futex",
            "epoll_wait",
            "rseq",
            "statx",
        ] {
            let r = rules(&p, name);
            assert_eq!(r.len(), 1, "{name}");
            assert_eq!(
                (r[0].action, r[0].args.is_empty()),
                (Action::Allow, true),
                "{name}"
            );
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "kexec_load",
            "init_module",
            "ptrace_x",
        ] {
            assert!(rules(&p, name).is_empty(), "{name} must not be allowed");
        }
        assert!(
            rules(&p, "ptrace").len() == 1,
            "ptrace is allowed since Linux 4.8"
        );
    }

    #[test]
    fn capabilities_open_their_calls() {
        let p = planned(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE"]);
        for name in [
            "mount",
            "unshare",
            "setns",
            "clone3",
            "chroot",
            "process_vm_readv",
        ] {
            assert_eq!(rules(&p, name).len(), 1, "{name}");
            assert_eq!(rules(&p, name)[0].action, Action::Allow, "{name}");
        }
        // clone is then allowed whatever its flags.
        assert!(rules(&p, "clone")[0].args.is_empty());
        // Names are case-insensitive, as capability names are.
        assert_eq!(rules(&planned(&["cap_sys_chroot"]), "chroot").len(), 1);
        assert!(rules(&planned(&[]), "chroot").is_empty());
    }

    #[test]
    fn clone_without_sys_admin_has_no_namespace_flags_and_clone3_is_enosys() {
        let p = planned(&[]);
        let c = rules(&p, "clone");
        assert_eq!(c.len(), 1);
        let a = &c[0].args[0];
        assert_eq!(
            (a.index, a.op, a.value, a.value_two),
            (0, CmpOp::MaskedEq, CLONE_NAMESPACES, 0)
        );
        assert_eq!(
            rules(&p, "clone3")[0].action,
            Action::Errno(libc::ENOSYS as u32)
        );
    }

    #[test]
    fn personality_and_socket_are_narrowed() {
        let p = planned(&[]);
        let values: Vec<u64> = rules(&p, "personality")
            .iter()
            .map(|r| r.args[0].value)
            .collect();
        assert_eq!(values, vec![0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        let s = rules(&p, "socket");
        assert_eq!((s[0].args[0].op, s[0].args[0].value), (CmpOp::Ne, 40));
    }

    #[test]
    fn one_rule_per_name_in_the_allow_list() {
        let mut all: Vec<&str> = ALLOWED.to_vec();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(n, all.len(), "a syscall is listed twice");
    }
}
