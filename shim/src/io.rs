//! The shim's own log (the bundle's `log` fifo, which containerd reads) and
//! the standard IO of the processes it starts: containerd's fifos, `file://`
//! paths, or nothing; and a terminal's pty relayed to the fifos.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;

static LOG: Mutex<Option<File>> = Mutex::new(None);

/// Opens the bundle's `log` fifo (containerd reads it into its own log).
pub fn open_log(bundle: &Path) {
    let f = open(
        &bundle.join("log").to_string_lossy(),
        false,
        true,
        libc::O_NONBLOCK,
    )
    .ok();
    if let Ok(mut l) = LOG.lock() {
        *l = f;
    }
}

pub fn log(msg: &str) {
    if let Ok(mut l) = LOG.lock() {
        if let Some(f) = l.as_mut() {
            let _ = writeln!(
                f,
                "time=\"{}\" level=info msg=\"{}\" runtime=io.containerd.isoexec.v1",
                runtime::container::rfc3339_now(),
                msg.replace('"', "'")
            );
        }
    }
}

/// A process's standard IO: the descriptors it gets, and what the shim
/// holds while it runs. Dropped when the process exits, so containerd sees
/// the end of its output.
pub struct ProcessIo {
    /// stdin, stdout, stderr for the process.
    child: [OwnedFd; 3],
    /// Read sides of the output fifos: a process never gets EPIPE when
    /// containerd's reader goes away.
    _keep: Vec<File>,
    /// Relays the stdin fifo into the process's stdin pipe until the
    /// client's writer closes (then the process sees the end of its input)
    /// or CloseIO ends it. The fifo is not the process's own stdin: a
    /// reader of a fifo that no writer has opened yet would see its end.
    stdin_pump: Option<tokio::task::JoinHandle<()>>,
    /// CloseIO: the relay passes on what the fifo holds, then ends.
    stdin_close: Option<tokio::sync::oneshot::Sender<()>>,
    /// The stdin fifo's read side, also the pump's.
    stdin_fifo: Option<Fifo>,
}

type Fifo = std::sync::Arc<AsyncFd<OwnedFd>>;

impl Drop for ProcessIo {
    fn drop(&mut self) {
        if let Some(p) = self.stdin_pump.take() {
            p.abort();
        }
        // Output still in a fifo that containerd's reader has not opened
        // yet (ctr opens its ends late under load) would be discarded with
        // the last descriptor: keep the fifos open until a reader has taken
        // it all, for at most OUTPUT_GRACE, then close (the reader's EOF).
        let keep = std::mem::take(&mut self._keep);
        let stdin = self.stdin_fifo.take();
        if keep.iter().all(|f| unread(f) == 0) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(linger(keep, stdin));
        }
    }
}

/// Holds the fifos `keep` open until their reader has taken what is in
/// them, for at most OUTPUT_GRACE; then closes them (the reader's EOF).
/// The stdin fifo stays open as long: its writer would see EPIPE, and
/// containerd's CRI then closes the output it has not read yet.
async fn linger(keep: Vec<File>, stdin: Option<Fifo>) {
    let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
    while keep.iter().any(|f| unread(f) > 0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop((keep, stdin));
}

/// How long an exited terminal's output may take to reach the shim: until
/// every holder of the pty's slave side has closed it (the master then
/// reads its end), so a background process that keeps it open delays the
/// exit by this much at most.
const TERMINAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an exited process's unread output waits for its reader.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes waiting in a fifo (FIONREAD).
fn unread(f: &File) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) } != 0 {
        return 0;
    }
    n
}

/// Opens `path` close-on-exec, with `flags` added (O_NONBLOCK, ...).
fn open(path: &str, read: bool, write: bool, flags: i32) -> std::io::Result<File> {
    OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(libc::O_CLOEXEC | flags)
        .open(path)
}

fn dev_null(write: bool) -> std::io::Result<File> {
    open("/dev/null", !write, write, 0)
}

/// An output: a fifo path, `file:///path`, or empty for /dev/null.
fn open_output(uri: &str, keep: &mut Vec<File>) -> std::io::Result<File> {
    if uri.is_empty() {
        return dev_null(true);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        if let Some(parent) = Path::new(path).parent() {
            std::fs::create_dir_all(parent)?;
        }
        return OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path);
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    // O_RDWR never blocks on a fifo; it is also the read side we keep.
    let rw = open(path, true, true, 0)?;
    let w = open(path, false, true, 0)?;
    keep.push(rw);
    Ok(w)
}

