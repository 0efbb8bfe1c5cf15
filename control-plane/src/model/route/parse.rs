//! Validation of a route body: every rule of every field, with cross-field checks (one action,
//! one path matcher, `auth` for consumer-keyed policies, per-try timeout within the timeout).

use serde_json::Value;

use super::*;
use crate::model::syntax;
use crate::model::walk::{Errors, Obj, as_str};

/// Why `compress: true` is refused until the proxy compresses responses.
const COMPRESS_NOT_ENFORCED: &str =
    "not supported yet: the proxy does not compress responses; remove the field or set it to false";

/// Reads and checks a route spec; the result is only meaningful when `errs` stays empty. The
/// clusters, JWT provider and quota it names are recorded in `errs` as references.
pub(in crate::model) fn parse(obj: &mut Obj<'_>, errs: &mut Errors) -> Route {
    let matcher = obj
        .obj("match", errs)
        .map(|o| route_match(o, errs))
        .unwrap_or_default();
    let priority = obj.int("priority", -1000..=1000, errs).unwrap_or(0) as i32;

    let actions = [
        "cluster",
        "weighted_clusters",
        "aggregate",
        "direct_response",
    ];
    let set: Vec<&str> = actions.into_iter().filter(|a| obj.has(a)).collect();
    if set.len() != 1 {
        let field = match set.as_slice() {
            [] => obj.path().to_owned(),
            [.., last] => obj.path_of(last),
        };
        errs.add(
            field,
            format!(
                "exactly one action is required: cluster, weighted_clusters, aggregate or \
                 direct_response (got {})",
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            ),
        );
    }
    let cluster = obj.take("cluster", errs, |v| as_str(v).and_then(syntax::name));
    if let Some(c) = &cluster {
        errs.refer(obj.path_of("cluster"), Kind::Cluster, c);
    }
    let weighted_clusters = obj
        .array("weighted_clusters", 100, errs)
        .map(|items| weighted_clusters(&obj.path_of("weighted_clusters"), items, errs));
    let aggregate = obj.obj("aggregate", errs).map(|o| aggregate(o, errs));
    let direct_response = obj
        .obj("direct_response", errs)
        .and_then(|o| direct_response(o, errs));

    let rewrite = obj.obj("rewrite", errs).map(|o| rewrite(o, errs));
    let request_headers = obj
        .obj("request_headers", errs)
        .map(|o| header_ops(o, errs));
    let response_headers = obj
        .obj("response_headers", errs)
        .map(|o| header_ops(o, errs));
    let remove_response_fields = obj
        .str_list("remove_response_fields", 100, errs, json_field_path)
        .unwrap_or_default();
    let auth = obj.obj("auth", errs).map(|o| auth(o, errs));
    let rate_limit = obj
        .obj("rate_limit", errs)
        .and_then(|o| rate_limit(o, errs));
    if rate_limit
        .as_ref()
        .is_some_and(|r| r.by == RateLimitKey::Consumer)
        && auth.is_none()
    {
        errs.add(
            obj.path_of("rate_limit.by"),
            "consumer needs auth on the route to identify the caller",
        );
    }
    let quota = obj.take("quota", errs, |v| as_str(v).and_then(syntax::name));
    if let Some(q) = &quota {
        errs.refer(obj.path_of("quota"), Kind::Quota, q);
    }
    let timeout_ms = obj.int("timeout_ms", 1..=3_600_000, errs).map(|n| n as u32);
    let retries = obj.obj("retries", errs).and_then(|o| retries(o, errs));
    let per_try = retries.as_ref().and_then(|r| r.per_try_timeout_ms);
    if let (Some(per_try), Some(total)) = (per_try, timeout_ms)
        && per_try > total
    {
        errs.add(
            obj.path_of("retries.per_try_timeout_ms"),
            format!("must not exceed timeout_ms ({total})"),
        );
    }
    let cors = obj.obj("cors", errs).map(|o| cors(o, errs));
    let cache = obj.obj("cache", errs).and_then(|o| cache(o, errs));
    let max_body_bytes = obj
        .int("max_body_bytes", 1..=(1 << 40), errs)
        .map(|n| n as u64);
    let required_headers = obj
        .str_list("required_headers", 100, errs, syntax::header_name)
        .unwrap_or_default();
    let compress = obj.bool("compress", errs).unwrap_or(false);
    if compress {
        errs.add(obj.path_of("compress"), COMPRESS_NOT_ENFORCED);
    }
    let allow_encoded_slashes = obj.bool("allow_encoded_slashes", errs).unwrap_or(false);

    Route {
        matcher,
        priority,
        cluster,
        weighted_clusters,
        aggregate,
        direct_response,
        rewrite,
        request_headers,
        response_headers,
        remove_response_fields,
        auth,
        rate_limit,
        quota,
        timeout_ms,
        retries,
        cors,
        cache,
        max_body_bytes,
        required_headers,
        compress,
        allow_encoded_slashes,
    }
}

