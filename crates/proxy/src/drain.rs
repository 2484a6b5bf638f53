//! Draining: a trigger held by whoever decides that something stops (a listener
//! removed, the proxy shutting down), and watches held by what must wind down with it
//! (the accept loop, each connection), which finish their work and close. Dropping the
//! trigger ends the drain time: what could not wind down gracefully (a TCP relay) closes
//! then.

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

/// A watch whose drain started and whose drain time is over.
pub fn drained() -> DrainWatch {
    let (trigger, watch) = channel();
    trigger.drain();
    watch
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

    /// Resolves once the drain time is over (the trigger is gone).
    pub async fn closed(mut self) {
        while self.0.changed().await.is_ok() {}
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

    #[tokio::test]
    async fn closed_resolves_when_the_trigger_is_gone() {
        let (trigger, watch) = channel();
        let closed = tokio::spawn(watch.clone().closed());
        trigger.drain();
        assert!(watch.is_draining());
        tokio::task::yield_now().await;
        assert!(
            !closed.is_finished(),
            "draining is not the end of the drain time"
        );
        drop(trigger);
        closed.await.unwrap();
        drained().closed().await;
    }
}
