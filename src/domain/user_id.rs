//! The caller's name for a user: 1 to 128 characters from `A-Z a-z 0-9 . _ : @ | + -`, a set
//! that fits in URLs, log lines and metric labels without escaping surprises; `.` and `..`
//! are refused because browsers and URL libraries normalise them away as path segments.

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
    fn refuses_empty_long_and_odd_ids() {
        for id in ["", " ", "a b", "a/b", "é", "a\0", ".", "..", "'; DROP TABLE users; --", &"x".repeat(129)] {
            assert!(validate_user_id(id).is_err(), "{id:?}");
        }
    }
}
