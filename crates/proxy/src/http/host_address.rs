//! The host's own address as Envoy's local info has it, which an edge proxy puts in
//! `x-forwarded-for` for a client connecting over loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// The IPv4 address of the first network interface that is not loopback (Envoy's
/// `getLocalAddress` with its default `--local-address-ip-version v4`), or a loopback
/// address when there is no other; looked up once.
pub fn host_address() -> IpAddr {
    static ADDRESS: OnceLock<IpAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| IpAddr::V4(first_ipv4().unwrap_or(Ipv4Addr::LOCALHOST)))
}

/// The first non-loopback IPv4 interface address, else the last loopback one seen.
fn first_ipv4() -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success getifaddrs points `list` at a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is a node of the list getifaddrs returned, which is not freed yet.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a socket address of the family it names.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET socket address is a `sockaddr_in`.
        let addr = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        found = Some(ip);
        if !ip.is_loopback() {
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and nothing borrows from it any more.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_address_is_an_address_of_this_host() {
        // Only an address of this host can be bound.
        let address = host_address();
        assert!(address.is_ipv4());
        std::net::UdpSocket::bind((address, 0))
            .unwrap_or_else(|e| panic!("{address} is not an address of this host: {e}"));
    }
}
