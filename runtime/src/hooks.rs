//! OCI hooks: the spec's `hooks` translated into what the runtime runs, and
//! the state document each hook reads on its standard input. Pure; the
//! running is [`crate::sys::hooks`].
//!
//! When each kind runs, and where (as runc and crun do), with the state's
//! status as crun gives it (and the OCI validation suite expects): created
//! for the hooks of create and for startContainer, running for poststart,
//! stopped for poststop.
//! - `prestart` (deprecated) and `createRuntime`: during create, after the
//!   container's namespaces and mounts exist, before its root is entered;
//!   by the runtime, in the runtime's namespaces.
//! - `createContainer`: right after them, by the container's init, in the
//!   container's mount namespace, before its root is entered.
//! - `startContainer`: during start, by the init, inside the container,
//!   before the user's process is executed.
//! - `poststart`: after the user's process started, before start returns;
//!   by the runtime. A failure is a warning.
//! - `poststop`: at delete, after the container is gone; by the runtime.
//!   A failure is a warning.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One hook to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlan {
    /// Where it came from, for messages: `hooks.prestart[0]`.
    pub field: String,
    pub path: PathBuf,
    /// argv, argv[0] included; `[path]` when the spec gives none.
    pub args: Vec<String>,
    /// The hook's whole environment (nothing of the runtime's).
    pub env: Vec<String>,
    /// Seconds; none: no limit.
    pub timeout: Option<u32>,
}

/// Every kind of hook, in the order the spec lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prestart: Vec<HookPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_runtime: Vec<HookPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_container: Vec<HookPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_container: Vec<HookPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<HookPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<HookPlan>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        *self == Hooks::default()
    }

    /// Whether the init stops during its set-up for the runtime's create
    /// hooks and to learn the state its own hooks read.
    pub fn init_waits(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty())
    }

    /// The runtime's hooks of create, in order: prestart, then createRuntime.
    pub fn runtime_create(&self) -> impl Iterator<Item = &HookPlan> {
        self.prestart.iter().chain(&self.create_runtime)
    }
}

/// The spec's hooks, checked: a path must be absolute, a timeout positive,
/// an environment entry `NAME=value`.
pub fn plan(spec: Option<&oci_spec::runtime::Hooks>) -> Result<Hooks> {
    let Some(h) = spec else {
        return Ok(Hooks::default());
    };
    let kind = |name: &str, list: &Option<Vec<oci_spec::runtime::Hook>>| -> Result<Vec<HookPlan>> {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, hook)| hook_plan(&format!("hooks.{name}[{i}]"), hook))
            .collect()
    };
    Ok(Hooks {
        prestart: kind("prestart", h.prestart())?,
        create_runtime: kind("createRuntime", h.create_runtime())?,
        create_container: kind("createContainer", h.create_container())?,
        start_container: kind("startContainer", h.start_container())?,
        poststart: kind("poststart", h.poststart())?,
        poststop: kind("poststop", h.poststop())?,
    })
}

fn hook_plan(field: &str, h: &oci_spec::runtime::Hook) -> Result<HookPlan> {
    let path = h.path().clone();
    if !path.is_absolute() {
        return Err(Error::invalid(
            format!("{field}.path"),
            format!("{:?} is not an absolute path", path.display()),
        ));
    }
    let timeout = match h.timeout() {
        None => None,
        Some(t) if t > 0 => Some(u32::try_from(t).unwrap_or(u32::MAX)),
        Some(t) => {
            return Err(Error::invalid(
                format!("{field}.timeout"),
                format!("{t}: a timeout must be greater than zero (seconds)"),
            ))
        }
    };
    let env = h.env().clone().unwrap_or_default();
    if let Some((i, e)) = env.iter().enumerate().find(|(_, e)| !e.contains('=')) {
        return Err(Error::invalid(
            format!("{field}.env[{i}]"),
            format!("{e:?} is not NAME=value"),
        ));
    }
    let mut args = h.args().clone().unwrap_or_default();
    if args.is_empty() {
        args.push(path.to_string_lossy().into_owned());
    }
    if let Some((i, _)) = args.iter().enumerate().find(|(_, a)| a.contains('\0')) {
        return Err(Error::invalid(
            format!("{field}.args[{i}]"),
            "contains a NUL byte",
        ));
    }
    Ok(HookPlan {
        field: field.to_string(),
        path,
        args,
        env,
        timeout,
    })
}

