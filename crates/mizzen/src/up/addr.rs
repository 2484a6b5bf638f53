//! Pod addresses: each replica gets a loopback address of its own (127.0.x.y, never
//! 127.0.0.1), as a pod gets an IP.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The port every sidecar binds on its pod's address (the HTTP proxy listener); an
/// address whose 15080 is taken belongs to some other workload.
const PROBE_PORT: u16 = 15080;

/// Hands out unused pod addresses from 127.0.1.1 up to 127.0.9.254 (the tests'
/// in-process meshes use 127.0.50.0/24 and above).
#[derive(Debug, Default)]
pub struct Addresses {
    given: BTreeSet<Ipv4Addr>,
}

impl Addresses {
    /// An address not given before and not in use by another process (its 15080 is
    /// free), or `None` when all are taken.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let candidate = (1..=9u8)
            .flat_map(|x| (1..=254u8).map(move |y| Ipv4Addr::new(127, 0, x, y)))
            .find(|ip| !self.given.contains(ip) && is_free(*ip))?;
        self.given.insert(candidate);
        Some(candidate)
    }

    /// Hands `ip` back once its replica is gone, for a later one.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.given.remove(&ip);
    }
}

fn is_free(ip: Ipv4Addr) -> bool {
    ports_free(ip, &[PROBE_PORT])
}

/// Whether every one of `ports` on `ip` is free now.
pub fn ports_free(ip: Ipv4Addr, ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|&port| TcpListener::bind(SocketAddr::from((ip, port))).is_ok())
}

/// A free port on `ip`, for an app to listen on behind its sidecar.
pub fn free_port(ip: Ipv4Addr) -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::from((ip, 0)))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_addresses_given_or_in_use() {
        let mut addresses = Addresses::default();
        let first = addresses.allocate().unwrap();
        assert_ne!(first, Ipv4Addr::LOCALHOST);
        let _taken = TcpListener::bind(SocketAddr::from((first, PROBE_PORT)));
        let mut other = Addresses::default();
        assert_ne!(other.allocate().unwrap(), first, "in use by another");
        assert_ne!(addresses.allocate().unwrap(), first, "already given");
        drop(_taken);
        addresses.release(first);
        assert_eq!(addresses.allocate(), Some(first), "given back");
    }
}
