//! User namespaces, both sides of the fork.
//!
//! The runtime (host root) writes the new namespace's mappings from
//! outside and makes the idmapped trees of the chroot_env: only the
//! host's root may idmap a host filesystem. The init, born in the new
//! namespace as host uid 0 without a capability on the host, builds its
//! root's first mount and opens the host paths it still needs, then becomes
//! the namespace's root: from then on it reaches host paths only through
//! what it opened (a task's mapped root has no way through the state
//! root's 0700 directories, nor should it).

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::Pid;

use super::at;
use crate::error::{Context, Error, Result};
use crate::plan::UserNsPlan;

/// Writes the child's uid_map and gid_map. setgroups stays allowed: the
/// writer is privileged, and the task sets its own groups in the namespace.
pub fn write_maps(pid: Pid, u: &UserNsPlan) -> Result<()> {
    for (file, map) in [("uid_map", &u.uid_map), ("gid_map", &u.gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        crate::sys::write_kernel(&path, UserNsPlan::map_text(map)).map_err(|e| {
            let field = if file == "uid_map" {
                "linux.uidMappings"
            } else {
                "linux.gidMappings"
            };
            Error::invalid(
                field,
                format!("the kernel refused the mapping ({path}: {e})"),
            )
        })?;
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached, read-only copy of `src` (and what is mounted below it)
/// that shows its files through the ids of user namespace `userns`:
/// owned by the host's root, they are the namespace's root's.
pub fn idmapped_tree(src: &Path, userns: BorrowedFd) -> std::io::Result<OwnedFd> {
    let tree = at::open_tree_clone(src, true)?;
    at::mount_setattr_idmap(tree.as_fd(), MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, userns)?;
    Ok(tree)
}

/// The idmapped trees for `sources` ((key, host path) pairs), for the
/// init `pid` whose mappings are written.
pub fn idmapped_trees(pid: Pid, sources: &[(PathBuf, PathBuf)]) -> Result<Vec<(PathBuf, OwnedFd)>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let ns_path = format!("/proc/{pid}/ns/user");
    let ns = std::fs::File::open(&ns_path).ctx(|| format!("opening {ns_path}"))?;
    let mut out = Vec::new();
    for (key, src) in sources {
        let tree = idmapped_tree(src, ns.as_fd()).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM)) {
                Error::InvalidArgument(format!(
                    "chroot_env {}: an idmapped mount of it failed ({e}): a task in a user namespace sees the chroot_env through idmapped mounts, which need Linux 5.12 and a filesystem that supports them (`isoexec fingerprint` tells); use image semantics (io.isoexec.chroot_env=none) or userns = \"host\"",
                    src.display()
                ))
            } else {
                Error::sys(format!("idmapped mount of chroot_env {}", src.display()), e)
            }
        })?;
        out.push((key.clone(), tree));
    }
    Ok(out)
}

/// The init's copy of what it opened before it became the namespace's
/// root, and the trees the runtime sent. Set once, in the init only (a
/// forked, single-threaded process).
static OPENED: Mutex<Vec<(PathBuf, OwnedFd)>> = Mutex::new(Vec::new());
static TREES: Mutex<Vec<(PathBuf, OwnedFd)>> = Mutex::new(Vec::new());

/// Keeps the runtime's idmapped trees for [`take_tree`].
pub fn keep_trees(trees: Vec<(PathBuf, OwnedFd)>) {
    if let Ok(mut t) = TREES.lock() {
        t.extend(trees);
    }
}

/// The idmapped tree the runtime made for `key`, once.
pub fn take_tree(key: &Path) -> Option<OwnedFd> {
    let mut t = TREES.lock().ok()?;
    let i = t.iter().position(|(k, _)| k == key)?;
    Some(t.swap_remove(i).1)
}

/// Opens `paths` (O_PATH, following symlinks as a mount would) while the
/// init can still reach them; a path that does not exist is left for the
/// mount to report.
pub fn open_ahead(paths: &[&Path]) -> Result<()> {
    let mut opened = OPENED
        .lock()
        .map_err(|_| Error::Init("user namespace set-up: lock".into()))?;
    for p in paths {
        if opened.iter().any(|(k, _)| k == p) {
            continue;
        }
        let fd = nix::fcntl::open(
            *p,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        match fd {
            Ok(fd) => opened.push((p.to_path_buf(), fd)),
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::sys(
                    format!("opening {}", p.display()),
                    std::io::Error::from(e),
                ))
            }
        }
    }
    Ok(())
}

/// `path`, or the descriptor it was opened as ahead (`/proc/self/fd/N`,
/// which needs no search permission on the directories above it).
pub fn reach(path: &Path) -> Cow<'_, Path> {
    let Ok(opened) = OPENED.lock() else {
        return Cow::Borrowed(path);
    };
    match opened.iter().find(|(k, _)| k == path) {
        Some((_, fd)) => Cow::Owned(at::fd_path(fd.as_fd())),
        None => Cow::Borrowed(path),
    }
}

/// Becomes the user namespace's root (uid and gid 0, no supplementary
/// group): what it creates from here on is owned by the namespace.
pub fn become_root() -> Result<()> {
    // SAFETY: plain system calls on the calling process's credentials.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(Error::sys(
                "setresgid 0 in the user namespace",
                std::io::Error::last_os_error(),
            ));
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(Error::sys(
                "setgroups in the user namespace",
                std::io::Error::last_os_error(),
            ));
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(Error::sys(
                "setresuid 0 in the user namespace",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Whether an idmapped mount of `path` can be made here (for fingerprint):
/// a throwaway user namespace mapping 0 to 65534, and a tree of `path`.
pub fn idmap_supported(path: &Path) -> std::result::Result<(), String> {
    // A user namespace is made by a child that only waits; its descriptor
    // outlives it.
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    // SAFETY: the child only blocks on a read and exits.
    let child = unsafe { super::clone_fork(nix::sched::CloneFlags::CLONE_NEWUSER) }
        .map_err(|e| format!("clone(CLONE_NEWUSER): {e}"))?;
    let Some(child) = child else {
        drop(w);
        let mut b = [0u8; 1];
        let _ = nix::unistd::read(&r, &mut b);
        // SAFETY: leaving the forked child without running destructors.
        unsafe { libc::_exit(0) };
    };
    drop(r);
    let result = (|| {
        let u = UserNsPlan {
            uid_map: vec![crate::plan::IdMap {
                container: 0,
                host: 65534,
                size: 1,
            }],
            gid_map: vec![crate::plan::IdMap {
                container: 0,
                host: 65534,
                size: 1,
            }],
            pool_slot: None,
        };
        write_maps(child, &u).map_err(|e| e.to_string())?;
        let ns =
            std::fs::File::open(format!("/proc/{child}/ns/user")).map_err(|e| e.to_string())?;
        idmapped_tree(path, ns.as_fd())
            .map(drop)
            .map_err(|e| e.to_string())
    })();
    drop(w);
    let _ = nix::sys::wait::waitpid(child, None);
    result
}
