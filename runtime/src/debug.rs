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

/// Prints `isoexec[PID] +T ms: what` when debugging is on.
pub fn phase(what: &str) {
    if ON.load(Ordering::Relaxed) {
        let t = START.get_or_init(Instant::now).elapsed();
        eprintln!(
            "isoexec[{}] +{:.3} ms: {what}",
            std::process::id(),
            t.as_secs_f64() * 1e3
        );
    }
}
