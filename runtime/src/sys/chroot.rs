//! Carries out a [`ChrootPlan`]: the task directory's layout and the
//! chroot_env directories, in three modes.
//!
//! `prepare` runs in the runtime before the fork and only creates what must
//! exist on the host (mount points, the layout, link-mode copies, overlay
//! layers), recording it for `cleanup`. `mount` runs in the task's own mount
//! namespace before pivot_root: its mounts die with the namespace.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use super::at::{self, Root};
use crate::config::ChrootMode;
use crate::driver::{ChrootPlan, TASK_ALLOC, TASK_LOCAL, TASK_SECRETS, TASK_TMP};
use crate::error::{Context, Error, Result};

/// Something `prepare` created inside the task's root, removed on delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub path: PathBuf,
    /// True for a tree isoexec filled (link copies, the task's scratch
    /// directories): removed with its content. False for a mount point:
    /// removed only if empty.
    pub tree: bool,
}

/// A chroot_env entry whose host path exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its index in the plan (names its overlay layer).
    pub index: usize,
    pub host: PathBuf,
    /// Where it goes: the task path resolved inside the root.
    pub target: PathBuf,
    /// The host path is a symlink to another entry's directory (merged
    /// /usr: /bin -> usr/bin), recreated as the same symlink: nothing to
    /// mount, and the two names are one directory in the task, so a mask
    /// or read-only path on either holds on both.
    #[serde(default)]
    pub twin: bool,
}

/// What `prepare` made; kept in the container's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub created: Vec<Created>,
    pub entries: Vec<Entry>,
    /// The task directory itself did not exist: removed (if empty) on delete.
    #[serde(default)]
    pub created_root: bool,
    /// Paths in the root (host view) masked at mount time: what
    /// `chroot_env_hide` matched under a bind or overlay entry.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
}

impl Prepared {
    /// Mount points the init made in the task directory (host paths, see
    /// `msg::MADE`): removed with the rest, only when empty.
    pub fn add_mount_points(&mut self, made: &[PathBuf]) {
        self.created.extend(made.iter().map(|path| Created {
            path: path.clone(),
            tree: false,
        }));
    }
}

/// What must never be copied into a task (link mode walks the host): the
/// task's own root, the runtime's state, and what chroot_env_hide names.
pub struct Skip<'a> {
    pub paths: &'a [&'a Path],
}

/// Creates, in `root` on the host, what the task's mounts stand on:
/// the layout, the chroot_env targets, and the top-level mount points of
/// the spec's mounts (`spec_mounts`), so that delete leaves the root as it
/// found it.
///
/// `owner`: the host ids the task's writable directories (`/local`,
/// `/alloc`) are given here, for a task in a user namespace (which cannot
/// chown what the host's root made).
pub fn prepare(
    plan: &ChrootPlan,
    root: &Path,
    state_root: &Path,
    spec_mounts: &[&Path],
    owner: Option<(u32, u32)>,
) -> Result<Prepared> {
    let mut p = Prepared::default();
    // The task directory is the runtime's to make, as the driver's is.
    if !root.exists() {
        fs::create_dir(root).ctx(|| format!("creating the task directory {}", root.display()))?;
        p.created_root = true;
    }
    let r = Root::open(root)
        .ctx(|| format!("opening the task directory {}", root.display()))
        .and_then(|r| {
            prepare_into(plan, &r, root, state_root, owner, &mut p)?;
            for m in spec_mounts {
                let Some(top) = m.components().nth(1) else {
                    continue;
                };
                let top = Path::new("/").join(top);
                mkdir_recording(&r, &top, false, &mut p)?;
            }
            Ok(())
        });
    if let Err(e) = r {
        undo(root, &p);
        return Err(e);
    }
    Ok(p)
}

/// Removes everything `prepare` made, the task directory included when it
/// made it.
pub fn undo(root: &Path, p: &Prepared) {
    cleanup(root, &p.created);
    if p.created_root {
        let _ = fs::remove_dir(root);
    }
}

