//! `make bench`: isoexec against its baselines, measured side by side in
//! one run (A B A B ...), warm-up runs not counted, medians and ratios
//! reported. Absolute times are context; the ratio is the result.
//!
//! Usage: `isoexec-bench [--runs N] [--bin-dir DIR] [--out DIR]`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    runs: usize,
    warmup: usize,
    bin_dir: PathBuf,
    out: PathBuf,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        runs: 40,
        warmup: 5,
        bin_dir: PathBuf::from("target/release"),
        out: PathBuf::from("target/bench"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--runs" => {
                o.runs = val()
                    .parse()
                    .unwrap_or_else(|_| die("--runs takes a number"))
            }
            "--warmup" => {
                o.warmup = val()
                    .parse()
                    .unwrap_or_else(|_| die("--warmup takes a number"))
            }
            "--bin-dir" => o.bin_dir = PathBuf::from(val()),
            "--out" => o.out = PathBuf::from(val()),
            "-h" | "--help" => {
                println!("isoexec-bench [--runs N] [--warmup N] [--bin-dir DIR] [--out DIR]");
                std::process::exit(0);
            }
            _ => die(&format!("unknown argument {a}")),
        }
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("isoexec-bench: {msg}");
    std::process::exit(2)
}

/// One command line to time.
type Step = Vec<String>;

/// A scenario: each iteration runs its steps in order; the time of the
/// whole iteration is one sample.
struct Side {
    name: String,
    steps: Box<dyn Fn(usize) -> Vec<Step>>,
}

struct Scenario {
    name: &'static str,
    target: f64,
    a: Side,
    b: Side,
}

struct Result {
    name: String,
    a_name: String,
    b_name: String,
    a: Vec<Duration>,
    b: Vec<Duration>,
    /// Ratio target (a/b at most this); `None` for a row shown for context.
    target: Option<f64>,
    /// An absolute bound on a's median, when the scenario has one.
    max_a: Option<Duration>,
}

fn run_steps(steps: &[Step]) -> Duration {
    let t = Instant::now();
    for s in steps {
        let st = Command::new(&s[0])
            .args(&s[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| die(&format!("{}: {e}", s[0])));
        if !st.success() {
            die(&format!("{} failed ({st})", s.join(" ")));
        }
    }
    t.elapsed()
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn busybox_bundle(dir: &Path) {
    let rootfs = dir.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| die("busybox is not installed (apt-get install busybox-static)"));
    std::fs::copy(bb, rootfs.join("busybox")).unwrap();
    for a in ["sh", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join(a));
    }
}

