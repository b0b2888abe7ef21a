//! Every system call that builds a container lives below this module: the
//! fork of the init, the mounts of its root, its credentials, and the exec.
//! What to do is decided by [`crate::plan`]; this only carries it out.

pub mod at;
pub mod bpf;
pub mod chroot;
pub mod exe;
pub mod hooks;
pub mod init;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod userns;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

/// fork(2) that also creates the namespaces in `flags` (clone(2) without a
/// new stack: the child continues on a copy of the caller's). In a new pid
/// namespace the child is its pid 1.
///
/// # Safety
/// As fork: the caller must be single-threaded, or the child must keep to
/// async-signal-safe work until it execs.
pub unsafe fn clone_fork(flags: CloneFlags) -> nix::Result<Option<Pid>> {
    // The child is born non-dumpable: from its first instant it can be in
    // a container's pid namespace, and a process there must never open
    // /proc/PID/exe of the runtime's binary (CVE-2019-5736). The parent
    // gets its own setting back.
    let dumpable = libc::prctl(libc::PR_GET_DUMPABLE);
    if dumpable > 0 {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    let ret = libc::syscall(
        libc::SYS_clone,
        (flags.bits() as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    let err = nix::errno::Errno::last();
    if ret != 0 && dumpable > 0 {
        libc::prctl(libc::PR_SET_DUMPABLE, dumpable);
    }
    match ret {
        -1 => Err(err),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// clone_fork in other namespaces (`joins`: a running container's pid
/// namespace; with a new user namespace, every namespace the child joins
/// by path, which it could not join from inside), restoring the caller's
/// afterwards: setns(CLONE_NEWPID) changes where the caller's *later*
/// children are born, and a long-lived caller (the shim) must not start
/// its next container inside this one's namespaces.
///
/// # Safety
/// As [`clone_fork`].
pub unsafe fn clone_fork_in(
    joins: &[(crate::plan::NsKind, std::os::fd::BorrowedFd)],
    flags: CloneFlags,
) -> std::io::Result<Option<Pid>> {
    use std::os::fd::AsFd;
    if joins.is_empty() {
        return clone_fork(flags).map_err(Into::into);
    }
    // Our own namespaces, to come back to (in reverse order).
    let mut own: Vec<(CloneFlags, std::fs::File)> = Vec::new();
    let back = |own: &[(CloneFlags, std::fs::File)]| -> std::io::Result<()> {
        for (flag, f) in own.iter().rev() {
            nix::sched::setns(f.as_fd(), *flag)?;
        }
        Ok(())
    };
    for (kind, target) in joins {
        let mine = std::fs::File::open(format!("/proc/self/ns/{}", kind.proc_name()));
        let entered = mine.and_then(|mine| {
            nix::sched::setns(*target, kind.clone_flag())?;
            own.push((kind.clone_flag(), mine));
            Ok(())
        });
        if let Err(e) = entered {
            back(&own)?;
            return Err(e);
        }
    }
    let r = clone_fork(flags);
    if !matches!(r, Ok(None)) {
        // In the parent (or on failure): back to our own namespaces.
        back(&own)?;
    }
    r.map_err(Into::into)
}

/// Closes every descriptor from `from` up but those in `keep` (at most 8,
/// any order; negative ones are ignored): a child forked from a server
/// (the shim, isoexecd) must not hold the server's listening socket and
/// connections while it waits for `start`. Allocation-free, for the child
/// of a fork.
pub fn close_all_but(from: RawFd, keep: &[RawFd]) {
    let mut k = [RawFd::MAX; 8];
    let n = keep.len().min(8);
    k[..n].copy_from_slice(&keep[..n]);
    k.sort_unstable();
    let mut lo = from.max(3);
    for fd in k {
        if fd < lo {
            continue;
        }
        if fd > lo {
            close_range(lo as u32, (fd - 1) as u32);
        }
        if fd == RawFd::MAX {
            return;
        }
        lo = fd + 1;
    }
}

fn close_range(lo: u32, hi: u32) {
    // SAFETY: close_range(2) on descriptors this process owns.
    let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
    if r != 0 {
        // Before Linux 5.9: one by one, up to the descriptor limit.
        let max = u32::try_from(unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }).unwrap_or(1024);
        for fd in lo..=hi.min(max) {
            // SAFETY: as above.
            unsafe { libc::close(fd as RawFd) };
        }
    }
}

/// Opens the namespace file `path` of `kind` to join it. Never blocks (a
/// fifo there would hang the caller forever) and refuses anything that is
/// not a namespace of that kind: a regular file, a fifo, another kind.
pub fn open_namespace(
    path: &Path,
    kind: crate::plan::NsKind,
) -> std::result::Result<OwnedFd, String> {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3)
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "cannot open {}: {}",
            path.display(),
            std::io::Error::from(e)
        )
    })?;
    let not_ns = || format!("{} is not a {} namespace", path.display(), kind.oci_name());
    // SAFETY: fstatfs fills a statfs of the open descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 || st.f_type as i64 != NSFS_MAGIC {
        return Err(not_ns());
    }
    // SAFETY: an ioctl without arguments on the open descriptor.
    let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as libc::Ioctl) };
    if ty < 0 || ty as i64 != kind.clone_flag().bits() as i64 {
        return Err(not_ns());
    }
    Ok(fd)
}

