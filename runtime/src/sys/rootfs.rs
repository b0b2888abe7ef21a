//! The container's root filesystem, built inside its own mount namespace:
//! the spec's mounts, `/dev`, then `pivot_root` (or MS_MOVE + chroot), then
//! sysctls, masked and read-only paths. Nothing here touches the host's
//! mount table: every mount dies with the namespace.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{chdir, chroot, fchownat, pivot_root, symlinkat, Gid, Uid};

use super::at::{self, Root};
use crate::error::{Context, Error, Result};
use crate::plan::{DeviceKind, MountKind, MountPlan, Plan};

const NONE: Option<&str> = None;

/// The container's cgroup directories on the host, for `cgroup` mounts.
pub struct CgroupView<'a> {
    pub v2: bool,
    pub dirs: &'a [(String, PathBuf)],
}

/// Cuts propagation to the host and makes the root a mount point (as
/// pivot_root needs). First step in the container's new mount namespace.
pub fn bind_root(plan: &Plan) -> Result<()> {
    let root = &plan.root.path;
    // As runc: the whole tree becomes rootfsPropagation (by default
    // rslave: nothing mounted from here on propagates back to the host;
    // rshared keeps the host's peer groups, so a volume's `rshared` mounts
    // reach the host, as Kubernetes' Bidirectional propagation needs).
    // An unbindable tree cannot be bound as the new root: it becomes
    // unbindable once entered ([`finish`] applies rootfsPropagation again).
    let prop = match plan.root.propagation {
        Some(p) if !p.contains(MsFlags::MS_UNBINDABLE) => p,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(NONE, "/", NONE, prop, NONE).ctx(|| format!("making / {prop:?}"))?;
    // pivot_root (and MS_MOVE) refuse a new root that is shared or whose
    // parent mount is: the mount the root is on (the root itself when it
    // is a mount point, as containerd's snapshots are) becomes private,
    // that one mount, not its children; the bind below is then private.
    if prop.contains(MsFlags::MS_SHARED) {
        let under = mount_point_of(root)?;
        mount(NONE, &under, NONE, MsFlags::MS_PRIVATE, NONE)
            .ctx(|| format!("making {} private for pivot_root", under.display()))?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(root),
        root,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .ctx(|| format!("bind-mounting root {}", root.display()))
}

/// The mount point of the mount `path` is on (the longest mount point in
/// /proc/self/mountinfo that contains it).
fn mount_point_of(path: &Path) -> Result<PathBuf> {
    let path = fs::canonicalize(path).ctx(|| path.display().to_string())?;
    let info = super::read_proc("/proc/self/mountinfo").ctx(|| "/proc/self/mountinfo".into())?;
    let best = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(best)
}

/// The top-level directories (or files) the spec's mounts stand on, made
/// by the runtime for a task in a user namespace, whose root may not write
/// a root directory the host's root owns; owned by the root directory's
/// owner (an image shifted to the task's host ids, as podman's `--uidmap`
/// makes it, gets mount points its root can create in).
pub fn top_mount_points(plan: &Plan) -> Result<()> {
    let root = Root::open(&plan.root.path)
        .ctx(|| format!("opening the root {}", plan.root.path.display()))?;
    let owner = at::stat(root.fd()).ctx(|| plan.root.path.display().to_string())?;
    for m in &plan.mounts {
        let Some(top) = m.destination.components().nth(1) else {
            continue;
        };
        let top = Path::new("/").join(top);
        let dir = top != m.destination
            || !matches!(m.kind, MountKind::Bind { .. })
            || m.source.as_deref().is_none_or(|s| s.is_dir());
        let mut made = Vec::new();
        let fd = mount_point(&root, &top, dir, &mut made)?;
        if !made.is_empty() && (owner.st_uid, owner.st_gid) != (0, 0) {
            nix::unistd::chown(
                &at::fd_path(fd.as_fd()),
                Some(Uid::from_raw(owner.st_uid)),
                Some(Gid::from_raw(owner.st_gid)),
            )
            .ctx(|| format!("chown of the mount point {}", top.display()))?;
        }
    }
    Ok(())
}

/// The spec's mounts, then the devices in /dev. Every destination is
/// resolved inside the root to a descriptor and mounted onto it
/// ([`super::at`]): a task that swaps a directory of a shared volume for a
/// symlink cannot lead a mount, a mkdir or a file creation to the host.
/// The host paths of what it creates for mounts to stand on go to `made`.
/// `in_cgroup` is called before a cgroup mount: the container's cgroup
/// directories exist once it returns them.
pub fn mount_spec<'c>(
    plan: &Plan,
    made: &mut Vec<PathBuf>,
    in_cgroup: &dyn Fn() -> Result<CgroupView<'c>>,
) -> Result<()> {
    // Opened after bind_root: the root's own mount, the one pivoted into.
    let root = Root::open(&plan.root.path)
        .ctx(|| format!("opening the root {}", plan.root.path.display()))?;
    for m in &plan.mounts {
        let cgroups = match m.kind {
            MountKind::Cgroup => Some(in_cgroup()?),
            _ => None,
        };
        mount_one(&root, m, cgroups.as_ref(), made).map_err(|e| match e {
            Error::Sys { context, source } => Error::Sys {
                context: format!("mounting {} ({context})", m.destination.display()),
                source,
            },
            other => other,
        })?;
    }

    let dev_is_mounted = plan
        .mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev"));
    if dev_is_mounted {
        create_devices(plan, &root)?;
    }
    Ok(())
}

/// `cgroups`: for a cgroup mount, the container's cgroup.
fn mount_one(
    root: &Root,
    m: &MountPlan,
    cgroups: Option<&CgroupView>,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    let dest = &m.destination;
    // A mount nothing changes afterwards is one mount(2) onto the
    // destination's descriptor; one whose flags or propagation are set
    // later is made detached, changed, then attached (no remount by path).
    let later = !m.propagation.is_empty();
    let top = match &m.kind {
        MountKind::Bind { recursive } => {
            let src = m.source.as_deref().unwrap_or(Path::new(""));
            let meta = fs::metadata(super::userns::reach(src).as_ref())
                .ctx(|| format!("bind source {}", src.display()))?;
            let at = mount_point(root, dest, meta.is_dir(), made)?;
            if m.flags.is_empty() && !later {
                let mut f = MsFlags::MS_BIND;
                if *recursive {
                    f |= MsFlags::MS_REC;
                }
                at::mount_at(src, at.as_fd(), None, f, None).ctx(|| "bind".into())?;
                return Ok(());
            }
            Some(at::bind(src, at.as_fd(), m.flags, *recursive).ctx(|| "bind".into())?)
        }
        MountKind::Fs { fstype } => {
            let at = mount_point(root, dest, true, made)?;
            if fstype == "proc" || fstype == "sysfs" {
                exactly_at(root, dest, at.as_fd(), fstype)?;
            }
            let source = m
                .source
                .as_deref()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| fstype.into());
            let r = if later {
                at::mount_fs(&source, at.as_fd(), fstype, m.flags, m.data.as_deref()).map(Some)
            } else {
                at::mount_at(
                    &source,
                    at.as_fd(),
                    Some(fstype),
                    m.flags,
                    m.data.as_deref(),
                )
                .map(|()| None)
            };
            match r {
                // sysfs and mqueue may only be mounted by the owner of the
                // net / ipc namespace: share the host's, read-only, as runc does.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EBUSY))
                        && (fstype == "sysfs" || fstype == "mqueue") =>
                {
                    let host = if fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    Some(
                        at::bind(
                            Path::new(host),
                            at.as_fd(),
                            m.flags | MsFlags::MS_RDONLY,
                            true,
                        )
                        .ctx(|| format!("bind {host}"))?,
                    )
                }
                r => r.ctx(|| format!("{fstype} {}", m.data.as_deref().unwrap_or("")))?,
            }
        }
        MountKind::Cgroup => {
            let cgroups = cgroups.ok_or_else(|| Error::Init("no cgroup to mount".into()))?;
            let at = mount_point(root, dest, true, made)?;
            Some(mount_cgroups(at.as_fd(), m.flags, cgroups)?)
        }
    };
    if let Some(top) = top {
        for p in &m.propagation {
            at::set_propagation(top.as_fd(), *p).ctx(|| format!("propagation {p:?}"))?;
        }
    }
    Ok(())
}

