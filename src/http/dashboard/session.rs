//! Dashboard logins: random session tokens, stored (as digests) in the database with an
//! expiry, a CSRF token and a one-shot flash message each; the cookies that carry them. No
//! HTML here.

use crate::config::ApiKey;
use crate::domain::ports::{SessionRecord, Store, StoreError};
use crate::http::Head;
use ::http::header;
use sha2::{Digest, Sha256};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tally_session";
/// The login form's double-submit cookie: the form carries the same value in `csrf`.
pub const LOGIN_COOKIE: &str = "tally_login";
/// How long a login lasts, in seconds (the cookie's Max-Age and the server-side expiry).
pub const SESSION_SECONDS: i64 = 8 * 60 * 60;
/// How long a login form may sit open before it must be reloaded.
pub const LOGIN_FORM_SECONDS: i64 = 60 * 60;

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

/// Dashboard login sessions, kept in the database by the digest of their token: a login is
/// valid on every node sharing the database and outlives a restart.
pub struct Sessions {
    store: Store,
    /// The CSRF token of open access, where there is no login: random per process, so a
    /// page on another site still cannot forge a form (open access is one loopback node).
    open_csrf: String,
    open_flash: Mutex<Option<Flash>>,
}

/// 244 random bits from the OS generator (two v4 UUIDs), as 64 hex digits.
pub fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// What the database holds instead of the token: reading the table hands out no session.
fn token_digest(token: &str) -> String {
    crate::domain::hex(&Sha256::digest(token.as_bytes()))
}

