//! Shared helpers of the integration tests: busybox bundles made at test
//! time, the built binaries run as a user would, cgroup files read where the
//! kernel keeps them, and clean-up of everything a test started.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// A built binary of the workspace: `ISOEXEC_BIN_DIR` (set by the Makefile)
/// or the profile this test was built with.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var("ISOEXEC_BIN_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => target_dir().join(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `make test` (or `cargo build --workspace` first)",
        p.display()
    );
    p
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests create namespaces, mounts and cgroups: run them as root (`make test`)"
    );
}

/// A unique name for this test run: `prefix-PID-N`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is not installed: `apt-get install busybox-static` (make test does it)");
}

/// Fills `rootfs` with a static busybox and its applets (relative links).
pub fn busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox(), bin.join("busybox")).unwrap();
    let list = Command::new(busybox()).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
}

/// An OCI bundle with a busybox root, in a temp dir.
pub struct Bundle {
    pub dir: TempDir,
    pub config: Value,
}

impl Bundle {
    /// `isoexec spec`'s template running `args`, changed by `patch`, with
    /// a busybox root of its own (image semantics, no chroot_env).
    pub fn busybox(args: &[&str], patch: impl FnOnce(&mut Value)) -> Self {
        let dir = TempDir::new("isoexec-bundle");
        busybox_rootfs(&dir.path().join("rootfs"));
        Self::from_template(dir, args, |config| {
            config["annotations"] = serde_json::json!({"io.isoexec.chroot_env": "none"});
            patch(config);
        })
    }

    /// An empty root directory and `isoexec spec`'s template running
    /// `args`: the exec driver's model, host binaries and no image.
    pub fn empty(args: &[&str], patch: impl FnOnce(&mut Value)) -> Self {
        let dir = TempDir::new("isoexec-task");
        std::fs::create_dir_all(dir.path().join("rootfs")).unwrap();
        Self::from_template(dir, args, patch)
    }

    fn from_template(dir: TempDir, args: &[&str], patch: impl FnOnce(&mut Value)) -> Self {
        let out = Command::new(binary("isoexec"))
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "isoexec spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["process"]["args"] = serde_json::json!(args);
        patch(&mut config);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    /// The entries of the root directory, sorted.
    pub fn root_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.rootfs())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// The `isoexec` command line on a private state root; deletes every
/// container left in it when dropped.
pub struct Isoexec {
    pub root: TempDir,
    /// A driver config file passed with --config to every command.
    pub config: Option<PathBuf>,
    /// The binary to run, when not the built one (an attack's copy).
    pub exe: Option<PathBuf>,
}

impl Default for Isoexec {
    fn default() -> Self {
        Self::new()
    }
}

impl Isoexec {
    pub fn new() -> Self {
        require_root();
        Isoexec {
            root: TempDir::new("isoexec-state"),
            config: None,
            exe: None,
        }
    }

    /// With a driver config file of this text.
    pub fn with_config(toml: &str) -> Self {
        let mut iso = Self::new();
        let path = iso.root.path().join(".config.toml");
        std::fs::write(&path, toml).unwrap();
        iso.config = Some(path);
        iso
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(self.exe.clone().unwrap_or_else(|| binary("isoexec")));
        c.arg("--root").arg(self.root.path());
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs to completion. Output goes through files, not pipes: a detached
    /// container (create, exec -d) keeps its stdio, and a pipe would never
    /// reach EOF.
    pub fn run(&self, args: &[&str]) -> Output {
        let out_path = self.root.path().join(unique(".out"));
        let err_path = self.root.path().join(unique(".err"));
        let status = self
            .command()
            .args(args)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .expect("running isoexec");
        let read = |p: &Path| {
            let v = std::fs::read(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            v
        };
        Output {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        }
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "isoexec {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "isoexec {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `isoexec run` of a bundle under a fresh id: (stdout, stderr, exit code).
    pub fn run_bundle(&self, b: &Bundle, extra: &[&str]) -> (String, String, i32) {
        let id = unique("run");
        let mut args = vec!["run", "--bundle", b.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&id);
        let out = self.run(&args);
        (stdout(&out), stderr(&out), out.status.code().unwrap_or(-1))
    }

    /// Runs isoexec with `input` on a pipe as standard input (a terminal
    /// session, say): (exit code, standard output).
    pub fn interact(&self, args: &[&str], input: &[u8], out_path: &Path) -> (Option<i32>, String) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(out_path).unwrap())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let status = child.wait().unwrap();
        (status.code(), std::fs::read_to_string(out_path).unwrap())
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// create + start a container that runs in the background.
    pub fn start_detached(&self, bundle: &Bundle, id: &str) -> i32 {
        self.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), id]);
        self.ok(&["start", id]);
        self.state(id)["pid"].as_i64().unwrap() as i32
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }
}

impl Drop for Isoexec {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if id.starts_with('.') {
                    continue;
                }
                // The built binary: an attack's copy may be what failed.
                let mut c = Command::new(binary("isoexec"));
                c.arg("--root").arg(self.root.path());
                let _ = c.args(["delete", "--force", &id]).output();
            }
        }
    }
}

