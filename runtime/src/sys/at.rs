//! Paths inside a container's root, resolved by file descriptor, and
//! mounts made onto those descriptors.
//!
//! A root's content may belong to a task (its image, the sandbox's shared
//! `/alloc`, a volume) and change while the runtime works in it: a
//! directory swapped for a symlink to a host path between a check and a
//! use. So nothing here walks a path string twice. A path is resolved
//! once, inside the root, to an `O_PATH` descriptor (openat2 with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: a symlink is followed as if
//! the root were `/`; on kernels before 5.6 the same walk is done one
//! component at a time with `O_NOFOLLOW`); what is missing is created
//! relative to the descriptor of its parent, never following a symlink and
//! never truncating; a mount is attached to the descriptor (`move_mount`
//! of a detached tree whose flags are set before it is visible, or
//! mount(2) on `/proc/self/fd/N`).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

/// A directory that paths are resolved in, as if it were `/`.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` (a host path the runtime chose; a symlink in it is
    /// the operator's) as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let path = super::userns::reach(path);
        let c = cstr(path.as_os_str())?;
        // SAFETY: open with a valid path; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        Ok(Root { fd: owned(fd)? })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// An `O_PATH` descriptor of `path` (taken inside the root, absolute or
    /// not), following symlinks as the task would see them.
    pub fn resolve(&self, path: &Path) -> io::Result<OwnedFd> {
        resolve_in(self.fd.as_fd(), path)
    }

    /// mkdir -p inside the root: the directory's descriptor; the host paths
    /// of the directories made go to `made` (outermost first), even when
    /// it fails half-way. A symlink on the way is followed inside the root.
    pub fn mkdir_all(
        &self,
        path: &Path,
        mode: u32,
        made: &mut Vec<PathBuf>,
    ) -> io::Result<OwnedFd> {
        let mut path = path.to_path_buf();
        // A dangling symlink on the way (an image's /var/run -> /run with
        // no /run) is followed inside the root, as the task would.
        for _ in 0..40 {
            match self.mkdir_walk(&path, mode, made)? {
                Ok(fd) => return Ok(fd),
                Err(next) => path = next,
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// One pass of mkdir_all: the directory, or the path to try instead
    /// when a component turned out to be a symlink.
    fn mkdir_walk(
        &self,
        path: &Path,
        mode: u32,
        made: &mut Vec<PathBuf>,
    ) -> io::Result<Result<OwnedFd, PathBuf>> {
        let comps = clean(path);
        // The deepest part that exists, resolved as the task would.
        let mut have = comps.len();
        let mut fd = loop {
            match self.resolve(&join(&comps[..have])) {
                Ok(fd) => break fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && have > 0 => have -= 1,
                Err(e) => return Err(e),
            }
        };
        // The host path of what is made: read once, then extended by name
        // (each child is opened by that name, never through a symlink).
        let mut here: Option<PathBuf> = None;
        for (i, name) in comps.iter().enumerate().skip(have) {
            let c = cstr(name)?;
            // SAFETY: mkdirat relative to a descriptor we own.
            if unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), mode) } == 0 {
                let parent = match here.take() {
                    Some(p) => p,
                    None => host_path(fd.as_fd())?,
                };
                let child = parent.join(name);
                made.push(child.clone());
                here = Some(child);
            } else {
                here = None;
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
            }
            match open_child(fd.as_fd(), name, libc::O_DIRECTORY) {
                Ok(child) => fd = child,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
                        && is_symlink_at(fd.as_fd(), name) =>
                {
                    // A symlink: its target, inside the root, then the rest.
                    let target = read_link_at(fd.as_fd(), name)?;
                    let base = if target.is_absolute() {
                        PathBuf::new()
                    } else {
                        let here = host_path(fd.as_fd())?;
                        let root = host_path(self.fd.as_fd())?;
                        here.strip_prefix(&root)
                            .map(Path::to_path_buf)
                            .map_err(|_| io::Error::from_raw_os_error(libc::EXDEV))?
                    };
                    let mut next = base.join(target);
                    next.extend(&comps[i + 1..]);
                    return Ok(Err(next));
                }
                Err(e) => return Err(e),
            }
        }
        if !is_dir(fd.as_fd())? {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Ok(fd))
    }

    /// The descriptor of a file at `path` for a bind mount to stand on:
    /// the existing one (whatever it is), or a new empty file, created
    /// exclusively (never opened for writing if it exists: never
    /// truncated). The host paths of what it made go to `made`.
    pub fn file(&self, path: &Path, mode: u32, made: &mut Vec<PathBuf>) -> io::Result<OwnedFd> {
        match self.resolve(path) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (dir, name) = self.parent(path, made)?;
        let c = cstr(&name)?;
        // SAFETY: openat relative to a descriptor we own; the result is checked.
        let f = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        match owned(f) {
            Ok(f) => {
                drop(f);
                made.push(host_path(dir.as_fd())?.join(&name));
                open_child(dir.as_fd(), &name, 0)
            }
            // Made since it was looked for: take it as it is.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.resolve(path),
            Err(e) => Err(e),
        }
    }

    /// The parent directory of `path` (made if missing, into `made`) and
    /// its last name.
    pub fn parent(&self, path: &Path, made: &mut Vec<PathBuf>) -> io::Result<(OwnedFd, OsString)> {
        let mut comps = clean(path);
        let name = comps
            .pop()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok((self.mkdir_all(&join(&comps), 0o755, made)?, name))
    }
}

