//! The container's root filesystem, built inside its own mount namespace:
//! the spec's mounts, `/dev`, then `pivot_root` (or MS_MOVE + chroot), then
//! sysctls, masked and read-only paths. Nothing here touches the host's
//! mount table: every mount dies with the namespace.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, chown, chroot, pivot_root, Gid, Uid};

use super::resolve_in_root;
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
    // Nothing mounted from here on may propagate back to the host.
    let prop = match plan.root.propagation {
        Some(p) if p.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(NONE, "/", NONE, prop, NONE).ctx(|| "making / a slave mount".into())?;
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

/// The spec's mounts, then the devices in /dev.
pub fn mount_spec(plan: &Plan, cgroups: &CgroupView) -> Result<()> {
    let root = &plan.root.path;
    for m in &plan.mounts {
        mount_one(root, m, cgroups).map_err(|e| match e {
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
        create_devices(plan)?;
    }
    Ok(())
}

fn mount_one(root: &Path, m: &MountPlan, cgroups: &CgroupView) -> Result<()> {
    let dest = resolve_in_root(root, &m.destination).ctx(|| "resolving destination".into())?;
    match &m.kind {
        MountKind::Bind { recursive } => {
            let src = m.source.as_deref().unwrap_or(Path::new(""));
            let meta = fs::metadata(src).ctx(|| format!("bind source {}", src.display()))?;
            make_mount_point(&dest, meta.is_dir())?;
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(Some(src), &dest, NONE, flags, NONE).ctx(|| "bind".into())?;
            if !m.flags.is_empty() {
                remount_bind(&dest, m.flags, *recursive)?;
            }
        }
        MountKind::Fs { fstype } => {
            make_mount_point(&dest, true)?;
            let source = m
                .source
                .as_deref()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| fstype.into());
            let r = mount(
                Some(&source),
                &dest,
                Some(fstype.as_str()),
                m.flags,
                m.data.as_deref(),
            );
            match r {
                // sysfs and mqueue may only be mounted by the owner of the
                // net / ipc namespace: share the host's, read-only, as runc does.
                Err(Errno::EPERM) | Err(Errno::EBUSY)
                    if fstype == "sysfs" || fstype == "mqueue" =>
                {
                    let host = if fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    mount(
                        Some(host),
                        &dest,
                        NONE,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        NONE,
                    )
                    .ctx(|| format!("bind {host}"))?;
                    remount_bind(&dest, m.flags | MsFlags::MS_RDONLY, true)?;
                }
                r => r.ctx(|| format!("{fstype} {}", m.data.as_deref().unwrap_or("")))?,
            }
        }
        MountKind::Cgroup => {
            make_mount_point(&dest, true)?;
            mount_cgroups(&dest, m.flags, cgroups)?;
        }
    }
    for p in &m.propagation {
        mount(NONE, &dest, NONE, *p, NONE).ctx(|| format!("propagation {p:?}"))?;
    }
    Ok(())
}

/// Shows the container its own cgroup: on v1 a tmpfs with one directory per
/// controller, each a bind of the container's cgroup; on v2 a bind of it.
fn mount_cgroups(dest: &Path, flags: MsFlags, cgroups: &CgroupView) -> Result<()> {
    let readonly = flags.contains(MsFlags::MS_RDONLY);
    if cgroups.v2 {
        if let Some((_, dir)) = cgroups.dirs.first() {
            mount(
                Some(dir),
                dest,
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .ctx(|| format!("bind {}", dir.display()))?;
            remount_bind(dest, flags, true)?;
        }
        return Ok(());
    }
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dest, Some("tmpfs"), base, Some("mode=755"))
        .ctx(|| "tmpfs for cgroups".into())?;
    for (name, dir) in cgroups.dirs {
        let target = dest.join(name);
        make_mount_point(&target, true)?;
        mount(Some(dir), &target, NONE, MsFlags::MS_BIND, NONE)
            .ctx(|| format!("bind {}", dir.display()))?;
        remount_bind(&target, flags | base, false)?;
    }
    if readonly {
        mount(
            NONE,
            dest,
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
        )
        .ctx(|| "read-only cgroup tmpfs".into())?;
    }
    Ok(())
}

/// Applies per-mount flags (ro, nosuid, ...) to a bind mount: a bind takes
/// no flags of its own, so they are set by a remount.
fn remount_bind(dest: &Path, flags: MsFlags, recursive: bool) -> Result<()> {
    let mut f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    if recursive {
        f |= MsFlags::MS_REC;
    }
    mount(NONE, dest, NONE, f, NONE).ctx(|| format!("remount with {flags:?}"))
}

/// Creates what a mount needs to stand on: a directory, or an empty file for
/// a bind of a file.
fn make_mount_point(path: &Path, dir: bool) -> Result<()> {
    if dir {
        if !path.is_dir() {
            fs::create_dir_all(path).ctx(|| format!("mkdir {}", path.display()))?;
        }
    } else {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).ctx(|| format!("mkdir {}", parent.display()))?;
        }
        if fs::symlink_metadata(path).is_err() {
            fs::File::create(path).ctx(|| format!("create {}", path.display()))?;
        }
    }
    Ok(())
}

