//! Passwords (Argon2id), device tokens (random, stored only as a SHA-256 hash) and the
//! failed-login throttle.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Hashes a password with Argon2id (default parameters: 19 MiB, 2 passes). CPU-heavy: call
/// from a blocking thread.
pub fn hash_password(password: &str) -> String {
    let salt =
        SaltString::from_b64(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 16]>()))
            .expect("16 random bytes make a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC string. CPU-heavy: call from a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A new device token: 32 random bytes, base64url without padding, prefixed for recognisability.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("fst_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// What the server stores instead of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// How long a client must wait before its next login attempt after `failures` consecutive
/// failures for one user name: nothing for the first 3, then doubling from 1 s, capped at 60 s.
pub fn throttle_delay(failures: u32) -> Duration {
    if failures < 3 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (failures - 3).min(6)).min(Duration::from_secs(60))
}

/// Counts consecutive failed logins per user name (and per client address) and answers
/// whether a new attempt must wait. A std mutex: the critical sections are tiny and never
/// held across an await.
#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    /// `Err(wait)` if an attempt for `key` is not allowed yet.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let st = self.state.lock().expect("throttle lock");
        match st.get(key) {
            Some(&(failures, last)) => {
                let ready = last + throttle_delay(failures);
                if now < ready { Err(ready - now) } else { Ok(()) }
            }
            None => Ok(()),
        }
    }

    pub fn failed(&self, key: &str, now: Instant) {
        let mut st = self.state.lock().expect("throttle lock");
        if st.len() > 100_000 {
            // Bound memory under a flood of distinct names: forget entries idle for an hour.
            st.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(3600));
        }
        let e = st.entry(key.to_string()).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }

    pub fn succeeded(&self, key: &str) {
        self.state.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert_ne!(a, new_token());
        assert!(a.len() > 40);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&new_token()));
    }

    #[test]
    fn throttle_grows_and_resets() {
        assert_eq!(throttle_delay(0), Duration::ZERO);
        assert_eq!(throttle_delay(3), Duration::from_secs(1));
        assert_eq!(throttle_delay(5), Duration::from_secs(4));
        assert_eq!(throttle_delay(100), Duration::from_secs(60));
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check("ann", now).is_ok());
            t.failed("ann", now);
        }
        assert!(t.check("ann", now).is_err());
        assert!(t.check("ann", now + Duration::from_millis(999)).is_err());
        assert!(t.check("ann", now + Duration::from_secs(1)).is_ok());
        assert!(t.check("bob", now).is_ok());
        t.succeeded("ann");
        assert!(t.check("ann", now).is_ok());
    }
}
