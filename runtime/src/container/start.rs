//! `start`: lets a created container's init exec its process.

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{Container, Status, EXEC_FIFO};
use crate::error::{Context, Error, Result};

pub fn start(c: &Container) -> Result<()> {
    let status = c.status();
    if status != Status::Created {
        return Err(c.wrong_state(status, "only a created container can be started"));
    }
    let fifo = c.dir.join(EXEC_FIFO);
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
    std::fs::remove_file(&fifo).ctx(|| format!("removing {}", fifo.display()))
}
