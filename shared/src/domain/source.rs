//! Where "now" and fresh ids come from. By default: the system clock and the
//! operating system's randomness (`ulid::Ulid::new`). The fault simulator
//! installs a [`Source`] of its own for the thread it runs on (virtual time,
//! seeded ids), so that every handler it calls is deterministic and a seed
//! replays bit for bit. Nothing else should install one.

use std::cell::RefCell;
use std::rc::Rc;

use time::OffsetDateTime;
use ulid::Ulid;

/// A replacement for the system clock and id randomness on one thread.
pub trait Source {
    fn now(&self) -> OffsetDateTime;
    /// A fresh, unique id for the instant `now()`.
    fn ulid(&self) -> Ulid;
}

thread_local! {
    static INSTALLED: RefCell<Option<Rc<dyn Source>>> = const { RefCell::new(None) };
}

/// Uninstalls the source when dropped (restoring the one before it).
#[must_use = "the source is uninstalled when the guard is dropped"]
pub struct SourceGuard {
    previous: Option<Rc<dyn Source>>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        INSTALLED.with(|installed| *installed.borrow_mut() = previous);
    }
}

/// Makes `source` answer [`now`] and [`ulid`] on this thread until the guard drops.
pub fn install(source: Rc<dyn Source>) -> SourceGuard {
    let previous = INSTALLED.with(|installed| installed.borrow_mut().replace(source));
    SourceGuard { previous }
}

fn installed() -> Option<Rc<dyn Source>> {
    INSTALLED.with(|installed| installed.borrow().clone())
}

/// The current time: the installed source's, else the system clock's.
pub fn now() -> OffsetDateTime {
    installed().map_or_else(OffsetDateTime::now_utc, |source| source.now())
}

/// A fresh ULID: the installed source's, else `Ulid::new()`.
pub fn ulid() -> Ulid {
    installed().map_or_else(Ulid::new, |source| source.ulid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::Cell;

    use time::macros::datetime;

    use super::*;

    struct Fixed(Cell<u128>);

    impl Source for Fixed {
        fn now(&self) -> OffsetDateTime {
            datetime!(2030-01-01 0:00 UTC)
        }
        fn ulid(&self) -> Ulid {
            self.0.set(self.0.get() + 1);
            Ulid(self.0.get())
        }
    }

    #[test]
    fn an_installed_source_answers_until_its_guard_drops() {
        {
            let _guard = install(Rc::new(Fixed(Cell::new(0))));
            assert_eq!(now(), datetime!(2030-01-01 0:00 UTC));
            assert_eq!(ulid(), Ulid(1));
            assert_eq!(ulid(), Ulid(2));
        }
        assert!(now() > datetime!(2024-01-01 0:00 UTC));
        assert!(now() < datetime!(2030-01-01 0:00 UTC));
        assert_ne!(ulid(), Ulid(3));
    }
}