fn main() {
    let o = parse_args();
    let isoexec = o.bin_dir.join("isoexec");
    if !isoexec.exists() {
        die(&format!(
            "{} is not built (make release)",
            isoexec.display()
        ));
    }
    let runc = which("runc").unwrap_or_else(|| die("runc is not installed (apt-get install runc)"));
    let work = std::env::temp_dir().join(format!("isoexec-bench-{}", std::process::id()));
    let bundle = work.join("bundle");
    busybox_bundle(&bundle);
    let st = Command::new(&isoexec)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    // The same work on both sides: the bundle's own root (image semantics);
    // the chroot_env rows below measure what driver mode adds.
    spec["annotations"] = serde_json::json!({"io.isoexec.chroot_env": "none"});
    std::fs::write(&cfg, spec.to_string()).unwrap();

    let iso = isoexec.display().to_string();
    let runc = runc.display().to_string();
    let b = bundle.display().to_string();
    let iso_root = work.join("isoexec-state").display().to_string();
    let runc_root = work.join("runc-state").display().to_string();

    let run_cmd = |bin: &str, root: &str, b: &str, id: String| -> Step {
        vec![
            bin.into(),
            "--root".into(),
            root.into(),
            "run".into(),
            "--bundle".into(),
            b.into(),
            id,
        ]
    };
    let csd = |bin: &str, root: &str, b: &str, id: String| -> Vec<Step> {
        let r = |v: &[&str]| -> Step {
            let mut s: Step = vec![bin.into(), "--root".into(), root.into()];
            s.extend(v.iter().map(|x| x.to_string()));
            s
        };
        vec![
            r(&["create", "--bundle", b, &id]),
            r(&["start", &id]),
            r(&["delete", "--force", &id]),
        ]
    };

    let scenarios = vec![
        Scenario {
            name: "run /bin/true (CLI)",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("run-{n}"))])
                },
            },
            b: Side {
                name: format!("runc {}", version(&runc)),
                steps: {
                    let (i, r, b) = (runc.clone(), runc_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("run-{n}"))])
                },
            },
        },
        Scenario {
            name: "create+start+delete /bin/true",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), b.clone());
                    Box::new(move |n| csd(&i, &r, &b, format!("csd-{n}")))
                },
            },
            b: Side {
                name: format!("runc {}", version(&runc)),
                steps: {
                    let (i, r, b) = (runc.clone(), runc_root.clone(), b.clone());
                    Box::new(move |n| csd(&i, &r, &b, format!("csd-{n}")))
                },
            },
        },
    ];

    let mut results = Vec::new();
    for sc in &scenarios {
        eprintln!(
            "{}: {} warm-up + {} runs each, alternating",
            sc.name, o.warmup, o.runs
        );
        let (mut a, mut bb) = (Vec::new(), Vec::new());
        for n in 0..o.warmup + o.runs {
            let ta = run_steps(&(sc.a.steps)(n));
            let tb = run_steps(&(sc.b.steps)(n));
            if n >= o.warmup {
                a.push(ta);
                bb.push(tb);
            }
        }
        results.push(Result {
            name: sc.name.to_string(),
            a_name: sc.a.name.clone(),
            b_name: sc.b.name.clone(),
            a,
            b: bb,
            target: Some(sc.target),
            max_a: None,
        });
    }
    results.extend(chroot_scenarios(&work, &o));
    let _ = std::fs::remove_dir_all(&work);

    let machine = machine();
    let mut md = String::new();
    md.push_str(&format!(
        "machine: {machine}\nruns: {} per side (after {} warm-up), alternating\n\n",
        o.runs, o.warmup
    ));
    md.push_str("| scenario | isoexec median ms (min–max) | baseline | baseline median ms (min–max) | ratio | target | met |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    let mut json = Vec::new();
    for r in &results {
        let (ma, mb) = (median(&r.a), median(&r.b));
        let ratio = ma.as_secs_f64() / mb.as_secs_f64();
        let met = r.target.is_none_or(|t| ratio <= t) && r.max_a.is_none_or(|m| ma <= m);
        let target = match (r.target, r.max_a) {
            (Some(t), Some(m)) => format!("≤ {t} and ≤ {} ms", m.as_millis()),
            (Some(t), None) => format!("≤ {t}"),
            (None, Some(m)) => format!("≤ {} ms", m.as_millis()),
            (None, None) => "(context)".to_string(),
        };
        md.push_str(&format!(
            "| {} | {} ({}–{}) | {} | {} ({}–{}) | {:.4} | {} | {} |\n",
            r.name,
            ms(ma),
            ms(*r.a.iter().min().unwrap()),
            ms(*r.a.iter().max().unwrap()),
            r.b_name,
            ms(mb),
            ms(*r.b.iter().min().unwrap()),
            ms(*r.b.iter().max().unwrap()),
            ratio,
            target,
            match (met, r.target.is_some() || r.max_a.is_some()) {
                (_, false) => "-",
                (true, true) => "yes",
                (false, true) => "no",
            }
        ));
        json.push(serde_json::json!({
            "scenario": r.name, "isoexec": r.a_name, "baseline": r.b_name,
            "isoexec_median_ms": ma.as_secs_f64() * 1e3, "baseline_median_ms": mb.as_secs_f64() * 1e3,
            "isoexec_ms": r.a.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
            "baseline_ms": r.b.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
            "ratio": ratio, "target": r.target, "max_ms": r.max_a.map(|m| m.as_millis()), "met": met,
        }));
    }
    println!("{md}");
    std::fs::create_dir_all(&o.out).unwrap();
    std::fs::write(o.out.join("report.md"), &md).unwrap();
    std::fs::write(
        o.out.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({"machine": machine, "results": json}))
            .unwrap(),
    )
    .unwrap();
    eprintln!("written: {0}/report.md, {0}/report.json", o.out.display());
}

