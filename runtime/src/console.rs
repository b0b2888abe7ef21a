//! Terminals and waiting in the foreground: receiving a container's pty
//! master over a console socket, and relaying it to the caller's own
//! terminal (`run`/`exec -t` without `--console-socket`), with signals
//! passed on to the container.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};

/// Signals a foreground `run`/`exec` passes on to the container.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// A console socket isoexec listens on itself (a foreground terminal, the
/// shim's relayed ones). Its file is removed when it is dropped.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds one in the temp directory, named by this process and `tag`;
    /// short, since a unix socket's path is limited to 108 bytes.
    pub fn temporary(tag: &str) -> Result<Self> {
        let dir = std::env::temp_dir();
        let mut path = dir.join(format!("isoexec-console-{}-{tag}.sock", std::process::id()));
        if path.as_os_str().len() > 100 {
            path = dir.join(format!("isoexec-console-{}.sock", std::process::id()));
        }
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).ctx(|| format!("console socket {}", path.display()))?;
        Ok(ConsoleSocket { listener, path })
    }

    /// Where to point `--console-socket` (CreateOptions::console_socket).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container sent (the connection was made by
    /// `create`/`exec` and is already queued).
    pub fn receive(&self) -> Result<OwnedFd> {
        let (conn, _) = self
            .listener
            .accept()
            .ctx(|| "console socket accept".into())?;
        receive_fd(conn.as_fd())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The terminal of a foreground `run`/`exec -t`: a connected socket pair
/// instead of a listening socket file, so nothing is made on disk when the
/// container has no terminal (the common case) and nothing is left if the
/// caller dies. The init is given [`ForegroundConsole::fd`] as its console
/// connection (`CreateOptions::console_fd`).
pub struct ForegroundConsole {
    ours: OwnedFd,
    theirs: OwnedFd,
}

impl ForegroundConsole {
    pub fn new() -> Result<Self> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair for the terminal".into())?;
        Ok(ForegroundConsole { ours, theirs })
    }

    /// The end the container's process sends its pty master on.
    pub fn fd(&self) -> RawFd {
        self.theirs.as_raw_fd()
    }

    /// The pty master the container sent; an error, not a hang, when it
    /// sent none (its end is closed here first).
    pub fn receive(self) -> Result<OwnedFd> {
        drop(self.theirs);
        receive_fd(self.ours.as_fd())
    }
}

/// A connection of our own to the socket `fd` (a [`ForegroundConsole`]'s
/// end), for the child that sends the terminal.
pub(crate) fn connection(fd: RawFd) -> Result<std::os::unix::net::UnixStream> {
    // SAFETY: the caller's descriptor stays open for this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let own = borrowed
        .try_clone_to_owned()
        .ctx(|| "the terminal's socket".into())?;
    Ok(own.into())
}

/// Receives one descriptor sent with SCM_RIGHTS.
pub fn receive_fd(sock: BorrowedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receiving the terminal".into())?;
    for c in msg.cmsgs().ctx(|| "receiving the terminal".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Init("the container sent no terminal".into()))
}

/// The exit status of a wait: the code, or 128 + signal.
fn exit_code(s: WaitStatus) -> Option<u8> {
    match s {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.wrapping_add(sig as u8)),
        _ => None,
    }
}

fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block().ctx(|| "sigprocmask".into())?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd".into())
}

/// Waits for our child `pid`, passing on the signals sent to this process;
/// returns its exit status (128 + signal when killed). With `tty`, relays
/// the pty master to stdin/stdout until the child exits.
pub fn wait_foreground(pid: Pid, tty: Option<OwnedFd>) -> Result<u8> {
    let sfd = block_signals()?;
    let _raw = tty.as_ref().and_then(|_| RawMode::enter());
    if let Some(m) = &tty {
        copy_window_size(m.as_fd());
    }
    let stdin = std::io::stdin();
    let mut stdin_open = tty.is_some();
    let mut buf = [0u8; 8192];
    loop {
        if let Ok(s) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            if let Some(code) = exit_code(s) {
                if let Some(m) = &tty {
                    drain(m.as_fd(), &mut buf);
                }
                return Ok(code);
            }
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &tty {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.ctx(|| "poll".into())?,
        };
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        drop(fds);
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => {
                        if let Some(m) = &tty {
                            copy_window_size(m.as_fd());
                        }
                    }
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(m) = &tty {
            if master_ready {
                match nix::unistd::read(m, &mut buf) {
                    Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n]),
                    // EIO: every holder of the pty's other end is gone.
                    _ => {}
                }
            }
            if stdin_ready {
                match nix::unistd::read(&stdin, &mut buf) {
                    Ok(n) if n > 0 => write_all(m.as_fd(), &buf[..n]),
                    _ => {
                        stdin_open = false;
                        // End of input: send the terminal's EOF character.
                        write_all(m.as_fd(), &[4]);
                    }
                }
            }
        }
    }
}

/// Whatever the container wrote before it exited.
fn drain(master: BorrowedFd, buf: &mut [u8]) {
    loop {
        let mut p = [PollFd::new(master, PollFlags::POLLIN)];
        if !matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n]),
            _ => return,
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Gives the container's terminal the size of ours.
fn copy_window_size(master: BorrowedFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Our terminal in raw mode while a container's terminal is relayed,
/// restored on drop. None when standard input is not a terminal.
pub struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    pub fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}
