//! `start`: lets a created container's init exec its process, with the
//! startContainer hooks (run by the init) before and the poststart hooks
//! after.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{Container, Status, EXEC_FIFO, HOOKS_FIFO};
use crate::error::{Context, Error, Result};

/// Starts the container; what the poststart hooks said when they failed
/// comes back as warnings.
pub fn start(c: &Container) -> Result<Vec<String>> {
    let status = c.status();
    if status != Status::Created {
        return Err(c.wrong_state(status, "only a created container can be started"));
    }
    let fifo = c.dir.join(EXEC_FIFO);
    // Opened before the init is let go: what it reports stays readable
    // even if it is gone by the time this reads.
    let report = if c.state.hooks.start_container.is_empty() {
        None
    } else {
        let p = c.dir.join(HOOKS_FIFO);
        Some(
            open(
                &p,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", p.display()))?,
        )
    };
    // Non-blocking: the init holds the fifo open, so this only fails (ENXIO)
    // when the init is gone.
    let fd = open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Error::Init(format!(
            "container \"{}\": its init is gone ({}); delete it",
            c.id(),
            std::io::Error::from(e)
        ))
    })?;
    nix::unistd::write(&fd, b"0").ctx(|| format!("writing {}", fifo.display()))?;
    drop(fd);
    std::fs::remove_file(&fifo).ctx(|| format!("removing {}", fifo.display()))?;
    if let Some(report) = report {
        let _ = std::fs::remove_file(c.dir.join(HOOKS_FIFO));
        let failure =
            read_to_eof(&report).ctx(|| "reading the startContainer hooks' report".into())?;
        if !failure.is_empty() {
            let text = String::from_utf8_lossy(&failure);
            let text = text.strip_prefix("hook ").unwrap_or(&text);
            return Err(Error::Hook(format!(
                "{text} (the container's process did not run)"
            )));
        }
    }
    if c.state.hooks.poststart.is_empty() {
        // No state document to make for no hook.
        return Ok(Vec::new());
    }
    Ok(crate::sys::hooks::run_all_warn(
        &c.state.hooks.poststart,
        &c.hook_state(Status::Running),
    ))
}

/// Everything written to a non-blocking fifo until its last writer closes.
fn read_to_eof(fd: &OwnedFd) -> nix::Result<Vec<u8>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}