/// Makes `fds` the process's standard input, output and error.
pub fn set_stdio(fds: [RawFd; 3]) -> std::io::Result<()> {
    for (target, fd) in fds.into_iter().enumerate() {
        // SAFETY: dup2 onto 0-2 of descriptors the caller owns.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pidfd of process `pid` (readable once it exits), or `None` when the
/// process is gone or the kernel has no pidfd_open (before Linux 5.3).
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `fd` is the file at `path` (same device and inode).
pub fn same_file(fd: std::os::fd::BorrowedFd, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(other) = std::fs::metadata(path) else {
        return false;
    };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_dev == other.dev() && st.st_ino == other.ino())
}

/// An anonymous in-memory file (close-on-exec, plus `extra` flags).
pub fn memfd(name: &std::ffi::CStr, extra: libc::c_uint) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | extra) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The channel between the runtime and a process it is starting:
/// a SOCK_SEQPACKET pair, one message per write, closed by exec (CLOEXEC).
pub struct SyncSocket(OwnedFd);

/// Messages on a [`SyncSocket`].
pub mod msg {
    /// Child → runtime: set up, waiting for `start` (init) or about to exec.
    pub const READY: u8 = b'R';
    /// Child → runtime: failed; the rest of the message says why.
    pub const ERROR: u8 = b'E';
    /// Child → runtime: failed on a field of the spec (`FIELD\0REASON`),
    /// e.g. a process.cwd that does not exist in the container.
    pub const INVALID: u8 = b'I';
    /// Init → runtime, before READY or ERROR: host paths it created in the
    /// task directory for mounts to stand on (NUL-separated), removed with
    /// the task.
    pub const MADE: u8 = b'M';
    /// Init → runtime, once its mounts are made and before it enters its
    /// root, when the spec has hooks of create or start: run yours.
    pub const HOOKS: u8 = b'H';
    /// Runtime → init, the answer to HOOKS: the state document the init's
    /// own hooks read.
    pub const HOOKS_DONE: u8 = b'D';
    /// Runtime → init in a new user namespace: its mappings are written;
    /// with it, the idmapped trees of the chroot_env (their keys,
    /// NUL-separated, and the descriptors, in order).
    pub const MAPPED: u8 = b'U';
    /// Runtime → init: its cgroup is made (while the init makes its
    /// namespaces and mounts): join it. The body names its directories
    /// ([`super::cgroup_dirs_message`]).
    pub const CGROUP: u8 = b'C';
}

/// The body of a CGROUP message: `2` or `1` (the hierarchy's version),
/// then each controller's name and its directory on the host, each
/// NUL-terminated.
pub fn cgroup_dirs_message(v2: bool, dirs: &[(String, PathBuf)]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut body = vec![if v2 { b'2' } else { b'1' }];
    for (name, dir) in dirs {
        for part in [name.as_bytes(), dir.as_os_str().as_bytes()] {
            body.extend_from_slice(part);
            body.push(0);
        }
    }
    body
}

