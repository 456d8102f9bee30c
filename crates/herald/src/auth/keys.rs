//! The signing keys of `JWT_SECRET` and the tokens they make: HS256 only, issuer `helixobs`,
//! subject = instrument ID (or a reader's name), `iat`, `exp`; the first key signs, every key
//! verifies (rotation). No key, no auth.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` of every token, as the older herald wrote it.
pub const ISSUER: &str = "helixobs";
/// Lifetime of an instrument token from `POST /auth/token`.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The `scope` claim of a read-only token. Instrument tokens (like the older herald's) carry none.
pub const READ_SCOPE: &str = "read";
/// Shorter keys are accepted but warned about: an HMAC key should be 32 random bytes or more.
pub const MIN_KEY_BYTES: usize = 32;

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The instrument ID (instrument tokens) or the reader's name (read-only tokens).
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    /// A read-only token: it reads every API but cannot write.
    pub fn is_read_only(&self) -> bool {
        self.scope.as_deref() == Some(READ_SCOPE)
    }
}

/// Why a presented token is not accepted (told to the client; never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with an algorithm other than HS256")]
    Algorithm,
    #[error("the token's signature matches none of this herald's keys")]
    Signature,
    #[error("the token has expired; get a new one from POST /auth/token")]
    Expired,
    #[error("the token was not issued by helixobs or lacks a required claim (iss, sub, exp)")]
    Claims,
}

impl TokenRejected {
    /// The `reason` label of `helix_auth_denied_total`.
    pub fn reason(self) -> &'static str {
        match self {
            TokenRejected::Malformed => "malformed_token",
            TokenRejected::Algorithm => "wrong_algorithm",
            TokenRejected::Signature => "bad_signature",
            TokenRejected::Expired => "expired_token",
            TokenRejected::Claims => "bad_claims",
        }
    }
}

/// Owns the keys of `JWT_SECRET`. Its `Debug` shows how many keys there are, never a key.
pub struct KeySet {
    signing: EncodingKey,
    verifying: Vec<DecodingKey>,
    /// Lengths in bytes, for the start-up warnings.
    lengths: Vec<usize>,
    validation: Validation,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("keys", &self.verifying.len()).finish()
    }
}

impl KeySet {
    /// The comma-separated keys of `JWT_SECRET` (surrounding spaces and empty entries
    /// ignored); `None` when there is none, i.e. auth is off.
    pub fn parse(list: &str) -> Option<KeySet> {
        let keys: Vec<&str> = list.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
        // Only an empty secret is refused by jsonwebtoken, and those were left out above.
        let signing = EncodingKey::from_secret(keys.first()?.as_bytes()).ok()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Some(KeySet {
            signing,
            verifying: keys.iter().filter_map(|k| DecodingKey::from_secret(k.as_bytes()).ok()).collect(),
            lengths: keys.iter().map(|k| k.len()).collect(),
            validation,
        })
    }

    pub fn len(&self) -> usize {
        self.verifying.len()
    }

    pub fn is_empty(&self) -> bool {
        self.verifying.is_empty()
    }

    /// The 1-based positions of keys shorter than [`MIN_KEY_BYTES`] (for a start-up warning
    /// that names the key by position, never by value).
    pub fn short_keys(&self) -> Vec<usize> {
        self.lengths.iter().enumerate().filter(|(_, n)| **n < MIN_KEY_BYTES).map(|(i, _)| i + 1).collect()
    }

