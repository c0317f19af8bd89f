//! Passwords (Argon2id), device tokens (random, stored only as a SHA-256 hash) and the
//! login and registration throttle.

use argon2::password_hash::{PasswordHash, SaltString};
use base64::Engine;
use rand::RngCore;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Argon2's working memory (19 MiB with the default parameters), kept and reused by the
/// password gate so that memory stays at one buffer per concurrent run, whichever threads run
/// them (the allocator would otherwise keep a freed 19 MiB per thread that ever hashed).
pub type Argon2Memory = Vec<argon2::Block>;

/// The largest working memory a stored hash may ask for when verifying (64 MiB); a stored
/// hash with more is refused rather than allowed to take the server's memory.
const MAX_VERIFY_BLOCKS: usize = 64 * 1024;

/// Hashes a password with Argon2id (default parameters: 19 MiB, 2 passes) into a PHC string,
/// working in `memory`. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str, memory: &mut Argon2Memory) -> String {
    let salt =
        SaltString::from_b64(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 16]>()))
            .expect("16 random bytes make a valid salt");
    let argon = argon2::Argon2::default();
    let mut raw = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw).expect("salt is valid base64");
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    run(&argon, password.as_bytes(), salt_bytes, &mut out, memory).expect("Argon2 with default parameters cannot fail");
    PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::default().into()),
        params: argon2::password_hash::ParamsString::try_from(argon.params()).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).expect("32-byte output")),
    }
    .to_string()
}

/// Checks a password against a stored PHC string, working in `memory`. CPU-heavy: call from a
/// blocking thread.
pub fn verify_password(password: &str, phc: &str, memory: &mut Argon2Memory) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params)) = (argon2::Algorithm::try_from(h.algorithm), argon2::Params::try_from(&h)) else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let mut raw = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw) else { return false };
    if params.block_count() > MAX_VERIFY_BLOCKS {
        return false;
    }
    let argon = argon2::Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    if run(&argon, password.as_bytes(), salt, &mut out, memory).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

fn run(
    argon: &argon2::Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Argon2Memory,
) -> argon2::Result<()> {
    let blocks = argon.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    argon.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
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

/// How long a client must wait before its next attempt after `attempts` counted attempts
/// under one key, when the first `free` are allowed at once: nothing for those, then doubling
/// from 1 s, capped at 60 s.
pub fn throttle_delay(attempts: u32, free: u32) -> Duration {
    if attempts < free {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (attempts - free).min(6)).min(Duration::from_secs(60))
}

/// Failed logins allowed per key before attempts are slowed down.
pub const LOGIN_FREE_ATTEMPTS: u32 = 3;
/// Registrations allowed per client address before further ones are slowed down.
pub const REGISTER_FREE_ATTEMPTS: u32 = 10;
/// A key that saw no attempt for this long starts again from zero.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Counts attempts per key (a user name at one address, an address) and answers whether a
/// new attempt may go ahead. An attempt is counted *before* the expensive check it guards, in
/// the same critical section as the decision, so concurrent attempts cannot all slip through
/// between the check and the count: the `free + 1`-th concurrent attempt is already refused.
/// A success clears the count (`succeeded`). A std mutex: the critical sections are tiny and
/// never held across an await.
#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    /// Counts an attempt under every key in `keys`, or none if any of them must wait yet:
    /// then `Err(wait)`. Refused attempts are not counted.
    pub fn reserve(&self, keys: &[String], free: u32, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock().expect("throttle lock");
        let mut wait = Duration::ZERO;
        for k in keys {
            if let Some(&(attempts, last)) = st.get(k) {
                let ready = last + throttle_delay(attempts, free);
                if now < ready && now.duration_since(last) < FORGET_AFTER {
                    wait = wait.max(ready - now);
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        if st.len() > 100_000 {
            // Bound memory under a flood of distinct names: forget entries idle for a while.
            st.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
        }
        for k in keys {
            let e = st.entry(k.clone()).or_insert((0, now));
            if now.duration_since(e.1) >= FORGET_AFTER {
                e.0 = 0;
            }
            e.0 = e.0.saturating_add(1);
            e.1 = now;
        }
        Ok(())
    }

    /// Clears the counts of `keys` after a successful attempt.
    pub fn succeeded(&self, keys: &[String]) {
        let mut st = self.state.lock().expect("throttle lock");
        for k in keys {
            st.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify_in_reused_memory_and_agree_with_the_argon2_crate() {
        let mut memory = Argon2Memory::new();
        let h = hash_password("correct horse", &mut memory);
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h, &mut memory));
        assert!(!verify_password("wrong", &h, &mut memory));
        assert!(!verify_password("x", "not a phc string", &mut memory));
        // Hashes stored by the crate's own hasher still verify, and ours verify with its
        // verifier.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let theirs = argon2::Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(verify_password("correct horse", &theirs, &mut memory));
        assert!(!verify_password("correct horsf", &theirs, &mut memory));
        let ours = PasswordHash::new(&h).unwrap();
        assert!(argon2::Argon2::default().verify_password(b"correct horse", &ours).is_ok());
        // A stored hash that asks for more memory than allowed is refused, not run.
        let greedy = h.replace("m=19456", "m=1048576");
        assert!(!verify_password("correct horse", &greedy, &mut memory));
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
        assert_eq!(throttle_delay(0, 3), Duration::ZERO);
        assert_eq!(throttle_delay(3, 3), Duration::from_secs(1));
        assert_eq!(throttle_delay(5, 3), Duration::from_secs(4));
        assert_eq!(throttle_delay(100, 3), Duration::from_secs(60));
        let t = LoginThrottle::default();
        let now = tokio::time::Instant::now().into_std();
        let ann = ["ann".to_string()];
        for _ in 0..3 {
            assert!(t.reserve(&ann, 3, now).is_ok());
        }
        assert!(t.reserve(&ann, 3, now).is_err());
        assert!(t.reserve(&ann, 3, now + Duration::from_millis(999)).is_err());
        assert!(t.reserve(&ann, 3, now + Duration::from_secs(1)).is_ok());
        assert!(t.reserve(&["bob".to_string()], 3, now).is_ok());
        t.succeeded(&ann);
        assert!(t.reserve(&ann, 3, now).is_ok());
    }

    #[test]
    fn an_attempt_is_counted_under_all_keys_or_none() {
        let t = LoginThrottle::default();
        let now = tokio::time::Instant::now().into_std();
        let both = ["user:ann".to_string(), "ip:1".to_string()];
        for _ in 0..3 {
            t.reserve(&both[1..], 3, now).unwrap();
        }
        // The address must wait, so the user key is not charged either.
        assert!(t.reserve(&both, 3, now).is_err());
        for _ in 0..3 {
            t.reserve(&both[..1], 3, now).unwrap();
        }
        assert!(t.reserve(&both[..1], 3, now).is_err());
    }

    #[test]
    fn counts_are_forgotten_after_an_hour_of_quiet() {
        let t = LoginThrottle::default();
        let now = tokio::time::Instant::now().into_std();
        let k = ["register:1".to_string()];
        let mut t_last = now;
        for i in 0..10 {
            t_last = now + Duration::from_secs(61 * i);
            t.reserve(&k, 3, t_last).unwrap();
        }
        assert!(t.reserve(&k, 3, t_last + Duration::from_secs(59)).is_err(), "the delay has grown to 60 s");
        let later = t_last + FORGET_AFTER;
        for _ in 0..3 {
            t.reserve(&k, 3, later).unwrap();
        }
        assert!(t.reserve(&k, 3, later).is_err());
    }
}
