//! Sandboxes on disk: their records, and the network namespace a GROUP
//! sandbox's tasks share (a bind-mounted nsfs file, as `ip netns add`
//! makes, with loopback up).

use std::path::{Path, PathBuf};

use prost::Message;

use crate::api::{Sandbox, Task};

/// The daemon's state directory and what lives in it.
#[derive(Clone, Debug)]
pub struct Layout {
    pub state: PathBuf,
}

impl Layout {
    /// The engine's state root for the daemon's tasks.
    pub fn engine_root(&self) -> PathBuf {
        self.state.join("tasks")
    }

    pub fn sandboxes(&self) -> PathBuf {
        self.state.join("sandboxes")
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }

    pub fn netns(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join("netns")
    }

    /// A task's bundle: config.json, rootfs/ (its task directory) and its
    /// record.
    pub fn bundle(&self, sandbox: &str, name: &str) -> PathBuf {
        self.sandbox_dir(sandbox).join("tasks").join(name)
    }
}

// Records are written atomically (a crash leaves the old or the new), 0600.
use runtime::container::write_private as write_atomic;

pub fn save_sandbox(l: &Layout, s: &Sandbox) -> std::io::Result<()> {
    write_atomic(&l.sandbox_dir(&s.id).join("sandbox.pb"), &s.encode_to_vec())
}

pub fn save_task(l: &Layout, t: &Task) -> std::io::Result<()> {
    write_atomic(
        &l.bundle(&t.sandbox_id, &t.name).join("task.pb"),
        &t.encode_to_vec(),
    )
}

/// The sandboxes and tasks recorded in the state directory.
pub fn load_all(l: &Layout) -> (Vec<Sandbox>, Vec<Task>) {
    let (mut sandboxes, mut tasks) = (Vec::new(), Vec::new());
    let Ok(dirs) = std::fs::read_dir(l.sandboxes()) else {
        return (sandboxes, tasks);
    };
    for d in dirs.flatten() {
        let Some(s) = std::fs::read(d.path().join("sandbox.pb"))
            .ok()
            .and_then(|b| Sandbox::decode(b.as_slice()).ok())
        else {
            continue;
        };
        if let Ok(ts) = std::fs::read_dir(d.path().join("tasks")) {
            for t in ts.flatten() {
                if let Some(t) = std::fs::read(t.path().join("task.pb"))
                    .ok()
                    .and_then(|b| Task::decode(b.as_slice()).ok())
                {
                    tasks.push(t);
                }
            }
        }
        sandboxes.push(s);
    }
    (sandboxes, tasks)
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket for the interface ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours.
    let _fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS with a valid ifreq naming "lo".
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Creates a network namespace with loopback up and binds it at `path`.
/// A short-lived thread does it (setns and unshare are per thread); it is
/// joined before returning, so no thread outlives the call.
pub fn create_netns(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path)?;
    let target = path.to_path_buf();
    let r = std::thread::spawn(move || -> std::io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        loopback_up()?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread panicked")));
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unmounts and removes a network namespace made by `create_netns`.
pub fn remove_netns(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}