/// Removes `rel` (a path below `root`), reached one directory at a time
/// without following any symlink: when a component on the way is no
/// longer a directory (a task swapped it for a symlink), nothing is
/// removed. A directory goes when it is empty, or with its content when
/// `tree` (never descending through a symlink); anything else goes when
/// `tree` or when it is an empty file (a mount point).
pub fn remove_in(root: BorrowedFd, rel: &Path, tree: bool) -> io::Result<()> {
    let mut comps = clean(rel);
    let name = comps
        .pop()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut walked: Option<OwnedFd> = None;
    for c in &comps {
        let at = walked.as_ref().map_or(root, |d| d.as_fd());
        walked = Some(open_child(at, c, libc::O_DIRECTORY)?);
    }
    let dir = walked.as_ref().map_or(root, |d| d.as_fd());
    let st = nix::sys::stat::fstatat(
        dir,
        name.as_os_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    use nix::unistd::UnlinkatFlags::{NoRemoveDir, RemoveDir};
    let unlink = |how| nix::unistd::unlinkat(dir, name.as_os_str(), how).map_err(io::Error::from);
    match st.st_mode & libc::S_IFMT {
        // The name is taken relative to the descriptor and opened with
        // O_NOFOLLOW; the walk below it goes by descriptor too.
        libc::S_IFDIR if tree => std::fs::remove_dir_all(fd_path(dir).join(&name)),
        libc::S_IFDIR => unlink(RemoveDir),
        _ if tree || st.st_size == 0 => unlink(NoRemoveDir),
        _ => Ok(()),
    }
}

/// mount(2) onto a descriptor (`/proc/self/fd/N`): for a mount whose
/// flags are all given at once (a new filesystem, a bind without flags)
/// and that nothing changes afterwards. One system call.
pub fn mount_at(
    source: &Path,
    dest: BorrowedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    let source = super::userns::reach(source);
    nix::mount::mount(Some(source.as_ref()), &fd_path(dest), fstype, flags, data)
        .map_err(io::Error::from)
}

/// Whether `path` in the root is where `fd` is, reached without any
/// symlink (openat2 RESOLVE_NO_SYMLINKS, then the inodes compared).
pub fn is_exactly(root: &Root, path: &Path, fd: BorrowedFd) -> io::Result<bool> {
    let rel = join(&clean(path));
    let other = match openat2(
        root.fd(),
        &rel,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    ) {
        Ok(o) => o,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        // Before 5.6: compare the paths instead.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            return Ok(host_path(fd)? == host_path(root.fd())?.join(&rel));
        }
        Err(e) => return Err(e),
    };
    let (a, b) = (stat(fd)?, stat(other.as_fd())?);
    Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// `/proc/self/fd/N`: the path mount(2) and friends take for a descriptor.
pub fn fd_path(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Where a descriptor points, as this process's mount namespace sees it.
pub fn host_path(fd: BorrowedFd) -> io::Result<PathBuf> {
    std::fs::read_link(fd_path(fd))
}

pub fn is_dir(fd: BorrowedFd) -> io::Result<bool> {
    Ok(stat(fd)?.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

pub fn stat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat into a zeroed struct on a live descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The normal components of `path`, `..` applied lexically (never above
/// the root).
fn clean(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub(crate) fn owned(r: libc::c_int) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn is_symlink_at(dir: BorrowedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// The target of the symlink `name` in `dir`.
fn read_link_at(dir: BorrowedFd, name: &OsStr) -> io::Result<PathBuf> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a live buffer of its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsStr::from_bytes(&buf)))
}

/// A child of `dir` by name, without following a symlink (`flags` adds
/// e.g. O_DIRECTORY).
pub(crate) fn open_child(dir: BorrowedFd, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: openat relative to a live descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | flags,
        )
    };
    let fd = owned(fd)?;
    if stat(fd.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(fd)
}

/// `path` inside the directory `root` as if it were `/`.
fn resolve_in(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    let rel = clean(path);
    let rel = if rel.is_empty() {
        PathBuf::from(".")
    } else {
        join(&rel)
    };
    match openat2(
        root,
        &rel,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        // Before Linux 5.6; EAGAIN: the kernel saw a rename race and asks
        // for a retry: the walk below is immune to it.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EAGAIN)) => {
            walk_in_root(root, path)
        }
        r => r,
    }
}

/// openat2(2) of `path` under `dir` as an `O_PATH` descriptor, with the
/// `RESOLVE_*` flags `resolve`.
fn openat2(dir: BorrowedFd, path: &Path, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: open_how is plain data; zero is "no flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: openat2 with a live descriptor, path and open_how.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(r as libc::c_int)
}

/// RESOLVE_IN_ROOT by hand: one component at a time from descriptors,
/// `..` by going back to the descriptor it came from (never above the
/// root), a symlink read and its target walked from the root (absolute)
/// or from where it was (relative), 40 at most.
pub(crate) fn walk_in_root(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    let dup = |fd: BorrowedFd| fd.try_clone_to_owned();
    let mut stack: Vec<OwnedFd> = vec![dup(root)?];
    let mut pending: Vec<OsString> = Vec::new();
    let push_rev = |pending: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                _ => {}
            }
        }
    };
    push_rev(&mut pending, path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let top = stack
            .last()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let target = match open_child(top.as_fd(), &name, 0) {
            Ok(fd) => {
                stack.push(fd);
                continue;
            }
            // A symlink: read by name (one changed since is an error).
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => read_link_at(top.as_fd(), &name)?,
            Err(e) => return Err(e),
        };
        links += 1;
        if links > 40 {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        if target.is_absolute() {
            stack.truncate(1);
        }
        push_rev(&mut pending, &target);
    }
    stack
        .pop()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

// --- mounts onto descriptors -------------------------------------------

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// A bind of `src` at `dest` with `flags` (ro, nosuid, nodev, noexec,
/// atime) set before it is attached: a clone of the source (the subtree
/// too when `recursive`) made detached, its flags set, then moved onto
/// the destination's descriptor. Returns the mount's descriptor (for
/// propagation). Before Linux 5.12 (no mount_setattr) a classic bind and
/// remount through the descriptors.
pub fn bind(src: &Path, dest: BorrowedFd, flags: MsFlags, recursive: bool) -> io::Result<OwnedFd> {
    let src = super::userns::reach(src);
    let src = src.as_ref();
    let tree = match open_tree_clone(src, recursive) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            return legacy_bind(src, dest, flags, recursive)
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = set_flags(tree.as_fd(), flags, recursive) {
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
        drop(tree);
        return legacy_bind(src, dest, flags, recursive);
    }
    attach(tree.as_fd(), dest)?;
    Ok(tree)
}

/// A detached copy of the mount at `src` (open_tree OPEN_TREE_CLONE),
/// with what is mounted below it when `recursive`.
pub fn open_tree_clone(src: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cstr(src.as_os_str())?;
    let mut how = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        how |= AT_RECURSIVE;
    }
    // SAFETY: open_tree with a valid path.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), how) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    owned(tree as libc::c_int)
}

