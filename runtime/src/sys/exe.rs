//! CVE-2019-5736: the runtime's own binary must never be reachable, for
//! writing, from inside a task.
//!
//! Every process that enters a task (an init, an exec'd process) is a fork
//! of the runtime: until its execve its `/proc/PID/exe` is the runtime's
//! binary, and a task program whose interpreter is `#!/proc/self/exe`
//! makes the kernel run that binary inside the task. The task then opens
//! `/proc/PID/exe` and, once nothing runs it any more, writes to the host's
//! binary. So before a runtime process forks anything into a task it makes
//! sure its exe is read-only: it re-executes itself from a read-only
//! overlay of its own directory (nothing to copy, and unlike a read-only
//! bind a task cannot remount it writable), or, where overlayfs cannot be
//! mounted, from a sealed memfd copy. A binary already on a read-only
//! filesystem needs neither. The check is a few system calls; the re-exec
//! happens once per runtime process (the CLI's create/run/exec, a shim
//! server, isoexecd).
//!
//! The command line also takes an immutable binary (`chattr +i`, as
//! `make install` leaves it) as sealed: nobody may write, truncate, chmod
//! or rename it, root included, without CAP_LINUX_IMMUTABLE in the host's
//! user namespace, and that saves the re-exec on every `run`. A task that
//! may hold that capability (in its bounding set, in the host's user
//! namespace) could clear the flag: for it the command line re-executes
//! from the overlay anyway ([`needs_seal`], [`reseal`]).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::MsFlags;

use crate::error::{Error, Result};

/// Set across the re-exec, so a process that is still not sealed after it
/// says why instead of re-executing forever.
const MARKER: &str = "_ISOEXEC_SEALED_EXE";

/// What seals the current process's exe, for `--debug` and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// On a read-only mount (our overlay, or a read-only /usr).
    ReadOnly,
    /// A memfd with every write sealed.
    Memfd,
    /// An immutable file (FS_IMMUTABLE_FL): sealed against every task that
    /// cannot hold CAP_LINUX_IMMUTABLE in the host's user namespace.
    Immutable,
}

const MEMFD_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How the current process's exe is protected, if it is.
pub fn current_seal() -> Option<Seal> {
    let exe = File::open("/proc/self/exe").ok()?;
    // SAFETY: fcntl on a descriptor we own.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & MEMFD_SEALS == MEMFD_SEALS {
        return Some(Seal::Memfd);
    }
    let vfs = nix::sys::statvfs::fstatvfs(&exe).ok()?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Some(Seal::ReadOnly);
    }
    is_immutable(&exe).then_some(Seal::Immutable)
}

/// Whether the file has the immutable attribute (`chattr +i`).
fn is_immutable(f: &File) -> bool {
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long through a valid pointer.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    r == 0 && flags & FS_IMMUTABLE_FL != 0
}

/// `Err(Error::NeedsSeal)` when this process runs from a binary sealed
/// only by its immutable flag and a task with this bounding set, in the
/// host's user namespace, is about to be made: it could clear the flag.
/// (A task in a user namespace of its own holds capabilities only there,
/// and CAP_LINUX_IMMUTABLE counts only in the host's.)
pub fn needs_seal(bounding: &[caps::Capability], own_userns: bool) -> Result<()> {
    if own_userns || !bounding.contains(&caps::Capability::CAP_LINUX_IMMUTABLE) {
        return Ok(());
    }
    match current_seal() {
        Some(Seal::Immutable) => Err(Error::NeedsSeal),
        _ => Ok(()),
    }
}

/// Re-executes this process from a read-only copy of its binary (as
/// [`ensure_sealed`] does for a writable one), whatever seals it now.
/// Returns only on failure.
pub fn reseal(scratch: &Path) -> Error {
    match sealed_copy(scratch) {
        Ok(exe) => reexec(&exe),
        Err(e) => e,
    }
}

