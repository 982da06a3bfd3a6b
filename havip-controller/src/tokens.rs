//! Bearer tokens as the controller keeps them: SHA-256 digests, never the
//! tokens themselves, looked up in constant time.
//!
//! The config names a token by `token_sha256 = "<64 hex digits>"` (what
//! `havip-controller hash-token` prints for a token read from stdin). A
//! presented token is hashed and compared with every configured digest
//! (`subtle`), without stopping at the first match, so neither the
//! comparison nor the lookup tells how much of a guess was right.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::Scope;

/// A token's SHA-256 digest.
pub type TokenDigest = [u8; 32];

/// The digest of `token`.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// `token`'s digest as the config takes it (lower-case hex).
pub fn digest_hex(token: &str) -> String {
    digest(token).iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into a digest.
pub fn parse_digest_hex(hex: &str) -> Option<TokenDigest> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The tokens the API accepts: digests and whom each speaks for.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(TokenDigest, Scope)>,
}

impl Tokens {
    pub fn new(entries: Vec<(TokenDigest, Scope)>) -> Tokens {
        Tokens { entries }
    }

    /// Whom `token` speaks for, if anyone: every digest is compared.
    pub fn lookup(&self, token: &str) -> Option<&Scope> {
        let presented = digest(token);
        let mut found = None;
        for (d, scope) in &self.entries {
            if bool::from(d.ct_eq(&presented)) {
                found = Some(scope);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Plain tokens (tests, embedders) are hashed on the way in.
impl From<HashMap<String, Scope>> for Tokens {
    fn from(plain: HashMap<String, Scope>) -> Tokens {
        Tokens::new(plain.into_iter().map(|(t, s)| (digest(&t), s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_look_up() {
        let hex = digest_hex("tok-operator");
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_digest_hex(&hex), Some(digest("tok-operator")));
        let tokens = Tokens::new(vec![
            (parse_digest_hex(&hex).unwrap(), Scope::Operator),
            (digest("tok-project"), Scope::Project("p1".into())),
        ]);
        assert!(matches!(
            tokens.lookup("tok-operator"),
            Some(Scope::Operator)
        ));
        assert!(matches!(tokens.lookup("tok-project"), Some(Scope::Project(p)) if p == "p1"));
        assert!(tokens.lookup("tok-operato").is_none());
        assert!(
            tokens.lookup(&hex).is_none(),
            "the digest itself is no token"
        );
        assert!(tokens.lookup("").is_none());
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert_eq!(parse_digest_hex(bad), None, "{bad:?}");
        }
        assert!(parse_digest_hex(&"AB".repeat(32)).is_some());
    }

    #[test]
    fn known_digest() {
        // printf %s abc | sha256sum
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