fn prepare_into(
    plan: &ChrootPlan,
    r: &Root,
    root: &Path,
    state_root: &Path,
    owner: Option<(u32, u32)>,
    p: &mut Prepared,
) -> Result<()> {
    let chown = |fd: std::os::fd::BorrowedFd, what: &str| -> Result<()> {
        match owner {
            Some((uid, gid)) => {
                nix::unistd::chown(&at::fd_path(fd), Some(uid.into()), Some(gid.into()))
                    .ctx(|| format!("chown {what} to the task's host ids {uid}:{gid}"))
            }
            None => Ok(()),
        }
    };
    for dir in [TASK_LOCAL, TASK_SECRETS, TASK_ALLOC, TASK_TMP] {
        // Resolved inside the root: an image's `tmp -> /etc` must not lead
        // the chmod below to the host's /etc.
        let made = p.created.len();
        let fd = mkdir_recording(
            r,
            Path::new(dir),
            dir != TASK_SECRETS && dir != TASK_ALLOC,
            p,
        )?;
        if dir == TASK_TMP && p.created.len() > made {
            fs::set_permissions(at::fd_path(fd.as_fd()), fs::Permissions::from_mode(0o1777))
                .ctx(|| format!("chmod 1777 {dir}"))?;
        }
        if dir == TASK_LOCAL {
            chown(fd.as_fd(), dir)?;
        }
    }
    fs::create_dir_all(&plan.alloc_host)
        .ctx(|| format!("creating {}", plan.alloc_host.display()))?;
    if owner.is_some() {
        let alloc = fs::File::open(&plan.alloc_host)
            .ctx(|| format!("opening {}", plan.alloc_host.display()))?;
        chown(alloc.as_fd(), "/alloc")?;
        if plan.disk_mb.is_some() {
            // The task's disk is mounted there by an init that can no
            // longer create it.
            fs::create_dir_all(&plan.disk_dir)
                .ctx(|| format!("creating {}", plan.disk_dir.display()))?;
        }
    }

    let root_canon = at::host_path(r.fd()).unwrap_or_else(|_| root.to_path_buf());
    let hidden_host = expand_hidden(&plan.hide);
    let mut skip = vec![root_canon.as_path(), state_root];
    skip.extend(hidden_host.iter().map(PathBuf::as_path));
    // Where each hidden path really is, found once for all the entries
    // (a hidden name that is a symlink shows only its name: what it
    // points to is hidden where a pattern names it; a mount would follow
    // it).
    let hidden_real: Vec<PathBuf> = if plan.mode == ChrootMode::Link {
        Vec::new()
    } else {
        hidden_host
            .iter()
            .filter(|h| fs::symlink_metadata(h).is_ok_and(|m| !m.file_type().is_symlink()))
            .map(|h| fs::canonicalize(h).unwrap_or_else(|_| h.clone()))
            .collect()
    };
    for (i, (host, task)) in plan.entries.iter().enumerate() {
        let meta = match fs::metadata(host) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::sys(format!("chroot_env {}", host.display()), e)),
        };
        if plan.mode != ChrootMode::Link {
            if let Some(target) = twin_link(r, host, task, &plan.entries, p)? {
                p.entries.push(Entry {
                    index: i,
                    host: host.clone(),
                    target,
                    twin: true,
                });
                continue;
            }
        }
        let target;
        match plan.mode {
            ChrootMode::Bind | ChrootMode::Overlay => {
                let fd = if meta.is_dir() {
                    mkdir_recording(r, task, false, p)?
                } else {
                    file_recording(r, task, p)?
                };
                target = at::host_path(fd.as_fd()).ctx(|| task.display().to_string())?;
                if plan.mode == ChrootMode::Overlay {
                    if !meta.is_dir() {
                        return Err(Error::InvalidArgument(format!(
                            "chroot_env {}: overlay mode needs a directory",
                            host.display()
                        )));
                    }
                    let layer = plan.overlay_dir.join(i.to_string());
                    fs::create_dir_all(layer.join("upper")).ctx(|| layer.display().to_string())?;
                    fs::create_dir_all(layer.join("work")).ctx(|| layer.display().to_string())?;
                }
            }
            ChrootMode::Link => {
                let mut made = Vec::new();
                let parent = r.parent(task, &mut made);
                record(p, made, false);
                let (dir, name) = parent.ctx(|| task.display().to_string())?;
                target = at::host_path(dir.as_fd())
                    .ctx(|| task.display().to_string())?
                    .join(&name);
                let existed = nix::sys::stat::fstatat(
                    &dir,
                    name.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_ok();
                link_tree(host, dir.as_fd(), &name, &Skip { paths: &skip })?;
                if !existed {
                    p.created.push(Created {
                        path: target.clone(),
                        tree: true,
                    });
                }
            }
        }
        if !hidden_real.is_empty() {
            // Link mode never copied them; the others show the host's
            // directory, so the matches are masked in the task.
            // Compared where they really are: `/bin/ls` of a merged /usr
            // is /usr/bin/ls, masked in the /usr entry (/bin being its
            // twin, the same directory in the task).
            let host_real = fs::canonicalize(host).unwrap_or_else(|_| host.clone());
            for real in &hidden_real {
                if let Ok(rel) = real.strip_prefix(&host_real) {
                    p.hidden.push(target.join(rel));
                }
            }
        }
        p.entries.push(Entry {
            index: i,
            host: host.clone(),
            target,
            twin: false,
        });
    }
    Ok(())
}

