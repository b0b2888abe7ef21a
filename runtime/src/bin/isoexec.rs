//! `isoexec`: a runc-compatible OCI runtime command line. Only argument
//! parsing and output live here; the engine does the work.

/// The command line is one thread that lives a few milliseconds: in a
/// musl build, dlmalloc instead of musl's allocator, which maps and unmaps
/// memory on most of the runtime's allocations.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use runtime::config::DriverConfig;
use runtime::console::ForegroundConsole;
use runtime::container::{self, Container, CreateOptions, ExecOptions, Status};
use runtime::{Error, Result};

#[derive(Parser)]
#[command(
    name = "isoexec",
    about = "Run host binaries isolated: an OCI runtime in the model of Nomad's exec driver",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"),
    disable_version_flag = true
)]
// Its flags come before the verb, and are accepted after it too (see
// `parse_cli`, `GLOBAL_FLAGS`).
struct Cli {
    /// State directory of containers.
    #[arg(long, default_value = "/run/isoexec")]
    root: PathBuf,
    /// The driver's options (default: $ISOEXEC_CONFIG, else /etc/isoexec/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also write errors to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[arg(long)]
    debug: bool,
    /// Accepted for runc compatibility: a `slice:prefix:name` cgroupsPath is
    /// mapped onto cgroupfs; isoexec does not talk to systemd.
    #[arg(long)]
    systemd_cgroup: bool,
    /// Accepted and ignored (runc compatibility).
    #[arg(long, hide = true)]
    criu: Option<String>,
    /// Accepted and ignored (runc compatibility).
    #[arg(long, hide = true)]
    rootless: Option<String>,
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Table,
    Json,
}