/// containerd's binary log driver: the binary gets the process's stdout and
/// stderr as descriptors 3 and 4 and closes descriptor 5 when it is ready;
/// the URI's query parameters are its arguments. Returns the write sides.
fn start_logger(uri: &str, id: &str, namespace: &str) -> std::io::Result<(File, File)> {
    use std::os::unix::process::CommandExt;
    let rest = uri.trim_start_matches("binary://");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(k.to_string());
        if !v.is_empty() {
            args.push(v.to_string());
        }
    }
    let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(path);
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec the child only calls dup2.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("log driver {path}: {e}")))?;
    drop((out_r, err_r, ready_w));
    // Ready when the driver closes (or writes to) descriptor 5.
    let mut b = [0u8; 1];
    let _ = nix::unistd::read(&ready_r, &mut b);
    Ok((File::from(out_w), File::from(err_w)))
}

impl ProcessIo {
    /// Opens a process's IO; `id`/`namespace` name it to a binary log driver.
    pub fn open(
        stdin: &str,
        stdout: &str,
        stderr: &str,
        id: &str,
        namespace: &str,
    ) -> std::io::Result<Self> {
        let mut keep = Vec::new();
        let mut stdin_fifo = None;
        let mut stdin_close = None;
        let (stdin_child, stdin_pump) = if stdin.is_empty() {
            (OwnedFd::from(dev_null(false)?), None)
        } else {
            // Read-only and non-blocking: the open never waits, and the
            // kernel reports no end before a writer has come and gone.
            let fifo = open(stdin, true, false, libc::O_NONBLOCK)?;
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
            set_nonblocking(&w)?;
            let from = std::sync::Arc::new(async_fd(OwnedFd::from(fifo))?);
            let to = std::sync::Arc::new(async_fd(w)?);
            stdin_fifo = Some(from.clone());
            let (close, closed) = tokio::sync::oneshot::channel();
            stdin_close = Some(close);
            (r, Some(tokio::spawn(pump(from, to, Some(closed)))))
        };
        let (out, err) = if stdout.starts_with("binary://") {
            start_logger(stdout, id, namespace)?
        } else {
            let out = open_output(stdout, &mut keep)?;
            let err = if stderr.is_empty() && stdout.is_empty() {
                dev_null(true)?
            } else {
                open_output(stderr, &mut keep)?
            };
            (out, err)
        };
        Ok(ProcessIo {
            child: [stdin_child, out.into(), err.into()],
            _keep: keep,
            stdin_pump,
            stdin_close,
            stdin_fifo,
        })
    }

    /// Pipes: the process's ends, and the caller's (stdin's write side,
    /// stdout's and stderr's read sides).
    pub fn pipes() -> std::io::Result<(Self, File, File, File)> {
        let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
        };
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let io = ProcessIo {
            child: [in_r, out_w, err_w],
            _keep: Vec::new(),
            stdin_pump: None,
            stdin_close: None,
            stdin_fifo: None,
        };
        Ok((io, File::from(in_w), File::from(out_r), File::from(err_r)))
    }

    pub fn child_fds(&self) -> [RawFd; 3] {
        [
            self.child[0].as_raw_fd(),
            self.child[1].as_raw_fd(),
            self.child[2].as_raw_fd(),
        ]
    }

    /// CloseIO: the process gets what the client wrote before it asked,
    /// then the end of its input. ctr asks as soon as its own stdin ends,
    /// maybe before the relay has read the last of it from the fifo (or
    /// before the process starts): stopping the relay there lost that input.
    pub fn close_stdin(&mut self) {
        if let Some(close) = self.stdin_close.take() {
            let _ = close.send(());
        }
    }
}

/// A terminal: the pty master, relayed to the stdout fifo and from the
/// stdin fifo by two tasks. Dropping it stops them; `drain` lets the output
/// reach the fifo first.
pub struct Console {
    pub master: std::sync::Arc<AsyncFd<OwnedFd>>,
    output: Option<tokio::task::JoinHandle<()>>,
    input: Option<tokio::task::JoinHandle<()>>,
    /// The stdin fifo's read side, also the input relay's.
    stdin_fifo: Option<Fifo>,
    stdin_writer: Option<File>,
    /// The stdout fifo, held until its reader has what the relay wrote.
    stdout: Option<File>,
}

impl Drop for Console {
    fn drop(&mut self) {
        for t in [&self.output, &self.input].into_iter().flatten() {
            t.abort();
        }
    }
}