/// An entry whose host path is a symlink (`/bin -> usr/bin`) to a directory
/// another entry shows at its own path (`/usr`), both at their host paths
/// in the task: the same symlink is made in the root and its host path
/// returned. `None` when the entry is not such a twin (it is then bound as
/// a directory of its own), or when the root already has something else
/// there.
fn twin_link(
    r: &Root,
    host: &Path,
    task: &Path,
    entries: &[(PathBuf, PathBuf)],
    p: &mut Prepared,
) -> Result<Option<PathBuf>> {
    let is_link = fs::symlink_metadata(host).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link || host != task {
        return Ok(None);
    }
    let (Ok(link), Ok(resolved)) = (fs::read_link(host), fs::canonicalize(host)) else {
        return Ok(None);
    };
    let shown = entries
        .iter()
        .any(|(h, t)| h == t && h != host && resolved.starts_with(h));
    if !shown {
        return Ok(None);
    }
    let mut made = Vec::new();
    let parent = r.parent(task, &mut made);
    record(p, made, false);
    let (dir, name) = parent.ctx(|| task.display().to_string())?;
    let target = at::host_path(dir.as_fd())
        .ctx(|| task.display().to_string())?
        .join(&name);
    match nix::unistd::symlinkat(&link, &dir, name.as_os_str()) {
        Ok(()) => {
            p.created.push(Created {
                path: target.clone(),
                tree: true,
            });
            Ok(Some(target))
        }
        // Another task on the same root made it already.
        Err(nix::errno::Errno::EEXIST) if fs::read_link(&target).is_ok_and(|l| l == link) => {
            Ok(Some(target))
        }
        // The root has a directory (or anything else) there: bind it.
        Err(nix::errno::Errno::EEXIST) => Ok(None),
        Err(e) => Err(Error::sys(
            format!("symlink {} in the task directory", task.display()),
            std::io::Error::from(e),
        )),
    }
}

/// The host paths `patterns` (chroot_env_hide) name now: each component
/// matched with [`crate::driver::glob_match`] against the host's
/// directory, never through a symlink (a hidden name that is a symlink is
/// itself hidden, not what it points to).
fn expand_hidden(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Each directory read once: the defaults glob /etc twice.
    let mut listed: std::collections::HashMap<PathBuf, Vec<String>> = Default::default();
    for pat in patterns {
        let mut found = vec![PathBuf::from("/")];
        for comp in pat.split('/').filter(|c| !c.is_empty()) {
            let mut next = Vec::new();
            for dir in &found {
                if !comp.contains(['*', '?']) {
                    let p = dir.join(comp);
                    if fs::symlink_metadata(&p).is_ok() {
                        next.push(p);
                    }
                    continue;
                }
                let names = listed.entry(dir.clone()).or_insert_with(|| {
                    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                        return Vec::new();
                    }
                    let Ok(entries) = fs::read_dir(dir) else {
                        return Vec::new();
                    };
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect();
                    names.sort();
                    names
                });
                next.extend(
                    names
                        .iter()
                        .filter(|n| crate::driver::glob_match(comp, n))
                        .map(|n| dir.join(n)),
                );
            }
            found = next;
        }
        out.extend(found.into_iter().filter(|p| p != Path::new("/")));
    }
    out.sort();
    out.dedup();
    out
}

