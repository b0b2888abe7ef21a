//! `linux.seccomp` as a validated [`SeccompPlan`] (pure); the filter is
//! compiled and loaded by `sys::seccomp`.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u32),
    Trace(u32),
    Log,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & value) == value_two`
    MaskedEq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgCmp {
    pub index: u32,
    pub op: CmpOp,
    pub value: u64,
    pub value_two: u64,
}

/// One syscall's rule: all of `args` must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub syscall: String,
    pub action: Action,
    pub args: Vec<ArgCmp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompPlan {
    pub default: Action,
    /// `SCMP_ARCH_*` names besides the native one.
    pub architectures: Vec<String>,
    pub rules: Vec<Rule>,
    /// SECCOMP_FILTER_FLAG_LOG.
    pub log: bool,
}

const EPERM: u32 = libc::EPERM as u32;

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<Action> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => Action::KillThread,
        A::ScmpActKillProcess => Action::KillProcess,
        A::ScmpActTrap => Action::Trap,
        A::ScmpActErrno => Action::Errno(errno.unwrap_or(EPERM)),
        A::ScmpActTrace => Action::Trace(errno.unwrap_or(EPERM)),
        A::ScmpActLog => Action::Log,
        A::ScmpActAllow => Action::Allow,
        A::ScmpActNotify => return Err(Error::invalid(
            field,
            "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which isoexec does not support",
        )),
    })
}

/// The OCI name of an enum value (`SCMP_ARCH_X86_64`, ...), through serde.
fn oci_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Validates and flattens `linux.seccomp`: one rule per syscall name,
/// rules with the default action dropped (libseccomp refuses them), and an
/// argument index given twice split into one rule per condition (as runc
/// does: OR instead of an impossible AND).
pub fn plan(s: &LinuxSeccomp) -> Result<SeccompPlan> {
    let field = "linux.seccomp";
    if s.listener_path().is_some() {
        return Err(Error::invalid(
            format!("{field}.listenerPath"),
            "seccomp agents are not supported",
        ));
    }
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        &format!("{field}.defaultAction"),
    )?;
    let architectures = s.architectures().iter().flatten().map(oci_name).collect();
    let mut log = false;
    for f in s.flags().iter().flatten() {
        match oci_name(f).as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => log = true,
            // SPEC_ALLOW and TSYNC change nothing for a single-threaded init.
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" | "SECCOMP_FILTER_FLAG_TSYNC" => {}
            other => {
                return Err(Error::invalid(
                    format!("{field}.flags"),
                    format!("unknown flag {other}"),
                ))
            }
        }
    }
    let mut rules = Vec::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let f = format!("{field}.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{f}.action"))?;
        let mut args = Vec::new();
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(Error::invalid(
                    format!("{f}.args[{j}].index"),
                    format!("{} is not an argument index (0 to 5)", a.index()),
                ));
            }
            use LinuxSeccompOperator as O;
            let op = match a.op() {
                O::ScmpCmpNe => CmpOp::Ne,
                O::ScmpCmpLt => CmpOp::Lt,
                O::ScmpCmpLe => CmpOp::Le,
                O::ScmpCmpEq => CmpOp::Eq,
                O::ScmpCmpGe => CmpOp::Ge,
                O::ScmpCmpGt => CmpOp::Gt,
                O::ScmpCmpMaskedEq => CmpOp::MaskedEq,
            };
            args.push(ArgCmp {
                index: a.index() as u32,
                op,
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            });
        }
        if act == default {
            continue;
        }
        let repeated = args
            .iter()
            .enumerate()
            .any(|(k, a)| args[..k].iter().any(|b| b.index == a.index));
        for name in sc.names() {
            if name.is_empty() {
                return Err(Error::invalid(format!("{f}.names"), "empty syscall name"));
            }
            if repeated {
                for a in &args {
                    rules.push(Rule {
                        syscall: name.clone(),
                        action: act,
                        args: vec![a.clone()],
                    });
                }
            } else {
                rules.push(Rule {
                    syscall: name.clone(),
                    action: act,
                    args: args.clone(),
                });
            }
        }
    }
    Ok(SeccompPlan {
        default,
        architectures,
        rules,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<SeccompPlan> {
        plan(&serde_json::from_value(v).expect("valid LinuxSeccomp"))
    }

    #[test]
    fn docker_style_profile() {
        let p = parse(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}
            ]
        }))
        .unwrap();
        assert_eq!(p.default, Action::Errno(1));
        assert_eq!(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        let names: Vec<_> = p
            .rules
            .iter()
            .map(|r| (r.syscall.as_str(), r.action))
            .collect();
        // mount's rule equals the default and is dropped.
        assert_eq!(
            names,
            [
                ("read", Action::Allow),
                ("write", Action::Allow),
                ("clone3", Action::Errno(38)),
                ("personality", Action::Allow)
            ]
        );
        assert_eq!(
            p.rules[3].args,
            [ArgCmp {
                index: 0,
                op: CmpOp::Eq,
                value: 0,
                value_two: 0
            }]
        );
    }

    #[test]
    fn repeated_index_becomes_separate_rules() {
        let p = parse(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}
            ]}]
        }))
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[1].args[0].value, 8);
    }

    #[test]
    fn masked_eq_keeps_both_values() {
        let p = parse(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ]}]
        }))
        .unwrap();
        assert_eq!(
            p.rules[0].args[0],
            ArgCmp {
                index: 0,
                op: CmpOp::MaskedEq,
                value: 2114060288,
                value_two: 0
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(json!({"defaultAction": "SCMP_ACT_NOTIFY"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.seccomp.defaultAction") && e.contains("SCMP_ACT_NOTIFY"),
            "{e}"
        );
        let e = parse(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}
        ]}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.syscalls[0].args[0].index"), "{e}");
        let e =
            parse(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}))
                .unwrap_err()
                .to_string();
        assert!(e.contains("listenerPath"), "{e}");
    }

    #[test]
    fn flags() {
        let p =
            parse(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}))
                .unwrap();
        assert!(p.log);
        assert_eq!(p.default, Action::Allow);
        assert!(p.rules.is_empty());
    }
}
