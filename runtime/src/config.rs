//! The driver's options (`/etc/isoexec/config.toml`), with the exec
//! driver's key names, defaults and validation. Parsing is pure; only
//! [`DriverConfig::load`] reads a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/isoexec/config.toml";
pub const ENV_VAR: &str = "ISOEXEC_CONFIG";

/// `allow_caps`' default: docker's default set without NET_RAW.
pub const DEFAULT_ALLOW_CAPS: [&str; 13] = [
    "audit_write",
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "mknod",
    "net_bind_service",
    "setfcap",
    "setgid",
    "setpcap",
    "setuid",
    "sys_chroot",
];

/// containerd's (and docker's) default capability set. Capabilities of this
/// set that `allow_caps` lacks are dropped from a task, not refused: a
/// `ctr run` asks for them without the user choosing to.
pub const CONTAINERD_DEFAULT_CAPS: [&str; 14] = [
    "audit_write",
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "mknod",
    "net_bind_service",
    "net_raw",
    "setfcap",
    "setgid",
    "setpcap",
    "setuid",
    "sys_chroot",
];

/// The host directories a task's root is assembled from, by default (each
/// to the same path in the task).
pub const DEFAULT_CHROOT_ENV: [&str; 9] = [
    "/bin",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/run/resolvconf",
    "/sbin",
    "/usr",
    "/run/systemd/resolve",
];

/// Host files a task never sees through its chroot_env, by default: the
/// secrets a careful operator keeps out of `/etc` (Nomad's chroot_env
/// includes all of `/etc`, so a task running as root reads them). `*` and
/// `?` match within one path component.
pub const DEFAULT_CHROOT_ENV_HIDE: [&str; 14] = [
    "/etc/shadow*",
    "/etc/gshadow*",
    "/etc/security/opasswd",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
    "/etc/ipsec.secrets",
    "/etc/ppp/*-secrets",
    "/etc/wireguard",
    "/etc/NetworkManager/system-connections",
    "/etc/isoexec",
    "/etc/containerd",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsMode {
    Private,
    Host,
}

impl NsMode {
    pub fn parse(key: &str, v: &str) -> std::result::Result<Self, String> {
        match v {
            "private" => Ok(NsMode::Private),
            "host" => Ok(NsMode::Host),
            other => Err(format!(
                "{key} must be \"private\" or \"host\", got {other:?}"
            )),
        }
    }
}

/// How chroot_env directories get into a task's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChrootMode {
    /// Recursive read-only bind mounts in the task's mount namespace.
    Bind,
    /// Copy-on-write overlay per directory; the upper layer is the task's.
    Overlay,
    /// Hardlink-or-copy into the root, as the exec driver does.
    Link,
}

impl ChrootMode {
    pub fn parse(key: &str, v: &str) -> std::result::Result<Self, String> {
        match v {
            "bind" => Ok(ChrootMode::Bind),
            "overlay" => Ok(ChrootMode::Overlay),
            "link" => Ok(ChrootMode::Link),
            other => Err(format!(
                "{key} must be \"bind\", \"overlay\" or \"link\", got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChrootMode::Bind => "bind",
            ChrootMode::Overlay => "overlay",
            ChrootMode::Link => "link",
        }
    }
}

/// Capabilities a task may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowCaps {
    /// `"all"`: every capability the kernel supports.
    All,
    Only(Vec<caps::Capability>),
}

impl AllowCaps {
    pub fn allows(&self, c: caps::Capability) -> bool {
        match self {
            AllowCaps::All => true,
            AllowCaps::Only(v) => v.contains(&c),
        }
    }
}

/// Inclusive id ranges, as `denied_host_uids = "0,10-15,22"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdRanges(pub Vec<(u32, u32)>);

impl IdRanges {
    pub fn parse(key: &str, s: &str) -> std::result::Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("{key}: {part:?} is not an id or a range like 10-15");
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (
                    a.trim().parse::<u32>().map_err(|_| bad())?,
                    b.trim().parse::<u32>().map_err(|_| bad())?,
                ),
                None => {
                    let v = part.parse::<u32>().map_err(|_| bad())?;
                    (v, v)
                }
            };
            if a > b {
                return Err(format!("{key}: range {part:?} ends before it starts"));
            }
            out.push((a, b));
        }
        Ok(IdRanges(out))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }
}