fn create_devices(plan: &Plan) -> Result<()> {
    let root = &plan.root.path;
    let old = nix::sys::stat::umask(Mode::empty());
    let r = (|| {
        for d in &plan.devices {
            let path = resolve_in_root(root, &d.path).ctx(|| d.path.display().to_string())?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).ctx(|| format!("mkdir {}", parent.display()))?;
            }
            let kind = match d.kind {
                DeviceKind::Char => SFlag::S_IFCHR,
                DeviceKind::Block => SFlag::S_IFBLK,
                DeviceKind::Fifo => SFlag::S_IFIFO,
            };
            let _ = fs::remove_file(&path);
            match mknod(
                &path,
                kind,
                Mode::from_bits_truncate(d.mode),
                makedev(d.major, d.minor),
            ) {
                Ok(()) => {}
                // Without CAP_MKNOD, bind the host's node (runc does the same).
                Err(Errno::EPERM) => {
                    make_mount_point(&path, false)?;
                    mount(Some(&d.path), &path, NONE, MsFlags::MS_BIND, NONE)
                        .ctx(|| format!("bind device {}", d.path.display()))?;
                }
                Err(e) => return Err(Error::sys(format!("mknod {}", d.path.display()), e)),
            }
            chown(
                &path,
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
            )
            .ctx(|| format!("chown {}", d.path.display()))?;
        }
        for (target, link) in &plan.dev_symlinks {
            let path = root.join(link.strip_prefix("/").unwrap_or(link));
            match symlink(target, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::sys(format!("symlink {}", link.display()), e)),
            }
        }
        Ok(())
    })();
    nix::sys::stat::umask(old);
    r
}

/// Makes the container's root the process's `/`.
pub fn enter_root(plan: &Plan) -> Result<()> {
    let root = &plan.root.path;
    chdir(root).ctx(|| format!("chdir {}", root.display()))?;
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
        fs::write(&path, value).ctx(|| format!("sysctl {key}={value}"))?;
    }
    for p in &plan.masked_paths {
        mask_path(p)?;
    }
    for p in &plan.readonly_paths {
        match mount(Some(p), p, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE) {
            Err(Errno::ENOENT) => continue,
            r => r.ctx(|| format!("read-only path {}", p.display()))?,
        }
        remount_bind(
            p,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            true,
        )?;
    }
    if plan.root.readonly {
        mount(
            NONE,
            "/",
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            NONE,
        )
        .ctx(|| "remounting / read-only".into())?;
    }
    if let Some(p) = plan.root.propagation {
        mount(NONE, "/", NONE, p, NONE).ctx(|| "rootfsPropagation".into())?;
    }
    Ok(())
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a
/// directory. A path that does not exist needs no mask.
pub(crate) fn mask_path(p: &Path) -> Result<()> {
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::sys(format!("masked path {}", p.display()), e)),
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
            .ctx(|| format!("masking {}", p.display()))
    } else {
        mount(Some("/dev/null"), p, NONE, MsFlags::MS_BIND, NONE)
            .ctx(|| format!("masking {}", p.display()))
    }
}
