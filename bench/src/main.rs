//! `make bench`: isoexec against its baselines, measured side by side in
//! one run (A B A B ...), warm-up runs not counted, medians and ratios
//! reported. Absolute times are context; the ratio is the result.
//!
//! Usage: `isoexec-bench [--runs N] [--warmup N] [--settle MS] [--bin-dir DIR] [--out DIR] [--only NAME]`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    /// Run only the scenarios whose name contains this.
    only: Option<String>,
    runs: usize,
    warmup: usize,
    /// The pause before each timed sample, so that no sample is billed for
    /// the clean-up its predecessor left running (containerd's garbage
    /// collection of a deleted container, the shim's `delete`).
    settle: Duration,
    bin_dir: PathBuf,
    out: PathBuf,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        only: None,
        runs: 40,
        warmup: 5,
        settle: Duration::from_millis(250),
        bin_dir: PathBuf::from("target/dist"),
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
            "--settle" => {
                o.settle = Duration::from_millis(
                    val()
                        .parse()
                        .unwrap_or_else(|_| die("--settle takes milliseconds")),
                )
            }
            "--bin-dir" => o.bin_dir = PathBuf::from(val()),
            "--out" => o.out = PathBuf::from(val()),
            "--only" => o.only = Some(val()),
            "-h" | "--help" => {
                println!("isoexec-bench [--runs N] [--warmup N] [--settle MS] [--bin-dir DIR] [--out DIR] [--only NAME]");
                println!("  --settle MS: the pause before each timed sample (default 250)");
                println!("  --only NAME: the scenarios whose name contains NAME (run, ctr, memory, chroot_env)");
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
    /// What the samples measure: "ms" (durations), or "MiB" (memory,
    /// carried as Duration::from_micros(KiB) and shown converted).
    unit: &'static str,
}

