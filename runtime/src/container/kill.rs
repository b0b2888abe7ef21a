//! `kill`: a signal to the init, or with `all` to every process of the
//! container.

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::{Container, Status};
use crate::error::{Error, Result};

pub fn kill(c: &Container, signal: Signal, all: bool) -> Result<()> {
    let status = c.status();
    if status == Status::Stopped || status == Status::Creating {
        return Err(c.wrong_state(status, "container not running"));
    }
    let pids = if all {
        c.cgroup().procs()
    } else {
        vec![c.state.pid]
    };
    for pid in pids {
        match send(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(Error::sys(format!("kill {signal} to pid {pid}"), e)),
        }
    }
    // A paused container would hold the signal until resumed; SIGKILL must
    // act now, as it does for runc.
    if signal == Signal::SIGKILL && status == Status::Paused {
        let _ = c.cgroup().thaw();
    }
    Ok(())
}

/// Parses a signal as runc does: `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || {
        Error::InvalidArgument(format!(
            "unknown signal {s:?} (use a name like TERM or SIGKILL, or a number)"
        ))
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_forms() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        let e = parse_signal("NOPE").unwrap_err().to_string();
        assert!(e.contains("unknown signal \"NOPE\""), "{e}");
        assert!(parse_signal("999").is_err());
    }
}