/// mkdir -p inside the root, recording each directory it made (outermost
/// first; the last one, `path` itself, as a `tree` when asked).
fn mkdir_recording(r: &Root, path: &Path, tree: bool, p: &mut Prepared) -> Result<OwnedFd> {
    let mut made = Vec::new();
    let fd = r.mkdir_all(path, 0o755, &mut made);
    record(p, made, tree);
    fd.ctx(|| format!("mkdir {} in the task directory", path.display()))
}

/// An empty file to bind a file on, recorded when it was made.
fn file_recording(r: &Root, path: &Path, p: &mut Prepared) -> Result<OwnedFd> {
    let mut made = Vec::new();
    let fd = r.file(path, 0o644, &mut made);
    record(p, made, false);
    fd.ctx(|| format!("creating {} in the task directory", path.display()))
}

fn record(p: &mut Prepared, made: Vec<PathBuf>, last_is_tree: bool) {
    let n = made.len();
    for (i, path) in made.into_iter().enumerate() {
        p.created.push(Created {
            path,
            tree: last_is_tree && i + 1 == n,
        });
    }
}

/// The exec driver's copy: hardlink every file (copy across filesystems),
/// recreate symlinks, skip devices, sockets and fifos, and never descend
/// into the task's root or the runtime's state.
///
/// The copy is made as `name` in the directory `dir` of the task's root,
/// and below it by descriptor only: each directory it makes is opened
/// without following a symlink before anything goes into it, files are
/// linked or created exclusively relative to that descriptor. Another
/// task on the same root swapping a directory for a symlink to a host
/// path gets an error, not a copy (or a chmod) in the host's directory.
pub fn link_tree(src: &Path, dir: BorrowedFd, name: &OsStr, skip: &Skip) -> Result<()> {
    use nix::errno::Errno;
    use nix::sys::stat::Mode;
    if skip.paths.contains(&src) {
        return Ok(());
    }
    // For errors: where it is on the host.
    let dst = || {
        at::host_path(dir)
            .unwrap_or_else(|_| at::fd_path(dir))
            .join(name)
            .display()
            .to_string()
    };
    let meta = fs::symlink_metadata(src).ctx(|| format!("reading {}", src.display()))?;
    let ft = meta.file_type();
    let made = |r: nix::Result<()>, what: &str| match r {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(Error::sys(
            format!("{what} {}", dst()),
            std::io::Error::from(e),
        )),
    };
    if ft.is_symlink() {
        let target = fs::read_link(src).ctx(|| format!("readlink {}", src.display()))?;
        made(nix::unistd::symlinkat(&target, dir, name), "symlink")?;
    } else if ft.is_dir() {
        made(
            nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)),
            "mkdir",
        )?;
        let sub = at::open_child(dir, name, libc::O_DIRECTORY).ctx(dst)?;
        let sub_path = at::fd_path(sub.as_fd());
        fs::set_permissions(&sub_path, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .ctx(|| format!("chmod {}", dst()))?;
        let _ = nix::unistd::chown(&sub_path, Some(meta.uid().into()), Some(meta.gid().into()));
        let entries = fs::read_dir(src).ctx(|| format!("reading {}", src.display()))?;
        for e in entries {
            let e = e.ctx(|| format!("reading {}", src.display()))?;
            link_tree(&e.path(), sub.as_fd(), &e.file_name(), skip)?;
        }
    } else if ft.is_file() {
        let linked = nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            src,
            dir,
            name,
            nix::fcntl::AtFlags::empty(),
        );
        match linked {
            Ok(()) | Err(Errno::EEXIST) => {}
            // Another filesystem, or a file hardlinks may not reach: copy.
            Err(_) => {
                copy_at(src, &meta, dir, name).ctx(|| format!("copying {}", src.display()))?
            }
        }
    }
    // Devices, sockets and fifos are not part of a task's root.
    Ok(())
}