/// `sh -c SCRIPT` as a process's args.
/// `line` run by a shell under script(1): its own terminal, the session's
/// output in stdout. Add environment and call `.output()`.
pub fn in_terminal(line: &str) -> Command {
    let mut c = Command::new("script");
    c.args(["-qec", line, "/dev/null"]).stdin(Stdio::null());
    c
}

pub fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// True on a host whose /sys/fs/cgroup is the unified (v2) hierarchy.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The hierarchies a task's cgroup is made in, as names for [`cgroup_dir`]:
/// the v1 controllers isoexec uses, or the unified hierarchy (v2).
pub fn task_hierarchies() -> &'static [&'static str] {
    if cgroup_v2() {
        &[""]
    } else {
        &[
            "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices",
        ]
    }
}

/// Host directory of cgroup `path` for `controller` (v1), or the unified one (v2).
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    }
}

pub fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// True while `pid` names a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Host mount points under `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(d.as_ref()))
        .map(str::to_string)
        .collect()
}

/// Waits up to `secs` for `cond`.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cond()
}

/// The ids of the eBPF device programs attached to cgroup `path` (cgroup v2,
/// from `bpftool cgroup show`); empty on v1.
pub fn device_programs(path: &str) -> Vec<u64> {
    if !cgroup_v2() {
        return Vec::new();
    }
    let dir = cgroup_dir("devices", path);
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(&dir)
        .output()
        .expect("bpftool (make test installs it)");
    assert!(
        out.status.success(),
        "bpftool cgroup show {}: {}",
        dir.display(),
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["attach_type"] == "cgroup_device" && p["name"] == "isoexec_dev")
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// True while the kernel still holds the eBPF program `id`.
pub fn bpf_program_exists(id: u64) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A copy of the built binary `name` in `dir`, for an attack that would
/// destroy the binary it reaches.
pub fn binary_copy(name: &str, dir: &Path) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(binary(name), &p).expect("copying the binary");
    p
}

/// A copy of the built binary `name`, immutable (`chattr +i`, as `make
/// install` leaves the command line), on a tmpfs of its own (every
/// filesystem the tests run on takes the flag then, the v2 guest's 9p
/// root included). Dropped: the flag cleared, the tmpfs gone.
pub struct ImmutableBinary {
    dir: TempDir,
    pub path: PathBuf,
}

impl ImmutableBinary {
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new("isoexec-immutable");
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=755", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(o.status.success(), "tmpfs: {}", stderr(&o));
        let path = binary_copy(name, dir.path());
        set_immutable(&path, true);
        ImmutableBinary { dir, path }
    }
}