/// One sample: a pause of `settle` (the machine quiet again), then the
/// steps, timed.
fn run_steps(steps: &[Step], settle: Duration) -> Duration {
    std::thread::sleep(settle);
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

/// Samples A B A B, each after `settle`: the first `warmup` of each side
/// not counted.
fn alternating(
    a: &Side,
    b: &Side,
    warmup: usize,
    runs: usize,
    settle: Duration,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for n in 0..warmup + runs {
        let (x, y) = (
            run_steps(&(a.steps)(n), settle),
            run_steps(&(b.steps)(n), settle),
        );
        if n >= warmup {
            ta.push(x);
            tb.push(y);
        }
    }
    (ta, tb)
}

/// Timed runs in each loop of [`loops`].
const LOOP: usize = 5;

/// Back to back, as a user's loop runs one command: loops of [`LOOP`]
/// timed runs of one side, the two sides' loops alternating (A first,
/// then B first, ...). Each loop starts with one run not timed: it follows
/// the other side's run, whose teardown (its network namespace, its
/// cgroups) kernel workers are still doing, which no run of a real loop
/// follows. Samples A B A B instead bill each side for the other's
/// teardown.
fn loops(a: &Side, b: &Side, warmup: usize, runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut n = 0;
    let mut next = |side: &Side| {
        n += 1;
        run_steps(&(side.steps)(n), Duration::ZERO)
    };
    for _ in 0..warmup {
        next(a);
        next(b);
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for round in 0..runs.div_ceil(LOOP) {
        let mut order = [(a, &mut ta), (b, &mut tb)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (side, out) in order {
            next(side);
            for _ in 0..LOOP {
                out.push(next(side));
            }
        }
    }
    ta.truncate(runs);
    tb.truncate(runs);
    (ta, tb)
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// A sample as a number in its row's unit.
fn value(d: Duration, unit: &str) -> f64 {
    match unit {
        "MiB" => d.as_micros() as f64 / 1024.0,
        _ => d.as_secs_f64() * 1e3,
    }
}

/// A sample in its row's unit.
fn show(d: Duration, unit: &str) -> String {
    match unit {
        "MiB" => format!("{:.1} MiB", d.as_micros() as f64 / 1024.0),
        _ => format!("{} ms", ms(d)),
    }
}

fn busybox_bundle(dir: &Path) {
    let rootfs = dir.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| die("busybox is not installed (apt-get install busybox-static)"));
    std::fs::copy(bb, rootfs.join("busybox")).unwrap();
    for a in ["sh", "true", "sleep"] {
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
    let crun = which("crun").unwrap_or_else(|| die("crun is not installed (apt-get install crun)"));
    let hid_unified = hide_empty_unified();
    let work = std::env::temp_dir().join(format!("isoexec-bench-{}", std::process::id()));
    let state_dir = state_on_tmpfs(&work);
    let cgroups_before = top_cgroups();
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
    // A version every baseline reads (crun 1.8 refuses 1.2.0).
    spec["ociVersion"] = serde_json::json!("1.0.2");
    // The same work on both sides: the bundle's own root (image semantics);
    // the chroot_env rows below measure what driver mode adds.
    spec["annotations"] = serde_json::json!({"io.isoexec.chroot_env": "none"});
    std::fs::write(&cfg, spec.to_string()).unwrap();
    // The same bundle in a user namespace (0..65535 mapped to 100000..):
    // what a user namespace costs each runtime. Its mount points exist
    // (the namespace's root may not create them in a root-owned image).
    let userns_bundle = work.join("bundle-userns");
    busybox_bundle(&userns_bundle);
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(userns_bundle.join("rootfs").join(d)).unwrap();
    }
    let mut uspec = spec.clone();
    if let Some(ns) = uspec["linux"]["namespaces"].as_array_mut() {
        ns.push(serde_json::json!({"type": "user"}));
    }
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    uspec["linux"]["uidMappings"] = map.clone();
    uspec["linux"]["gidMappings"] = map;
    std::fs::write(userns_bundle.join("config.json"), uspec.to_string()).unwrap();
    let ub = userns_bundle.display().to_string();
    // The main job: the exec driver's task, an empty root and the driver's
    // default chroot_env (no annotation). runc's side does the same work
    // as it can: the same host directories bound read-only into an empty
    // root.
    let task_bundle = work.join("bundle-task");
    std::fs::create_dir_all(task_bundle.join("rootfs")).unwrap();
    let mut tspec = spec.clone();
    tspec["annotations"] = serde_json::json!({});
    tspec["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(task_bundle.join("config.json"), tspec.to_string()).unwrap();
    let runc_task_bundle = work.join("bundle-task-runc");
    std::fs::create_dir_all(runc_task_bundle.join("rootfs")).unwrap();
    let mut rspec = tspec.clone();
    if let Some(m) = rspec["mounts"].as_array_mut() {
        for dir in runtime::config::DEFAULT_CHROOT_ENV {
            if Path::new(dir).is_dir() {
                m.push(serde_json::json!({
                    "destination": dir, "type": "bind", "source": dir,
                    "options": ["rbind", "ro", "nosuid", "nodev"]
                }));
            }
        }
    }
    std::fs::write(runc_task_bundle.join("config.json"), rspec.to_string()).unwrap();
    let (tb, rtb) = (
        task_bundle.display().to_string(),
        runc_task_bundle.display().to_string(),
    );
    // A running container to exec into, one per runtime.
    let sleep_bundle = work.join("bundle-sleep");
    busybox_bundle(&sleep_bundle);
    let mut sspec = spec.clone();
    sspec["process"]["args"] = serde_json::json!(["/bin/sleep", "100000"]);
    std::fs::write(sleep_bundle.join("config.json"), sspec.to_string()).unwrap();

    // As `make install` leaves it: immutable, so sealed as it is.
    let installed = install_immutable(&isoexec, &state_dir);
    let iso = installed
        .as_deref()
        .unwrap_or(&isoexec)
        .display()
        .to_string();
    let iso_writable = isoexec.display().to_string();
    let runc = runc.display().to_string();
    let b = bundle.display().to_string();
    let iso_root = state_dir.join("isoexec").display().to_string();
    let runc_root = state_dir.join("runc").display().to_string();
    let crun = crun.display().to_string();
    let crun_root = state_dir.join("crun").display().to_string();

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
    let exec_cmd = |bin: &str, root: &str| -> Step {
        [bin, "--root", root, "exec", "exec-target", "/bin/true"]
            .iter()
            .map(|s| s.to_string())
            .collect()
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

    let scenarios = [
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
        // Installed otherwise (a writable binary): every run re-executes
        // from a read-only copy of itself first (CVE-2019-5736).
        Scenario {
            name: "run /bin/true (CLI), a writable binary (the sealed re-exec)",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso_writable.clone(), iso_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("run-w-{n}"))])
                },
            },
            b: Side {
                name: format!("runc {}", version(&runc)),
                steps: {
                    let (i, r, b) = (runc.clone(), runc_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("run-w-{n}"))])
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
        Scenario {
            name: "run /bin/true in a user namespace (CLI)",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), ub.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("userns-{n}"))])
                },
            },
            b: Side {
                name: format!("runc {}", version(&runc)),
                steps: {
                    let (i, r, b) = (runc.clone(), runc_root.clone(), ub.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("userns-{n}"))])
                },
            },
        },
        Scenario {
            name: "run /bin/true, the exec driver's task (empty root, chroot_env)",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), tb.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("task-{n}"))])
                },
            },
            b: Side {
                name: format!("runc {} (the same directories bound)", version(&runc)),
                steps: {
                    let (i, r, b) = (runc.clone(), runc_root.clone(), rtb.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("task-{n}"))])
                },
            },
        },
        Scenario {
            name: "exec /bin/true into a running container (CLI)",
            target: 0.25,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r) = (iso.clone(), iso_root.clone());
                    Box::new(move |_| vec![exec_cmd(&i, &r)])
                },
            },
            b: Side {
                name: format!("runc {}", version(&runc)),
                steps: {
                    let (i, r) = (runc.clone(), runc_root.clone());
                    Box::new(move |_| vec![exec_cmd(&i, &r)])
                },
            },
        },
        // crun, the C runtime, as the second baseline (issue 13's bar: at
        // most half of crun's time).
        Scenario {
            name: "run /bin/true (CLI) vs crun",
            target: 0.5,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("vs-crun-{n}"))])
                },
            },
            b: Side {
                name: format!("crun {}", version(&crun)),
                steps: {
                    let (i, r, b) = (crun.clone(), crun_root.clone(), b.clone());
                    Box::new(move |n| vec![run_cmd(&i, &r, &b, format!("run-{n}"))])
                },
            },
        },
        Scenario {
            name: "create+start+delete /bin/true vs crun",
            target: 0.5,
            a: Side {
                name: "isoexec".into(),
                steps: {
                    let (i, r, b) = (iso.clone(), iso_root.clone(), b.clone());
                    Box::new(move |n| csd(&i, &r, &b, format!("csdc-{n}")))
                },
            },
            b: Side {
                name: format!("crun {}", version(&crun)),
                steps: {
                    let (i, r, b) = (crun.clone(), crun_root.clone(), b.clone());
                    Box::new(move |n| csd(&i, &r, &b, format!("csd-{n}")))
                },
            },
        },
    ];

    let wanted = |name: &str| o.only.as_deref().is_none_or(|w| name.contains(w));
    let mut results = Vec::new();
    let sb = sleep_bundle.display().to_string();
    let targets = [(&iso, &iso_root), (&runc, &runc_root)];
    if scenarios
        .iter()
        .any(|sc| sc.name.starts_with("exec") && wanted(sc.name))
    {
        for (bin, root) in targets {
            for verb in [
                vec!["create", "--bundle", &sb, "exec-target"],
                vec!["start", "exec-target"],
            ] {
                let mut step: Step = vec![bin.to_string(), "--root".into(), root.to_string()];
                step.extend(verb.iter().map(|s| s.to_string()));
                run_steps(&[step], Duration::ZERO);
            }
        }
    }
    // Every CLI row both ways: settled (the machine quiet between samples)
    // and back to back, as a user's loop runs them; neither flatters alone.
    for sc in scenarios.iter().filter(|sc| wanted(sc.name)) {
        for (way, settle) in [("settled", o.settle), ("back to back", Duration::ZERO)] {
            let how = if settle.is_zero() {
                format!("in loops of {LOOP}")
            } else {
                "alternating".to_string()
            };
            eprintln!(
                "{}, {way}: {} warm-up + {} runs each, {how}",
                sc.name, o.warmup, o.runs
            );
            let (a, bb) = if settle.is_zero() {
                loops(&sc.a, &sc.b, o.warmup, o.runs)
            } else {
                alternating(&sc.a, &sc.b, o.warmup, o.runs, settle)
            };
            results.push(Result {
                name: format!("{}, {way}", sc.name),
                a_name: sc.a.name.clone(),
                b_name: sc.b.name.clone(),
                a,
                b: bb,
                target: Some(sc.target),
                max_a: None,
                unit: "ms",
            });
        }
    }
    for (bin, root) in targets {
        let step: Step = [bin, "--root", root, "delete", "--force", "exec-target"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let _ = Command::new(&step[0]).args(&step[1..]).status();
    }
    if wanted("ctr run --rm /bin/true")
        || wanted("ctr task exec")
        || wanted("shim memory")
        || wanted("100 tasks")
    {
        results.extend(containerd_scenarios(&work, &o, &bundle));
    }
    if wanted("chroot_env assembly") {
        results.extend(chroot_scenarios(&work, &o));
    }
    if let Some(p) = &installed {
        let _ = isoexec_tests::set_immutable(p, false);
    }
    let _ = nix::mount::umount2(&state_dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
    // The runtimes remove their tasks' cgroups but leave the parents they
    // made (containerd's namespace `default`, isoexec's `isoexec`): remove
    // the ones this run made, if empty.
    for dir in top_cgroups().difference(&cgroups_before) {
        let _ = std::fs::remove_dir(dir);
    }

    let machine = machine();
    let mut md = String::new();
    md.push_str(&format!(
        "machine: {machine}\nruns: {} per side (after {} warm-up); settled rows alternating, {} ms apart; back-to-back rows in loops of {LOOP} runs of one side, the loops alternating, each loop's first run (after the other side's) not timed\n",
        o.runs,
        o.warmup,
        o.settle.as_millis()
    ));
    if hid_unified {
        md.push_str("hybrid cgroups: every runtime ran in a mount namespace without the empty /sys/fs/cgroup/unified (crun refuses to run with it)\n");
    }
    md.push_str("state: every runtime's --root on a tmpfs, as their default /run/... is on a systemd host\n");
    md.push_str(if installed.is_some() {
        "isoexec: the CLI as `make install` leaves it, immutable (no re-exec), except the row \"a writable binary\"\n"
    } else {
        "isoexec: the CLI could not be made immutable here: every row pays the sealed re-exec\n"
    });
    md.push('\n');
    md.push_str("| scenario | isoexec median (min–max) | baseline | baseline median (min–max) | ratio | target | met |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    let mut json = Vec::new();
    for r in &results {
        let (ma, mb) = (median(&r.a), median(&r.b));
        let ratio = ma.as_secs_f64() / mb.as_secs_f64();
        let met = r.target.is_none_or(|t| ratio <= t) && r.max_a.is_none_or(|m| ma <= m);
        let bound = |m: Duration| match r.unit {
            "MiB" => format!("{} MiB", m.as_micros() / 1024),
            _ => format!("{} ms", m.as_millis()),
        };
        let target = match (r.target, r.max_a) {
            (Some(t), Some(m)) => format!("≤ {t} and ≤ {}", bound(m)),
            (Some(t), None) => format!("≤ {t}"),
            (None, Some(m)) => format!("≤ {}", bound(m)),
            (None, None) => "(context)".to_string(),
        };
        md.push_str(&format!(
            "| {} | {} ({}–{}) | {} | {} ({}–{}) | {:.4} | {} | {} |\n",
            r.name,
            show(ma, r.unit),
            show(*r.a.iter().min().unwrap(), r.unit),
            show(*r.a.iter().max().unwrap(), r.unit),
            r.b_name,
            show(mb, r.unit),
            show(*r.b.iter().min().unwrap(), r.unit),
            show(*r.b.iter().max().unwrap(), r.unit),
            ratio,
            target,
            match (met, r.target.is_some() || r.max_a.is_some()) {
                (_, false) => "-",
                (true, true) => "yes",
                (false, true) => "no",
            }
        ));
        json.push(serde_json::json!({
            "scenario": r.name, "isoexec_side": r.a_name, "baseline_side": r.b_name,
            "unit": r.unit,
            "isoexec_median": value(ma, r.unit), "baseline_median": value(mb, r.unit),
            "isoexec": r.a.iter().map(|d| value(*d, r.unit)).collect::<Vec<_>>(),
            "baseline": r.b.iter().map(|d| value(*d, r.unit)).collect::<Vec<_>>(),
            "ratio": ratio, "target": r.target, "max_ms": r.max_a.map(|m| m.as_millis()), "met": met,
        }));
    }
    println!("{md}");
    std::fs::create_dir_all(&o.out).unwrap();
    std::fs::write(o.out.join("report.md"), &md).unwrap();
    std::fs::write(
        o.out.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "machine": machine,
            "settle_ms": o.settle.as_millis(),
            "results": json,
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(o.out.join("report.svg"), svg(&results)).unwrap();
    eprintln!(
        "written: {0}/report.md, {0}/report.json, {0}/report.svg",
        o.out.display()
    );
}

/// The cgroups right under each hierarchy's root (cgroup v1: under each
/// controller's mount; v2: under /sys/fs/cgroup).
fn top_cgroups() -> std::collections::HashSet<PathBuf> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return subdirs(root).into_iter().collect();
    }
    subdirs(root)
        .iter()
        .flat_map(|hierarchy| subdirs(hierarchy))
        .collect()
}

/// A containerd of the bench's own (private config, sockets and state),
/// with the built shim on its PATH. Killed on drop.
struct Containerd {
    child: std::process::Child,
    sock: PathBuf,
}

impl Containerd {
    fn start(work: &Path, bin_dir: &Path) -> Option<Containerd> {
        which("containerd")?;
        let dir = work.join("ctd");
        std::fs::create_dir_all(&dir).ok()?;
        isoexec_tests::containerd::write_config(&dir).ok()?;
        let child = isoexec_tests::containerd::command(&dir, bin_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let c = Containerd {
            child,
            sock: isoexec_tests::containerd::socket(&dir),
        };
        for _ in 0..150 {
            if c.ctr(&["version"]).is_some_and(|o| o.status.success()) {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn ctr(&self, args: &[&str]) -> Option<std::process::Output> {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
    }

    fn steps(&self, args: &[&str]) -> Step {
        let mut s: Step = vec!["ctr".into(), "-a".into(), self.sock.display().to_string()];
        s.extend(args.iter().map(|a| a.to_string()));
        s
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident and proportional memory of a process, in KiB.
fn memory_kib(pid: i32) -> (u64, u64) {
    let field = |file: &str, key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("status", "VmRSS:"), field("smaps_rollup", "Pss:"))
}

/// CPU time of process `pid` and of its reaped children, in clock ticks
/// (/proc/PID/stat: utime, stime, cutime, cstime; every thread counted).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime, stime, cutime, cstime: fields 14 to 17.
    runtime::sys::stat_fields(&stat).map_or(0, |f| {
        f.iter()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The pid of the shim (by binary name) serving this containerd.
fn shim_pid(ctd: &Containerd, name: &str) -> Option<i32> {
    let sock = ctd.sock.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)
            .into_owned();
        (cmd.contains(name) && cmd.contains(&sock)).then_some(pid)
    })
}

/// `ctr run --rm` of /bin/true through each shim on the same busybox root,
/// and each shim's memory with one task running.
fn containerd_scenarios(work: &Path, o: &Opts, bundle: &Path) -> Vec<Result> {
    let Some(ctd) = Containerd::start(work, &o.bin_dir) else {
        eprintln!("containerd is not installed or did not start: skipping the shim scenarios");
        return vec![];
    };
    let ctd = std::rc::Rc::new(ctd);
    let rootfs = bundle.join("rootfs").display().to_string();
    // As many samples as the CLI rows: a containerd sample now and then
    // takes ~15 ms longer on either side (containerd's own work before it
    // starts the shim), and fewer samples let the median jump.
    let runs = o.runs.max(5);
    let warmup = o.warmup;
    let mut out = Vec::new();
    eprintln!("ctr run --rm /bin/true: isoexec vs runc-v2, {runs} runs each");
    let side = |runtime: &'static str,
                extra: &'static [&'static str]|
     -> Box<dyn Fn(usize) -> Vec<Step>> {
        let (ctd, rootfs) = (ctd.clone(), rootfs.clone());
        Box::new(move |n| {
            let id = format!("{}-{n}", runtime.rsplit('.').nth(1).unwrap_or("x"));
            let mut args = vec!["run", "--rm", "--runtime", runtime];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--rootfs", &rootfs, &id, "/bin/true"]);
            vec![ctd.steps(&args)]
        })
    };
    let sc = Scenario {
        name: "ctr run --rm /bin/true",
        target: 0.33,
        a: Side {
            name: "isoexec shim".into(),
            steps: side(
                "io.containerd.isoexec.v1",
                &["--annotation", "io.isoexec.chroot_env=none"],
            ),
        },
        b: Side {
            name: "runc-v2 shim".into(),
            steps: side("io.containerd.runc.v2", &[]),
        },
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in 0..runs + warmup {
        let ta = run_steps(&(sc.a.steps)(n), o.settle);
        let tb = run_steps(&(sc.b.steps)(n), o.settle);
        if n >= warmup {
            a.push(ta);
            b.push(tb);
        }
    }
    out.push(Result {
        name: sc.name.to_string(),
        a_name: sc.a.name.clone(),
        b_name: sc.b.name.clone(),
        a,
        b,
        target: Some(sc.target),
        max_a: None,
        unit: "ms",
    });

    // exec into a running task: one task per runtime, then execs alternating.
    eprintln!("ctr task exec true: isoexec vs runc-v2, {runs} runs each");
    let runtimes: [(&str, &[&str]); 2] = [
        (
            "io.containerd.isoexec.v1",
            &["--annotation", "io.isoexec.chroot_env=none"],
        ),
        ("io.containerd.runc.v2", &[]),
    ];
    for (i, (runtime, extra)) in runtimes.iter().enumerate() {
        let id = format!("exec-target-{i}");
        let mut args = vec!["run", "-d", "--runtime", runtime];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", &rootfs, &id, "/bin/sh", "-c", "read x"]);
        let _ = ctd.ctr(&args);
    }
    // The CPU time each runtime spends on the execs (its shim and the shim's
    // children: runc, the exec'd processes): what is left of the wall time
    // is ctr's and containerd's, the same for both.
    let shims = [
        shim_pid(&ctd, "containerd-shim-isoexec-v1"),
        shim_pid(&ctd, "containerd-shim-runc-v2"),
    ];
    let cpu_before = shims.map(|p| p.map_or(0, cpu_ticks));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for n in 0..runs + warmup {
        let exec = |i: usize| {
            vec![ctd.steps(&[
                "task",
                "exec",
                "--exec-id",
                &format!("e{n}"),
                &format!("exec-target-{i}"),
                "/bin/true",
            ])]
        };
        let ta = run_steps(&exec(0), o.settle);
        let tb = run_steps(&exec(1), o.settle);
        if n >= warmup {
            a.push(ta);
            b.push(tb);
        }
    }
    let cpu_after = shims.map(|p| p.map_or(0, cpu_ticks));
    for i in 0..2 {
        let id = format!("exec-target-{i}");
        let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
        std::thread::sleep(Duration::from_millis(300));
        let _ = ctd.ctr(&["task", "rm", "-f", &id]);
        let _ = ctd.ctr(&["c", "rm", &id]);
    }
    out.push(Result {
        name: "ctr task exec /bin/true".to_string(),
        a_name: "isoexec shim".into(),
        b_name: "runc-v2 shim".into(),
        a,
        b,
        target: Some(0.33),
        max_a: None,
        unit: "ms",
    });
    // One figure per side (all the runs, warm-up included, averaged).
    let per_exec = |i: usize| {
        let ticks = cpu_after[i].saturating_sub(cpu_before[i]) as f64;
        Duration::from_secs_f64(ticks / clock_ticks() / (runs + warmup) as f64)
    };
    out.push(Result {
        name: "ctr task exec: the runtime's CPU time per exec (shim and its children)".to_string(),
        a_name: "isoexec shim".into(),
        b_name: "runc-v2 shim, runc".into(),
        a: vec![per_exec(0)],
        b: vec![per_exec(1)],
        target: None,
        max_a: None,
        unit: "ms",
    });

    // Many tasks at once: 100 `ctr run -d` started together, all running,
    // then stopped; the time until all run, and the shims' total memory.
    if o.only
        .as_deref()
        .is_none_or(|w| "100 tasks".contains(w) || w == "concurrent")
    {
        let n = 100;
        let mut times = Vec::new();
        let mut mems = Vec::new();
        for (k, (runtime, name, extra)) in [
            (
                "io.containerd.isoexec.v1",
                "containerd-shim-isoexec-v1",
                vec!["--annotation", "io.isoexec.chroot_env=none"],
            ),
            ("io.containerd.runc.v2", "containerd-shim-runc-v2", vec![]),
        ]
        .iter()
        .enumerate()
        {
            eprintln!("{n} tasks started concurrently: {runtime}");
            let t = Instant::now();
            let children: Vec<_> = (0..n)
                .filter_map(|i| {
                    let id = format!("many-{k}-{i}");
                    let mut args = vec!["run", "-d", "--runtime", runtime];
                    args.extend_from_slice(extra);
                    args.extend_from_slice(&["--rootfs", &rootfs, &id, "/bin/sleep", "1000"]);
                    Command::new("ctr")
                        .arg("-a")
                        .arg(&ctd.sock)
                        .args(&args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .ok()
                })
                .collect();
            for mut c in children {
                let _ = c.wait();
            }
            let elapsed = t.elapsed();
            let running = ctd
                .ctr(&["task", "ls"])
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .matches("RUNNING")
                        .count()
                })
                .unwrap_or(0);
            if running != n {
                eprintln!("  only {running} of {n} tasks running");
            }
            let sock = ctd.sock.display().to_string();
            let kib: u64 = std::fs::read_dir("/proc")
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                        .filter(|pid| {
                            let cmd =
                                std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                            let cmd = String::from_utf8_lossy(&cmd);
                            cmd.contains(name) && cmd.contains(&sock)
                        })
                        .map(|pid| memory_kib(pid).0)
                        .sum()
                })
                .unwrap_or(0);
            times.push(elapsed);
            mems.push(kib);
            for i in 0..n {
                let id = format!("many-{k}-{i}");
                let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
            }
            std::thread::sleep(Duration::from_millis(500));
            for i in 0..n {
                let id = format!("many-{k}-{i}");
                let _ = ctd.ctr(&["task", "rm", "-f", &id]);
                let _ = ctd.ctr(&["c", "rm", &id]);
            }
        }
        let tps = |d: Duration| n as f64 / d.as_secs_f64();
        out.push(Result {
            name: format!(
                "{n} tasks started concurrently ({:.0} vs {:.0} tasks/s)",
                tps(times[0]),
                tps(times[1])
            ),
            a_name: "isoexec shim".into(),
            b_name: "runc-v2 shim".into(),
            a: vec![times[0]],
            b: vec![times[1]],
            target: Some(1.0),
            max_a: None,
            unit: "ms",
        });
        out.push(Result {
            name: format!("{n} tasks running: the shims' total RSS"),
            a_name: "isoexec shims".into(),
            b_name: "runc-v2 shims".into(),
            a: vec![Duration::from_micros(mems[0])],
            b: vec![Duration::from_micros(mems[1])],
            target: Some(1.0),
            max_a: None,
            unit: "MiB",
        });
    }

    // Memory of each shim with one task running.
    let mut mem = Vec::new();
    for (runtime, name, extra) in [
        (
            "io.containerd.isoexec.v1",
            "containerd-shim-isoexec-v1",
            vec!["--annotation", "io.isoexec.chroot_env=none"],
        ),
        ("io.containerd.runc.v2", "containerd-shim-runc-v2", vec![]),
    ] {
        let id = format!("mem-{name}");
        let mut args = vec!["run", "-d", "--runtime", runtime];
        args.extend_from_slice(&extra);
        args.extend_from_slice(&["--rootfs", &rootfs, &id, "/bin/sh", "-c", "read x"]);
        let _ = ctd.ctr(&args);
        std::thread::sleep(Duration::from_millis(500));
        mem.push(shim_pid(&ctd, name).map(memory_kib).unwrap_or((0, 0)));
        let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
        std::thread::sleep(Duration::from_millis(300));
        let _ = ctd.ctr(&["task", "rm", "-f", &id]);
        let _ = ctd.ctr(&["c", "rm", &id]);
    }
    out.push(Result {
        name: format!(
            "shim memory with one task running (PSS {:.1} vs {:.1} MiB)",
            mem[0].1 as f64 / 1024.0,
            mem[1].1 as f64 / 1024.0
        ),
        a_name: "isoexec shim RSS".into(),
        b_name: "runc-v2 shim RSS".into(),
        a: vec![Duration::from_micros(mem[0].0)],
        b: vec![Duration::from_micros(mem[1].0)],
        target: None,
        // 3 MiB, in the KiB-as-microseconds carrier.
        max_a: Some(Duration::from_micros(3 * 1024)),
        unit: "MiB",
    });
    out
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
                unit: "ms",
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
        // As users run it: the default secrets hidden.
        hide: runtime::config::DriverConfig::default().chroot_env_hide,
        disk_mb: None,
        disk_dir: dir.join("disk"),
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
                let p = runtime::sys::chroot::prepare(&plan, &root, work, &[], None)
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

/// The samples of every scenario as a picture: one row each, isoexec's
/// samples (blue) over the baseline's (grey), each a dot, the median a bar,
/// on the row's own scale from 0 to its largest sample.
fn svg(results: &[Result]) -> String {
    let (w, label_w, row_h) = (1000.0, 330.0, 56.0);
    let plot_w = w - label_w - 30.0;
    let h = 40.0 + row_h * results.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"14\">isoexec (blue) vs baseline (grey): every sample a dot, the median a bar; each row on its own scale</text>\n"
    );
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    for (i, r) in results.iter().enumerate() {
        let y0 = 40.0 + row_h * i as f64;
        let max =
            r.a.iter()
                .chain(&r.b)
                .map(|d| value(*d, r.unit))
                .fold(0.0f64, f64::max)
                .max(1e-9);
        let x = |v: f64| label_w + plot_w * v / max;
        let name: String = r.name.chars().take(48).collect();
        out.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text>\n<text x=\"10\" y=\"{}\" fill=\"#666\">0 to {:.2} {}</text>\n",
            y0 + 20.0,
            esc(&name),
            y0 + 36.0,
            max,
            r.unit
        ));
        for (samples, dy, color) in [(&r.a, 14.0, "#1f6fd1"), (&r.b, 34.0, "#888888")] {
            let y = y0 + dy;
            for d in samples.iter() {
                out.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\" fill-opacity=\"0.45\"/>\n",
                    x(value(*d, r.unit))
                ));
            }
            if !samples.is_empty() {
                let m = x(value(median(samples), r.unit));
                out.push_str(&format!(
                    "<line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"3\"/>\n",
                    y - 8.0,
                    y + 8.0
                ));
            }
        }
        out.push_str(&format!(
            "<line x1=\"{label_w}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            label_w + plot_w,
            y0 + row_h - 4.0,
            y0 + row_h - 4.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// Every runtime's state directory (`--root`) on a tmpfs of the bench's
/// own, in a mount namespace of its own (gone with the bench): their
/// defaults (/run/runc, /run/crun, /run/isoexec) are on a tmpfs on every
/// systemd host, and each run writes and removes its state files there.
/// Measured on a disk instead (this machine's /tmp and /run are ext4),
/// both sides pay its journal: runc ~7 ms a run, isoexec ~0.8 ms.
fn state_on_tmpfs(work: &Path) -> PathBuf {
    use nix::mount::{mount, MsFlags};
    let in_own_ns = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
        && mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .is_ok();
    if !in_own_ns {
        die("cannot make a mount namespace for the runtimes' state tmpfs");
    }
    let dir = work.join("run");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(&format!("{}: {e}", dir.display())));
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=700"),
    )
    .unwrap_or_else(|e| die(&format!("tmpfs at {}: {e}", dir.display())));
    dir
}

