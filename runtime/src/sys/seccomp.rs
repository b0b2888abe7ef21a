//! Compiles a [`SeccompPlan`] with libseccomp and loads it.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use crate::error::{Error, Result};
use crate::seccomp::{Action, CmpOp, SeccompPlan};

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

/// Builds the filter (not loaded yet). Syscall names this libseccomp does
/// not know are skipped, as runc does: a profile may list syscalls of newer
/// kernels.
pub fn compile(p: &SeccompPlan) -> Result<ScmpFilterContext> {
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

pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(|e| seccomp_err("loading the filter", e))
}
