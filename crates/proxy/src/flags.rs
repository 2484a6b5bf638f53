//! Envoy's response flags: why a request ended as it did (`UH` no healthy upstream, `UT`
//! upstream timeout, `FI` fault injected, …), recorded per request for access logs and
//! metrics (Istio's `response_flags` label).

use std::fmt;

/// A set of response flags. Displays as Envoy's `%RESPONSE_FLAGS%` does: the short
/// names in Envoy's order, joined by commas, or `-` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:literal;)*) => {
        impl ResponseFlags {
            $($(#[$doc])* pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*

            /// Every flag with its short name, in Envoy's order.
            const ALL: &[(ResponseFlags, &'static str)] = &[$((Self::$name, stringify!($name))),*];
        }
    };
}

flags! {
    /// Local health check failed.
    LH = 0;
    /// No healthy upstream host.
    UH = 1;
    /// Upstream request timeout.
    UT = 2;
    /// Connection local reset.
    LR = 3;
    /// Upstream remote reset.
    UR = 4;
    /// Upstream connection failure.
    UF = 5;
    /// Upstream connection termination.
    UC = 6;
    /// Upstream overflow (circuit breaking).
    UO = 7;
    /// No route found.
    NR = 8;
    /// Delay injected.
    DI = 9;
    /// Fault (abort) injected.
    FI = 10;
    /// Rate limited.
    RL = 11;
    /// Unauthorized by an external authorization service.
    UAEX = 12;
    /// Rate limit service error.
    RLSE = 13;
    /// Downstream connection terminated.
    DC = 14;
    /// Upstream retry limit exceeded.
    URX = 15;
    /// Stream idle timeout.
    SI = 16;
    /// Invalid `x-envoy-*` request headers.
    IH = 17;
    /// Downstream protocol error.
    DPE = 18;
    /// Upstream max stream duration reached.
    UMSDR = 19;
    /// Upstream protocol error.
    UPE = 20;
    /// No cluster found.
    NC = 21;
    /// Overload manager.
    OM = 22;
    /// DNS resolution failed.
    DF = 23;
    /// Downstream remote reset.
    DR = 24;
}

impl ResponseFlags {
    /// No flag.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// Adds the flags of `other`.
    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flag Envoy names `name` (`UH`, `NR`, …).
    pub fn by_name(name: &str) -> Option<ResponseFlags> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: ResponseFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;

    fn bitor(self, other: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | other.0)
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Self::ALL {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseFlags;

    #[test]
    fn display_as_envoy_formats_them() {
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        assert_eq!(ResponseFlags::UH.to_string(), "UH");
        // Envoy's order, not insertion order.
        let mut flags = ResponseFlags::URX;
        flags.insert(ResponseFlags::UF);
        assert_eq!(flags.to_string(), "UF,URX");
        assert_eq!((ResponseFlags::FI | ResponseFlags::DI).to_string(), "DI,FI");
        assert!(flags.contains(ResponseFlags::UF) && !flags.contains(ResponseFlags::UT));
    }
}
