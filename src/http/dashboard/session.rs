//! Dashboard logins: random session tokens held in memory with an expiry, a CSRF token and a
//! one-shot flash message each; the cookies that carry them. No HTML here.

use crate::http::Head;
use ::http::header;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tally_session";
/// The login form's double-submit cookie: the form carries the same value in `csrf`.
pub const LOGIN_COOKIE: &str = "tally_login";
/// How long a login lasts, in seconds (the cookie's Max-Age and the server-side expiry).
pub const SESSION_SECONDS: i64 = 8 * 60 * 60;
/// How long a login form may sit open before it must be reloaded.
pub const LOGIN_FORM_SECONDS: i64 = 60 * 60;
/// Sessions held at once; the one closest to expiry gives way to a new login.
const MAX_SESSIONS: usize = 1024;

/// A message shown once on the next page, after an action redirected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash { ok: true, text: text.into() }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash { ok: false, text: text.into() }
    }
}

struct Session {
    key_name: String,
    csrf: String,
    expires_at_ms: i64,
    flash: Option<Flash>,
}

/// Who is looking at a page: the actor the audit log names, and the CSRF token their
/// forms must carry. `token` is `None` under open access (no keys configured).
#[derive(Clone, Debug)]
pub struct Visitor {
    pub actor: String,
    pub csrf: String,
    pub token: Option<String>,
}

impl Visitor {
    pub fn is_open_access(&self) -> bool {
        self.token.is_none()
    }
}

/// Dashboard login sessions, by session token.
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    /// The CSRF token of open access, where there is no login: random per process, so a
    /// page on another site still cannot forge a form.
    open_csrf: String,
    open_flash: Mutex<Option<Flash>>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { by_token: Mutex::default(), open_csrf: random_token(), open_flash: Mutex::default() }
    }
}

/// 244 random bits from the OS generator (two v4 UUIDs), as 64 hex digits.
pub fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A poisoned lock only means another request panicked mid-update of a plain map.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    /// Starts a session for the admin key named `key_name`; returns its token.
    pub fn create(&self, key_name: &str, now_ms: i64) -> String {
        let token = random_token();
        let mut sessions = lock(&self.by_token);
        sessions.retain(|_, session| session.expires_at_ms > now_ms);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) =
                sessions.iter().min_by_key(|(_, session)| session.expires_at_ms).map(|(token, _)| token.clone())
        {
            sessions.remove(&oldest);
        }
        let session = Session {
            key_name: key_name.to_owned(),
            csrf: random_token(),
            expires_at_ms: now_ms + SESSION_SECONDS * 1000,
            flash: None,
        };
        sessions.insert(token.clone(), session);
        token
    }

    /// The visitor holding `token`, if that session exists and has not expired.
    pub fn find(&self, token: &str, now_ms: i64) -> Option<Visitor> {
        let mut sessions = lock(&self.by_token);
        let session = sessions.get(token)?;
        if session.expires_at_ms <= now_ms {
            sessions.remove(token);
            return None;
        }
        Some(Visitor { actor: session.key_name.clone(), csrf: session.csrf.clone(), token: Some(token.to_owned()) })
    }

    /// Everyone, under open access: no keys are configured (allowed only on loopback).
    pub fn open_access(&self) -> Visitor {
        Visitor { actor: "open-access".to_owned(), csrf: self.open_csrf.clone(), token: None }
    }

    pub fn remove(&self, token: &str) {
        lock(&self.by_token).remove(token);
    }

    pub fn set_flash(&self, visitor: &Visitor, flash: Flash) {
        match &visitor.token {
            Some(token) => {
                if let Some(session) = lock(&self.by_token).get_mut(token) {
                    session.flash = Some(flash);
                }
            }
            None => *lock(&self.open_flash) = Some(flash),
        }
    }

    /// The flash message waiting for the visitor, removed as it is read.
    pub fn take_flash(&self, visitor: &Visitor) -> Option<Flash> {
        match &visitor.token {
            Some(token) => lock(&self.by_token).get_mut(token).and_then(|session| session.flash.take()),
            None => lock(&self.open_flash).take(),
        }
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'r>(request: &'r Head, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value for a cookie only this dashboard's pages under `path` get back.
/// `secure` adds `Secure` (when a TLS proxy says the request came over HTTPS).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_seconds: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age_seconds}{secure}")
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex() {
        let (first, second) = (random_token(), random_token());
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn a_session_expires_and_is_dropped() {
        let sessions = Sessions::default();
        let token = sessions.create("ops", 1_000);
        let visitor = sessions.find(&token, 1_000 + SESSION_SECONDS * 1000 - 1).expect("alive");
        assert_eq!(visitor.actor, "ops");
        assert!(sessions.find(&token, 1_000 + SESSION_SECONDS * 1000).is_none());
        assert!(lock(&sessions.by_token).is_empty());
        assert!(sessions.find("not-a-token", 0).is_none());
    }

    #[test]
    fn a_flash_is_read_once_and_belongs_to_its_session() {
        let sessions = Sessions::default();
        let ann = sessions.find(&sessions.create("ann", 0), 0).expect("ann");
        let bob = sessions.find(&sessions.create("bob", 0), 0).expect("bob");
        sessions.set_flash(&ann, Flash::ok("done"));
        assert_eq!(sessions.take_flash(&bob), None);
        assert_eq!(sessions.take_flash(&ann), Some(Flash::ok("done")));
        assert_eq!(sessions.take_flash(&ann), None);
        assert_ne!(ann.csrf, bob.csrf);
    }

    #[test]
    fn reads_a_cookie_among_others_and_builds_strict_ones() {
        let request = Head::builder()
            .header(header::COOKIE, "theme=dark; tally_session=abc123 ;x=1")
            .header(header::COOKIE, "tally_login=")
            .body(())
            .expect("a request");
        assert_eq!(cookie(&request, SESSION_COOKIE), Some("abc123"));
        assert_eq!(cookie(&request, LOGIN_COOKIE), None, "an empty value is no cookie");
        assert_eq!(cookie(&request, "tally"), None);
        assert_eq!(
            set_cookie(SESSION_COOKIE, "t", "/admin", 60, false),
            "tally_session=t; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=60"
        );
        assert!(set_cookie(SESSION_COOKIE, "t", "/admin", 60, true).ends_with("; Secure"));
    }

    #[test]
    fn compares_tokens_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }
}
