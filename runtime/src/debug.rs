//! `--debug`: timestamped lines on stderr marking each phase of an
//! operation, in the runtime and in the processes it starts. Off, it costs
//! one atomic load per phase.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

pub fn enable() {
    START.get_or_init(Instant::now);
    ON.store(true, Ordering::Relaxed);
}

/// Where a child records the step it is at, for its parent to read if it
/// dies (a page shared between them, see [`StepPage`]); null: nowhere.
static STEP: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// A page shared with the children forked after it is made: each records
/// there the phase it is at, so a parent whose child died during its
/// set-up can say at which step.
pub struct StepPage(*mut u8);

const STEP_LEN: usize = 4096;

impl StepPage {
    pub fn new() -> Option<StepPage> {
        // SAFETY: a fresh anonymous shared mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STEP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(StepPage(p.cast()))
    }

    /// In the child: record steps here from now on.
    pub fn record_here(&self) {
        STEP.store(self.0, Ordering::Relaxed);
    }

    /// The last step the child recorded (read once it is gone).
    pub fn last(&self) -> Option<String> {
        // SAFETY: the page is STEP_LEN bytes and lives as long as self; the
        // writer is dead, or a NUL ends what it wrote.
        let bytes = unsafe { std::slice::from_raw_parts(self.0, STEP_LEN) };
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(0);
        (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

impl Drop for StepPage {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made.
        unsafe { libc::munmap(self.0.cast(), STEP_LEN) };
    }
}

/// Records `what` as the current step (in a child with a [`StepPage`]), and
/// prints `isoexec[PID] +T ms: what` when debugging is on.
pub fn phase(what: &str) {
    let page = STEP.load(Ordering::Relaxed);
    if !page.is_null() {
        let n = what.len().min(STEP_LEN - 1);
        // SAFETY: the page holds STEP_LEN bytes; only this process writes.
        unsafe {
            std::ptr::copy_nonoverlapping(what.as_ptr(), page, n);
            *page.add(n) = 0;
        }
    }
    if ON.load(Ordering::Relaxed) {
        let t = START.get_or_init(Instant::now).elapsed();
        // Not eprintln!, which panics when stderr is gone (a closed pipe):
        // a trace line lost must not abort a create half-way.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "isoexec[{}] +{:.3} ms: {what}\n",
                std::process::id(),
                t.as_secs_f64() * 1e3
            ),
        );
    }
}