/// A copy of the CLI made immutable (`chattr +i`), as `make install`
/// leaves it, on the bench's tmpfs (which takes the flag on Linux 6.0 and
/// later). None where the flag cannot be set.
fn install_immutable(isoexec: &Path, tmpfs: &Path) -> Option<PathBuf> {
    let dir = tmpfs.join("bin");
    std::fs::create_dir_all(&dir).ok()?;
    let p = dir.join("isoexec");
    std::fs::copy(isoexec, &p).ok()?;
    isoexec_tests::set_immutable(&p, true).ok().map(|()| p)
}

/// On a hybrid cgroup host (v1 controllers, an empty cgroup2 at
/// /sys/fs/cgroup/unified) crun refuses to run. The whole benchmark, every
/// runtime alike, moves to a mount namespace of its own where that mount
/// is gone; the host is unchanged. Whether it did.
fn hide_empty_unified() -> bool {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let hybrid = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup/unified ") && l.contains(" - cgroup2 "));
    if !hybrid {
        return false;
    }
    let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
        && mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .is_ok();
    if !private {
        die("cannot make a mount namespace to hide /sys/fs/cgroup/unified from crun");
    }
    umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH)
        .unwrap_or_else(|e| die(&format!("umount /sys/fs/cgroup/unified: {e}")));
    true
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
