//! `make demo`'s pod: through containerd's CRI plugin at SOCKET, as a
//! kubelet would, a pod on the runtime handler HANDLER whose two containers
//! (of IMAGE, running the host's binaries) share the pod's /alloc; prints
//! what each did, then removes the pod.
//!
//! Usage: isoexec-cri-pod SOCKET HANDLER IMAGE LOG_DIR

use isoexec_tests::cri::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, handler, image, logs] = args.as_slice() else {
        eprintln!("usage: isoexec-cri-pod SOCKET HANDLER IMAGE LOG_DIR");
        std::process::exit(2);
    };
    if let Err(e) = run(socket, handler, image, logs) {
        eprintln!("isoexec-cri-pod: {e}");
        std::process::exit(1);
    }
}

fn run(socket: &str, handler: &str, image: &str, logs: &str) -> Result<(), String> {
    let cri = Client::new(socket.as_ref()).map_err(|e| e.to_string())?;
    let pod = pod_config(
        "demo",
        &format!("demo-{}", std::process::id()),
        logs.as_ref(),
    );
    let say = |s: &str| println!("\x1b[2m$ {s}\x1b[0m");
    say(&format!("RunPodSandbox demo (runtime handler {handler})"));
    let sb = cri
        .run_pod(handler, &pod)
        .map_err(|e| format!("RunPodSandbox: {}", e.message()))?;
    let result = containers(&cri, &sb, &pod, image);
    say("StopPodSandbox, RemovePodSandbox");
    let removed = cri
        .remove_pod(&sb)
        .map_err(|e| format!("RemovePodSandbox: {}", e.message()));
    result.and(removed)
}

fn containers(cri: &Client, sb: &str, pod: &PodSandboxConfig, image: &str) -> Result<(), String> {
    let say = |s: &str| println!("\x1b[2m$ {s}\x1b[0m");
    let start = |name: &str, script: &str| {
        say(&format!(
            "CreateContainer + StartContainer {name}: sh -c '{script}'"
        ));
        cri.start_in(
            sb,
            pod,
            container_config(name, image, &["sh", "-c", script]),
        )
        .map_err(|e| format!("container {name}: {}", e.message()))
    };
    let writer = start(
        "writer",
        "echo \"written by $(hostname)'s writer at $(date +%T)\" > /alloc/note; exec sleep 600",
    )?;
    let reader = start("reader", "exec sleep 600")?;
    let exec = |id: &str, name: &str, script: &str| -> Result<String, String> {
        say(&format!("ExecSync {name}: sh -c '{script}'"));
        let (out, code) = cri
            .exec(id, script)
            .map_err(|e| format!("exec in {name}: {}", e.message()))?;
        print!("{out}");
        if code != 0 {
            return Err(format!("exec in {name} exited {code}"));
        }
        Ok(out)
    };
    let mut note = String::new();
    for _ in 0..50 {
        if let Ok((out, 0)) = cri.exec(&reader, "cat /alloc/note") {
            note = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if note.is_empty() {
        return Err("the reader never saw the writer's /alloc/note".into());
    }
    exec(&reader, "reader", "cat /alloc/note")?;
    exec(
        &reader,
        "reader",
        "echo / holds: $(ls /); command -v python3",
    )?;
    let net = |id: &str, name: &str| exec(id, name, "readlink /proc/self/ns/net");
    if net(&writer, "writer")? != net(&reader, "reader")? {
        return Err("the pod's containers are in different network namespaces".into());
    }
    Ok(())
}
