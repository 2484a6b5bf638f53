//! Draining: a trigger held by whoever decides that something stops (a listener
//! removed, the proxy shutting down), and watches held by what must wind down with it
//! (the accept loop, each connection), which finish their work and close.

use tokio::sync::watch;

/// Starts a drain; dropping it drains too.
#[derive(Debug)]
pub struct DrainTrigger(watch::Sender<bool>);

/// Resolves when its trigger drains; cheap to clone.
#[derive(Debug, Clone)]
pub struct DrainWatch(watch::Receiver<bool>);

/// A new trigger and its first watch.
pub fn channel() -> (DrainTrigger, DrainWatch) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger(tx), DrainWatch(rx))
}

impl DrainTrigger {
    /// Tells every watch to wind down.
    pub fn drain(&self) {
        self.0.send_replace(true);
    }
}

impl DrainWatch {
    /// Resolves once draining started (or the trigger is gone).
    pub async fn signaled(mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watches_resolve_on_drain_and_on_drop() {
        let (trigger, watch) = channel();
        let other = watch.clone();
        assert!(!watch.is_draining());
        trigger.drain();
        assert!(watch.is_draining());
        watch.signaled().await;
        let (trigger, watch) = channel();
        drop(trigger);
        watch.signaled().await;
        other.signaled().await;
    }
}
