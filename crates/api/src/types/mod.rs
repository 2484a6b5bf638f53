//! Typed values shared by many Istio kinds: durations, percentages, string matchers,
//! selectors and references.

mod duration;
mod enums;
mod percent;
mod protocol;
mod selector;
mod string_match;

pub use duration::{Duration, DurationError};
pub use percent::Percent;
pub use protocol::{Protocol, UnknownProtocol};
pub use selector::{PolicyTargetReference, WorkloadSelector};
pub use string_match::StringMatch;

pub(crate) use enums::string_enum;

/// Labels or annotations: an ordered map from key to value.
pub type Labels = std::collections::BTreeMap<String, String>;

/// True when a value equals its type's default; used to keep serialized output minimal.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