/// Sets `attrs` (MOUNT_ATTR_IDMAP among them) on a detached tree and all
/// below it, through the ids of user namespace `userns`.
pub fn mount_setattr_idmap(tree: BorrowedFd, attrs: u64, userns: BorrowedFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr on a live descriptor with a valid struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves a detached mount onto `dest`.
pub fn attach(tree: BorrowedFd, dest: BorrowedFd) -> io::Result<()> {
    // SAFETY: move_mount between two live descriptors (empty paths).
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dest.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a mount's ro/nosuid/nodev/noexec/atime flags as `flags` says
/// (those it does not name are cleared), on the subtree when `recursive`.
pub fn set_flags(mnt: BorrowedFd, flags: MsFlags, recursive: bool) -> io::Result<()> {
    let (set, clr) = attrs(flags);
    if set == 0 && clr == 0 {
        return Ok(());
    }
    mount_setattr(mnt, recursive, set, clr, 0)
}

/// The mount attributes (to set, to clear) that MS_* flags name.
fn attrs(flags: MsFlags) -> (u64, u64) {
    let mut set = 0;
    for (f, a) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(f) {
            set |= a;
        }
    }
    let mut clr = 0;
    if flags.contains(MsFlags::MS_NOATIME) {
        set |= MOUNT_ATTR_NOATIME;
        clr |= MOUNT_ATTR_ATIME;
    } else if flags.contains(MsFlags::MS_STRICTATIME) {
        set |= MOUNT_ATTR_STRICTATIME;
        clr |= MOUNT_ATTR_ATIME;
    } else if flags.contains(MsFlags::MS_RELATIME) {
        clr |= MOUNT_ATTR_ATIME;
    }
    (set, clr)
}

/// Sets a mount's propagation (MS_SHARED, MS_SLAVE, MS_PRIVATE,
/// MS_UNBINDABLE; MS_REC for its subtree).
pub fn set_propagation(mnt: BorrowedFd, p: MsFlags) -> io::Result<()> {
    let kind = p & !MsFlags::MS_REC;
    let r = mount_setattr(mnt, p.contains(MsFlags::MS_REC), 0, 0, kind.bits());
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            nix::mount::mount(None::<&str>, &fd_path(mnt), None::<&str>, p, None::<&str>)
                .map_err(io::Error::from)
        }
        r => r,
    }
}

