//! Runs OCI hooks: each with exactly its own argv and environment, the
//! state document on its standard input, its output kept for the error,
//! and killed when its timeout passes.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::hooks::HookPlan;

/// How much of a failed hook's output its error quotes.
const OUTPUT_QUOTED: usize = 4096;

/// Runs `hooks` in order with `state` on their standard input; the first
/// failure stops the rest and is the error.
pub fn run_all<'a>(hooks: impl IntoIterator<Item = &'a HookPlan>, state: &[u8]) -> Result<()> {
    for h in hooks {
        crate::debug::phase(&format!("hook {}", h.field));
        run(h, state)?;
    }
    Ok(())
}

/// Runs every hook of `hooks`, whatever fails: the failures, as warnings.
pub fn run_all_warn<'a>(
    hooks: impl IntoIterator<Item = &'a HookPlan>,
    state: &[u8],
) -> Vec<String> {
    hooks
        .into_iter()
        .filter_map(|h| run(h, state).err().map(|e| e.to_string()))
        .collect()
}

pub fn run(h: &HookPlan, state: &[u8]) -> Result<()> {
    let fail = |what: String| Error::Hook(format!("{} ({}): {what}", h.field, h.path.display()));
    let stdin =
        super::memfd(c"isoexec-hook-state", 0).map_err(|e| fail(format!("state file: {e}")))?;
    let mut stdin = std::fs::File::from(stdin);
    stdin
        .write_all(state)
        .and_then(|()| stdin.rewind())
        .map_err(|e| fail(format!("state file: {e}")))?;
    let out =
        super::memfd(c"isoexec-hook-output", 0).map_err(|e| fail(format!("output file: {e}")))?;
    let mut out = std::fs::File::from(out);
    let err = out
        .try_clone()
        .map_err(|e| fail(format!("output file: {e}")))?;

    let mut cmd = Command::new(&h.path);
    cmd.arg0(&h.args[0])
        .args(&h.args[1..])
        .env_clear()
        .envs(h.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(
            out.try_clone().map_err(|e| fail(e.to_string()))?,
        ))
        .stderr(Stdio::from(err));
    // SAFETY: only close_range (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Nothing of the runtime's (its sockets, a container's
            // descriptors) reaches the hook.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let limit = h.timeout.map(|s| Duration::from_secs(u64::from(s)));
    let status = match wait_within(&mut child, limit) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "did not finish within its timeout of {} s and was killed{}",
                h.timeout.unwrap_or(0),
                quoted(&mut out)
            )));
        }
        Err(e) => return Err(fail(format!("waiting for it: {e}"))),
    };
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("failed ({status})"),
    };
    Err(fail(format!("{how}{}", quoted(&mut out))))
}

/// The child's status, or `None` when `limit` passed first.
fn wait_within(
    child: &mut std::process::Child,
    limit: Option<Duration>,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let Some(limit) = limit else {
        return child.wait().map(Some);
    };
    let deadline = Instant::now() + limit;
    let pidfd = super::pidfd(child.id() as i32);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: one pollfd that lives across the call.
                unsafe { libc::poll(&mut p, 1, ms) };
            }
            // Before Linux 5.3: look again soon.
            None => std::thread::sleep(left.min(Duration::from_millis(5))),
        }
    }
}

/// `: OUTPUT` of what the hook wrote, or nothing when it wrote nothing.
fn quoted(out: &mut std::fs::File) -> String {
    let mut buf = Vec::new();
    let _ = out.rewind();
    let _ = out.take(OUTPUT_QUOTED as u64).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