/// A copy of the host file `src` made as `name` in `dir`: created
/// exclusively, never through a symlink, never truncating what is there.
fn copy_at(src: &Path, meta: &fs::Metadata, dir: BorrowedFd, name: &OsStr) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    let mut from = fs::File::open(src)?;
    let to = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
    );
    let to = match to {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = fs::File::from(to);
    std::io::copy(&mut from, &mut to)?;
    to.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let _ = nix::unistd::fchown(&to, Some(meta.uid().into()), Some(meta.gid().into()));
    Ok(())
}

/// Mounts the chroot_env and the layout inside the task's mount namespace,
/// before the spec's own mounts. `uid`/`gid` own the task's writable
/// directories.
pub fn mount_all(
    plan: &ChrootPlan,
    prepared: &Prepared,
    root: &Path,
    uid: u32,
    gid: u32,
) -> Result<()> {
    // Every target is resolved inside the root to a descriptor and mounted
    // onto it: a task of the sandbox that changes /alloc, say, cannot lead
    // these mounts elsewhere.
    let r = Root::open(root).ctx(|| format!("opening the task directory {}", root.display()))?;
    let root_host = at::host_path(r.fd()).ctx(|| root.display().to_string())?;
    let inside = |target: &Path| -> Result<OwnedFd> {
        let rel = target.strip_prefix(&root_host).map_err(|_| {
            Error::Init(format!(
                "{} is not in the task directory {}",
                target.display(),
                root_host.display()
            ))
        })?;
        r.resolve(rel).ctx(|| target.display().to_string())
    };
    let readonly = MsFlags::MS_RDONLY;
    for Entry {
        index,
        host,
        target,
        twin,
    } in &prepared.entries
    {
        if *twin {
            continue;
        }
        let what = || format!("chroot_env {} at {}", host.display(), target.display());
        // In a new user namespace, the runtime's idmapped tree of it.
        let key = if plan.mode == ChrootMode::Link {
            target
        } else {
            host
        };
        if let Some(tree) = super::userns::take_tree(key) {
            at::attach(tree.as_fd(), inside(target)?.as_fd()).ctx(what)?;
            continue;
        }
        match plan.mode {
            ChrootMode::Bind => {
                at::bind(host, inside(target)?.as_fd(), readonly, true).ctx(what)?;
            }
            ChrootMode::Overlay => {
                let layer = plan.overlay_dir.join(index.to_string());
                for p in [host.as_path(), &layer] {
                    let s = p.to_string_lossy();
                    if s.contains(',') || s.contains(':') {
                        return Err(Error::InvalidArgument(format!(
                            "overlay mode cannot use {s:?}: ',' and ':' are separators in overlay options"
                        )));
                    }
                }
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    host.display(),
                    layer.join("upper").display(),
                    layer.join("work").display()
                );
                at::mount_fs(
                    Path::new("overlay"),
                    inside(target)?.as_fd(),
                    "overlay",
                    MsFlags::empty(),
                    Some(data.as_str()),
                )
                .ctx(what)?;
            }
            ChrootMode::Link => {
                // A symlink (merged /usr's /bin -> usr/bin) was recreated as
                // one; what it points to is an entry of its own.
                if fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
                    continue;
                }
                // The copies share inodes with the host's files: read-only,
                // so the task cannot change a host file through them.
                let fd = inside(target)?;
                at::bind(&at::fd_path(fd.as_fd()), fd.as_fd(), readonly, true).ctx(what)?;
            }
        }
    }

    // chroot_env_hide: what the entries would show of the host's secrets.
    for h in &prepared.hidden {
        if let Ok(rel) = h.strip_prefix(&root_host) {
            super::rootfs::mask_path(&r, rel)?;
        }
    }

    let at_dir = |p: &str| r.resolve(Path::new(p)).ctx(|| p.to_string());
    // Scratch directories stay writable even when the root is read-only;
    // with ephemeral_disk_mb they share one filesystem of that size.
    let disk = plan
        .disk_mb
        .map(|mb| mount_disk(&plan.disk_dir, mb))
        .transpose()?;
    let mut owned_by_task = Vec::new();
    for dir in [TASK_LOCAL, TASK_TMP] {
        let d = at_dir(dir)?;
        let src = match &disk {
            Some(disk) => at::fd_path(disk.as_fd()).join(dir.trim_start_matches('/')),
            None => at::fd_path(d.as_fd()),
        };
        let m = at::bind(&src, d.as_fd(), MsFlags::empty(), false).ctx(|| format!("bind {dir}"))?;
        if dir == TASK_LOCAL {
            owned_by_task.push(m);
        }
    }
    let alloc = at::bind(
        &plan.alloc_host,
        at_dir(TASK_ALLOC)?.as_fd(),
        MsFlags::empty(),
        false,
    )
    .ctx(|| format!("bind {} at /alloc", plan.alloc_host.display()))?;
    owned_by_task.push(alloc);
    let secrets = at::mount_fs(
        Path::new("tmpfs"),
        at_dir(TASK_SECRETS)?.as_fd(),
        "tmpfs",
        MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700,size=1m"),
    )
    .ctx(|| "tmpfs at /secrets".into())?;
    owned_by_task.push(secrets);
    // (In a user namespace the host's directories were given the task's
    // host ids by the runtime; what is already the task's is left alone.)
    for d in &owned_by_task {
        let st = at::stat(d.as_fd()).ctx(|| "the task's writable directories".into())?;
        if (st.st_uid, st.st_gid) != (uid, gid) {
            nix::unistd::chown(&at::fd_path(d.as_fd()), Some(uid.into()), Some(gid.into()))
                .ctx(|| "chown of the task's writable directories".into())?;
        }
    }
    Ok(())
}