impl Drop for ImmutableBinary {
    fn drop(&mut self) {
        set_immutable(&self.path, false);
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Sets or clears a file's immutable attribute; panics if it cannot.
pub fn set_immutable(path: &Path, on: bool) {
    isoexec_tests::set_immutable(path, on).unwrap_or_else(|e| {
        panic!(
            "chattr {}i {}: {e}",
            if on { '+' } else { '-' },
            path.display()
        )
    });
}

/// CVE-2019-5736's attacker (tests/attack/exe_watch.c), built static once
/// per test binary, copied to `dest`.
pub fn exe_watch(dest: &Path) {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    attacker(&BUILT, "exe_watch", dest);
}

/// The mount-destination race's attacker (tests/attack/swap.c), copied
/// to `dest`.
pub fn swapper(dest: &Path) {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    attacker(&BUILT, "swap", dest);
}

/// A stand-in for containerd 2 as a shim's parent (tests/fakes/containerd2.c):
/// `containerd2 PROGRAM ARGS...` runs the program as its child.
pub fn fake_containerd2(dest: &Path) {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    build_c(&BUILT, "fakes/containerd2", dest);
}

/// A pod's pause process (tests/fakes/pause.c), built static, copied to
/// `dest`.
pub fn pause_binary(dest: &Path) {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    build_c(&BUILT, "fakes/pause", dest);
}

fn attacker(built: &std::sync::OnceLock<PathBuf>, name: &str, dest: &Path) {
    build_c(built, &format!("attack/{name}"), dest)
}

/// tests/SOURCE.c built static once per test binary, copied to `dest`.
fn build_c(built: &std::sync::OnceLock<PathBuf>, source: &str, dest: &Path) {
    let name = source.rsplit('/').next().unwrap_or(source);
    let built = built.get_or_init(|| {
        let out = std::env::temp_dir().join(unique(name));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{source}.c"));
        let o = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .output()
            .expect("cc");
        assert!(o.status.success(), "building {name}: {}", stderr(&o));
        out
    });
    std::fs::copy(built, dest).expect("copying an attacker");
}

/// Copies what `bin` needs to start (its dynamic loader and libraries, at
/// the same paths) into `rootfs`: a root of a static busybox can then run
/// the built (dynamically linked) runtime binary, as an attack needs.
pub fn copy_libraries(bin: &Path, rootfs: &Path) {
    let o = Command::new("ldd").arg(bin).output().expect("ldd");
    for line in stdout(&o).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let dest = rootfs.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(path, &dest).unwrap_or_else(|e| panic!("copying {path}: {e}"));
    }
}

/// Runs the planted program (`attempt`) until exe_watch holds a handle
/// on the binary it ran (`result`.caught), up to `tries` times.
pub fn exe_attack_catch(result: &Path, tries: usize, mut attempt: impl FnMut()) {
    let caught = result.with_extension("caught");
    for _ in 0..tries {
        attempt();
        if eventually(2, || caught.exists()) {
            return;
        }
    }
    panic!("the attacker never caught the runtime's binary running in the task");
}

/// exe_watch's verdict, once it has one (it retries while the binary runs).
pub fn exe_attack_verdict(result: &Path) -> String {
    assert!(
        eventually(70, || result.exists()),
        "the attacker gave no verdict"
    );
    std::fs::read_to_string(result).unwrap()
}

/// Puts this test thread in a new session keyring holding a `user` key
/// named `name`, as an operator's login session holds its secrets; the
/// runtimes it starts inherit that keyring. Returns the key's id.
pub fn session_key(name: &str, secret: &str) -> i64 {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    let ty = std::ffi::CString::new("user").unwrap();
    let desc = std::ffi::CString::new(name).unwrap();
    // SAFETY: keyctl and add_key with valid NUL-terminated strings and a
    // live payload; the keyring changes this thread's credentials only.
    unsafe {
        assert!(
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>()
            ) > 0
        );
        let id = libc::syscall(
            libc::SYS_add_key,
            ty.as_ptr(),
            desc.as_ptr(),
            secret.as_ptr(),
            secret.len(),
            KEY_SPEC_SESSION_KEYRING,
        );
        assert!(id > 0, "add_key: {}", std::io::Error::last_os_error());
        id
    }
}

/// The CVE-2019-5736 attack failed: refused for good, the binary `exe`
/// still `before`, no handle on a runtime process before its exec.
pub fn assert_exe_attack_failed(verdict: &str, exe: &Path, before: &[u8], result: &Path) {
    assert!(verdict.starts_with("refused"), "the attack: {verdict}");
    assert!(
        std::fs::read(exe).unwrap() == before,
        "the runtime's binary {} changed",
        exe.display()
    );
    let early = result.with_extension("early");
    assert!(
        !early.exists(),
        "a runtime process's exe opened before it exec'd: {}",
        std::fs::read_to_string(&early).unwrap_or_default()
    );
}

/// A host directory for the mount-destination race to aim at: one file,
/// `f`, holding "precious".
pub fn race_victim() -> TempDir {
    let victim = TempDir(PathBuf::from("/var/tmp").join(unique("isoexec-victim")));
    std::fs::create_dir_all(victim.path()).unwrap();
    std::fs::write(victim.path().join("f"), "precious").unwrap();
    victim
}

