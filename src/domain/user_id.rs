//! The caller's name for a user: 1 to 128 characters from `A-Z a-z 0-9 . _ : @ | + -`, a set
//! that fits in URLs, log lines and metric labels without escaping surprises; `.` and `..`
//! are refused because browsers and URL libraries normalise them away as path segments.
//! `UserId` is one that passed: parsed once where it comes in, it is valid everywhere it goes.

use std::fmt;
use std::ops::Deref;

/// A user id that passed `validate_user_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// The id, if it is valid; otherwise why not, in words a caller can act on.
    pub fn parse(text: impl Into<String>) -> Result<UserId, String> {
        let text = text.into();
        validate_user_id(&text)?;
        Ok(UserId(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for UserId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub const USER_ID_MAX_LEN: usize = 128;

pub fn is_user_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '|' | '+' | '-')
}

/// Why a user id was refused, in words a caller can act on.
pub fn validate_user_id(user_id: &str) -> Result<(), String> {
    if user_id.is_empty() {
        return Err("user_id must not be empty".into());
    }
    if user_id.len() > USER_ID_MAX_LEN {
        return Err(format!("user_id is {} bytes long; at most {USER_ID_MAX_LEN} are allowed", user_id.len()));
    }
    if let Some(c) = user_id.chars().find(|&c| !is_user_id_char(c)) {
        return Err(format!("user_id contains {c:?}; only A-Z a-z 0-9 and . _ : @ | + - are allowed"));
    }
    if user_id == "." || user_id == ".." {
        // `/v1/users/..` would reach another path once a client or browser normalises it.
        return Err(format!("user_id {user_id:?} is a relative path segment; choose another id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_from_common_identity_providers() {
        for id in ["user_2abc", "auth0|5f3", "a@b.example", "org:42+x", "A-Z.09", "...", ".a", &"x".repeat(128)] {
            assert_eq!(validate_user_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn a_parsed_id_is_the_text_it_was_given() {
        assert_eq!(UserId::parse("auth0|5f3").unwrap().as_str(), "auth0|5f3");
        assert!(UserId::parse("a b").unwrap_err().contains("' '"));
    }

    #[test]
    fn refuses_empty_long_and_odd_ids() {
        for id in ["", " ", "a b", "a/b", "é", "a\0", ".", "..", "'; DROP TABLE users; --", &"x".repeat(129)] {
            assert!(validate_user_id(id).is_err(), "{id:?}");
        }
    }
}