/// The driver's validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    pub default_pid_mode: NsMode,
    pub default_ipc_mode: NsMode,
    pub no_pivot_root: bool,
    pub allow_caps: AllowCaps,
    pub denied_host_uids: IdRanges,
    pub denied_host_gids: IdRanges,
    /// (host path, task path), in mount order (parents first).
    pub chroot_env: Vec<(PathBuf, PathBuf)>,
    pub chroot_mode: ChrootMode,
    /// Host paths (globs) left out of every chroot_env: masked in bind and
    /// overlay modes, not copied in link mode.
    pub chroot_env_hide: Vec<String>,
    /// The size of a task's writable directories (`/local` and `/tmp`
    /// together), in MiB: a filesystem of that size, ENOSPC at the limit.
    /// `None`: they are directories of the task's root, unlimited.
    pub ephemeral_disk_mb: Option<u64>,
    /// What a task gets as its root when its spec does not say
    /// (`io.isoexec.chroot_env`): the exec driver's chroot_env (default),
    /// or the bundle's root as it is (`default_root = "image"`, for clients
    /// that cannot pass annotations: Docker, podman).
    pub image_by_default: bool,
    /// `userns = "auto"`: every task without a user namespace of its own
    /// gets one, mapped onto a range of host ids from `userns_pool` (a task
    /// may ask either way with `io.isoexec.userns`).
    pub userns_auto: bool,
    /// `userns_range` and `userns_size`.
    pub userns_pool: UserNsPool,
    /// The file it came from, if any (for messages).
    pub source: Option<PathBuf>,
}

/// Host ids handed out to tasks' user namespaces: `slots` ranges of `size`
/// ids each, the first starting at `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserNsPool {
    pub first: u32,
    pub size: u32,
    pub slots: u32,
}

impl UserNsPool {
    /// The first host id of slot `n`.
    pub fn base(&self, n: u32) -> u32 {
        self.first + n * self.size
    }
}

/// The pool when `userns_range` is not given: above every id a host
/// gives its users and /etc/subuid's customary ranges.
pub const DEFAULT_USERNS_RANGE: &str = "1000000000-1999999999";
pub const DEFAULT_USERNS_SIZE: u32 = 65536;

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig::parse(Path::new("(defaults)"), "").expect("the defaults are valid")
    }
}

/// The file's shape: the exec driver's key names. Unknown keys are errors,
/// so a typo is not silently a default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_pid_mode: Option<String>,
    default_ipc_mode: Option<String>,
    no_pivot_root: Option<bool>,
    allow_caps: Option<Vec<String>>,
    denied_host_uids: Option<String>,
    denied_host_gids: Option<String>,
    chroot_env: Option<BTreeMap<String, String>>,
    chroot_mode: Option<String>,
    chroot_env_hide: Option<Vec<String>>,
    ephemeral_disk_mb: Option<u64>,
    default_root: Option<String>,
    userns: Option<String>,
    userns_range: Option<String>,
    userns_size: Option<u32>,
}

/// Parses a capability name: case-insensitive, with or without `cap_`.
pub fn parse_cap(name: &str) -> Option<caps::Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse().ok()
}

/// A capability as the exec driver writes it: `net_raw`.
pub fn cap_name(c: caps::Capability) -> String {
    c.to_string()
        .trim_start_matches("CAP_")
        .to_ascii_lowercase()
}

