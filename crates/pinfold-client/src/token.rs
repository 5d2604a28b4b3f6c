//! Bearer tokens from the Docker token flow ("Token Authentication Specification" of
//! distribution), cached per scope until they expire so a pull of many blobs asks the realm
//! once, not once per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

/// The lifetime the token spec prescribes when the realm does not say (`expires_in` omitted).
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);

/// A token is dropped from the cache this long before it expires, so a request started just
/// before expiry does not arrive with a dead token.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// More scopes than this and the cache is cleared: one client reads a bounded set of
/// repositories, and an unbounded map would grow with every repository a mirror ever saw.
const MAX_CACHED_SCOPES: usize = 1024;

/// A bearer token. `Debug` is redacted; the value leaves this type only as a header.
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the same token (without exposing either).
    pub(crate) fn same(&self, other: &Token) -> bool {
        self.0 == other.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The realm's answer. Docker Hub sends both `token` and `access_token`; OAuth2-style realms
/// only `access_token`.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it lives, or `None` when the answer holds no usable token.
    pub(crate) fn into_token(self) -> Option<(Token, Duration)> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let ttl = self
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_TTL);
        Some((Token(value), ttl))
    }
}

/// Tokens by scope string (`repository:library/ruby:pull`, or `""` for `/v2/`).
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, (Token, Instant)>>,
}

impl TokenCache {
    /// The cached token for `scope` if it is still good at `now`.
    pub(crate) fn get(&self, scope: &str, now: Instant) -> Option<Token> {
        let mut entries = self.entries.lock();
        match entries.get(scope) {
            Some((token, until)) if *until > now => Some(token.clone()),
            Some(_) => {
                entries.remove(scope);
                None
            }
            None => None,
        }
    }

    /// Caches `token` for `scope`, valid from `now` for `ttl` less the safety margin.
    pub(crate) fn put(&self, scope: &str, token: Token, ttl: Duration, now: Instant) {
        let until = now + ttl.saturating_sub(EXPIRY_MARGIN);
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED_SCOPES {
            entries.retain(|_, (_, u)| *u > now);
            if entries.len() >= MAX_CACHED_SCOPES {
                entries.clear();
            }
        }
        entries.insert(scope.to_owned(), (token, until));
    }

    /// Forgets the token for `scope` if it is still `refused`: the registry refused it, but a
    /// concurrent request may already have cached a newer one, which must stay.
    pub(crate) fn remove_if_same(&self, scope: &str, refused: &Token) {
        let mut entries = self.entries.lock();
        if entries.get(scope).is_some_and(|(t, _)| t.same(refused)) {
            entries.remove(scope);
        }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("scopes", &self.entries.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Option<(Token, Duration)> {
        serde_json::from_str::<TokenResponse>(json)
            .unwrap()
            .into_token()
    }

    #[test]
    fn token_or_access_token_and_default_ttl() {
        let (t, ttl) = parse(r#"{"token":"a","access_token":"b","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), ttl), ("a", Duration::from_secs(300)));
        let (t, ttl) = parse(r#"{"access_token":"b"}"#).unwrap();
        assert_eq!((t.as_str(), ttl), ("b", DEFAULT_TOKEN_TTL));
        let (t, _) = parse(r#"{"token":"","access_token":"b"}"#).unwrap();
        assert_eq!(t.as_str(), "b");
        assert!(parse(r#"{"expires_in":3}"#).is_none());
        assert!(parse(r#"{"token":""}"#).is_none());
    }

    #[test]
    fn cache_honours_expiry_per_scope() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put(
            "repository:a:pull",
            Token("ta".into()),
            Duration::from_secs(60),
            t0,
        );
        cache.put(
            "repository:b:pull",
            Token("tb".into()),
            Duration::from_secs(600),
            t0,
        );
        assert_eq!(cache.get("repository:a:pull", t0).unwrap().as_str(), "ta");
        assert_eq!(cache.get("repository:b:pull", t0).unwrap().as_str(), "tb");
        assert!(cache.get("repository:c:pull", t0).is_none());
        // 60 s less the 5 s margin.
        let later = t0 + Duration::from_secs(56);
        assert!(cache.get("repository:a:pull", later).is_none());
        assert!(cache.get("repository:b:pull", later).is_some());
        // Only the refused token is forgotten, not a newer one.
        cache.remove_if_same("repository:b:pull", &Token("old".into()));
        assert!(cache.get("repository:b:pull", later).is_some());
        cache.remove_if_same("repository:b:pull", &Token("tb".into()));
        assert!(cache.get("repository:b:pull", later).is_none());
        // A token shorter-lived than the margin is never served.
        cache.put("x", Token("tx".into()), Duration::from_secs(2), t0);
        assert!(cache.get("x", t0).is_none());
    }

    #[test]
    fn debug_is_redacted() {
        let cache = TokenCache::default();
        cache.put(
            "s",
            Token("secret-token".into()),
            DEFAULT_TOKEN_TTL,
            Instant::now(),
        );
        let shown = format!("{cache:?} {:?}", Token("secret-token".into()));
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
