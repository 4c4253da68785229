//! Turning off TX checksum offload on an interface, and reading whether
//! its link is running.
//!
//! Why: with Open vSwitch's userspace (`netdev`) datapath, packets a veth
//! sends with offloaded (unfinished) checksums are forwarded as they are, and
//! the receiver drops them: ping works, TCP hangs. Turning TX checksumming
//! off on both veth ends makes the kernel finish every checksum.
//!
//! How: the classic `SIOCETHTOOL` ioctl with `ETHTOOL_STXCSUM`, the same call
//! `ethtool -K IFACE tx off` makes. It is a few lines of libc, smaller than
//! an ethtool-netlink dependency, and the kernel turns the dependent
//! features (TSO, ...) off with it. The ioctl acts on the network namespace
//! of the socket, so call this on a thread in the interface's namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the union used as `ifr_data`; padded to the kernel's
/// 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 24 - std::mem::size_of::<*mut libc::c_void>()],
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let sock = inet_socket()?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 24 - std::mem::size_of::<*mut libc::c_void>()],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: req and value live across the call and have the layout the
    // kernel expects for SIOCETHTOOL.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;

/// `struct ifreq` with the union used as `ifr_flags`.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned immediately.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the interface's link is running (`IFF_RUNNING`: up, carrier
/// on, and the kernel's operational state caught up, which it does a
/// moment after the carrier changes).
pub fn link_running(ifname: &str) -> io::Result<bool> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let sock = inet_socket()?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: req lives across the call and has the layout the kernel
    // expects for SIOCGIFFLAGS.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req.flags as libc::c_int & libc::IFF_RUNNING != 0)
}

/// `ethtool -K ifname tx off`.
pub fn disable_tx_checksum(ifname: &str) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_STXCSUM, 0).map(drop)
}

/// Whether TX checksum offload is on (for tests and CHECK).
pub fn tx_checksum_enabled(ifname: &str) -> io::Result<bool> {
    ethtool_value(ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn loopback_runs_and_unknown_interfaces_are_errors() {
        // `lo` exists in every namespace; it runs when it is up.
        let lo = link_running("lo");
        assert!(lo.is_ok(), "{lo:?}");
        assert!(link_running("sy-no-such-if").is_err());
        assert!(link_running("").is_err());
    }

    #[test]
    fn rejects_bad_names() {
        assert!(disable_tx_checksum("").is_err());
        assert!(disable_tx_checksum("a-name-much-too-long").is_err());
    }
}
