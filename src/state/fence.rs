//! What an owner holds of a lease, in this process: its epoch, until when (by this process's
//! clock) it is surely held, and the gate a SCIM client of the target writes through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A held lease on one target.
#[derive(Debug)]
pub struct Fence {
    pub(crate) target: String,
    pub(crate) owner: String,
    pub(crate) epoch: i64,
    /// Milliseconds of [`clock`] until which the lease is surely held.
    valid_until: AtomicU64,
    /// Milliseconds of [`clock`] before which no write is sent: a target taken over from an
    /// owner that died waits for that owner's last calls to land.
    hold_until: u64,
    lost: AtomicBool,
}

/// Milliseconds since boot, counting time suspended (`CLOCK_BOOTTIME`): a host that slept or a
/// process that was paused sees all the time that passed.
pub(crate) fn clock() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Fence {
    /// A lease granted by a query sent at `asked`; its writes wait `hold` (a takeover).
    pub(super) fn new(
        target: &str,
        owner: &str,
        epoch: i64,
        asked: u64,
        lease: Duration,
        hold: Duration,
    ) -> Fence {
        let f = Fence {
            target: target.to_owned(),
            owner: owner.to_owned(),
            epoch,
            valid_until: AtomicU64::new(0),
            hold_until: asked.saturating_add(ms(hold)),
            lost: AtomicBool::new(false),
        };
        f.extend(asked, lease);
        f
    }

    /// Whether the lease is surely still held: not lost, and renewed recently enough.
    pub fn valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && clock() < self.valid_until.load(Ordering::SeqCst)
    }

    /// How long a write must still wait (after a takeover), if at all.
    pub fn hold(&self) -> Option<Duration> {
        let now = clock();
        (now < self.hold_until).then(|| Duration::from_millis(self.hold_until - now))
    }

    /// The lease was renewed by a query sent at `asked` (ms of [`clock`]). It is taken as held
    /// for two thirds of `lease` from then, not all of it: a call sent just before that
    /// deadline has a third of the lease to land before another instance may take over.
    pub(super) fn extend(&self, asked: u64, lease: Duration) {
        let until = asked.saturating_add(ms(lease) * 2 / 3);
        self.valid_until.fetch_max(until, Ordering::SeqCst);
    }

    /// The lease is gone: nothing more is written or sent under it.
    pub(crate) fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }
}

/// What a SCIM client of one target may send under this process's lease.
#[derive(Debug, Clone)]
pub enum Gate {
    /// One process holds the whole state (sled, or an import): no lease to check.
    Open,
    /// Writes while this lease is surely held (and after its hold).
    Held(Arc<Fence>),
    /// No write: the state is shared and this process holds no lease on the target.
    Refused,
}

impl Gate {
    /// Whether a write must not be sent now.
    pub fn closed(&self) -> bool {
        match self {
            Gate::Open => false,
            Gate::Held(f) => !f.valid(),
            Gate::Refused => true,
        }
    }

    /// How long a write must wait first (a takeover's hold).
    pub fn hold(&self) -> Option<Duration> {
        match self {
            Gate::Held(f) => f.hold(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_valid_for_two_thirds_of_its_lease_unless_lost() {
        let f = Fence::new(
            "t",
            "a",
            1,
            clock(),
            Duration::from_millis(300),
            Duration::ZERO,
        );
        assert!(f.valid());
        assert_eq!(f.hold(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.valid(), "lapsed after two thirds");
        f.extend(clock(), Duration::from_secs(30));
        assert!(f.valid(), "renewed");
        f.lose();
        assert!(!f.valid(), "lost");
    }

    #[test]
    fn a_takeover_holds_its_writes() {
        let f = Fence::new(
            "t",
            "a",
            2,
            clock(),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let hold = f.hold().expect("a hold");
        assert!(
            hold > Duration::from_secs(9) && hold <= Duration::from_secs(10),
            "{hold:?}"
        );
    }
}