/// The task's ephemeral disk: a tmpfs of `mb` MiB at `dir` (in the task's
/// own mount namespace: the host sees an empty directory of the state),
/// with `local` and `tmp` (1777) in it. What the task writes there counts
/// against its memory cgroup too.
/// Returns the filesystem's mount.
fn mount_disk(dir: &Path, mb: u64) -> Result<OwnedFd> {
    if !super::userns::reach(dir).is_dir() {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    let opts = format!("size={mb}m,mode=0755");
    let at = Root::open(dir).ctx(|| format!("opening {}", dir.display()))?;
    let disk = at::mount_fs(
        Path::new("tmpfs"),
        at.fd(),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .ctx(|| format!("ephemeral disk ({mb} MiB tmpfs) at {}", dir.display()))?;
    for (sub, mode) in [("local", 0o755), ("tmp", 0o1777)] {
        let d = at::fd_path(disk.as_fd()).join(sub);
        fs::create_dir(&d).ctx(|| format!("creating {sub} in the ephemeral disk"))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {sub} in the ephemeral disk"))?;
    }
    Ok(disk)
}

/// Removes what `prepare` created, innermost first, each reached from
/// the root's descriptor one directory at a time: what no longer leads
/// inside `root` by directories alone (a task may have replaced one with
/// a symlink) is left alone.
pub fn cleanup(root: &Path, created: &[Created]) {
    let Ok(r) = Root::open(root) else {
        return;
    };
    let Ok(root) = at::host_path(r.fd()) else {
        return;
    };
    // Deepest first: lists handed down from other tasks on the same root
    // are not in creation order (a child can come before its parent).
    let mut order: Vec<&Created> = created.iter().rev().collect();
    order.sort_by_key(|c| std::cmp::Reverse(c.path.components().count()));
    for c in order {
        if let Ok(rel) = c.path.strip_prefix(&root) {
            let _ = at::remove_in(r.fd(), rel, c.tree);
        }
    }
}