    /// A token for `subject`, valid for `ttl` from now; read-only when `scope` says so.
    pub fn issue(&self, subject: &str, scope: Option<&str>, ttl: Duration) -> Result<(String, Claims), String> {
        let iat = unix_now();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: subject.to_owned(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            scope: scope.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .map_err(|e| format!("signing the token failed: {e}"))?;
        Ok((token, claims))
    }

    /// The claims of a token signed by any of the keys (HS256, issuer `helixobs`, not expired).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejected> {
        let mut rejected = TokenRejected::Signature;
        for key in &self.verifying {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    rejected = match e.kind() {
                        // Another key may have signed it (rotation): try the next.
                        ErrorKind::InvalidSignature => continue,
                        ErrorKind::ExpiredSignature => TokenRejected::Expired,
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenRejected::Algorithm,
                        ErrorKind::InvalidIssuer | ErrorKind::MissingRequiredClaim(_) => TokenRejected::Claims,
                        _ => TokenRejected::Malformed,
                    };
                    // Only the signature depends on the key; any other verdict is the token's.
                    break;
                }
            }
        }
        Err(rejected)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_with(key: &str, alg: Algorithm, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key.as_bytes()).unwrap()).unwrap()
    }

    fn claims(exp_from_now: i64) -> Claims {
        let now = unix_now();
        Claims {
            iss: ISSUER.into(),
            sub: "CHIME".into(),
            iat: now,
            exp: now.saturating_add_signed(exp_from_now),
            scope: None,
        }
    }

    #[test]
    fn empty_entries_and_spaces_are_ignored_and_no_key_means_off() {
        assert!(KeySet::parse("").is_none());
        assert!(KeySet::parse(" , ,").is_none());
        let keys = KeySet::parse("new-key, ,old-key,").expect("two keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(format!("{keys:?}"), "KeySet { keys: 2 }", "Debug never shows a key");
        assert_eq!(keys.short_keys(), [1, 2]);
        assert!(KeySet::parse(&"k".repeat(MIN_KEY_BYTES)).unwrap().short_keys().is_empty());
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let both = KeySet::parse("new-key,old-key").unwrap();
        let (token, issued) = both.issue("CHIME", None, TOKEN_TTL).unwrap();
        assert_eq!(issued.exp - issued.iat, 86_400);
        assert_eq!(KeySet::parse("new-key").unwrap().verify(&token), Ok(issued.clone()));
        assert_eq!(KeySet::parse("old-key").unwrap().verify(&token), Err(TokenRejected::Signature));
        let by_old = sign_with("old-key", Algorithm::HS256, &claims(60));
        assert!(both.verify(&by_old).is_ok(), "while both keys are listed");
        assert_eq!(KeySet::parse("new-key").unwrap().verify(&by_old), Err(TokenRejected::Signature));
    }

    #[test]
    fn every_bad_token_is_rejected_with_its_reason() {
        let keys = KeySet::parse("k1").unwrap();
        assert_eq!(keys.verify("garbage"), Err(TokenRejected::Malformed));
        assert_eq!(keys.verify(""), Err(TokenRejected::Malformed));
        assert_eq!(keys.verify(&sign_with("k1", Algorithm::HS256, &claims(-3600))), Err(TokenRejected::Expired));
        assert_eq!(keys.verify(&sign_with("k1", Algorithm::HS512, &claims(60))), Err(TokenRejected::Algorithm));
        assert_eq!(keys.verify(&sign_with("other", Algorithm::HS256, &claims(60))), Err(TokenRejected::Signature));
        let foreign = Claims { iss: "someone-else".into(), ..claims(60) };
        assert_eq!(keys.verify(&sign_with("k1", Algorithm::HS256, &foreign)), Err(TokenRejected::Claims));
        // alg "none": header and claims, no signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims(60)).unwrap())
        );
        assert!(matches!(keys.verify(&unsigned), Err(TokenRejected::Algorithm | TokenRejected::Malformed)));
    }

    #[test]
    fn read_tokens_carry_the_read_scope() {
        let keys = KeySet::parse("k1").unwrap();
        let (token, _) = keys.issue("grafana", Some(READ_SCOPE), Duration::from_secs(30 * 86_400)).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert!(claims.is_read_only());
        assert_eq!(claims.exp - claims.iat, 30 * 86_400);
        assert!(!keys.verify(&keys.issue("CHIME", None, TOKEN_TTL).unwrap().0).unwrap().is_read_only());
    }
}
