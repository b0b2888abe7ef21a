//! What the integration tests (`tests/`, helpers in `tests/common/mod.rs`)
//! and `make bench` share: a containerd of their own, an immutable binary;
//! what the suite and `make demo` share: a CRI client.

pub mod cri;

/// Sets or clears a file's immutable attribute (`chattr +i` / `-i`, with
/// FS_IOC_SETFLAGS), as `make install` leaves the command line.
pub fn set_immutable(path: &std::path::Path, on: bool) -> std::io::Result<()> {
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let f = std::fs::File::open(path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS on a descriptor we own, with a
    // valid pointer to a long.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        flags = if on {
            flags | FS_IMMUTABLE_FL
        } else {
            flags & !FS_IMMUTABLE_FL
        };
        if libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a file has the immutable attribute.
pub fn is_immutable(path: &std::path::Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS on a descriptor we own, into a long.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::FS_IOC_GETFLAGS,
            &mut flags,
        )
    };
    r == 0 && flags & 0x10 != 0
}

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
