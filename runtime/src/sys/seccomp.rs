//! Compiles a [`SeccompPlan`] with libseccomp into a BPF program, and
//! loads that program with one system call: the last before execve, so a
//! profile need allow nothing of the runtime's own.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use crate::error::{Error, Result};
use crate::seccomp::{Action, CmpOp, SeccompPlan};

/// Debian's static libseccomp is built against glibc with _FORTIFY_SOURCE,
/// and its PFC text export (`seccomp_export_pfc`, which isoexec never
/// calls) prints with glibc's fortified `__fprintf_chk`; musl has none. In
/// a musl build this stands in for it and prints nothing.
#[cfg(target_env = "musl")]
#[no_mangle]
pub extern "C" fn __fprintf_chk(
    _stream: *mut libc::c_void,
    _flag: libc::c_int,
    _format: *const libc::c_char,
) -> libc::c_int {
    -1
}

fn action(a: Action) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Errno(e) => ScmpAction::Errno(e as i32),
        Action::Trace(e) => ScmpAction::Trace(e as u16),
        Action::Log => ScmpAction::Log,
        Action::Allow => ScmpAction::Allow,
    }
}

fn seccomp_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Init(format!("seccomp: {what}: {e}"))
}

/// A compiled filter, ready to load.
pub struct Program {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

/// Compiles the plan to BPF (nothing is loaded).
pub fn program(p: &SeccompPlan) -> Result<Program> {
    use std::io::{Read, Seek};
    let ctx = compile(p)?;
    let fd =
        super::memfd(c"isoexec-seccomp", 0).map_err(|e| seccomp_err("memfd for the program", e))?;
    ctx.export_bpf(&fd)
        .map_err(|e| seccomp_err("exporting the program", e))?;
    let mut f = std::fs::File::from(fd);
    let mut raw = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut raw))
        .map_err(|e| seccomp_err("reading the program", e))?;
    let filter = raw
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect::<Vec<_>>();
    if filter.is_empty() || raw.len() % 8 != 0 {
        return Err(seccomp_err(
            "exporting the program",
            format!("{} bytes is not a BPF program", raw.len()),
        ));
    }
    // SECCOMP_FILTER_FLAG_LOG: actions other than allow are logged.
    let flags = if p.log { 2 } else { 0 };
    Ok(Program { filter, flags })
}

impl Program {
    /// Installs the filter on the calling thread: one seccomp(2) (prctl
    /// before Linux 3.17, which has no flags). Without no_new_privs the
    /// caller needs CAP_SYS_ADMIN.
    pub fn load(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at a live filter for the call's duration.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) || self.flags != 0 {
            return Err(e);
        }
        // SAFETY: as above.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Builds the filter (not loaded yet). Syscall names this libseccomp does
/// not know are skipped, as runc does: a profile may list syscalls of newer
/// kernels.
fn compile(p: &SeccompPlan) -> Result<ScmpFilterContext> {
    let mut ctx =
        ScmpFilterContext::new(action(p.default)).map_err(|e| seccomp_err("new filter", e))?;
    for a in &p.architectures {
        let arch =
            ScmpArch::from_str(a).map_err(|e| seccomp_err(&format!("architecture {a}"), e))?;
        ctx.add_arch(arch)
            .map_err(|e| seccomp_err(&format!("architecture {a}"), e))?;
    }
    // isoexec sets no_new_privs itself when the spec asks; the filter must
    // not force it.
    ctx.set_ctl_nnp(false)
        .map_err(|e| seccomp_err("nnp attribute", e))?;
    // A binary tree of the syscalls instead of a list: a profile of a few
    // hundred rules (Docker's) costs each syscall a handful of comparisons,
    // not hundreds. libseccomp before 2.5 has no such option: a list then.
    if p.rules.len() > 16 {
        let _ = ctx.set_ctl_optimize(2);
    }
    if p.log {
        ctx.set_ctl_log(true)
            .map_err(|e| seccomp_err("log flag", e))?;
    }
    for r in &p.rules {
        let Ok(sc) = ScmpSyscall::from_name(&r.syscall) else {
            continue;
        };
        let conds: Vec<ScmpArgCompare> = r
            .args
            .iter()
            .map(|a| {
                let op = match a.op {
                    CmpOp::Ne => ScmpCompareOp::NotEqual,
                    CmpOp::Lt => ScmpCompareOp::Less,
                    CmpOp::Le => ScmpCompareOp::LessOrEqual,
                    CmpOp::Eq => ScmpCompareOp::Equal,
                    CmpOp::Ge => ScmpCompareOp::GreaterEqual,
                    CmpOp::Gt => ScmpCompareOp::Greater,
                    CmpOp::MaskedEq => ScmpCompareOp::MaskedEqual(a.value),
                };
                let datum = if a.op == CmpOp::MaskedEq {
                    a.value_two
                } else {
                    a.value
                };
                ScmpArgCompare::new(a.index, op, datum)
            })
            .collect();
        ctx.add_rule_conditional(action(r.action), sc, &conds)
            .map_err(|e| seccomp_err(&format!("rule for {}", r.syscall), e))?;
    }
    Ok(ctx)
}
