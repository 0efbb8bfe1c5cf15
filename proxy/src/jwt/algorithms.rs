//! The signature algorithms a provider accepts, as a copyable bit set, and which key types
//! each one needs (the table that refuses algorithm confusion).

use std::fmt;

/// A JWS signature algorithm (RFC 7518 §3, RFC 8037 for EdDSA with Ed25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Every algorithm the verifier knows, in the order of their bits.
pub const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The JOSE name of an algorithm (`"RS256"`, `"EdDSA"`).
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// Parses a JOSE algorithm name exactly (case-sensitive, as in a JWT header). `none` and
/// anything unknown give `None`.
pub fn parse(name: &str) -> Option<Algorithm> {
    ALL.into_iter().find(|alg| self::name(*alg) == name)
}

/// A set of algorithms; copying it costs nothing and `contains` is one mask.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    pub const EMPTY: Self = Self(0);
    pub const RSA: Self = Self::of(&[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ]);

    /// The set holding exactly `algs`.
    pub const fn of(algs: &[Algorithm]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < algs.len() {
            bits |= bit(algs[i]);
            i += 1;
        }
        Self(bits)
    }

    pub fn with(self, alg: Algorithm) -> Self {
        Self(self.0 | bit(alg))
    }

    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & bit(alg) != 0
    }

    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL.into_iter().filter(move |alg| self.contains(*alg))
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(name)).finish()
    }
}

const fn bit(alg: Algorithm) -> u16 {
    let index = match alg {
        Algorithm::HS256 => 0,
        Algorithm::HS384 => 1,
        Algorithm::HS512 => 2,
        Algorithm::RS256 => 3,
        Algorithm::RS384 => 4,
        Algorithm::RS512 => 5,
        Algorithm::PS256 => 6,
        Algorithm::PS384 => 7,
        Algorithm::PS512 => 8,
        Algorithm::ES256 => 9,
        Algorithm::ES384 => 10,
        Algorithm::EdDSA => 11,
    };
    1 << index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_unknown() {
        for alg in ALL {
            assert_eq!(parse(name(alg)), Some(alg));
        }
        assert_eq!(parse("none"), None);
        assert_eq!(parse("rs256"), None);
        let set = AlgorithmSet::of(&[Algorithm::RS256, Algorithm::EdDSA]);
        assert!(set.contains(Algorithm::EdDSA) && !set.contains(Algorithm::HS256));
        assert_eq!(format!("{set:?}"), r#"{"RS256", "EdDSA"}"#);
    }
}