/// Shows the container its own cgroup: on v1 a tmpfs with one directory per
/// controller, each a bind of the container's cgroup; on v2 a bind of it.
/// Returns the mount made at `dest`.
fn mount_cgroups(dest: BorrowedFd, flags: MsFlags, cgroups: &CgroupView) -> Result<OwnedFd> {
    if cgroups.v2 {
        let Some((_, dir)) = cgroups.dirs.first() else {
            return Err(Error::Init("no cgroup to mount".into()));
        };
        return at::bind(dir, dest, flags, true).ctx(|| format!("bind {}", dir.display()));
    }
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let tmpfs = at::mount_fs(Path::new("tmpfs"), dest, "tmpfs", base, Some("mode=755"))
        .ctx(|| "tmpfs for cgroups".into())?;
    // The tmpfs is new and in no one else's view (this mount namespace is
    // the init's alone until the task runs): paths inside it are ours.
    let inside = at::fd_path(tmpfs.as_fd());
    for (name, dir) in cgroups.dirs {
        let target = inside.join(name);
        fs::create_dir(&target).ctx(|| format!("mkdir {name} in the cgroup tmpfs"))?;
        mount(Some(dir), &target, NONE, MsFlags::MS_BIND, NONE)
            .ctx(|| format!("bind {}", dir.display()))?;
    }
    // The tmpfs and every bind in it get the flags in one call
    // (mount_setattr, AT_RECURSIVE); before Linux 5.12, one remount each.
    match at::set_flags(tmpfs.as_fd(), base | flags, true) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            let binds = cgroups
                .dirs
                .iter()
                .map(|(name, dir)| (inside.join(name), dir.display().to_string()));
            let tmpfs = (inside.clone(), "the cgroup tmpfs".to_string());
            for (target, what) in binds.chain([tmpfs]) {
                mount(
                    NONE,
                    &target,
                    NONE,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | base,
                    NONE,
                )
                .ctx(|| format!("remount {what} with {:?}", flags | base))?;
            }
        }
        r => r.ctx(|| format!("the cgroup mounts with {:?}", flags | base))?,
    }
    Ok(tmpfs)
}

