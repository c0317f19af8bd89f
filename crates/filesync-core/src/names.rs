//! Names people type: user names, device names and folder names. One rule for the client,
//! which checks a name before it sends it, and the server, which enforces it: a name is
//! trimmed and put in Unicode NFC (so that `Café` typed two ways is one name and a device name
//! is safe inside a conflict copy's path), then must be 1 to [`MAX_NAME_BYTES`] bytes without
//! control characters. A new user name is also limited to a portable alphabet
//! ([`check_new_user_name`]).

use unicode_normalization::{UnicodeNormalization, is_nfc};

/// Longest user, device or folder name, in bytes of UTF-8 (after normalization).
pub const MAX_NAME_BYTES: usize = 128;
/// Longest user name a registration may choose, in characters.
pub const MAX_NEW_USER_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    #[error("contains a control character")]
    Control,
    #[error(
        "may hold only letters A-Z and a-z, digits, '.', '_', '-' and '@', at most {MAX_NEW_USER_NAME_CHARS} of them"
    )]
    UserAlphabet,
}

/// `raw` as it is stored and compared: trimmed, in NFC, and checked.
pub fn normalize_name(raw: &str) -> Result<String, NameError> {
    let trimmed = raw.trim();
    let name = if is_nfc(trimmed) { trimmed.to_string() } else { trimmed.nfc().collect() };
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    Ok(name)
}

/// The extra rule for a user name chosen at registration (a normalized name): ASCII letters,
/// digits and `._-@`, at most [`MAX_NEW_USER_NAME_CHARS`], so that it can be typed anywhere.
pub fn check_new_user_name(name: &str) -> Result<(), NameError> {
    let ok =
        name.len() <= MAX_NEW_USER_NAME_CHARS && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok { Ok(()) } else { Err(NameError::UserAlphabet) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_composed_and_checked() {
        assert_eq!(normalize_name("  Cafe\u{301} ").unwrap(), "Caf\u{e9}");
        assert_eq!(normalize_name("laptop").unwrap(), "laptop");
        assert_eq!(normalize_name(" \t "), Err(NameError::Empty));
        assert_eq!(normalize_name("a\u{7}b"), Err(NameError::Control));
        assert_eq!(normalize_name(&"x".repeat(129)), Err(NameError::TooLong(129)));
        assert!(normalize_name(&"é".repeat(64)).is_ok(), "128 bytes");
        // Composition can shorten a name below the limit: the limit counts what is stored.
        assert!(normalize_name(&"e\u{301}".repeat(64)).is_ok());
    }

    #[test]
    fn new_user_names_use_a_portable_alphabet() {
        for ok in ["ann", "ann.smith@example.org", "A_b-9"] {
            assert_eq!(check_new_user_name(ok), Ok(()), "{ok}");
        }
        for bad in ["bad name!", "caf\u{e9}", &"u".repeat(65)] {
            assert_eq!(check_new_user_name(bad), Err(NameError::UserAlphabet), "{bad}");
        }
    }
}
