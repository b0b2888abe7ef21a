//! bpf(2) for the cgroup v2 device program: load it, attach it to the
//! container's cgroup. The program stays attached after its descriptor is
//! closed and goes with the cgroup when the cgroup is removed.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs may stay attached beside ours (systemd's, a nested
/// runtime's), and each must allow an access: the strictest wins.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The part of `union bpf_attr` that BPF_PROG_LOAD reads; the rest of the
/// union (up to 128 bytes here) must be zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _rest: [u32; 11],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, zero-padded bpf_attr of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(code: &[u8], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    const LICENSE: &CStr = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"isoexec_dev");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (code.len() / 8) as u32,
        insns: code.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads the device program `code` (instructions as bytes). A program the
/// verifier refuses comes back with the verifier's log.
pub fn load_device_program(code: &[u8]) -> Result<OwnedFd, String> {
    Ok(match load(code, None) {
        Ok(fd) => fd,
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EACCES) =>
        {
            let mut log = vec![0u8; 64 * 1024];
            let again = load(code, Some(&mut log));
            let text = CStr::from_bytes_until_nul(&log)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            match again {
                Ok(fd) => fd,
                Err(_) => {
                    return Err(format!(
                        "the kernel's verifier refused the device program ({e}): {}",
                        text.trim()
                    ))
                }
            }
        }
        Err(e) => return Err(format!("cannot load the device program: {e}")),
    })
}

/// Loads the device program `code` and attaches it to the cgroup directory
/// `cgroup`.
pub fn attach_device_program(cgroup: &Path, code: &[u8]) -> Result<(), String> {
    let prog = load_device_program(code)?;
    let dir = std::fs::File::open(cgroup)
        .map_err(|e| format!("cannot open {}: {e}", cgroup.display()))?;
    let mut attr = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ()).map_err(|e| {
        format!(
            "cannot attach the device program to {}: {e}",
            cgroup.display()
        )
    })
}
