//! What the integration tests (`tests/`, helpers in `tests/common/mod.rs`)
//! and `make bench` share: a containerd of their own; what the suite and
//! `make demo` share: a CRI client.

pub mod cri;

pub mod containerd {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Writes a private containerd config in `dir`: root, state and sockets
    /// under it, the CRI plugin off. Returns the config's path.
    pub fn write_config(dir: &Path) -> std::io::Result<PathBuf> {
        let d = dir.display();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n"
            ),
        )?;
        Ok(path)
    }

    /// The gRPC socket of the containerd configured in `dir`.
    pub fn socket(dir: &Path) -> PathBuf {
        dir.join("c.sock")
    }

    /// containerd on the config in `dir`, with `bin_dir` (where the built
    /// shim is) first on its PATH, so it finds containerd-shim-isoexec-v1.
    pub fn command(dir: &Path, bin_dir: &Path) -> Command {
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("containerd");
        c.arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path);
        c
    }
}