/// What [`cgroup_dirs_message`] wrote, or `None` for anything else.
pub fn parse_cgroup_dirs(body: &[u8]) -> Option<(bool, Vec<(String, PathBuf)>)> {
    use std::os::unix::ffi::OsStrExt;
    let (v2, rest) = match body.split_first()? {
        (b'2', rest) => (true, rest),
        (b'1', rest) => (false, rest),
        _ => return None,
    };
    let rest = match rest {
        [] => rest,
        [head @ .., 0] => head,
        _ => return None,
    };
    let parts: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|b| *b == 0).collect()
    };
    if parts.len() % 2 != 0 {
        return None;
    }
    let dirs = parts
        .chunks(2)
        .map(|p| {
            let name = std::str::from_utf8(p[0]).ok()?.to_string();
            Some((name, PathBuf::from(std::ffi::OsStr::from_bytes(p[1]))))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((v2, dirs))
}

/// The error an ERROR or INVALID message carries.
pub fn child_error(tag: u8, body: &[u8]) -> crate::Error {
    let text = String::from_utf8_lossy(body);
    match (tag, text.split_once('\0')) {
        (msg::INVALID, Some((field, reason))) => crate::Error::invalid(field, reason),
        _ => crate::Error::Init(text.into_owned()),
    }
}

impl SyncSocket {
    pub fn pair() -> nix::Result<(SyncSocket, SyncSocket)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((SyncSocket(a), SyncSocket(b)))
    }

    /// Sends `paths` as MADE messages that fit the receiver's buffer.
    pub fn send_paths(&self, paths: &[PathBuf]) -> nix::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let mut body: Vec<u8> = Vec::new();
        for p in paths {
            let b = p.as_os_str().as_bytes();
            if !body.is_empty() && body.len() + b.len() + 1 > 8000 {
                self.send(msg::MADE, &body)?;
                body.clear();
            }
            if !body.is_empty() {
                body.push(0);
            }
            body.extend_from_slice(b);
        }
        if body.is_empty() {
            return Ok(());
        }
        self.send(msg::MADE, &body)
    }

    /// Sends a child's failure: a spec field's as INVALID, so the runtime's
    /// caller can tell a mistake in its request from a failure.
    pub fn send_error(&self, e: &crate::Error) -> nix::Result<()> {
        match e {
            crate::Error::InvalidSpec { field, reason } => {
                self.send(msg::INVALID, format!("{field}\0{reason}").as_bytes())
            }
            other => self.send(msg::ERROR, other.to_string().as_bytes()),
        }
    }

    pub fn send(&self, tag: u8, body: &[u8]) -> nix::Result<()> {
        let mut buf = Vec::with_capacity(body.len() + 1);
        buf.push(tag);
        buf.extend_from_slice(body);
        loop {
            match nix::unistd::write(&self.0, &buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    /// The next message, or `None` when the peer closed (or exec'd).
    /// [`Self::recv`], giving up with ETIMEDOUT after `timeout`.
    pub fn recv_within(&self, timeout: std::time::Duration) -> nix::Result<Option<(u8, Vec<u8>)>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&self.0),
                PollFlags::POLLIN,
            )];
            match poll(&mut fds, ms) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(0) => return Err(nix::errno::Errno::ETIMEDOUT),
                Ok(_) => return self.recv(),
            }
        }
    }

    /// A peer that exited with our last message unread resets its end:
    /// the kernel reports ECONNRESET once, before what the peer wrote (a
    /// child's error), which the next read returns. ECONNRESET only when
    /// nothing was left.
    pub fn recv(&self) -> nix::Result<Option<(u8, Vec<u8>)>> {
        self.recv_up_to(8192)
    }

    /// [`Self::recv`] of a message of any length (a CGROUP message names
    /// one directory per hierarchy, each up to PATH_MAX): its length is
    /// peeked first, and a message is never cut short.
    pub fn recv_whole(&self) -> nix::Result<Option<(u8, Vec<u8>)>> {
        use nix::sys::socket::{recv, MsgFlags};
        let len = loop {
            match recv(
                self.0.as_raw_fd(),
                &mut [0u8; 1],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                // A peer gone (or nothing to peek at) is the read's to
                // report: it returns the end or what the peer left.
                r => break r.unwrap_or(0),
            }
        };
        self.recv_up_to(len.max(8192))
    }

    fn recv_up_to(&self, size: usize) -> nix::Result<Option<(u8, Vec<u8>)>> {
        let mut buf = vec![0u8; size];
        let mut reset = false;
        loop {
            match nix::unistd::read(&self.0, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) if !reset => reset = true,
                Ok(0) if reset => return Err(nix::errno::Errno::ECONNRESET),
                Err(e) => return Err(e),
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Some((buf[0], buf[1..n].to_vec()))),
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// A message with descriptors (SCM_RIGHTS; at most 250).
    pub fn send_fds(&self, tag: u8, body: &[u8], fds: &[RawFd]) -> nix::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let mut buf = Vec::with_capacity(body.len() + 1);
        buf.push(tag);
        buf.extend_from_slice(body);
        let iov = [std::io::IoSlice::new(&buf)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(self.0.as_raw_fd(), &iov, cmsg, MsgFlags::empty(), None) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    /// The next message and the descriptors that came with it.
    #[allow(clippy::type_complexity)]
    pub fn recv_fds(&self) -> nix::Result<Option<(u8, Vec<u8>, Vec<OwnedFd>)>> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut buf = vec![0u8; 8192];
        let mut cmsg = nix::cmsg_space!([RawFd; 250]);
        let (n, fds) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            // SAFETY: the kernel just installed them for us.
                            fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    break (msg.bytes, fds);
                }
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some((buf[0], buf[1..n].to_vec(), fds)))
    }
}