impl DriverConfig {
    /// Reads the config: `explicit` (`--config`), else `$ISOEXEC_CONFIG`,
    /// else /etc/isoexec/config.toml. A missing default file means the
    /// defaults; a missing explicit file is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let env = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty());
        let (path, required) = match (explicit, env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut c = Self::parse(&path, &text)?;
                c.source = Some(path);
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(e) => Err(Error::Bundle {
                path,
                reason: format!("cannot read the driver config: {e}"),
            }),
        }
    }

    /// Parses and validates the text of a config file (`path` names it in
    /// errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let err = |reason: String| Error::Bundle {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            err(format!(
                "invalid driver config: {}",
                e.to_string().trim_end()
            ))
        })?;
        let mode = |key: &str, v: Option<String>| -> Result<NsMode> {
            v.map_or(Ok(NsMode::Private), |v| NsMode::parse(key, &v).map_err(err))
        };
        let allow_caps = match raw.allow_caps {
            None => AllowCaps::Only(
                DEFAULT_ALLOW_CAPS
                    .iter()
                    .filter_map(|c| parse_cap(c))
                    .collect(),
            ),
            Some(list) if list.iter().any(|c| c.eq_ignore_ascii_case("all")) => AllowCaps::All,
            Some(list) => {
                let mut caps = Vec::new();
                for name in &list {
                    let c = parse_cap(name)
                        .ok_or_else(|| err(format!("allow_caps: unknown capability {name:?}")))?;
                    if !caps.contains(&c) {
                        caps.push(c);
                    }
                }
                AllowCaps::Only(caps)
            }
        };
        let ids = |key: &str, v: Option<String>| -> Result<IdRanges> {
            v.map_or(Ok(IdRanges::default()), |v| {
                IdRanges::parse(key, &v).map_err(err)
            })
        };
        let chroot_env = match raw.chroot_env {
            None => DEFAULT_CHROOT_ENV
                .iter()
                .map(|p| (PathBuf::from(p), PathBuf::from(p)))
                .collect(),
            Some(map) => {
                let mut v = Vec::new();
                for (host, task) in map {
                    for (what, p) in [("host path", &host), ("task path", &task)] {
                        if !Path::new(p).is_absolute() {
                            return Err(err(format!("chroot_env: {what} {p:?} must be absolute")));
                        }
                    }
                    let task = crate::plan::normalize(Path::new(&task));
                    if task == Path::new("/") {
                        return Err(err(format!(
                            "chroot_env: {host:?} cannot be mounted over the task's root"
                        )));
                    }
                    v.push((PathBuf::from(host), task));
                }
                v
            }
        };
        let chroot_mode = raw.chroot_mode.map_or(Ok(ChrootMode::Bind), |v| {
            ChrootMode::parse("chroot_mode", &v).map_err(err)
        })?;
        let chroot_env_hide = match raw.chroot_env_hide {
            None => DEFAULT_CHROOT_ENV_HIDE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => {
                for p in &list {
                    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p == "/" {
                        return Err(err(format!(
                            "chroot_env_hide: {p:?} must be an absolute host path (globs * and ? allowed), without \"..\""
                        )));
                    }
                }
                list
            }
        };
        Ok(DriverConfig {
            default_pid_mode: mode("default_pid_mode", raw.default_pid_mode)?,
            default_ipc_mode: mode("default_ipc_mode", raw.default_ipc_mode)?,
            no_pivot_root: raw.no_pivot_root.unwrap_or(false),
            allow_caps,
            denied_host_uids: ids("denied_host_uids", raw.denied_host_uids)?,
            denied_host_gids: ids("denied_host_gids", raw.denied_host_gids)?,
            chroot_env: sort_parents_first(chroot_env),
            chroot_mode,
            chroot_env_hide,
            ephemeral_disk_mb: raw.ephemeral_disk_mb.filter(|mb| *mb > 0),
            image_by_default: match raw.default_root.as_deref() {
                None | Some("chroot_env") => false,
                Some("image") => true,
                Some(other) => {
                    return Err(err(format!(
                        "default_root must be \"chroot_env\" (the exec driver's) or \"image\" (the bundle's root as it is), got {other:?}"
                    )))
                }
            },
            userns_auto: match raw.userns.as_deref() {
                None | Some("host") => false,
                Some("auto") => true,
                Some(other) => {
                    return Err(err(format!(
                        "userns must be \"host\" (tasks keep host ids unless their spec maps them) or \"auto\" (a user namespace per task from userns_range), got {other:?}"
                    )))
                }
            },
            userns_pool: userns_pool(raw.userns_range, raw.userns_size).map_err(err)?,
            source: None,
        })
    }
}