fn mount_setattr(
    mnt: BorrowedFd,
    recursive: bool,
    set: u64,
    clr: u64,
    prop: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: prop,
        userns_fd: 0,
    };
    let mut how = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        how |= AT_RECURSIVE;
    }
    // SAFETY: mount_setattr on a live descriptor with a valid struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            how,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A bind and remount with mount(2) on `/proc/self/fd/N`. The remount
/// needs the new mount, found by reopening the destination through the
/// mount just made: it must be the source's root, or nothing is changed.
fn legacy_bind(
    src: &Path,
    dest: BorrowedFd,
    flags: MsFlags,
    recursive: bool,
) -> io::Result<OwnedFd> {
    let none = None::<&str>;
    let mut f = MsFlags::MS_BIND;
    if recursive {
        f |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(src), &fd_path(dest), none, f, none)?;
    let top = reopen_top(dest)?;
    let (a, b) = (stat_path(src)?, stat(top.as_fd())?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(io::Error::other(format!(
            "the bind of {} is not where it was made: the destination changed while it was mounted",
            src.display()
        )));
    }
    let flags = flags
        & (MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_NOATIME
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_RELATIME
            | MsFlags::MS_STRICTATIME);
    if !flags.is_empty() {
        nix::mount::mount(
            none,
            &fd_path(top.as_fd()),
            none,
            f | MsFlags::MS_REMOUNT | flags,
            none,
        )?;
    }
    Ok(top)
}