/// The race's victim is as it was: its file intact, nothing new in it.
pub fn assert_victim_untouched(victim: &Path) {
    assert_eq!(
        std::fs::read_to_string(victim.join("f")).unwrap(),
        "precious",
        "a host file was truncated or written through the swapped directory"
    );
    let entries: Vec<String> = std::fs::read_dir(victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["f"], "the host directory got new entries");
}

/// A busybox image root (with /tmp) and its tar, in `dir`, for `docker
/// import` / `podman import`. Returns the tar.
pub fn busybox_image_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("image");
    busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    let tar = dir.join("busybox.tar");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    tar
}

/// A command's program and arguments as one shell line.
pub fn shell_line(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a user of a Docker-style CLI (docker, podman) does with a runtime,
/// checked as the user would: `cli()` is the client's command with its
/// global flags, `run_flags` what `run` needs to pick isoexec, the
/// imported image is `busybox`; `cgroup_of(id)` is the path of a
/// container's cgroup; `while_running(id)` looks at a running container.
pub fn docker_cli_suite(
    cli: &dyn Fn() -> Command,
    run_flags: &[&str],
    cgroup_of: &dyn Fn(&str) -> String,
    while_running: &dyn Fn(&str),
) {
    let run = |args: &[&str]| cli().args(args).output().expect("running the client");
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let container = |flags: &[&str], cmd: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(run_flags);
        args.push("busybox");
        args.extend_from_slice(cmd);
        run(&args)
    };
    let state = |name: &str| {
        ok(&["inspect", name, "--format", "{{.State.Status}}"])
            .trim()
            .to_string()
    };
    // run --rm: output, exit status, the image's own root, no runtime text.
    let o = container(&["--rm"], &["sh", "-c", "echo hi; ls /bin/busybox; exit 3"]);
    assert_eq!(stdout(&o), "hi\n/bin/busybox\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("isoexec"),
        "the runtime spoke: {}",
        stderr(&o)
    );

    // -d, exec (its status, no warning), logs, ps, top, stats, inspect.
    let o = container(
        &["-d", "--name", "c1"],
        &["sh", "-c", "echo started; exec sleep 1000"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = run(&["exec", "c1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("in-exec\n", Some(5)),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(eventually(5, || ok(&["logs", "c1"]) == "started\n"));
    assert!(ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).contains("c1 Up"));
    assert!(ok(&["top", "c1"]).contains("sleep 1000"));
    assert!(ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "c1"
    ])
    .contains("c1 1"));
    assert_eq!(state("c1"), "running");
    let pid: i32 = ok(&["inspect", "c1", "--format", "{{.State.Pid}}"])
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    while_running(&id);
    // A terminal exec, under script(1).
    let c = cli();
    let line = format!("{} exec -it c1 sh -c 'tty; echo tty-ok'", shell_line(&c));
    let o = in_terminal(&line)
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{text}"
    );

    // pause, unpause, stop, start, kill, rm; the cgroup goes.
    ok(&["pause", "c1"]);
    assert_eq!(state("c1"), "paused");
    ok(&["unpause", "c1"]);
    assert_eq!(state("c1"), "running");
    ok(&["stop", "-t", "1", "c1"]);
    assert_eq!(state("c1"), "exited");
    assert!(!alive(pid));
    ok(&["start", "c1"]);
    ok(&["kill", "-s", "KILL", "c1"]);
    assert!(eventually(5, || state("c1") == "exited"));
    ok(&["rm", "c1"]);
    for c in ["memory", "pids"] {
        let dir = cgroup_dir(c, &cgroup_of(&id));
        assert!(!dir.exists(), "{} left", dir.display());
    }

    // Limits enforced and the user honoured.
    let o = container(
        &["--rm", "--memory", "32m"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?",
        ],
    );
    assert_eq!(stdout(&o), "dd=137\n", "{}", stderr(&o));
    let o = container(
        &["--rm", "--pids-limit", "4"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do sleep 3 & done; wait; echo done",
        ],
    );
    let both = format!("{}{}", stdout(&o), stderr(&o));
    assert!(both.contains("can't fork"), "{both}");
    let o = container(&["--rm", "--user", "1000:1000"], &["id"]);
    assert_eq!(
        stdout(&o),
        "uid=1000 gid=1000 groups=1000\n",
        "{}",
        stderr(&o)
    );
    assert!(ok(&["ps", "-a", "-q"]).trim().is_empty());
}