/// `userns_range` and `userns_size` as a pool.
fn userns_pool(
    range: Option<String>,
    size: Option<u32>,
) -> std::result::Result<UserNsPool, String> {
    let size = size.unwrap_or(DEFAULT_USERNS_SIZE);
    if size == 0 {
        return Err("userns_size must be at least 1".into());
    }
    let text = range.as_deref().unwrap_or(DEFAULT_USERNS_RANGE);
    let r = IdRanges::parse("userns_range", text)?;
    let [(first, last)] = r.0[..] else {
        return Err(format!(
            "userns_range: {text:?} must be one range FIRST-LAST of host ids"
        ));
    };
    if first == 0 {
        return Err("userns_range: host id 0 is the host's root; start the range above it".into());
    }
    let slots = ((u64::from(last) - u64::from(first) + 1) / u64::from(size)) as u32;
    if slots == 0 {
        return Err(format!(
            "userns_range: {text:?} holds fewer than userns_size = {size} ids"
        ));
    }
    Ok(UserNsPool { first, size, slots })
}

/// Mount order: a parent directory before what is mounted inside it.
fn sort_parents_first(mut v: Vec<(PathBuf, PathBuf)>) -> Vec<(PathBuf, PathBuf)> {
    v.sort_by(|a, b| {
        a.1.components()
            .count()
            .cmp(&b.1.components().count())
            .then(a.1.cmp(&b.1))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use caps::Capability as C;

    fn parse(text: &str) -> Result<DriverConfig> {
        DriverConfig::parse(Path::new("/etc/isoexec/config.toml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should be refused").to_string()
    }

    #[test]
    fn userns_auto_makes_a_pool_and_bad_ranges_are_named() {
        let c = parse("").unwrap();
        assert!(!c.userns_auto);
        let p = c.userns_pool;
        assert_eq!((p.first, p.size, p.slots), (1_000_000_000, 65536, 15258));
        assert!(!parse("userns = \"host\"").unwrap().userns_auto);
        assert!(parse("userns = \"auto\"").unwrap().userns_auto);
        let p = parse("userns = \"auto\"\nuserns_range = \"100000-165535\"\nuserns_size = 1000")
            .unwrap()
            .userns_pool;
        assert_eq!(
            (p.first, p.size, p.slots, p.base(2)),
            (100000, 1000, 65, 102000)
        );
        for (text, want) in [
            ("userns = \"yes\"", "userns must be"),
            ("userns = \"auto\"\nuserns_range = \"0-65535\"", "host id 0"),
            (
                "userns = \"auto\"\nuserns_range = \"10-20,30-40\"",
                "one range",
            ),
            (
                "userns = \"auto\"\nuserns_range = \"100000-100010\"",
                "fewer than userns_size = 65536",
            ),
            ("userns = \"auto\"\nuserns_size = 0", "at least 1"),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn defaults_are_the_exec_drivers() {
        let c = parse("").unwrap();
        assert_eq!(c.default_pid_mode, NsMode::Private);
        assert_eq!(c.default_ipc_mode, NsMode::Private);
        assert!(!c.no_pivot_root);
        assert_eq!(c.chroot_mode, ChrootMode::Bind);
        let AllowCaps::Only(caps) = &c.allow_caps else {
            panic!("defaults are a list")
        };
        assert_eq!(caps.len(), 13);
        assert!(caps.contains(&C::CAP_SYS_CHROOT));
        assert!(!caps.contains(&C::CAP_NET_RAW));
        assert!(c.denied_host_uids.0.is_empty());
        let tasks: Vec<_> = c
            .chroot_env
            .iter()
            .map(|(_, t)| t.to_str().unwrap())
            .collect();
        assert_eq!(
            tasks,
            [
                "/bin",
                "/etc",
                "/lib",
                "/lib32",
                "/lib64",
                "/sbin",
                "/usr",
                "/run/resolvconf",
                "/run/systemd/resolve"
            ]
        );
        assert_eq!(DriverConfig::default(), c);
    }

    #[test]
    fn every_option() {
        let c = parse(
            r#"
            default_pid_mode = "host"
            default_ipc_mode = "host"
            no_pivot_root = true
            allow_caps = ["CAP_SYS_ADMIN", "net_raw", "Kill"]
            denied_host_uids = "0,10-15, 22"
            denied_host_gids = "2,4-8"
            chroot_mode = "overlay"
            [chroot_env]
            "/usr/share" = "/share"
            "/bin" = "/bin"
            "/opt/app" = "/srv/app/current"
            "#,
        )
        .unwrap();
        assert_eq!(c.default_pid_mode, NsMode::Host);
        assert_eq!(c.default_ipc_mode, NsMode::Host);
        assert!(c.no_pivot_root);
        assert_eq!(
            c.allow_caps,
            AllowCaps::Only(vec![C::CAP_SYS_ADMIN, C::CAP_NET_RAW, C::CAP_KILL])
        );
        assert_eq!(
            c.denied_host_uids,
            IdRanges(vec![(0, 0), (10, 15), (22, 22)])
        );
        assert!(c.denied_host_uids.contains(12) && !c.denied_host_uids.contains(16));
        assert!(c.denied_host_gids.contains(4) && !c.denied_host_gids.contains(3));
        assert_eq!(c.chroot_mode, ChrootMode::Overlay);
        assert_eq!(
            c.chroot_env,
            [
                (PathBuf::from("/bin"), PathBuf::from("/bin")),
                (PathBuf::from("/usr/share"), PathBuf::from("/share")),
                (PathBuf::from("/opt/app"), PathBuf::from("/srv/app/current")),
            ]
        );
    }

    #[test]
    fn all_caps() {
        assert_eq!(
            parse("allow_caps = [\"all\"]").unwrap().allow_caps,
            AllowCaps::All
        );
        assert!(AllowCaps::All.allows(C::CAP_SYS_ADMIN));
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let e = err("default_pid_mode = \"shared\"");
        assert!(e.starts_with("/etc/isoexec/config.toml: "), "{e}");
        assert!(
            e.contains("default_pid_mode must be \"private\" or \"host\", got \"shared\""),
            "{e}"
        );
        let e = err("default_ipc_mode = \"none\"");
        assert!(
            e.contains("default_ipc_mode must be \"private\" or \"host\", got \"none\""),
            "{e}"
        );
        let e = err("allow_caps = [\"chown\", \"cap_fly\"]");
        assert!(
            e.contains("allow_caps: unknown capability \"cap_fly\""),
            "{e}"
        );
        let e = err("denied_host_uids = \"0,10-x\"");
        assert!(
            e.contains("denied_host_uids: \"10-x\" is not an id or a range"),
            "{e}"
        );
        let e = err("denied_host_gids = \"9-3\"");
        assert!(
            e.contains("denied_host_gids: range \"9-3\" ends before it starts"),
            "{e}"
        );
        let e = err("chroot_mode = \"copy\"");
        assert!(
            e.contains("chroot_mode must be \"bind\", \"overlay\" or \"link\", got \"copy\""),
            "{e}"
        );
        let e = err("[chroot_env]\n\"usr\" = \"/usr\"");
        assert!(
            e.contains("chroot_env: host path \"usr\" must be absolute"),
            "{e}"
        );
        let e = err("[chroot_env]\n\"/srv\" = \"/\"");
        assert!(e.contains("over the task's root"), "{e}");
        let e = err("no_pivot_root = \"yes\"");
        assert!(
            e.contains("invalid driver config") && e.contains("no_pivot_root"),
            "{e}"
        );
        let e = err("alow_caps = []");
        assert!(e.contains("unknown field `alow_caps`"), "{e}");
        let e = err("default_pid_mode = ");
        assert!(
            e.contains("invalid driver config") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn cap_names() {
        assert_eq!(parse_cap("NET_RAW"), Some(C::CAP_NET_RAW));
        assert_eq!(parse_cap("cap_net_raw"), Some(C::CAP_NET_RAW));
        assert_eq!(parse_cap("Cap_Chown"), Some(C::CAP_CHOWN));
        assert_eq!(parse_cap("flying"), None);
        assert_eq!(cap_name(C::CAP_NET_BIND_SERVICE), "net_bind_service");
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_must_exist() {
        // Only the explicit path is read here, so the test does not depend on
        // the machine's /etc.
        let e = DriverConfig::load(Some(Path::new("/nonexistent/isoexec.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/isoexec.toml: cannot read the driver config"),
            "{e}"
        );
    }
}
