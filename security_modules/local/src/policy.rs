//! The password policy: users need at least 8 characters with a letter and a
//! digit; administrators also a capital letter or a character that is neither
//! a letter nor a digit.

/// Minimum length for every account.
pub const MIN_LENGTH: usize = 8;

/// Checks a new password. `Err` says what is missing (never the password).
pub fn check_password(password: &str, administrator: bool) -> Result<(), &'static str> {
    if password.chars().count() < MIN_LENGTH {
        return Err("a password needs at least 8 characters");
    }
    if !password.chars().any(char::is_alphabetic) {
        return Err("a password needs a letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("a password needs a digit");
    }
    if administrator
        && !password
            .chars()
            .any(|c| c.is_uppercase() || !c.is_alphanumeric())
    {
        return Err("an administrator's password needs a capital letter or a special character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_password;

    #[test]
    fn policy() {
        assert!(check_password("abcdefg1", false).is_ok());
        assert_eq!(
            check_password("abc1", false),
            Err("a password needs at least 8 characters")
        );
        assert_eq!(
            check_password("12345678", false),
            Err("a password needs a letter")
        );
        assert_eq!(
            check_password("abcdefgh", false),
            Err("a password needs a digit")
        );
        assert!(check_password("abcdefg1", true).is_err());
        assert!(check_password("Abcdefg1", true).is_ok());
        assert!(check_password("abcdef-1", true).is_ok());
        // Length counts characters, not bytes.
        assert!(check_password("äöüäöü1", false).is_err());
        assert!(check_password("äöüäöüß1", false).is_ok());
    }
}