/// Returns once the current process runs from a read-only copy of its
/// binary, re-executing it (same arguments and environment) when it does
/// not. `scratch` is a directory of the runtime's own (its state root):
/// an empty directory is made there for the overlay's second layer while
/// the overlay is made.
/// Call it before anything that cannot be done twice.
/// `immutable_ok`: an immutable binary counts as sealed (the command line,
/// which checks each task with [`needs_seal`]); a long-lived server, whose
/// later tasks may hold CAP_LINUX_IMMUTABLE, re-executes anyway.
pub fn ensure_sealed(scratch: &Path, immutable_ok: bool) -> Result<Seal> {
    let retried = std::env::var_os(MARKER).is_some();
    if let Some(seal) = current_seal().filter(|s| immutable_ok || *s != Seal::Immutable) {
        if retried {
            // Single-threaded here: nothing else reads the environment.
            std::env::remove_var(MARKER);
        }
        return Ok(seal);
    }
    if retried {
        return Err(Error::InvalidArgument(format!(
            "the runtime re-executed itself from a sealed copy of its binary, yet /proc/self/exe \
             is still writable; refusing to start a task (CVE-2019-5736). Install the binary on \
             a read-only filesystem, or unset {MARKER}"
        )));
    }
    Err(reseal(scratch))
}

/// A read-only overlay of the binary, or where overlayfs cannot be
/// mounted, a sealed memfd copy.
fn sealed_copy(scratch: &Path) -> Result<OwnedFd> {
    overlay_copy(scratch).or_else(|overlay| {
        memfd_copy().map_err(|e| {
            Error::sys(
                format!(
                    "sealing the runtime's binary against CVE-2019-5736 (a read-only overlay: \
                     {overlay}; a sealed memfd copy)"
                ),
                e,
            )
        })
    })
}

/// The binary through a read-only overlayfs made with the new mount API:
/// a detached mount (in no namespace, nothing to clean up) whose layers
/// are the binary's directory and an empty one. Zero-copy.
fn overlay_copy(scratch: &Path) -> io::Result<OwnedFd> {
    let target = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(io::Error::other(format!("exe {}", target.display())));
    };
    if !dir.is_absolute() || !target.exists() {
        // " (deleted)": the binary was replaced while this process ran.
        return Err(io::Error::other(format!("exe {}", target.display())));
    }
    // The empty layer is only needed while the overlay is made: removed
    // right after (the overlay holds what it needs), leaving nothing behind.
    let empty = scratch.join(format!(".seal-{}", std::process::id()));
    crate::container::private_dir_all(&empty)?;
    let r = overlay_mount(dir, name, &empty);
    let _ = std::fs::remove_dir(&empty);
    r
}

fn overlay_mount(dir: &Path, name: &std::ffi::OsStr, empty: &Path) -> io::Result<OwnedFd> {
    let escape = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
    };
    let lower = format!("{}:{}", escape(dir), escape(empty));

    use super::at::{fsconfig, FSCONFIG_CMD_CREATE, FSCONFIG_SET_STRING};
    let ctx = super::at::fsopen("overlay")?;
    fsconfig(ctx.as_fd(), FSCONFIG_SET_STRING, "lowerdir", Some(&lower))?;
    // Spurious kernel log lines otherwise, when the layers' filesystems differ.
    let _ = fsconfig(ctx.as_fd(), FSCONFIG_SET_STRING, "xino", Some("off"));
    fsconfig(ctx.as_fd(), FSCONFIG_CMD_CREATE, "", None)?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mnt = super::at::fsmount(ctx.as_fd(), ro)?;
    super::at::open_child(mnt.as_fd(), name, 0)
}

/// A sealed in-memory copy of the binary (no write, grow or shrink, ever).
fn memfd_copy() -> io::Result<OwnedFd> {
    let fd = super::memfd(c"isoexec", libc::MFD_ALLOW_SEALING)?;
    let mut src = File::open("/proc/self/exe")?;
    let mut dst = File::from(fd.try_clone()?);
    io::copy(&mut src, &mut dst)?;
    drop(dst);
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, MEMFD_SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// execveat(2) of `exe` with this process's arguments and environment.
/// Returns only on failure.
fn reexec(exe: &OwnedFd) -> Error {
    let cstr = |s: OsString| CString::new(s.as_bytes()).ok();
    let argv: Vec<CString> = std::env::args_os().filter_map(cstr).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(kv)
        })
        .collect();
    match CString::new(format!("{MARKER}=1")) {
        Ok(m) => envp.push(m),
        Err(_) => return Error::InvalidArgument(MARKER.into()),
    }
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of live C strings; returns only on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Error::sys(
        "re-executing the runtime from its sealed copy (CVE-2019-5736)",
        io::Error::last_os_error(),
    )
}
