//! RANDOM: a uniformly random endpoint of the group. Like Envoy's random balancer, it
//! ignores endpoint weights (locality weights still apply through the locality pick).

use super::endpoints::Endpoint;
use super::levels::SourcePicker;

/// Random choice over one group of endpoints.
#[derive(Debug)]
pub(super) struct Random {
    hosts: Box<[u32]>,
}

impl SourcePicker for Random {
    type Config = ();

    fn new(hosts: &[u32], _: &[Endpoint], _: &()) -> Random {
        Random {
            hosts: hosts.into(),
        }
    }

    fn pick(&self, _: &[Endpoint]) -> Option<u32> {
        if self.hosts.is_empty() {
            return None;
        }
        Some(self.hosts[fastrand::usize(..self.hosts.len())])
    }
}
