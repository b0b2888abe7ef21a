//! The kernel's process events connector (netlink, `cn_proc`): the exit
//! status of a process that is not this process's child. A server started
//! again adopts tasks its earlier run started; their exits reach it here
//! (the pidfd it also watches says when, not how).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// A netlink socket subscribed to process events (root only; None where
/// the kernel lacks CONFIG_PROC_EVENTS).
pub fn subscribe() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = libc::CN_IDX_PROC;
    // SAFETY: bind with a valid sockaddr_nl of the right size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let msg = listen_message();
    // SAFETY: send of an initialised buffer on our socket.
    let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// nlmsghdr + cn_msg + PROC_CN_MCAST_LISTEN.
fn listen_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + 4);
    let total = (NLMSG_HDR + CN_MSG_HDR + 4) as u32;
    m.extend_from_slice(&total.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&std::process::id().to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&libc::CN_IDX_PROC.to_ne_bytes()); // id.idx
    m.extend_from_slice(&libc::CN_VAL_PROC.to_ne_bytes()); // id.val
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&1u32.to_ne_bytes()); // PROC_CN_MCAST_LISTEN
    m
}

/// The exits in a datagram: (pid, tgid, raw wait status).
pub fn exits(buf: &[u8]) -> Vec<(i32, i32, u32)> {
    let u32_at = |b: &[u8], o: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(len) = u32_at(buf, off).map(|l| l as usize) {
        if len < NLMSG_HDR || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        // proc_event: what, cpu, timestamp_ns, then the exit's pid, tgid, code.
        let ev = NLMSG_HDR + CN_MSG_HDR;
        if u32_at(msg, ev) == Some(PROC_EVENT_EXIT) {
            if let (Some(pid), Some(tgid), Some(code)) = (
                u32_at(msg, ev + 16),
                u32_at(msg, ev + 20),
                u32_at(msg, ev + 24),
            ) {
                out.push((pid as i32, tgid as i32, code));
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// A wait status as an exit status: the code, or 128 + the signal.
pub fn status(raw: u32) -> u32 {
    match raw & 0x7f {
        0 => (raw >> 8) & 0xff,
        sig => 128 + sig,
    }
}

/// Reads every pending datagram; returns the raw status of `pid`'s exit
/// if it is among them.
pub fn drain(sock: &OwnedFd, pid: i32) -> Option<u32> {
    let mut found = None;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: recv into our buffer on our socket.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return found;
        }
        for (p, tgid, raw) in exits(&buf[..n as usize]) {
            if p == pid && tgid == pid {
                found = Some(raw);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit_message(pid: u32, tgid: u32, code: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + CN_MSG_HDR + 40];
        let total = m.len() as u32;
        m[0..4].copy_from_slice(&total.to_ne_bytes());
        let ev = NLMSG_HDR + CN_MSG_HDR;
        m[ev..ev + 4].copy_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
        m[ev + 16..ev + 20].copy_from_slice(&pid.to_ne_bytes());
        m[ev + 20..ev + 24].copy_from_slice(&tgid.to_ne_bytes());
        m[ev + 24..ev + 28].copy_from_slice(&code.to_ne_bytes());
        m
    }

    #[test]
    fn exits_are_read_from_each_message_of_a_datagram() {
        let mut d = exit_message(42, 42, 3 << 8);
        let mut fork = exit_message(7, 7, 0);
        let ev = NLMSG_HDR + CN_MSG_HDR;
        fork[ev..ev + 4].copy_from_slice(&1u32.to_ne_bytes()); // PROC_EVENT_FORK
        d.extend(fork);
        d.extend(exit_message(43, 42, 9));
        assert_eq!(exits(&d), vec![(42, 42, 3 << 8), (43, 42, 9)]);
        assert_eq!(
            exits(&d[..10]),
            vec![],
            "a truncated datagram gives nothing"
        );
    }

    #[test]
    fn wait_statuses_become_exit_statuses() {
        assert_eq!(status(3 << 8), 3);
        assert_eq!(status(0), 0);
        assert_eq!(status(9), 137);
        assert_eq!(status(15 | 0x80), 143, "a core dump flag does not matter");
    }

    #[test]
    fn the_listen_message_is_one_netlink_message() {
        let m = listen_message();
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
    }
}
