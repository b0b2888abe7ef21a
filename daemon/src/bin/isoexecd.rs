//! isoexecd: serves isoexec's gRPC API (proto/isoexec/v1) on a unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use clap::Parser;
use isoexec_daemon::api::runtime_service_server::RuntimeServiceServer;
use isoexec_daemon::server::{Daemon, Options};

#[derive(Parser)]
#[command(name = "isoexecd", version = runtime::VERSION, about = "isoexec's gRPC API: sandboxes and tasks")]
struct Args {
    /// The unix socket to serve on (mode 0600): a path, or unix://PATH.
    #[arg(long, default_value = isoexec_daemon::client::DEFAULT_SOCKET, value_parser = isoexec_daemon::client::socket_path)]
    listen: PathBuf,
    /// Where sandboxes and tasks are recorded (found again after a restart).
    /// Not under the CLI's root (/run/isoexec), whose entries are containers.
    #[arg(long, default_value = "/run/isoexecd")]
    state_dir: PathBuf,
    /// The driver config file (default: $ISOEXEC_CONFIG, else /etc/isoexec/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log filter (tracing's env-filter syntax), e.g. info, debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // Tasks' processes are forks of this one: never as the host's writable
    // binary (CVE-2019-5736). Re-executes isoexecd when it must.
    if let Err(e) = runtime::sys::exe::ensure_sealed(&args.state_dir, false) {
        eprintln!("isoexecd: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // Single-threaded: the supervisor forks tasks' inits from this thread.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("isoexecd: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("isoexecd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    if let Some(path) = &args.config {
        // A bad config file is an error now, not at the first task.
        runtime::config::DriverConfig::load(Some(path)).map_err(|e| e.to_string())?;
    }
    runtime::container::private_dir_all(&args.state_dir)
        .map_err(|e| format!("creating the state dir {}: {e}", args.state_dir.display()))?;
    let daemon = Daemon::new(Options {
        state: args.state_dir.clone(),
        config: args.config.clone(),
    });
    // Before the first task is forked, so no exit is missed.
    let sigchld = signal(SignalKind::child()).map_err(|e| e.to_string())?;
    tokio::spawn(daemon.supervisor().reap(sigchld));
    daemon.recover();

    let listener = bind(&args.listen)?;
    // Reflection in both versions generic tools ask for (grpcurl, grpcui,
    // evans): v1, and v1alpha for older ones.
    // Each lists every service served, the other version's included.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(isoexec_daemon::api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tracing::info!(socket = %args.listen.display(), state = %args.state_dir.display(), "serving isoexec.v1");
    let server = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(daemon.clone()))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            // Each connection through the :authority fix-up (standard
            // clients send their socket's path as the authority).
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                |conn| {
                    conn.map(|c| {
                        let (ours, theirs) = tokio::io::duplex(1 << 16);
                        tokio::spawn(isoexec_daemon::authority::relay(c, theirs));
                        isoexec_daemon::authority::Relayed(ours)
                    })
                },
            ),
            async {
                let _ = stop_rx.await;
            },
        );
    // On SIGTERM or SIGINT: stop taking calls, let those in flight end for
    // a moment, then go; streams (events, stats) would otherwise hold the
    // daemon forever. Tasks keep running.
    let signalled = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down; tasks keep running");
        let _ = stop_tx.send(());
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    let r = tokio::select! {
        r = server => r,
        _ = signalled => Ok(()),
    };
    let _ = std::fs::remove_file(&args.listen);
    r.map_err(|e| format!("serving: {e}"))
}

/// Listens on `path`, mode 0600: a stale socket (no one answering) is
/// replaced; a live one is another daemon's, and an error.
fn bind(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "{} is in use: is another isoexecd running?",
            path.display()
        ));
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Bound under a temporary name, made 0600, then renamed into place:
    // the socket never answers at `path` with the umask's mode.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = tokio::net::UnixListener::bind(&tmp)
        .map_err(|e| format!("listening on {}: {e}", path.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, path).map_err(|e| format!("placing {}: {e}", path.display()))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(l)
}