/// The OCI state a hook reads on its standard input.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    /// The init's pid in the runtime's pid namespace (absent once stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a BTreeMap<String, String>,
}

impl HookState<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and a map: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder};

    fn hook(path: &str) -> HookBuilder {
        HookBuilder::default().path(path)
    }

    #[test]
    fn every_kind_is_planned_in_order_with_its_field() {
        let spec = HooksBuilder::default()
            .prestart(vec![hook("/bin/a").build().unwrap()])
            .create_runtime(vec![hook("/bin/b").build().unwrap()])
            .create_container(vec![hook("/bin/c").build().unwrap()])
            .start_container(vec![hook("/bin/d").build().unwrap()])
            .poststart(vec![hook("/bin/e").build().unwrap()])
            .poststop(vec![
                hook("/bin/f").build().unwrap(),
                hook("/bin/g").build().unwrap(),
            ])
            .build()
            .unwrap();
        let h = plan(Some(&spec)).unwrap();
        let runtime: Vec<_> = h.runtime_create().map(|x| x.field.as_str()).collect();
        assert_eq!(runtime, ["hooks.prestart[0]", "hooks.createRuntime[0]"]);
        assert_eq!(h.create_container[0].path, PathBuf::from("/bin/c"));
        assert_eq!(h.start_container[0].field, "hooks.startContainer[0]");
        assert_eq!(h.poststart[0].field, "hooks.poststart[0]");
        assert_eq!(h.poststop[1].field, "hooks.poststop[1]");
        assert!(h.init_waits());
    }

    #[test]
    fn no_hooks_is_empty_and_the_init_does_not_wait() {
        let h = plan(None).unwrap();
        assert!(h.is_empty());
        assert!(!h.init_waits());
        let only_after = HooksBuilder::default()
            .poststart(vec![hook("/bin/e").build().unwrap()])
            .poststop(vec![hook("/bin/f").build().unwrap()])
            .build()
            .unwrap();
        let h = plan(Some(&only_after)).unwrap();
        assert!(!h.is_empty());
        assert!(
            !h.init_waits(),
            "poststart/poststop need no stop in the init"
        );
    }

    #[test]
    fn args_default_to_the_path_and_are_kept_as_given() {
        let spec = HooksBuilder::default()
            .prestart(vec![
                hook("/usr/bin/env").build().unwrap(),
                hook("/bin/sh")
                    .args(vec!["sh".to_string(), "-c".into(), "true".into()])
                    .env(vec!["A=1".to_string()])
                    .timeout(5)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let h = plan(Some(&spec)).unwrap();
        assert_eq!(h.prestart[0].args, ["/usr/bin/env"]);
        assert!(h.prestart[0].env.is_empty());
        assert_eq!(h.prestart[0].timeout, None);
        assert_eq!(h.prestart[1].args, ["sh", "-c", "true"]);
        assert_eq!(h.prestart[1].env, ["A=1"]);
        assert_eq!(h.prestart[1].timeout, Some(5));
    }

    #[test]
    fn bad_hooks_are_refused_naming_the_field() {
        let cases = [
            (hook("bin/true").build().unwrap(), "hooks.poststop[0].path"),
            (
                hook("/bin/true").timeout(0).build().unwrap(),
                "hooks.poststop[0].timeout",
            ),
            (
                hook("/bin/true").timeout(-3).build().unwrap(),
                "hooks.poststop[0].timeout",
            ),
            (
                hook("/bin/true")
                    .env(vec!["NOEQUALS".to_string()])
                    .build()
                    .unwrap(),
                "hooks.poststop[0].env[0]",
            ),
        ];
        for (h, field) in cases {
            let spec = HooksBuilder::default().poststop(vec![h]).build().unwrap();
            let e = plan(Some(&spec)).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn state_json_is_the_oci_state() {
        let ann = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let s = HookState {
            oci_version: "1.2.0",
            id: "c1",
            status: "creating",
            pid: Some(42),
            bundle: std::path::Path::new("/b"),
            annotations: &ann,
        };
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating",
                               "pid": 42, "bundle": "/b", "annotations": {"k": "v"}})
        );
        let stopped = HookState {
            pid: None,
            status: "stopped",
            ..s
        };
        let v: serde_json::Value = serde_json::from_slice(&stopped.to_json()).unwrap();
        assert!(v.get("pid").is_none());
    }
}
