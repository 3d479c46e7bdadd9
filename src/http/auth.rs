//! Who is calling: the bearer key's role, found by comparing SHA-256 digests in constant time
//! (the config holds only digests). Keys never leave this module; callers see a name. Also
//! the guards of open access (no keys configured): only local, same-origin, unproxied
//! requests are served.

use super::Head;
use super::error::ApiError;
use super::request::{content_type, is_events, unsupported_media_type};
use crate::config::{ApiKey, AuthConfig};
use ::http::{HeaderName, Method, StatusCode, header, uri::Authority};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No key needed.
    Public,
    /// A service or an admin key.
    Service,
    /// An admin key.
    Admin,
    /// `GET /metrics`: an admin key, or nothing when `server.metrics_public` is set.
    Metrics,
    /// A dashboard page: the handler requires a login session (a cookie set by logging in
    /// with an admin key) and sends anyone without one to the login page.
    Session,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Service,
    Admin,
}

/// The authenticated caller; `name` is the key's name (or fingerprint), never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub name: String,
}

fn find_key<'k>(keys: &'k [ApiKey], digest: &[u8; 32]) -> Option<&'k ApiKey> {
    // Every key is compared, matched or not, so timing says nothing about which matched.
    let mut found = None;
    for key in keys {
        if bool::from(key.digest.ct_eq(digest)) {
            found = Some(key);
        }
    }
    found
}

fn bearer_token(request: &Head) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The host the request is addressed to: the request target's authority when it has one
/// (absolute form, which RFC 9112 says wins), else the Host header.
fn target(request: &Head) -> Option<Authority> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.clone());
    }
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    host.parse().ok()
}

/// A host without IPv6 brackets, and its port (`default` when none is written).
fn host_and_port(authority: &Authority, default: u16) -> (&str, u16) {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    (host, authority.port_u16().unwrap_or(default))
}

/// Whether the request names a loopback host (`localhost`, `127.x.y.z`, `[::1]`, with any
/// port), as a local client does.
pub fn addressed_to_loopback(request: &Head) -> bool {
    let Some(authority) = target(request) else {
        return false;
    };
    let (host, _) = host_and_port(&authority, 80);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Headers a reverse proxy adds: their presence means the client is not local.
const PROXY_HEADERS: [&str; 6] =
    ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via"];

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether an `Origin` value names the host and port the request was sent to. `null` (an
/// opaque origin: a sandboxed frame, a data: page) names none.
fn same_origin(origin: &str, request: &Head) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let (Ok(origin), Some(target)) = (rest.parse::<Authority>(), target(request)) else {
        return false;
    };
    let (origin_host, origin_port) = host_and_port(&origin, default_port);
    let (target_host, target_port) = host_and_port(&target, 80);
    origin_host.eq_ignore_ascii_case(target_host) && origin_port == target_port
}

fn open_access_refusal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// With auth off (no keys), every route that is not public is served only to a local client
/// on this machine: addressed to a loopback host (no DNS rebinding), not through a reverse
/// proxy (nginx passes `Host: 127.0.0.1` by default, so the Host check alone would let a
/// proxied request through), and not from another site's page (CSRF). A browser cannot send
/// `Content-Type: application/json` across origins without a CORS preflight, which Tally never
/// answers, so an API request that changes state must carry it, body or not.
pub fn check_open_access(request: &Head, dashboard: bool) -> Result<(), ApiError> {
    if !addressed_to_loopback(request) {
        return Err(open_access_refusal(
            "auth is off, so only requests addressed to localhost are served; configure [auth] keys to serve others",
        ));
    }
    if let Some(name) = PROXY_HEADERS.iter().find(|name| request.headers().contains_key(**name)) {
        return Err(open_access_refusal(format!(
            "auth is off, so requests through a proxy (this one carries {name}) are refused; configure [auth] keys"
        )));
    }
    let fetch_site = request.headers().get(SEC_FETCH_SITE).map(|value| value.as_bytes());
    if fetch_site.is_some_and(|site| site.eq_ignore_ascii_case(b"cross-site")) {
        return Err(open_access_refusal("auth is off, so requests from another site's page are refused"));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|origin| same_origin(origin, request))
    {
        return Err(open_access_refusal("auth is off, so requests from a page of another origin are refused"));
    }
    let reads_only = [Method::GET, Method::HEAD].contains(request.method());
    // JSON and the CloudEvents types are not CORS-safelisted: another site's page cannot send
    // them without a preflight, which Tally never answers.
    if !dashboard && !reads_only && !content_type(request).is_some_and(is_events) {
        return Err(unsupported_media_type(
            "sent with `Content-Type: application/json` (required with auth off, even when empty)",
        ));
    }
    Ok(())
}

/// The admin key `token` is, if it is one (the dashboard's login form).
pub fn admin_key<'a>(auth: &'a AuthConfig, token: &str) -> Option<&'a ApiKey> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    find_key(&auth.admin_keys, &digest)
}