fn route_match(mut obj: Obj<'_>, errs: &mut Errors) -> RouteMatch {
    let host = obj.take("host", errs, |v| as_str(v).and_then(syntax::host_pattern));
    let path_prefix = obj.take("path_prefix", errs, |v| {
        as_str(v).and_then(syntax::match_path)
    });
    let path_exact = obj.take("path_exact", errs, |v| {
        as_str(v).and_then(syntax::match_path)
    });
    let path_regex = obj.take("path_regex", errs, |v| as_str(v).and_then(path_regex));
    let paths = ["path_prefix", "path_exact", "path_regex"];
    let set: Vec<&str> = paths.into_iter().filter(|p| obj.has(p)).collect();
    if let [_, second, ..] = set.as_slice() {
        errs.add(
            obj.path_of(second),
            format!("set at most one of {}", paths.join(", ")),
        );
    }
    let methods = obj
        .str_list("methods", 9, errs, syntax::method)
        .unwrap_or_default();
    let headers = obj
        .str_map("headers", 32, errs, |k, v| {
            Ok((syntax::header_name(k)?, syntax::header_value(v)?))
        })
        .unwrap_or_default();
    let query = obj
        .str_map("query", 32, errs, |k, v| {
            if k.is_empty() {
                return Err("query parameter name must not be empty".to_owned());
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .unwrap_or_default();
    obj.finish(errs);
    RouteMatch {
        host,
        path_prefix,
        path_exact,
        path_regex,
        methods,
        headers,
        query,
    }
}

fn path_regex(s: &str) -> Result<String, String> {
    if !s.starts_with('/') && !s.starts_with("^/") {
        return Err("must match paths starting with '/' (begin with / or ^/)".to_owned());
    }
    if s.len() > 1024 {
        return Err("must be at most 1024 bytes".to_owned());
    }
    regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid regex: {e}"))
}

fn weighted_clusters(
    path: &str,
    items: Vec<(String, &Value)>,
    errs: &mut Errors,
) -> Vec<WeightedCluster> {
    if items.is_empty() {
        errs.add(path, "must have 1 to 100 entries");
    }
    let mut out: Vec<WeightedCluster> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (path, item) in items {
        let Some(mut obj) = Obj::new(&path, item, errs) else {
            continue;
        };
        let cluster = obj.require("cluster", errs, |v| as_str(v).and_then(syntax::name));
        let weight = obj.req_int("weight", 1..=10_000, errs);
        obj.finish(errs);
        if let Some(c) = &cluster {
            if seen.contains(c) {
                errs.add(
                    format!("{path}.cluster"),
                    format!("duplicate cluster {c:?}"),
                );
            }
            seen.push(c.clone());
            errs.refer(format!("{path}.cluster"), Kind::Cluster, c);
        }
        if let (Some(cluster), Some(weight)) = (cluster, weight) {
            out.push(WeightedCluster {
                cluster,
                weight: weight as u32,
            });
        }
    }
    out
}

fn aggregate(mut obj: Obj<'_>, errs: &mut Errors) -> Aggregate {
    let items = obj.array("parts", 20, errs);
    if items.as_ref().is_none_or(|i| i.is_empty()) && !errs_has(errs, &obj.path_of("parts")) {
        errs.add(obj.path_of("parts"), "must have 1 to 20 parts");
    }
    let mut parts: Vec<AggregatePart> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (path, item) in items.unwrap_or_default() {
        let Some(mut part) = Obj::new(&path, item, errs) else {
            continue;
        };
        let name = part.require("name", errs, |v| {
            as_str(v).and_then(|s| syntax::token(s, 128))
        });
        let cluster = part.require("cluster", errs, |v| as_str(v).and_then(syntax::name));
        if let Some(c) = &cluster {
            errs.refer(part.path_of("cluster"), Kind::Cluster, c);
        }
        let part_path = part.require("path", errs, |v| as_str(v).and_then(syntax::path));
        part.finish(errs);
        if let Some(n) = &name {
            if seen.contains(n) {
                errs.add(format!("{path}.name"), format!("duplicate part name {n:?}"));
            }
            seen.push(n.clone());
        }
        if let (Some(name), Some(cluster), Some(path)) = (name, cluster, part_path) {
            parts.push(AggregatePart {
                name,
                cluster,
                path,
            });
        }
    }
    obj.finish(errs);
    Aggregate { parts }
}

fn errs_has(errs: &Errors, field: &str) -> bool {
    errs.fields().any(|f| f == field)
}

fn direct_response(mut obj: Obj<'_>, errs: &mut Errors) -> Option<DirectResponse> {
    let status = obj.req_int("status", 100..=599, errs);
    let body = obj.take("body", errs, |v| {
        as_str(v).and_then(|s| match s.len() {
            0..=65_536 => Ok(s.to_owned()),
            _ => Err("must be at most 64 KiB".to_owned()),
        })
    });
    obj.finish(errs);
    Some(DirectResponse {
        status: status? as u16,
        body: body.unwrap_or_default(),
    })
}

fn rewrite(mut obj: Obj<'_>, errs: &mut Errors) -> Rewrite {
    let strip_prefix = obj.take("strip_prefix", errs, |v| as_str(v).and_then(syntax::path));
    let prefix = obj.take("prefix", errs, |v| as_str(v).and_then(syntax::path));
    if !obj.has("strip_prefix") && !obj.has("prefix") {
        errs.add(obj.path(), "set strip_prefix, prefix or both");
    }
    obj.finish(errs);
    Rewrite {
        strip_prefix,
        prefix,
    }
}

fn header_ops(mut obj: Obj<'_>, errs: &mut Errors) -> HeaderOps {
    let set = obj
        .str_map("set", 64, errs, |k, v| {
            Ok((syntax::header_name(k)?, syntax::header_value(v)?))
        })
        .unwrap_or_default();
    let remove = obj
        .str_list("remove", 64, errs, syntax::header_name)
        .unwrap_or_default();
    obj.finish(errs);
    HeaderOps { set, remove }
}

/// A dotted JSON field path: non-empty segments without whitespace.
fn json_field_path(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.split('.').all(|seg| {
            !seg.is_empty() && !seg.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a dotted field path like \"user.password\""
        ))
    }
}

fn auth(mut obj: Obj<'_>, errs: &mut Errors) -> Auth {
    let api_key = obj.bool("api_key", errs).unwrap_or(false);
    let jwt = obj.take("jwt", errs, |v| as_str(v).and_then(syntax::name));
    if let Some(provider) = &jwt {
        errs.refer(obj.path_of("jwt"), Kind::JwtProvider, provider);
    }
    let scopes = obj
        .str_list("scopes", 64, errs, |s| syntax::token(s, 128))
        .unwrap_or_default();
    if !api_key && !obj.has("jwt") {
        errs.add(obj.path(), "set api_key: true, jwt, or both");
    }
    obj.finish(errs);
    Auth {
        api_key,
        jwt,
        scopes,
    }
}

fn rate_limit(mut obj: Obj<'_>, errs: &mut Errors) -> Option<RateLimit> {
    let requests = obj.req_int("requests", 1..=1_000_000_000, errs);
    let per_seconds = obj.req_int("per_seconds", 1..=86_400, errs);
    let by = obj.take("by", errs, |v| match as_str(v)? {
        "route" => Ok(RateLimitKey::Route),
        "consumer" => Ok(RateLimitKey::Consumer),
        "ip" => Ok(RateLimitKey::Ip),
        _ => Err("must be one of consumer, ip, route".to_owned()),
    });
    obj.finish(errs);
    Some(RateLimit {
        requests: requests? as u32,
        per_seconds: per_seconds? as u32,
        by: by.unwrap_or_default(),
    })
}

fn retries(mut obj: Obj<'_>, errs: &mut Errors) -> Option<Retries> {
    let attempts = obj.req_int("attempts", 1..=10, errs);
    let on = obj.str_list("on", 3, errs, |s| match s {
        "5xx" | "connect_failure" | "reset" => Ok(s.to_owned()),
        _ => Err(format!("{s:?} must be one of 5xx, connect_failure, reset")),
    });
    let per_try_timeout_ms = obj.int("per_try_timeout_ms", 1..=3_600_000, errs);
    obj.finish(errs);
    let on = match on {
        None => vec![RetryOn::Status5xx, RetryOn::ConnectFailure],
        Some(list) => list
            .iter()
            .map(|s| match s.as_str() {
                "5xx" => RetryOn::Status5xx,
                "connect_failure" => RetryOn::ConnectFailure,
                _ => RetryOn::Reset,
            })
            .collect(),
    };
    Some(Retries {
        attempts: attempts? as u32,
        on,
        per_try_timeout_ms: per_try_timeout_ms.map(|n| n as u32),
    })
}

fn cors(mut obj: Obj<'_>, errs: &mut Errors) -> Cors {
    let empty = match obj.peek("allow_origins") {
        None => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    let allow_origins = obj.str_list("allow_origins", 100, errs, origin);
    if empty {
        errs.add(
            obj.path_of("allow_origins"),
            "must list at least one origin or \"*\"",
        );
    }
    let allow_methods = obj
        .str_list("allow_methods", 9, errs, syntax::method)
        .unwrap_or_default();
    let allow_headers = obj
        .str_list("allow_headers", 64, errs, syntax::header_name)
        .unwrap_or_default();
    let max_age_s = obj.int("max_age_s", 0..=86_400, errs).map(|n| n as u32);
    obj.finish(errs);
    Cors {
        allow_origins: allow_origins.unwrap_or_default(),
        allow_methods,
        allow_headers,
        max_age_s,
    }
}

/// `*` or `scheme://host[:port]` (http or https, nothing after the authority).
fn origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.to_owned());
    }
    let bad = || format!("{s:?} must be \"*\" or an origin like https://app.example.com");
    let (scheme, authority) = s.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https")
        || authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
    {
        return Err(bad());
    }
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(s.to_ascii_lowercase()),
        _ => Err(bad()),
    }
}

fn cache(mut obj: Obj<'_>, errs: &mut Errors) -> Option<Cache> {
    let ttl_s = obj.req_int("ttl_s", 1..=86_400, errs);
    obj.finish(errs);
    Some(Cache {
        ttl_s: ttl_s? as u32,
    })
}