#[derive(Args)]
struct CreateArgs {
    /// The bundle directory (config.json and the root).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root (root on a ramdisk).
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring (by default the container's init
    /// gets a new one, as with runc).
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass descriptors 3..3+N to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    id: String,
}

/// Each verb's arguments are built only when that verb runs (`defer`):
/// building all of them cost every invocation ~0.1 ms.
#[derive(Subcommand)]
#[command(defer = true)]
enum Verb {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's OCI state.
    State { id: String },
    /// Send a signal (name, SIG-name or number; default TERM).
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container and everything it used.
    Delete {
        /// Kill it first if it is running.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create, start, wait and delete: the exit status is the container's.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started; do not wait or delete.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run another process in a running container.
    Exec {
        /// An OCI process.json; replaces the command and the flags below.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// NAME=value, repeatable.
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// UID[:GID].
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        #[arg(long)]
        no_new_privs: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the processes of a container.
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        /// Accepted for runc compatibility (ps options); not used.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's limits.
    Update {
        /// LinuxResources JSON: a file, or - for standard input.
        #[arg(short, long)]
        resources: Option<PathBuf>,
        #[arg(long)]
        memory: Option<i64>,
        #[arg(long)]
        memory_reservation: Option<i64>,
        #[arg(long)]
        memory_swap: Option<i64>,
        #[arg(long)]
        cpu_shares: Option<u64>,
        #[arg(long)]
        cpu_quota: Option<i64>,
        #[arg(long)]
        cpu_period: Option<u64>,
        #[arg(long)]
        cpuset_cpus: Option<String>,
        #[arg(long)]
        cpuset_mems: Option<String>,
        #[arg(long)]
        pids_limit: Option<i64>,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a config.json template.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Add Docker's default seccomp profile (made for the template's
        /// capabilities): the profile isoexecd gives its tasks.
        #[arg(long)]
        seccomp: bool,
    },
    /// Print the OCI features document.
    Features,
    /// Can this host run tasks? Attributes, health, cgroups and controllers.
    Fingerprint {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn main() -> ExitCode {
    // Before anything else (argument parsing included): the processes a
    // create, run or exec forks into a task must never have the host's
    // writable binary as their exe (CVE-2019-5736). A re-exec here costs
    // one process start and nothing of this one's work is done twice.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut seal = None;
    if args
        .iter()
        .any(|a| a == "create" || a == "run" || a == "exec")
    {
        match runtime::sys::exe::ensure_sealed(&root_arg(&args), true) {
            Ok(s) => seal = Some(s),
            Err(e) => {
                eprintln!("isoexec: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let cli = parse_cli();
    if cli.debug {
        runtime::debug::enable();
    }
    if let Some(s) = seal {
        runtime::debug::phase(&format!("exe sealed: {s:?}"));
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        // Nothing is made yet: the same command again, from a sealed copy.
        Err(runtime::Error::NeedsSeal) => {
            runtime::debug::phase(
                "exe immutable, the task may hold CAP_LINUX_IMMUTABLE: re-executing sealed",
            );
            report(&cli, &runtime::sys::exe::reseal(&cli.root));
            ExitCode::from(1)
        }
        Err(e) => {
            report(&cli, &e);
            ExitCode::from(1)
        }
    }
}

/// The flags of [`Cli`], accepted before and after the verb.
const GLOBAL_FLAGS: [&str; 8] = [
    "root",
    "config",
    "log",
    "log_format",
    "debug",
    "systemd_cgroup",
    "criu",
    "rootless",
];

/// The command line. clap accepts a global flag after the verb by copying
/// it into every verb, which cost each invocation ~0.15 ms of its ~0.3 ms
/// parse. So the usual order, every flag of [`Cli`] before the verb, is
/// parsed without the copies; anything else (a global flag after the
/// verb, --help, an error) is parsed again with them, exactly as before:
/// the same values, the same help and the same errors.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Ok(cli) = Cli::try_parse_from(&args) {
        return cli;
    }
    let mut cmd = Cli::command();
    for id in GLOBAL_FLAGS {
        cmd = cmd.mut_arg(id, |a| a.global(true));
    }
    let matches = cmd.get_matches_from(&args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `--root`'s value as given, before the arguments are parsed (the
/// default when absent).
fn root_arg(args: &[std::ffi::OsString]) -> PathBuf {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--root" {
            if let Some(v) = it.next() {
                return PathBuf::from(v);
            }
        } else if let Some(v) = a.to_str().and_then(|a| a.strip_prefix("--root=")) {
            return PathBuf::from(v);
        }
    }
    PathBuf::from("/run/isoexec")
}

/// Errors go to stderr, and to `--log` (one JSON object a line with
/// `--log-format json`, as containerd's runc shim reads them).
fn report(cli: &Cli, e: &Error) {
    eprintln!("isoexec: {e}");
    log_line(cli, "error", &e.to_string());
}

fn log_line(cli: &Cli, level: &str, msg: &str) {
    if let Some(path) = &cli.log {
        let line = match cli.log_format {
            LogFormat::Json => serde_json::json!({
                "level": level,
                "msg": msg,
                "time": container::rfc3339_now(),
            })
            .to_string(),
            LogFormat::Text => format!("{} {level}: {msg}", container::rfc3339_now()),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn run(cli: &Cli) -> Result<u8> {
    let root = &cli.root;
    let load = |id: &str| Container::load(root, id);
    match &cli.verb {
        Verb::Create(a) => {
            let created = container::create(&create_options(cli, a)?)?;
            warn(cli, &created.warnings);
            Ok(0)
        }
        Verb::Start { id } => {
            warn(cli, &container::start(&load(id)?)?);
            Ok(0)
        }
        Verb::State { id } => {
            print_json(&load(id)?.oci_state());
            Ok(0)
        }
        Verb::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            container::kill(&load(id)?, sig, *all).map(|_| 0)
        }
        Verb::Delete { force, id } => match load(id) {
            Ok(c) => {
                warn(cli, &container::delete(&c, *force)?);
                Ok(0)
            }
            // runc: delete --force of a missing container succeeds.
            Err(Error::NotFound(_)) if *force => Ok(0),
            Err(e) => Err(e),
        },
        Verb::Run {
            create,
            detach,
            keep,
        } => run_container(cli, create, *detach, *keep),
        Verb::Exec {
            process,
            detach,
            pid_file,
            tty,
            console_socket,
            env,
            cwd,
            user,
            additional_gids,
            no_new_privs,
            preserve_fds,
            id,
            command,
        } => {
            let c = load(id)?;
            let opts = ExecOptions {
                process_file: process.clone(),
                args: command.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.clone(),
                additional_gids: additional_gids.clone(),
                tty: *tty,
                no_new_privs: *no_new_privs,
                console_socket: console_socket.clone(),
                console_fd: None,
                pid_file: pid_file.clone(),
                preserve_fds: *preserve_fds,
                driver: DriverConfig::load(cli.config.as_deref())?,
                process: None,
                stdio: None,
            };
            let console = foreground_console(console_socket.is_none() && *tty && !*detach)?;
            let opts = ExecOptions {
                console_fd: console.as_ref().map(|c| c.fd()),
                ..opts
            };
            let ex = container::exec(&c, &opts);
            let tty = receive_terminal(console, ex.is_ok())?;
            let ex = ex?;
            if *detach {
                return Ok(0);
            }
            runtime::console::wait_foreground(ex.pid, tty)
        }
        Verb::Ps { format, id, .. } => {
            let c = load(id)?;
            let pids = c.pids()?;
            match format {
                Format::Json => print_json(&serde_json::json!(pids)),
                Format::Table => {
                    println!("{:<8} CMD", "PID");
                    for p in pids {
                        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                        println!("{p:<8} {}", cmd.trim_end());
                    }
                }
            }
            Ok(0)
        }
        Verb::Pause { id } => load(id)?.pause().map(|_| 0),
        Verb::Resume { id } => load(id)?.resume().map(|_| 0),
        Verb::Update {
            resources,
            memory,
            memory_reservation,
            memory_swap,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            id,
        } => {
            let c = load(id)?;
            let mut r: serde_json::Value = match resources {
                Some(p) => read_json(p)?,
                None => serde_json::json!({}),
            };
            let mut set = |section: &str, key: &str, v: Option<serde_json::Value>| {
                if let Some(v) = v {
                    r[section][key] = v;
                }
            };
            use serde_json::json;
            set("memory", "limit", memory.map(|v| json!(v)));
            set(
                "memory",
                "reservation",
                memory_reservation.map(|v| json!(v)),
            );
            set("memory", "swap", memory_swap.map(|v| json!(v)));
            set("cpu", "shares", cpu_shares.map(|v| json!(v)));
            set("cpu", "quota", cpu_quota.map(|v| json!(v)));
            set("cpu", "period", cpu_period.map(|v| json!(v)));
            set("cpu", "cpus", cpuset_cpus.clone().map(|v| json!(v)));
            set("cpu", "mems", cpuset_mems.clone().map(|v| json!(v)));
            set("pids", "limit", pids_limit.map(|v| json!(v)));
            let res: oci_spec::runtime::LinuxResources =
                serde_json::from_value(r).map_err(|e| {
                    Error::InvalidArgument(format!("--resources: not valid LinuxResources: {e}"))
                })?;
            c.update(&res).map(|_| 0)
        }
        Verb::List { format, quiet } => {
            let all = container::list(root)?;
            if *quiet {
                for (id, _) in &all {
                    println!("{id}");
                }
                return Ok(0);
            }
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|(id, c)| match c {
                    Some(c) => {
                        let mut s = c.oci_state();
                        s["id"] = serde_json::json!(id);
                        s
                    }
                    None => {
                        serde_json::json!({"id": id, "status": Status::Creating.as_str(), "pid": 0,
                        "bundle": "", "created": "", "owner": ""})
                    }
                })
                .collect();
            match format {
                Format::Json => print_json(&serde_json::json!(rows)),
                Format::Table => {
                    println!(
                        "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                    );
                    for r in rows {
                        println!(
                            "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                            r["id"].as_str().unwrap_or(""),
                            r["pid"].to_string(),
                            r["status"].as_str().unwrap_or(""),
                            r["bundle"].as_str().unwrap_or(""),
                            r["created"].as_str().unwrap_or(""),
                            r["owner"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(0)
        }
        Verb::Spec { bundle, seccomp } => {
            let path = bundle.join(runtime::bundle::CONFIG);
            if path.exists() {
                return Err(Error::InvalidArgument(format!(
                    "{} exists: remove it first",
                    path.display()
                )));
            }
            let driver = DriverConfig::load(cli.config.as_deref())?;
            let mut template = runtime::features::spec_template_for(&driver);
            if *seccomp {
                let caps: Vec<String> = template["process"]["capabilities"]["bounding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect();
                template["linux"]["seccomp"] = runtime::seccomp_default::profile(&caps);
            }
            let text = serde_json::to_string_pretty(&template)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            std::fs::write(&path, text + "\n")
                .map_err(|e| Error::sys(format!("writing {}", path.display()), e))?;
            Ok(0)
        }
        Verb::Features => {
            print_json(&runtime::features::features());
            Ok(0)
        }
        Verb::Fingerprint { format } => {
            let f = runtime::fingerprint::gather_with(&DriverConfig::load(cli.config.as_deref())?);
            match format {
                Format::Json => {
                    let mut v = serde_json::to_value(&f).unwrap_or_default();
                    v["attributes"] = f
                        .attributes()
                        .into_iter()
                        .map(|(k, v)| (k, serde_json::json!(v)))
                        .collect();
                    print_json(&v);
                }
                Format::Table => print_fingerprint(&f),
            }
            Ok(0)
        }
    }
}

fn create_options(cli: &Cli, a: &CreateArgs) -> Result<CreateOptions> {
    Ok(CreateOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        systemd_cgroup: cli.systemd_cgroup,
        preserve_fds: a.preserve_fds,
        driver: DriverConfig::load(cli.config.as_deref())?,
        ..Default::default()
    })
}

/// Warnings go to `--log` alone when there is one, as runc's do: conmon,
/// Docker and containerd's runc shim give the runtime the container's own
/// stderr, and a warning there lands in the container's output and logs.
/// Without a log they go to stderr only when it is a terminal (a person
/// at the command line): conmon runs `exec` without `--log`, with the
/// exec'd process's stderr as the runtime's.
fn warn(cli: &Cli, warnings: &[String]) {
    use std::io::IsTerminal;
    for w in warnings {
        if cli.log.is_some() {
            log_line(cli, "warning", w);
        } else if std::io::stderr().is_terminal() {
            eprintln!("isoexec: warning: {w}");
        }
    }
}

/// `run`: create, start, and unless detached wait (forwarding signals) and
/// delete; the exit status is the container's.
fn run_container(cli: &Cli, a: &CreateArgs, detach: bool, keep: bool) -> Result<u8> {
    let mut opts = create_options(cli, a)?;
    let console = foreground_console(a.console_socket.is_none() && !detach)?;
    opts.console_fd = console.as_ref().map(|c| c.fd());
    let created = container::create(&opts);
    let terminal = created
        .as_ref()
        .is_ok_and(|c| c.container.state.process.terminal().unwrap_or(false));
    let tty = receive_terminal(console, terminal)?;
    let created = created?;
    warn(cli, &created.warnings);
    let c = &created.container;
    match container::start(c) {
        Ok(w) => warn(cli, &w),
        Err(e) => {
            if let Ok(w) = container::delete(c, true) {
                warn(cli, &w);
            }
            return Err(e);
        }
    }
    if detach {
        return Ok(0);
    }
    runtime::debug::phase("run: started");
    let code = runtime::console::wait_foreground(created.init, tty)?;
    runtime::debug::phase("run: exited");
    if !keep {
        warn(cli, &container::delete(c, true)?);
    }
    Ok(code)
}

fn print_fingerprint(f: &runtime::fingerprint::Fingerprint) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut rows: Vec<(String, String)> = f.attributes();
    if !f.detected {
        rows.push(("driver.exec".into(), "(undetected)".into()));
    }
    let controls = if f.resource_controls {
        "enabled".to_string()
    } else {
        format!("disabled (missing {})", list(&f.required_missing))
    };
    rows.extend([
        (
            "health".to_string(),
            format!("{}: {}", f.health, f.health_description),
        ),
        ("linux".to_string(), yes(f.linux).to_string()),
        ("root".to_string(), yes(f.root).to_string()),
        (
            "cgroups mounted".to_string(),
            yes(f.cgroups_mounted).to_string(),
        ),
        ("cgroup version".to_string(), f.cgroup_version.to_string()),
        ("device control".to_string(), f.device_control.clone()),
        ("idmapped mounts".to_string(), f.idmapped_mounts.clone()),
        (
            "controllers present".to_string(),
            list(&f.controllers_present),
        ),
        (
            "controllers missing".to_string(),
            list(&f.controllers_missing),
        ),
        ("resource controls".to_string(), controls),
    ]);
    for (k, v) in rows {
        println!("{k:<28} {v}");
    }
}

/// A console socket of our own, for a terminal relayed in the foreground.
fn foreground_console(wanted: bool) -> Result<Option<ForegroundConsole>> {
    wanted.then(ForegroundConsole::new).transpose()
}

/// The pty master, when the container was given a terminal.
fn receive_terminal(
    console: Option<ForegroundConsole>,
    terminal: bool,
) -> Result<Option<std::os::fd::OwnedFd>> {
    match console {
        Some(sock) if terminal => sock.receive().map(Some),
        _ => Ok(None),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Error::sys("reading standard input", e))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Error::sys(format!("reading {}", path.display()), e))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: not valid JSON: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_before_the_verb_is_a_global_flag() {
        let mut flags: Vec<String> = Cli::command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| id != "version")
            .collect();
        flags.sort();
        let mut global: Vec<String> = GLOBAL_FLAGS.iter().map(|s| s.to_string()).collect();
        global.sort();
        assert_eq!(flags, global);
    }

    #[test]
    fn global_flags_parse_the_same_before_and_after_the_verb() {
        let parse = |args: &[&str]| {
            let mut cmd = Cli::command();
            for id in GLOBAL_FLAGS {
                cmd = cmd.mut_arg(id, |a| a.global(true));
            }
            let m = cmd.try_get_matches_from(args).unwrap();
            let cli = Cli::from_arg_matches(&m).unwrap();
            (cli.root, cli.log, cli.debug, cli.systemd_cgroup)
        };
        use clap::FromArgMatches;
        let before = parse(&[
            "isoexec", "--root", "/r", "--log", "/l", "--debug", "state", "x",
        ]);
        let after = parse(&[
            "isoexec", "state", "x", "--root", "/r", "--log", "/l", "--debug",
        ]);
        assert_eq!(before, after);
        // The quick parse takes the usual order as it is, and refuses a
        // global flag after the verb (which the full parse then takes).
        let quick =
            Cli::try_parse_from(["isoexec", "--root", "/r", "--debug", "state", "x"]).unwrap();
        assert_eq!((quick.root.as_path(), quick.debug), (Path::new("/r"), true));
        assert!(Cli::try_parse_from(["isoexec", "state", "x", "--root", "/r"]).is_err());
    }
}