/// Checks the request's key against what `access` requires.
pub fn authorize(
    auth: &AuthConfig,
    metrics_public: bool,
    request: &Head,
    access: Access,
) -> Result<Option<Caller>, ApiError> {
    let access = match access {
        Access::Metrics if metrics_public => Access::Public,
        Access::Metrics => Access::Admin,
        other => other,
    };
    if matches!(access, Access::Public | Access::Session) {
        return Ok(None);
    }
    if auth.is_open() {
        return Ok(Some(Caller { role: Role::Admin, name: "open-access".into() }));
    }
    let token = bearer_token(request).ok_or_else(ApiError::unauthorized)?;
    let digest: [u8; 32] = Sha256::digest(token).into();
    let caller = match (find_key(&auth.admin_keys, &digest), find_key(&auth.service_keys, &digest)) {
        (Some(key), _) => Caller { role: Role::Admin, name: key.name.clone() },
        (None, Some(key)) => Caller { role: Role::Service, name: key.name.clone() },
        (None, None) => return Err(ApiError::unauthorized()),
    };
    if access == Access::Admin && caller.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    Ok(Some(caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, host: &str, headers: &[(&str, &str)]) -> Head {
        let mut builder = Head::builder().method(method).uri("/v1/admin/users/alice/reset").header("host", host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn open_access_serves_a_local_same_origin_json_request() {
        assert!(check_open_access(&head(Method::POST, "localhost:8080", &[JSON]), false).is_ok());
        let same = [JSON, ("origin", "http://localhost:8080"), ("sec-fetch-site", "same-origin")];
        assert!(check_open_access(&head(Method::POST, "localhost:8080", &same), false).is_ok());
        assert!(check_open_access(&head(Method::POST, "[::1]", &[JSON, ("origin", "http://[::1]:80")]), false).is_ok());
        assert!(check_open_access(&head(Method::GET, "127.0.0.1:9", &[]), false).is_ok(), "a read needs no type");
    }

    #[test]
    fn open_access_refuses_other_origins_sites_proxies_and_bodies_a_form_can_send() {
        let refused = |request: Head| check_open_access(&request, false).unwrap_err().status().as_u16();
        let host = "localhost:8080";
        for origin in ["http://evil.example", "http://localhost:3000", "null", "https://localhost:8080x"] {
            assert_eq!(refused(head(Method::POST, host, &[JSON, ("origin", origin)])), 403, "{origin}");
        }
        assert_eq!(refused(head(Method::GET, host, &[("sec-fetch-site", "cross-site")])), 403);
        for name in PROXY_HEADERS {
            assert_eq!(refused(head(Method::GET, "127.0.0.1:8080", &[(name, "10.1.2.3")])), 403, "{name}");
        }
        for content_type in [None, Some("application/x-www-form-urlencoded"), Some("text/plain")] {
            let headers: Vec<(&str, &str)> = content_type.map(|value| ("content-type", value)).into_iter().collect();
            assert_eq!(refused(head(Method::POST, host, &headers)), 415, "{content_type:?}");
            assert_eq!(refused(head(Method::DELETE, host, &headers)), 415, "{content_type:?}");
        }
        assert!(
            check_open_access(&head(Method::POST, host, &[("content-type", "text/plain")]), true).is_ok(),
            "dashboard forms carry CSRF tokens instead"
        );
    }
}