/// A new filesystem at `dest`, made detached (fsopen, fsconfig, fsmount:
/// its flags set before it is visible) and moved onto the descriptor.
/// Returns the mount's descriptor. A refused option is reported with the
/// kernel's own message. Before Linux 5.2, mount(2) on `/proc/self/fd/N`.
pub fn mount_fs(
    source: &Path,
    dest: BorrowedFd,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<OwnedFd> {
    let ctx = match fsopen(fstype) {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            nix::mount::mount(Some(source), &fd_path(dest), Some(fstype), flags, data)?;
            let top = reopen_top(dest)?;
            if stat(top.as_fd())?.st_dev == stat(dest)?.st_dev {
                return Err(io::Error::other(format!(
                    "the {fstype} mount is not where it was made: the destination changed while it was mounted"
                )));
            }
            return Ok(top);
        }
        Err(e) => return Err(e),
    };
    let explain = |e: io::Error| -> io::Error {
        let log = fs_log(ctx.as_fd());
        if log.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}: {log}"))
        }
    };
    let src = source.to_string_lossy();
    fsconfig(ctx.as_fd(), FSCONFIG_SET_STRING, "source", Some(&src)).map_err(explain)?;
    for opt in data.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some((k, v)) => fsconfig(ctx.as_fd(), FSCONFIG_SET_STRING, k, Some(v)),
            None => fsconfig(ctx.as_fd(), FSCONFIG_SET_FLAG, opt, None),
        }
        .map_err(explain)?;
    }
    for (f, name) in [
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
        (MsFlags::MS_LAZYTIME, "lazytime"),
        (MsFlags::MS_SILENT, "silent"),
        (MsFlags::MS_MANDLOCK, "mand"),
    ] {
        if flags.contains(f) {
            fsconfig(ctx.as_fd(), FSCONFIG_SET_FLAG, name, None).map_err(explain)?;
        }
    }
    fsconfig(ctx.as_fd(), FSCONFIG_CMD_CREATE, "", None).map_err(explain)?;
    let mnt = fsmount(ctx.as_fd(), flags).map_err(explain)?;
    attach(mnt.as_fd(), dest)?;
    Ok(mnt)
}

/// The detached mount of a created filesystem context, with the mount
/// flags (ro, nosuid, nodev, noexec, atime) of `flags`.
pub(crate) fn fsmount(ctx: BorrowedFd, flags: MsFlags) -> io::Result<OwnedFd> {
    let (set, _) = attrs(flags);
    // SAFETY: fsmount of a created context the caller owns.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            set as libc::c_uint,
        )
    };
    owned(mnt as libc::c_int)
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
pub(crate) const FSCONFIG_SET_STRING: libc::c_uint = 1;
pub(crate) const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

pub(crate) fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let c = cstr(OsStr::new(fstype))?;
    // SAFETY: fsopen with a valid name.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, c.as_ptr(), FSOPEN_CLOEXEC) } as libc::c_int)
}

pub(crate) fn fsconfig(
    ctx: BorrowedFd,
    cmd: libc::c_uint,
    key: &str,
    value: Option<&str>,
) -> io::Result<()> {
    let k = cstr(OsStr::new(key))?;
    let v = value.map(|v| cstr(OsStr::new(v))).transpose()?;
    let kp = if cmd == FSCONFIG_CMD_CREATE {
        std::ptr::null()
    } else {
        k.as_ptr()
    };
    let vp = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: fsconfig with live strings (or nulls) on a context we own.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), cmd, kp, vp, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The messages a filesystem left in its context (why it refused).
fn fs_log(ctx: BorrowedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: read into a live buffer.
        let n = unsafe { libc::read(ctx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n as usize]);
        // "e overlay: ..." (error), "w ..." (warning), "i ..." (info).
        out.push(line.get(2..).unwrap_or(&line).trim().to_string());
    }
    out.join("; ")
}

/// What is at a descriptor's place now, through the mounts made on it
/// (a descriptor, or a jump through its /proc link, stays below them: the
/// place is looked up again from its parent by name). For the mount(2)
/// fallbacks only; the caller checks it found the mount it made.
fn reopen_top(dest: BorrowedFd) -> io::Result<OwnedFd> {
    let name = host_path(dest)?
        .file_name()
        .map(OsStr::to_os_string)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = open_child(dest, OsStr::new(".."), libc::O_DIRECTORY)?;
    open_child(parent.as_fd(), &name, 0)
}

