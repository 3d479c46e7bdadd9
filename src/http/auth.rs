//! Who is calling: the bearer key's role, found by comparing SHA-256 digests in constant time
//! (the config holds only digests). Keys never leave this module; callers see a name.

use super::error::ApiError;
use crate::config::{ApiKey, AuthConfig};
use oxhttp::model::{Body, Request, header};
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

fn bearer_token(request: &Request<Body>) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// Whether the request names a loopback host (`localhost`, `127.x.y.z`, `[::1]`, with any
/// port) in its Host header, as a local client does.
pub fn addressed_to_loopback(request: &Request<Body>) -> bool {
    let Some(host) = request.uri().host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The name of the admin key `token` is, if it is one (the dashboard's login form).
pub fn admin_key_name(auth: &AuthConfig, token: &str) -> Option<String> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    find_key(&auth.admin_keys, &digest).map(|key| key.name.clone())
}

/// Checks the request's key against what `access` requires.
pub fn authorize(
    auth: &AuthConfig,
    metrics_public: bool,
    request: &Request<Body>,
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
