//! The last steps of any process isoexec starts (init or exec): limits,
//! credentials, capabilities, working directory, terminal, and the exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::error::{Context, Error, Result};
use crate::plan::ProcessPlan;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// rlimits and the OOM score, while the process still has the privilege to
/// raise them.
pub fn apply_limits(p: &ProcessPlan) -> Result<()> {
    for r in &p.rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: plain system call with a valid pointer.
        if unsafe { libc::setrlimit(r.resource as _, &lim) } != 0 {
            return Err(Error::sys(
                format!(
                    "setrlimit {} soft={} hard={}",
                    rlimit_name(r.resource),
                    r.soft,
                    r.hard
                ),
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj {
        crate::sys::write_kernel("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("oomScoreAdj {adj}"))?;
    }
    Ok(())
}

fn rlimit_name(resource: u32) -> &'static str {
    match resource as _ {
        libc::RLIMIT_NOFILE => "RLIMIT_NOFILE",
        libc::RLIMIT_NPROC => "RLIMIT_NPROC",
        libc::RLIMIT_CORE => "RLIMIT_CORE",
        libc::RLIMIT_AS => "RLIMIT_AS",
        libc::RLIMIT_CPU => "RLIMIT_CPU",
        libc::RLIMIT_FSIZE => "RLIMIT_FSIZE",
        libc::RLIMIT_STACK => "RLIMIT_STACK",
        libc::RLIMIT_MEMLOCK => "RLIMIT_MEMLOCK",
        _ => "rlimit",
    }
}

/// Becomes the spec's user with the spec's capabilities: the bounding set is
/// cut while still privileged, capabilities survive the uid change
/// (KEEPCAPS), then the other four sets are set exactly.
pub fn switch_user(p: &ProcessPlan) -> Result<()> {
    let c = &p.capabilities;
    let bounding: CapsHashSet = c.bounding.iter().copied().collect();
    for cap in caps::all() {
        // One call per capability: dropping one already out of the set is
        // a no-op, and EINVAL means this kernel does not know it (nothing
        // to drop).
        // SAFETY: plain prctl with integer arguments.
        let r = (!bounding.contains(&cap)).then(|| unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0)
        });
        if r == Some(-1) {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::Init(format!(
                    "dropping {cap} from the bounding set: {e}"
                )));
            }
        }
    }
    nix::sys::prctl::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS".into())?;
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&groups).ctx(|| format!("setgroups {:?}", p.additional_gids))?;
    let gid = Gid::from_raw(p.gid);
    setresgid(gid, gid, gid).ctx(|| format!("setgid {}", p.gid))?;
    let uid = Uid::from_raw(p.uid);
    setresuid(uid, uid, uid).ctx(|| format!("setuid {}", p.uid))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "PR_SET_KEEPCAPS".into())?;

    let names = |caps: &mut dyn Iterator<Item = &caps::Capability>| {
        let mut v: Vec<String> = caps.map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    let set = |which: CapSet, caps: &[caps::Capability], name: &str| -> Result<()> {
        let s: CapsHashSet = caps.iter().copied().collect();
        caps::set(None, which, &s).map_err(|e| {
            // What the runtime itself does not hold (a kernel without the
            // capability, a runtime started with fewer) is the usual cause.
            let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
            let missing = names(&mut s.iter().filter(|c| !held.contains(c)));
            let why = if missing.is_empty() {
                String::new()
            } else {
                format!(": the runtime does not hold {} (not in this kernel, or the runtime was started without it)", missing.join(", "))
            };
            let wanted = names(&mut s.iter());
            Error::Init(format!(
                "process.capabilities.{name}: setting {wanted:?} failed ({e}){why}"
            ))
        })
    };
    // Loading a seccomp filter without no_new_privs takes CAP_SYS_ADMIN,
    // and the filter is loaded right before execve: until then the process
    // keeps it in its permitted and effective sets only. execve computes
    // the new sets from the bounding, inheritable and ambient sets (and the
    // file's), never from these, so the program does not get it.
    let with_admin = |set: &[caps::Capability]| {
        let mut v = set.to_vec();
        if p.seccomp.is_some()
            && !p.no_new_privileges
            && !v.contains(&caps::Capability::CAP_SYS_ADMIN)
        {
            v.push(caps::Capability::CAP_SYS_ADMIN);
        }
        v
    };
    let permitted = with_admin(&c.permitted);
    let effective = with_admin(&c.effective);
    // The three sets in one capset(2); when the kernel refuses, set by set
    // (effective ⊆ permitted at every step: shrink effective first, grow it
    // last) to say which set and which capability it was.
    if capset_all(&effective, &permitted, &c.inheritable).is_err() {
        set(CapSet::Effective, &[], "effective")?;
        set(CapSet::Inheritable, &c.inheritable, "inheritable")?;
        set(CapSet::Permitted, &permitted, "permitted")?;
        set(CapSet::Effective, &effective, "effective")?;
    }
    // Cleared, then each wanted one raised (one prctl each): not
    // caps::set, which probes and sets every capability the kernel knows.
    caps::clear(None, CapSet::Ambient).map_err(|e| {
        Error::Init(format!(
            "process.capabilities.ambient: clearing the ambient set: {e}"
        ))
    })?;
    for cap in &c.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| {
            Error::Init(format!(
                "process.capabilities.ambient: raising {cap} failed ({e}): an ambient capability must be in the permitted and inheritable sets"
            ))
        })?;
    }
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS".into())?;
    }
    Ok(())
}