/// A proc or sysfs mount goes where the spec says, not where a symlink of
/// the image leads: the runtime writes sysctls and masks through these
/// paths once the root is `/`, and must not find something else there
/// (CVE-2019-19921, CVE-2019-16884).
fn exactly_at(root: &Root, dest: &Path, at: BorrowedFd, fstype: &str) -> Result<()> {
    if at::is_exactly(root, dest, at).ctx(|| dest.display().to_string())? {
        return Ok(());
    }
    let (root_host, here) = (
        at::host_path(root.fd()).ctx(|| "the root".into())?,
        at::host_path(at).ctx(|| dest.display().to_string())?,
    );
    let inside = here
        .strip_prefix(&root_host)
        .map_or(here.clone(), |p| Path::new("/").join(p));
    Err(Error::InvalidArgument(format!(
        "mounts: {fstype} at {d}: the root's {d} is a symlink (it leads to {}); \
         {fstype} must be mounted on a real directory",
        inside.display(),
        d = dest.display(),
    )))
}

/// What a mount stands on, inside the root: a directory, or for a bind of
/// a file an empty file (an existing one is used as it is, never
/// truncated).
fn mount_point(root: &Root, dest: &Path, dir: bool, made: &mut Vec<PathBuf>) -> Result<OwnedFd> {
    let r = if dir {
        root.mkdir_all(dest, 0o755, made)
    } else {
        root.file(dest, 0o644, made)
    };
    r.ctx(|| format!("creating the mount point {} in the root", dest.display()))
}

fn create_devices(plan: &Plan, root: &Root) -> Result<()> {
    let old = nix::sys::stat::umask(Mode::empty());
    // Most nodes and links share a directory (/dev): each is looked up once.
    let mut dirs: Vec<(PathBuf, OwnedFd)> = Vec::new();
    let r = (|| {
        for d in &plan.devices {
            let (dir, name) = parent_of(root, &mut dirs, &d.path)?;
            let kind = match d.kind {
                DeviceKind::Char => SFlag::S_IFCHR,
                DeviceKind::Block => SFlag::S_IFBLK,
                DeviceKind::Fifo => SFlag::S_IFIFO,
            };
            // Whatever is there goes (unlinkat never follows a symlink).
            let _ =
                nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
            match mknodat(
                dir.as_fd(),
                name,
                kind,
                Mode::from_bits_truncate(d.mode),
                makedev(d.major, d.minor),
            ) {
                Ok(()) => {}
                // Without CAP_MKNOD (in a user namespace), bind the host's
                // node, as runc does: it keeps the host's owner.
                Err(Errno::EPERM) => {
                    let at = mount_point(root, &d.path, false, &mut Vec::new())?;
                    at::bind(&d.path, at.as_fd(), MsFlags::empty(), false)
                        .ctx(|| format!("bind device {}", d.path.display()))?;
                    continue;
                }
                Err(e) => return Err(Error::sys(format!("mknod {}", d.path.display()), e)),
            }
            fchownat(
                dir.as_fd(),
                name,
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(|| format!("chown {}", d.path.display()))?;
        }
        for (target, link) in &plan.dev_symlinks {
            let (dir, name) = parent_of(root, &mut dirs, link)?;
            match symlinkat(target.as_path(), dir, name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::sys(format!("symlink {}", link.display()), e)),
            }
        }
        Ok(())
    })();
    nix::sys::stat::umask(old);
    r
}