fn stat_path(p: &Path) -> io::Result<libc::stat> {
    let c = cstr(p.as_os_str())?;
    // SAFETY: stat into a zeroed struct with a valid path.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("isoexec-at-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn layout(name: &str) -> PathBuf {
        let d = tmp(name);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/passwd"), "inside").unwrap();
        symlink("/etc", d.join("escape")).unwrap();
        symlink("../../../etc", d.join("up")).unwrap();
        symlink("loop", d.join("loop")).unwrap();
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        symlink("usr/bin", d.join("bin")).unwrap();
        d
    }

    fn both(root: &Path, p: &str) -> (io::Result<PathBuf>, io::Result<PathBuf>) {
        let r = Root::open(root).unwrap();
        let a = r.resolve(Path::new(p)).and_then(|f| host_path(f.as_fd()));
        let b = walk_in_root(r.fd(), Path::new(p)).and_then(|f| host_path(f.as_fd()));
        (a, b)
    }

    #[test]
    fn symlinks_resolve_inside_the_root_both_ways() {
        let d = layout("resolve");
        for (p, want) in [
            ("/escape/passwd", "etc/passwd"),
            ("/up/passwd", "etc/passwd"),
            ("/../../etc", "etc"),
            ("/bin", "usr/bin"),
            ("/", ""),
        ] {
            let (a, b) = both(&d, p);
            let want = if want.is_empty() {
                d.clone()
            } else {
                d.join(want)
            };
            assert_eq!(a.unwrap(), want, "openat2 {p}");
            assert_eq!(b.unwrap(), want, "walk {p}");
        }
        let (a, b) = both(&d, "/loop");
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(b.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        let (a, b) = both(&d, "/missing/x");
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        assert_eq!(b.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn mkdir_all_stays_inside_and_records_what_it_made() {
        let d = layout("mkdir");
        let r = Root::open(&d).unwrap();
        // Through the root's own /etc, not the host's.
        let mut made = Vec::new();
        let fd = r
            .mkdir_all(Path::new("/escape/new/deeper"), 0o755, &mut made)
            .unwrap();
        assert_eq!(host_path(fd.as_fd()).unwrap(), d.join("etc/new/deeper"));
        assert_eq!(made, vec![d.join("etc/new"), d.join("etc/new/deeper")]);
        let mut made = Vec::new();
        r.mkdir_all(Path::new("/escape/new"), 0o755, &mut made)
            .unwrap();
        assert!(made.is_empty());
        // A dangling link is followed inside the root, never to the host.
        symlink("/var/run", d.join("dangling")).unwrap();
        let fd = r
            .mkdir_all(Path::new("/dangling/x"), 0o755, &mut made)
            .unwrap();
        assert_eq!(host_path(fd.as_fd()).unwrap(), d.join("var/run/x"));
        // A file in the way is not a directory.
        let e = r
            .mkdir_all(Path::new("/etc/passwd/x"), 0o755, &mut made)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn file_never_truncates_and_creates_inside() {
        let d = layout("file");
        let r = Root::open(&d).unwrap();
        let mut made = Vec::new();
        let fd = r
            .file(Path::new("/escape/passwd"), 0o644, &mut made)
            .unwrap();
        assert!(made.is_empty());
        assert_eq!(host_path(fd.as_fd()).unwrap(), d.join("etc/passwd"));
        assert_eq!(
            std::fs::read_to_string(d.join("etc/passwd")).unwrap(),
            "inside"
        );
        r.file(Path::new("/escape/a/b"), 0o644, &mut made).unwrap();
        assert_eq!(made, vec![d.join("etc/a"), d.join("etc/a/b")]);
        assert_eq!(std::fs::metadata(d.join("etc/a/b")).unwrap().len(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_planted_during_mkdir_is_not_followed() {
        let d = layout("plant");
        // As if the task swapped "made" for a link between the mkdir and
        // the open: open_child refuses it.
        symlink("/etc", d.join("made")).unwrap();
        let r = Root::open(&d).unwrap();
        let e = open_child(r.fd(), OsStr::new("made"), libc::O_DIRECTORY).unwrap_err();
        assert!(matches!(
            e.raw_os_error(),
            Some(libc::ELOOP) | Some(libc::ENOTDIR)
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