/// Sets the effective, permitted and inheritable sets of this thread at
/// once (capset(2), version 3: 64 bits each).
fn capset_all(
    effective: &[caps::Capability],
    permitted: &[caps::Capability],
    inheritable: &[caps::Capability],
) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let bits = |set: &[caps::Capability]| set.iter().fold(0u64, |m, c| m | c.bitmask());
    let (e, p, i) = (bits(effective), bits(permitted), bits(inheritable));
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: a version 3 header and its two data words, both live.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// umask and working directory; the directory must stay inside the root
/// (a leaked descriptor could otherwise give a path outside it).
pub fn enter_cwd(p: &ProcessPlan) -> Result<()> {
    if let Some(m) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    nix::unistd::chdir(&p.cwd).map_err(|e| {
        Error::invalid(
            "process.cwd",
            format!(
                "cannot enter {} in the container: {}",
                p.cwd.display(),
                std::io::Error::from(e)
            ),
        )
    })?;
    let cwd = nix::unistd::getcwd().ctx(|| "getcwd".into())?;
    if !cwd.is_absolute() || cwd.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(Error::Init(format!(
            "working directory {} is outside the container's root",
            cwd.display()
        )));
    }
    Ok(())
}

/// What execve needs, built before the exec so that the last step cannot
/// fail on anything but the exec itself.
pub struct Exec {
    pub path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The process's seccomp filter, loaded as the very last step.
    seccomp: Option<super::seccomp::Program>,
}

/// Finds `args[0]` in the container (by the process's own PATH when it has
/// no `/`), as execvp would, so a missing binary is reported by `create`,
/// not lost after `start`.
pub fn prepare_exec(p: &ProcessPlan, seccomp: Option<super::seccomp::Program>) -> Result<Exec> {
    let cmd = &p.args[0];
    let path = if cmd.contains('/') {
        let path = PathBuf::from(cmd);
        check_executable(&path).map_err(|e| {
            Error::invalid(
                "process.args[0]",
                format!("cannot execute {cmd:?} in the container: {e}"),
            )
        })?;
        path
    } else {
        let search = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(cmd))
            .find(|c| check_executable(c).is_ok())
            .ok_or_else(|| {
                Error::invalid(
                    "process.args[0]",
                    format!(
                        "{cmd:?}: executable file not found in $PATH ({search}) in the container"
                    ),
                )
            })?
    };
    let cstr = |s: &[u8], what: &str| {
        CString::new(s).map_err(|_| Error::Init(format!("{what} contains a NUL byte")))
    };
    Ok(Exec {
        path: cstr(path.as_os_str().as_bytes(), "process.args[0]")?,
        argv: p
            .args
            .iter()
            .map(|a| cstr(a.as_bytes(), "process.args"))
            .collect::<Result<_>>()?,
        envp: p
            .env
            .iter()
            .map(|e| cstr(e.as_bytes(), "process.env"))
            .collect::<Result<_>>()?,
        seccomp,
    })
}

fn check_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

impl Exec {
    /// Closes every descriptor from `keep_below` up on exec, loads the
    /// seccomp filter, then execs: the filter sees only execve of the
    /// runtime's own calls. Returns only on failure.
    pub fn exec(&self, keep_below: RawFd) -> Error {
        close_on_exec_from(keep_below);
        if let Some(f) = &self.seccomp {
            if let Err(e) = f.load() {
                return Error::Init(format!("seccomp: loading the filter: {e}"));
            }
        }
        match nix::unistd::execve(&self.path, &self.argv, &self.envp) {
            Err(e) => Error::Init(format!(
                "exec {}: {}",
                self.path.to_string_lossy(),
                std::io::Error::from(e)
            )),
            Ok(never) => match never {},
        }
    }
}

/// Marks every descriptor >= `first` close-on-exec, so nothing of the
/// runtime's leaks into the container.
pub fn close_on_exec_from(first: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Kernels before 5.11: walk /proc/self/fd.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<RawFd> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first)
                .collect();
            for fd in fds {
                // SAFETY: setting FD_CLOEXEC on a descriptor number.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Opens a new pty in the container's devpts, makes it the process's
/// controlling terminal and stdio, and sends the master to `console` (the
/// `--console-socket` connection), as runc does.
pub fn setup_terminal(console: RawFd, size: Option<(u16, u16)>) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "opening /dev/ptmx in the container (is devpts mounted at /dev/pts?)".into())?;
    grantpt(&master).ctx(|| "grantpt".into())?;
    unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {name}"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    // SAFETY: TIOCSCTTY on a terminal we just opened.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::sys("TIOCSCTTY", std::io::Error::last_os_error()));
    }
    let s = slave.as_raw_fd();
    super::set_stdio([s, s, s]).ctx(|| "the terminal as standard input/output".into())?;
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    // SAFETY: `console` is the connected console socket, open until exec.
    let console = unsafe { BorrowedFd::borrow_raw(console) };
    sendmsg::<()>(console.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "sending the terminal to --console-socket".into())?;
    drop(master);
    Ok(())
}

/// Replaces the caller's session keyring with a new, anonymous one, so a
/// container never reads or links the keys of whoever started the runtime,
/// nor another container's (an anonymous keyring cannot be joined by name
/// from outside: its owner has no search permission on it). A kernel
/// without keyrings (ENOSYS) has nothing to leak.
pub fn join_new_session_keyring() -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for a new anonymous keyring.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(Error::sys("joining a new session keyring", e));
        }
    }
    Ok(())
}
