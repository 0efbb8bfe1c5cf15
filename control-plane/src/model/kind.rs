//! The kinds of config resource, and how each is named in URLs, the database and on the wire.

use std::fmt;

/// A kind of config resource. The REST path segment, the database `kind` column and the
/// Delta ADS type URL are all derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Upstream services.
    Cluster,
    /// API callers and their key hashes.
    Consumer,
    /// JWT issuers.
    JwtProvider,
    /// Fleet-wide request budgets.
    Quota,
    /// Request routing rules.
    Route,
}

impl Kind {
    /// Every kind, in the order the control plane pushes them (the derived `Ord`): routes
    /// last, after the clusters, consumers, JWT providers and quotas they refer to.
    pub const ALL: [Kind; 5] = [
        Kind::Cluster,
        Kind::Consumer,
        Kind::JwtProvider,
        Kind::Quota,
        Kind::Route,
    ];

    /// The plural used in REST paths and the database (`clusters`, `jwt-providers`, …).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Cluster => "clusters",
            Kind::Route => "routes",
            Kind::Consumer => "consumers",
            Kind::JwtProvider => "jwt-providers",
            Kind::Quota => "quotas",
        }
    }

    /// The singular used in messages (`cluster`, `jwt-provider`, …).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Route => "route",
            Kind::Consumer => "consumer",
            Kind::JwtProvider => "jwt-provider",
            Kind::Quota => "quota",
        }
    }

    /// Parses the plural form.
    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// The Delta ADS type URL of this kind's resources.
    pub fn type_url(self) -> &'static str {
        use switchyard_proto::type_url as t;
        match self {
            Kind::Cluster => t::CLUSTER,
            Kind::Route => t::ROUTE,
            Kind::Consumer => t::CONSUMER,
            Kind::JwtProvider => t::JWT_PROVIDER,
            Kind::Quota => t::QUOTA,
        }
    }

    /// Parses a type URL.
    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.plural())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Kind::from_plural(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown resource kind {s:?}")))
    }
}
