//! ROUND_ROBIN: endpoints in turn; with unequal weights, Envoy's EDF weighted order.

use super::endpoints::Endpoint;
use super::levels::SourcePicker;
use super::schedule::Schedule;

/// Round robin over one group of endpoints.
#[derive(Debug)]
pub(super) struct RoundRobin {
    hosts: Box<[u32]>,
    /// None when the group is empty.
    schedule: Option<Schedule>,
}

impl SourcePicker for RoundRobin {
    type Config = ();

    fn new(hosts: &[u32], endpoints: &[Endpoint], _: &()) -> RoundRobin {
        let weights: Vec<u64> = hosts
            .iter()
            .map(|&i| u64::from(endpoints[i as usize].weight))
            .collect();
        RoundRobin {
            hosts: hosts.into(),
            schedule: Schedule::new(&weights),
        }
    }

    fn pick(&self, _: &[Endpoint]) -> Option<u32> {
        let schedule = self.schedule.as_ref()?;
        Some(self.hosts[schedule.next()])
    }
}
