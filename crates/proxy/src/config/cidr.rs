//! IP prefixes (`CidrRange`), as filter chains and connection managers match addresses.

use std::net::IpAddr;

use mizzen_xds::pb::envoy::config::core::v3::CidrRange;

/// An IP prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cidr {
    ip: IpAddr,
    len: u8,
}

impl Cidr {
    /// Reads a `CidrRange`; errors say what is wrong with it.
    pub(crate) fn parse(range: &CidrRange) -> Result<Cidr, String> {
        let ip: IpAddr = range
            .address_prefix
            .parse()
            .map_err(|_| format!("{:?} is not an IP address", range.address_prefix))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = range.prefix_len.map_or(max, |l| l.value);
        if len > max {
            return Err(format!("prefix length {len} is longer than {max}"));
        }
        Ok(Cidr { ip, len: len as u8 })
    }

    /// The prefix length in bits.
    pub(crate) fn len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is in the range (an IPv4 address is never in an IPv6 range).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}