/// Moves the calling process into its cgroup. Called by the child itself:
/// on cgroup v1 a single-threaded process writing `0` to `tasks` moves only
/// itself, which the kernel does without taking the global threadgroup lock
/// (a migration by pid waits for an RCU grace period, ~10 ms). On v2,
/// `cgroup.procs`.
pub fn join_cgroup(v2: bool, dirs: &[(String, PathBuf)]) -> std::io::Result<()> {
    let file = if v2 { "cgroup.procs" } else { "tasks" };
    for (_, dir) in dirs {
        write_kernel(dir.join(file), b"0").map_err(|e| {
            std::io::Error::new(e.kind(), format!("joining cgroup {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// Writes `value` to a file of the kernel's (cgroup, /proc, sysctl) that
/// exists: opened without O_CREAT or O_TRUNC, then one write. A path that
/// is not there is an error, never a new file, and nothing is truncated.
pub fn write_kernel(path: impl AsRef<Path>, value: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_ref())
}

/// A small file of the kernel's (/proc, /sys), read in one or two calls:
/// they report a size of 0, so `fs::read_to_string` starts with a 32-byte
/// read and doubles from there (8 reads for a mountinfo of 1.5 KB).
pub fn read_proc(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::with_capacity(16 << 10);
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat): with the pid, it names a process unambiguously.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = read_proc(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// The fields of /proc/PID/stat after the command name: the first is
/// field 3 (the state), so field N is at N - 3. The name may contain spaces
/// and parentheses: the split is after the last ')'.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(
        stat.get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect(),
    )
}

/// (state letter, start time) from the text of /proc/PID/stat.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let fields = stat_fields(stat)?;
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_dirs_go_through_a_message_whole() {
        let v1 = vec![
            (
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/memory/isoexec/a"),
            ),
            (
                "cpu".to_string(),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/isoexec/a b"),
            ),
        ];
        let body = cgroup_dirs_message(false, &v1);
        assert_eq!(parse_cgroup_dirs(&body), Some((false, v1)));
        let v2 = vec![(String::new(), PathBuf::from("/sys/fs/cgroup/isoexec/a"))];
        assert_eq!(
            parse_cgroup_dirs(&cgroup_dirs_message(true, &v2)),
            Some((true, v2))
        );
        assert_eq!(parse_cgroup_dirs(b"1"), Some((false, Vec::new())));
        for bad in [
            &b""[..],
            b"3",
            b"1memory\0",
            b"1memory\0/sys",
            b"1\xff\0/a\0",
        ] {
            assert_eq!(parse_cgroup_dirs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_message_longer_than_the_usual_buffer_arrives_whole() {
        let (a, b) = SyncSocket::pair().unwrap();
        let body = vec![b'x'; 40_000];
        a.send(msg::CGROUP, &body).unwrap();
        assert_eq!(b.recv_whole().unwrap(), Some((msg::CGROUP, body)));
        a.send(msg::READY, b"").unwrap();
        assert_eq!(b.recv_whole().unwrap(), Some((msg::READY, Vec::new())));
        drop(a);
        assert_eq!(b.recv_whole().unwrap(), None);
    }

    #[test]
    fn a_kernel_file_is_written_in_place_and_never_made() {
        let d = std::env::temp_dir().join(format!("isoexec-wk-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        // A missing file is an error and stays missing.
        let missing = d.join("tasks");
        assert!(write_kernel(&missing, b"0").is_err());
        assert!(!missing.exists());
        // An existing one is written from its start, not truncated first.
        let file = d.join("cgroup.procs");
        std::fs::write(&file, "123456").unwrap();
        write_kernel(&file, b"0").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "023456");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stat_with_odd_command_names() {
        let s = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1000 10";
        assert_eq!(parse_stat(s), Some(('S', 12345)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