/// The directory of `path` in the root (made if missing) and its last
/// component, each directory looked up once (`dirs`).
fn parent_of<'d, 'p>(
    root: &Root,
    dirs: &'d mut Vec<(PathBuf, OwnedFd)>,
    path: &'p Path,
) -> Result<(BorrowedFd<'d>, &'p std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("device path {}", path.display())))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let i = match dirs.iter().position(|(p, _)| p == parent) {
        Some(i) => i,
        None => {
            let fd = root
                .mkdir_all(parent, 0o755, &mut Vec::new())
                .ctx(|| path.display().to_string())?;
            dirs.push((parent.to_path_buf(), fd));
            dirs.len() - 1
        }
    };
    Ok((dirs[i].1.as_fd(), name))
}

/// Makes the container's root the process's `/`.
pub fn enter_root(plan: &Plan) -> Result<()> {
    let root = &plan.root.path;
    chdir(super::userns::reach(root).as_ref()).ctx(|| format!("chdir {}", root.display()))?;
    if plan.root.pivot {
        // pivot_root(".", ".") stacks the old root under the new one;
        // detaching it leaves only the container's root.
        pivot_root(".", ".").ctx(|| format!("pivot_root {}", root.display()))?;
        umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    } else {
        mount(Some("."), "/", NONE, MsFlags::MS_MOVE, NONE).ctx(|| "moving root to /".into())?;
        chroot(".").ctx(|| format!("chroot {}", root.display()))?;
    }
    chdir("/").ctx(|| "chdir /".into())
}

/// Everything after the root changed: sysctls (through the container's
/// /proc), masked and read-only paths, the read-only root, propagation.
pub fn finish(plan: &Plan) -> Result<()> {
    for (key, value) in &plan.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        crate::sys::write_kernel(&path, value).ctx(|| format!("sysctl {key}={value}"))?;
    }
    let root = Root::open(Path::new("/")).ctx(|| "opening /".into())?;
    for p in &plan.masked_paths {
        mask_path(&root, p)?;
    }
    for p in &plan.readonly_paths {
        let at = match root.resolve(p) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            r => r.ctx(|| format!("read-only path {}", p.display()))?,
        };
        // A bind of the path onto itself, read-only before it is attached.
        at::bind(
            &at::fd_path(at.as_fd()),
            at.as_fd(),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            true,
        )
        .ctx(|| format!("read-only path {}", p.display()))?;
    }
    if plan.root.readonly {
        // Read-only added to the root's mount, its other flags kept (in a
        // user namespace they are locked: a remount that dropped them
        // would be refused).
        let r = at::set_flags(root.fd(), MsFlags::MS_RDONLY, false);
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => mount(
                NONE,
                "/",
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                NONE,
            )
            .map_err(std::io::Error::from),
            r => r,
        }
        .ctx(|| "remounting / read-only".into())?;
    }
    if let Some(p) = plan.root.propagation {
        mount(NONE, "/", NONE, p, NONE).ctx(|| "rootfsPropagation".into())?;
    }
    Ok(())
}

/// Hides a path (resolved inside `root`): /dev/null over a file, an empty
/// read-only tmpfs over a directory. A path that does not exist needs no
/// mask.
pub(crate) fn mask_path(root: &Root, p: &Path) -> Result<()> {
    let at = match root.resolve(p) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("masked path {}", p.display()), e)),
    };
    let is_dir = at::is_dir(at.as_fd()).ctx(|| format!("masked path {}", p.display()))?;
    // Made whole by one mount(2) onto the descriptor: nothing changes them.
    if is_dir {
        at::mount_at(
            Path::new("tmpfs"),
            at.as_fd(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
        .ctx(|| format!("masking {}", p.display()))
    } else {
        at::mount_at(
            Path::new("/dev/null"),
            at.as_fd(),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .ctx(|| format!("masking {}", p.display()))
    }
}