/// Registers a descriptor the AsyncFd owns: it is deregistered before the
/// descriptor closes, when the AsyncFd drops.
fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open while registered.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into())
}

/// Sets O_NONBLOCK on `fd` (a pipe, fifo or pty for the reactor).
pub fn set_nonblocking(fd: impl std::os::fd::AsFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Sets the window size of the terminal whose master is `fd`.
pub fn resize(fd: impl std::os::fd::AsFd, width: u32, height: u32) {
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty master with a valid winsize.
    unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Relays `from` to `to` until `from` ends. Once `closed` fires, what
/// `from` holds then is relayed and the relay ends: the writer had written
/// it before it closed.
async fn pump(from: Fifo, to: Fifo, closed: Option<tokio::sync::oneshot::Receiver<()>>) {
    let closed = async move {
        match closed {
            Some(c) => {
                let _ = c.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(closed);
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::select! {
            n = read_some(&from, &mut buf) => n,
            () = &mut closed => return drain_into(&from, &to, &mut buf).await,
        };
        let Some(n) = n else {
            return;
        };
        if !write_all(&to, &buf[..n]).await {
            return;
        }
    }
}

/// Relays what `from` holds now (up to its first EAGAIN or end) to `to`.
async fn drain_into(from: &Fifo, to: &Fifo, buf: &mut [u8]) {
    while let Ok(n @ 1..) = nix::unistd::read(from.get_ref(), buf) {
        if !write_all(to, &buf[..n]).await {
            return;
        }
    }
}

/// One read of `from` when it is readable; None at its end or an error.
async fn read_some(from: &Fifo, buf: &mut [u8]) -> Option<usize> {
    loop {
        let mut g = from.readable().await.ok()?;
        match g.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from)) {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => return Some(n),
            Err(_would_block) => continue,
        }
    }
}

/// Writes all of `data` to `to`; false if `to` failed.
async fn write_all(to: &Fifo, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let Ok(mut g) = to.writable().await else {
            return false;
        };
        match g.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)) {
            Ok(Ok(w)) => data = &data[w..],
            Ok(Err(_)) => return false,
            Err(_would_block) => continue,
        }
    }
    true
}

impl Console {
    /// Relays `master` to the `stdout` fifo and from the `stdin` fifo.
    pub fn relay(master: OwnedFd, stdin: &str, stdout: &str) -> std::io::Result<Console> {
        set_nonblocking(&master)?;
        let master = std::sync::Arc::new(async_fd(master)?);
        let mut console = Console {
            master,
            output: None,
            input: None,
            stdin_fifo: None,
            stdin_writer: None,
            stdout: None,
        };
        if !stdout.is_empty() {
            let out = open(
                stdout.strip_prefix("fifo://").unwrap_or(stdout),
                true,
                true,
                libc::O_NONBLOCK,
            )?;
            console.stdout = Some(out.try_clone()?);
            let out = std::sync::Arc::new(async_fd(OwnedFd::from(out))?);
            console.output = Some(tokio::spawn(pump(console.master.clone(), out, None)));
        }
        if !stdin.is_empty() {
            let w = open(stdin, true, true, 0)?;
            let r = open(stdin, true, false, libc::O_NONBLOCK)?;
            let r = std::sync::Arc::new(async_fd(OwnedFd::from(r))?);
            console.stdin_fifo = Some(r.clone());
            console.input = Some(tokio::spawn(pump(r, console.master.clone(), None)));
            console.stdin_writer = Some(w);
        }
        Ok(console)
    }

    /// After the process's exit: lets the output relay run until the
    /// terminal's end (everything the process wrote), for at most
    /// TERMINAL_DRAIN, then stops the input; keeps the stdout fifo (and the
    /// stdin one) open until the reader has it all, as `ProcessIo` does.
    pub async fn drain(mut self) {
        if let Some(t) = self.output.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(TERMINAL_DRAIN, t).await.is_err() {
                abort.abort();
            }
        }
        if let Some(t) = self.input.take() {
            t.abort();
        }
        self.stdin_writer = None;
        let stdin = self.stdin_fifo.take();
        if let Some(out) = self.stdout.take() {
            if unread(&out) > 0 {
                tokio::spawn(linger(vec![out], stdin));
            }
        }
    }

    pub fn resize(&self, width: u32, height: u32) {
        resize(self.master.get_ref(), width, height);
    }

    pub fn close_stdin(&mut self) {
        self.stdin_writer = None;
        self.stdin_fifo = None;
    }
}
