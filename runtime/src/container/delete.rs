//! `delete`: removes a container: its processes (with `force`, or when it
//! never started), its cgroup and its state directory; then its poststop
//! hooks run. Mounts need no clean-up: they lived in the container's mount
//! namespace.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Container, Status};
use crate::error::{Context, Result};

/// Deletes the container, then runs its poststop hooks: what they said
/// when they failed comes back as warnings.
pub fn delete(c: &Container, force: bool) -> Result<Vec<String>> {
    let status = c.status();
    match status {
        Status::Stopped => {}
        // A created container has run nothing of the user's: runc deletes it too.
        Status::Created => kill_init(c)?,
        // Its create died before the init was known (no pid to signal):
        // whatever it started is in its cgroup, which destroy empties.
        Status::Creating if force => {}
        _ if force => kill_init(c)?,
        s => return Err(c.wrong_state(s, "stop it first or use delete --force")),
    }
    crate::debug::phase("delete: cgroup");
    c.cgroup().destroy()?;
    crate::debug::phase("delete: state");
    // Re-read: another task on the same root may have handed us what it
    // created since `c` was loaded (a long-lived caller keeps it loaded).
    // Only a task with a root assembly is handed anything.
    let fresh = c
        .state
        .chroot
        .as_ref()
        .and(c.dir.parent())
        .and_then(|root| Container::load(root, c.id()).ok());
    let c = fresh.as_ref().unwrap_or(c);
    if let Some(p) = &c.state.chroot {
        release_root(c, p);
    }
    std::fs::remove_dir_all(&c.dir).ctx(|| format!("removing {}", c.dir.display()))?;
    if let (Some(sandbox), Some(root)) = (&c.state.sandbox, c.dir.parent()) {
        release_sandbox(root, sandbox);
    }
    if let (Some(slot), Some(root)) = (
        c.state.userns.as_ref().and_then(|u| u.pool_slot),
        c.dir.parent(),
    ) {
        let holder = super::userns::holder(c.id(), c.state.sandbox.as_deref());
        super::userns::release(root, slot, &holder, Some(c.id()));
    }
    if c.state.hooks.poststop.is_empty() {
        // No state document to make for no hook.
        return Ok(Vec::new());
    }
    Ok(crate::sys::hooks::run_all_warn(
        &c.state.hooks.poststop,
        &c.hook_state(Status::Stopped),
    ))
}

/// What the task created in its root goes with the last task using that
/// root: another task on the same directory still has its mounts standing
/// on those directories, so it inherits them.
fn release_root(c: &Container, p: &crate::sys::chroot::Prepared) {
    let heir = c.dir.parent().and_then(|root| {
        super::list(root).ok()?.into_iter().find_map(|(id, other)| {
            let other = other?;
            (id != c.state.id
                && other.state.rootfs == c.state.rootfs
                && other.state.chroot.is_some()
                && other.status() != Status::Stopped)
                .then_some(other)
        })
    });
    match heir {
        Some(mut other) => {
            if let Some(theirs) = other.state.chroot.as_mut() {
                // Ours were made first: they are removed after theirs.
                let mut created = p.created.clone();
                created.retain(|x| !theirs.created.contains(x));
                created.append(&mut theirs.created);
                theirs.created = created;
                theirs.created_root |= p.created_root;
            }
            if other.save().is_err() {
                crate::sys::chroot::undo(&c.state.rootfs, p);
            }
        }
        None => crate::sys::chroot::undo(&c.state.rootfs, p),
    }
}

/// Removes a sandbox's shared directory (`/alloc`) once no task of the
/// sandbox is left in the state root, and `.sandboxes` once it is empty.
/// Under the root's lock: a task of the sandbox being created registers
/// itself and makes the directory under the same lock, so the directory
/// is never removed under it.
pub fn release_sandbox(root: &Path, sandbox: &str) {
    let Ok(_lock) = super::lock_root(root) else {
        return;
    };
    let in_use = super::list(root)
        .unwrap_or_default()
        .iter()
        .any(|(_, other)| {
            other
                .as_ref()
                .is_some_and(|o| o.state.sandbox.as_deref() == Some(sandbox))
        });
    if !in_use {
        let dir = crate::driver::sandbox_dir(root, sandbox);
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent); // only when empty
        }
    }
}

fn kill_init(c: &Container) -> Result<()> {
    let _ = nix::sys::signal::kill(c.pid(), Signal::SIGKILL);
    let _ = c.cgroup().thaw();
    wait_gone(c, Duration::from_secs(10));
    Ok(())
}

/// Waits until the init has exited (it may not be our child, so no waitpid:
/// a pidfd becomes readable when the process exits).
pub(crate) fn wait_gone(c: &Container, timeout: Duration) {
    if let Some(fd) = crate::sys::pidfd(c.state.pid) {
        if c.init_alive() {
            let mut p = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = timeout.as_millis().min(u16::MAX as u128) as u16;
            let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::from(ms));
        }
        return;
    }
    let deadline = std::time::Instant::now() + timeout;
    while c.init_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}