/// A poisoned lock only means another request panicked mid-update of a plain value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    pub fn new(store: Store) -> Sessions {
        Sessions { store, open_csrf: random_token(), open_flash: Mutex::default() }
    }

    /// Starts a session for the admin key `key`; returns its token. Expired sessions are
    /// deleted on the way.
    pub fn create(&self, key: &ApiKey, now_ms: i64) -> Result<String, StoreError> {
        let token = random_token();
        let record = SessionRecord {
            key_name: key.name.clone(),
            key_digest: crate::domain::hex(&key.digest),
            csrf: random_token(),
            expires_at_ms: now_ms + SESSION_SECONDS * 1000,
            flash: None,
        };
        let digest = token_digest(&token);
        self.store.write(move |tx| {
            tx.prune_sessions(now_ms)?;
            tx.save_session(&digest, &record)
        })?;
        Ok(token)
    }

    /// The visitor holding `token`, if that session exists, has not expired, and was signed
    /// in with a key among `admin_keys` (a key taken out of the config ends its sessions).
    pub fn find(&self, token: &str, admin_keys: &[ApiKey], now_ms: i64) -> Result<Option<Visitor>, StoreError> {
        let digest = token_digest(token);
        let session = self.store.read(|reader| reader.find_session(&digest, now_ms))?;
        Ok(session
            .filter(|session| admin_keys.iter().any(|key| crate::domain::hex(&key.digest) == session.key_digest))
            .map(|session| Visitor { actor: session.key_name, csrf: session.csrf, token: Some(token.to_owned()) }))
    }

    /// Everyone, under open access: no keys are configured (allowed only on loopback).
    pub fn open_access(&self) -> Visitor {
        Visitor { actor: "open-access".to_owned(), csrf: self.open_csrf.clone(), token: None }
    }

    pub fn remove(&self, token: &str) -> Result<(), StoreError> {
        let digest = token_digest(token);
        self.store.write(move |tx| tx.delete_session(&digest))
    }

    pub fn set_flash(&self, visitor: &Visitor, flash: Flash) -> Result<(), StoreError> {
        let Some(token) = &visitor.token else {
            *lock(&self.open_flash) = Some(flash);
            return Ok(());
        };
        let digest = token_digest(token);
        self.store.write(move |tx| tx.set_session_flash(&digest, Some((flash.ok, &flash.text))).map(|_| ()))
    }

    /// The flash message waiting for the visitor, removed as it is read (a write only when
    /// there is one).
    pub fn take_flash(&self, visitor: &Visitor) -> Result<Option<Flash>, StoreError> {
        let Some(token) = &visitor.token else {
            return Ok(lock(&self.open_flash).take());
        };
        let digest = token_digest(token);
        let waiting = self.store.read(|reader| reader.find_session(&digest, i64::MIN))?;
        if waiting.is_none_or(|session| session.flash.is_none()) {
            return Ok(None);
        }
        // Read and cleared in one job: the flash is shown once, whichever node shows it.
        self.store.write(move |tx| {
            let flash = tx.find_session(&digest, i64::MIN)?.and_then(|session| session.flash);
            if flash.is_some() {
                tx.set_session_flash(&digest, None)?;
            }
            Ok(flash.map(|(ok, text)| Flash { ok, text }))
        })
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

    /// Sessions on a SQLite database in a temp dir (the directory lives as long as it).
    fn sessions() -> (Sessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[database]\npath = {:?}\n", dir.path().join("t.db").display().to_string());
        let config = crate::config::Config::from_toml("test", &text, &|_| None).unwrap();
        let store = crate::store::open(&config.database, Default::default()).unwrap();
        (Sessions::new(store), dir)
    }

    fn key(name: &str) -> ApiKey {
        ApiKey { name: name.to_owned(), digest: Sha256::digest(name.as_bytes()).into() }
    }

    #[test]
    fn a_session_expires_and_only_its_digest_is_stored() {
        let (sessions, _dir) = sessions();
        let keys = [key("ops")];
        let token = sessions.create(&keys[0], 1_000).unwrap();
        let visitor = sessions.find(&token, &keys, 1_000 + SESSION_SECONDS * 1000 - 1).unwrap().expect("alive");
        assert_eq!(visitor.actor, "ops");
        assert!(sessions.find(&token, &keys, 1_000 + SESSION_SECONDS * 1000).unwrap().is_none());
        assert!(sessions.find("not-a-token", &keys, 0).unwrap().is_none());
        let stored = sessions.store.read(|reader| reader.find_session(&token, 0)).unwrap();
        assert!(stored.is_none(), "the token itself is no key to a session");
        sessions.remove(&token).unwrap();
        assert!(sessions.find(&token, &keys, 1_000).unwrap().is_none());
    }

    #[test]
    fn a_session_ends_when_its_key_leaves_the_config() {
        let (sessions, _dir) = sessions();
        let token = sessions.create(&key("ops"), 0).unwrap();
        assert!(sessions.find(&token, &[key("ops")], 1).unwrap().is_some());
        // The key rotated: same name, another secret.
        let rotated = ApiKey { name: "ops".into(), digest: Sha256::digest(b"a new secret").into() };
        assert!(sessions.find(&token, &[rotated], 1).unwrap().is_none());
    }

    #[test]
    fn a_flash_is_read_once_and_never_brings_a_session_back() {
        let (sessions, _dir) = sessions();
        let keys = [key("ann"), key("bob")];
        let ann = sessions.find(&sessions.create(&keys[0], 0).unwrap(), &keys, 0).unwrap().expect("ann");
        let bob = sessions.find(&sessions.create(&keys[1], 0).unwrap(), &keys, 0).unwrap().expect("bob");
        sessions.set_flash(&ann, Flash::ok("done")).unwrap();
        assert_eq!(sessions.take_flash(&bob).unwrap(), None);
        assert_eq!(sessions.take_flash(&ann).unwrap(), Some(Flash::ok("done")));
        assert_eq!(sessions.take_flash(&ann).unwrap(), None);
        assert_ne!(ann.csrf, bob.csrf);
        // Signed out (on another node, say), then a flash for it: it stays signed out.
        let token = bob.token.clone().unwrap();
        sessions.remove(&token).unwrap();
        sessions.set_flash(&bob, Flash::ok("late")).unwrap();
        assert!(sessions.find(&token, &keys, 0).unwrap().is_none());
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
