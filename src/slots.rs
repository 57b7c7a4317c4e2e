//! The open connections of one listener, oldest first: the one table
//! behind the HTTP listeners' and the control socket's connection caps.
//!
//! A listener holds at most `cap` connections. A new one beyond the cap
//! closes the oldest connection that may be closed: for HTTP any of them
//! (slow clients cannot lock the kubelet's probes out, whose requests are
//! answered within milliseconds of connecting); for the control socket only
//! an idle one (its request line not complete: a connection whose request
//! is being carried out calls [`Slot::working`] and is kept). When none may
//! be closed, the new connection gets no slot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The open connections of one listener.
pub(crate) struct Slots {
    cap: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// id → (may be closed for a newer connection, closes the connection).
    by_age: BTreeMap<u64, (bool, CancellationToken)>,
}

/// One open connection; leaves [`Slots`] when dropped. `close` fires when
/// a newer connection takes its slot or the listener shuts down.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub close: CancellationToken,
}

/// A slot for a new connection, and whether an older one was closed to
/// make room.
pub(crate) struct Admitted {
    pub slot: Slot,
    pub closed_oldest: bool,
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// How many connections the listener holds at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, else the oldest closable
    /// connection's (closing it); `None` when every open connection is
    /// working.
    pub fn admit(self: &Arc<Slots>, shutdown: &CancellationToken) -> Option<Admitted> {
        let mut open = self.lock();
        let mut closed_oldest = false;
        if open.by_age.len() >= self.cap {
            let oldest = open
                .by_age
                .iter()
                .find(|(_, (closable, _))| *closable)
                .map(|(id, _)| *id)?;
            if let Some((_, close)) = open.by_age.remove(&oldest) {
                close.cancel();
            }
            closed_oldest = true;
        }
        let id = open.next;
        open.next += 1;
        let close = shutdown.child_token();
        open.by_age.insert(id, (true, close.clone()));
        let slot = Slot {
            slots: self.clone(),
            id,
            close,
        };
        Some(Admitted {
            slot,
            closed_oldest,
        })
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().by_age.len()
    }
}

impl Slot {
    /// The connection's request is being carried out: no newer connection
    /// closes it. False when it was closed meanwhile.
    pub fn working(&self) -> bool {
        match self.slots.lock().by_age.get_mut(&self.id) {
            Some((closable, _)) => {
                *closable = false;
                true
            }
            None => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().by_age.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(slots: &Arc<Slots>, stop: &CancellationToken) -> Slot {
        let a = slots.admit(stop).expect("a slot");
        assert!(!a.closed_oldest, "a free slot");
        a.slot
    }

    #[test]
    fn a_full_listener_closes_its_oldest_connections_first() {
        let shutdown = CancellationToken::new();
        let slots = Slots::new(3);
        let a = open(&slots, &shutdown);
        let b = open(&slots, &shutdown);
        let c = open(&slots, &shutdown);
        let d = slots.admit(&shutdown).unwrap();
        assert!(d.closed_oldest);
        assert!(a.close.is_cancelled(), "the oldest is closed");
        assert!(!b.close.is_cancelled() && !c.close.is_cancelled());
        assert!(!d.slot.close.is_cancelled());
        drop(b);
        assert_eq!(slots.len(), 2, "a closed connection frees its slot");
        let _e = open(&slots, &shutdown);
        drop(a);
        assert_eq!(slots.len(), 3, "dropping a closed slot changes nothing");
        shutdown.cancel();
        assert!(c.close.is_cancelled() && d.slot.close.is_cancelled());
    }

    #[test]
    fn a_working_connection_is_kept_and_only_when_all_work_is_none_admitted() {
        let stop = CancellationToken::new();
        let slots = Slots::new(3);
        let a = open(&slots, &stop);
        let b = open(&slots, &stop);
        let c = open(&slots, &stop);
        assert!(b.working(), "b sent its request");
        let d = slots.admit(&stop).expect("the oldest idle one makes room");
        assert!(d.closed_oldest);
        assert!(a.close.is_cancelled(), "a, idle and oldest, is closed");
        assert!(!b.close.is_cancelled(), "b is working: kept although older");
        assert!(!a.working(), "a closed connection does not start work");
        assert!(c.working() && d.slot.working());
        assert!(slots.admit(&stop).is_none(), "every connection works");
        drop(b);
        assert!(
            slots.admit(&stop).is_some_and(|a| !a.closed_oldest),
            "b's slot is free"
        );
        drop(a);
        stop.cancel();
        assert!(c.close.is_cancelled() && d.slot.close.is_cancelled());
    }
}