/// Assembling a task's root from host directories, the engine's own code
/// (`sys::chroot::prepare` + `mount_all`) in a fresh mount namespace per
/// sample: bind and overlay against the exec driver's hardlink copy (link),
/// for the default chroot_env and for a small one.
fn chroot_scenarios(work: &Path, o: &Opts) -> Vec<Result> {
    use runtime::config::{ChrootMode, DriverConfig};
    let default_env = DriverConfig::default().chroot_env;
    // The same nine directories, with a much smaller /usr: as many mounts,
    // far fewer files. Bind should not care; the hardlink copy does.
    let small_env: Vec<(PathBuf, PathBuf)> = default_env
        .iter()
        .map(|(h, t)| {
            if h == Path::new("/usr") {
                (PathBuf::from("/usr/bin"), t.clone())
            } else {
                (h.clone(), t.clone())
            }
        })
        .collect();
    let entries =
        |env: &[(PathBuf, PathBuf)]| -> usize { env.iter().map(|(h, _)| count_entries(h)).sum() };
    let (n_default, n_small) = (entries(&default_env), entries(&small_env));
    let link_runs = (o.runs / 8).max(3);
    let mut out = Vec::new();
    // The ratio target is for the default chroot_env; the small one shows
    // that bind stays flat while the copy shrinks with the tree.
    for (label, env, n, runs, ratio_target) in [
        (
            "default chroot_env",
            &default_env,
            n_default,
            link_runs,
            Some(0.001),
        ),
        (
            "/usr replaced by /usr/bin",
            &small_env,
            n_small,
            o.runs / 2,
            None,
        ),
    ] {
        for mode in [ChrootMode::Bind, ChrootMode::Overlay] {
            eprintln!(
                "chroot_env assembly, {label} ({n} entries): {} vs link, {runs} runs each",
                mode.as_str()
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for i in 0..runs + 1 {
                let ta = assemble(work, mode, env, i);
                let tb = assemble(work, ChrootMode::Link, env, i);
                if i > 0 {
                    a.push(ta);
                    b.push(tb);
                }
            }
            out.push(Result {
                name: format!(
                    "chroot_env assembly, {label} ({n} entries): {}",
                    mode.as_str()
                ),
                a_name: mode.as_str().into(),
                b_name: "link (the exec driver's hardlink copy)".into(),
                a,
                b,
                target: ratio_target.filter(|_| mode == ChrootMode::Bind),
                max_a: (mode == ChrootMode::Bind).then(|| Duration::from_millis(5)),
            });
        }
    }
    out
}

/// One assembly in a forked child with its own mount namespace (the mounts
/// die with it); returns the time prepare + mount_all took.
fn assemble(
    work: &Path,
    mode: runtime::config::ChrootMode,
    env: &[(PathBuf, PathBuf)],
    i: usize,
) -> Duration {
    use runtime::driver::ChrootPlan;
    let dir = work.join(format!("chroot-{}-{i}", mode.as_str()));
    let root = dir.join("rootfs");
    let plan = ChrootPlan {
        mode,
        entries: env.to_vec(),
        sandbox: None,
        alloc_host: dir.join("alloc"),
        overlay_dir: dir.join("overlay"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the bench is single-threaded; the child exits without returning.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = (|| -> std::result::Result<u128, String> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| e.to_string())?;
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
                    None::<&str>,
                )
                .map_err(|e| e.to_string())?;
                let t = Instant::now();
                let p = runtime::sys::chroot::prepare(&plan, &root, work, &[])
                    .map_err(|e| e.to_string())?;
                runtime::sys::chroot::mount_all(&plan, &p, &root, 0, 0)
                    .map_err(|e| e.to_string())?;
                Ok(t.elapsed().as_nanos())
            })();
            let msg = match code {
                Ok(ns) => ns.to_string(),
                Err(e) => format!("error: {e}"),
            };
            let _ = nix::unistd::write(&w, msg.as_bytes());
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut buf = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut buf).unwrap();
            let _ = nix::sys::wait::waitpid(child, None);
            let _ = std::fs::remove_dir_all(&dir);
            // Write back this sample's files (a link copy makes 100k+) before
            // the next sample is timed.
            nix::unistd::sync();
            match buf.parse::<u64>() {
                Ok(ns) => Duration::from_nanos(ns),
                Err(_) => die(&format!("chroot_env assembly ({}): {buf}", mode.as_str())),
            }
        }
    }
}

/// Files, directories and links below `p` (what a link copy walks).
fn count_entries(p: &Path) -> usize {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return 1;
    }
    1 + std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| count_entries(&e.path())).sum::<usize>())
        .unwrap_or(0)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn version(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}
