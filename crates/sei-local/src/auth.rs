//! API-key authentication: `Authorization: Apikey <key>` plus `X-Tenant: <tenant>`.
//!
//! Keys are held only as SHA-256 digests and compared digest to digest, so neither the
//! keys nor how much of a guess matched can leak through logs, errors or timing.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Header naming the tenant a request acts for.
pub const TENANT_HEADER: &str = "x-tenant";

/// The authorization scheme, compared case-insensitively.
const SCHEME: &str = "Apikey";

/// A tenant whose key the request presented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(pub String);

impl Tenant {
    /// The tenant id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a request is not let in. Messages name the header at fault, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header; expected `Authorization: Apikey <key>`")]
    MissingKey,
    /// `Authorization` present but not `Apikey <key>`.
    #[error("Authorization header is not of the form `Apikey <key>`")]
    MalformedKey,
    /// No (or an empty) `X-Tenant` header.
    #[error("missing X-Tenant header naming the SEI tenant")]
    MissingTenant,
    /// The key is no configured tenant's key.
    #[error("the API key is not valid")]
    UnknownKey,
    /// The key is valid, but not for the tenant the request names.
    #[error("the API key may not access tenant `{tenant}`")]
    WrongTenant {
        /// The tenant the request named.
        tenant: String,
    },
}

impl AuthError {
    /// Whether this is 403 (valid key, wrong tenant) rather than 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::WrongTenant { .. })
    }
}

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// The configured keys, by tenant.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_tenant: BTreeMap<String, KeyDigest>,
}

/// Tenants only: an unsalted digest of a short key could be brute-forced from a log.
impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("tenants", &self.by_tenant.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Keys from the configuration (tenant → key).
    pub fn new(keys: &BTreeMap<String, SecretString>) -> Self {
        Self {
            by_tenant: keys
                .iter()
                .map(|(tenant, key)| (tenant.clone(), digest(key.expose_secret())))
                .collect(),
        }
    }

    /// The configured tenants, in order.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.by_tenant.keys().map(String::as_str)
    }

    /// The tenant a request may act for, judged from its headers.
    ///
    /// A missing tenant is 401, like a missing key: both are configuration errors of
    /// the caller, and a 400 would make the sink split the batch and dead-letter records
    /// that are fine.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<Tenant, AuthError> {
        let authorization = headers.get(AUTHORIZATION).ok_or(AuthError::MissingKey)?;
        let authorization = authorization
            .to_str()
            .map_err(|_| AuthError::MalformedKey)?;
        let (scheme, key) = authorization
            .trim()
            .split_once(' ')
            .ok_or(AuthError::MalformedKey)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case(SCHEME) || key.is_empty() {
            return Err(AuthError::MalformedKey);
        }
        let tenant = headers
            .get(TENANT_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|tenant| !tenant.is_empty())
            .ok_or(AuthError::MissingTenant)?;
        let presented = digest(key);
        if self.by_tenant.get(tenant) == Some(&presented) {
            return Ok(Tenant(tenant.to_owned()));
        }
        if self.by_tenant.values().any(|known| *known == presented) {
            Err(AuthError::WrongTenant {
                tenant: tenant.to_owned(),
            })
        } else {
            Err(AuthError::UnknownKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn keys() -> ApiKeys {
        let mut config = BTreeMap::new();
        config.insert("acme".to_owned(), SecretString::from("secret-a"));
        config.insert("globex".to_owned(), SecretString::from("secret-g"));
        ApiKeys::new(&config)
    }

    fn headers(authorization: Option<&'static str>, tenant: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        }
        if let Some(value) = tenant {
            headers.insert(TENANT_HEADER, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_tenants_own_key_lets_it_in() {
        let tenant = keys()
            .authorize(&headers(Some("Apikey secret-a"), Some("acme")))
            .unwrap();
        assert_eq!(tenant.as_str(), "acme");
        assert!(
            keys()
                .authorize(&headers(Some("apikey secret-a"), Some("acme")))
                .is_ok()
        );
    }

    #[test]
    fn another_tenants_key_is_forbidden_and_a_wrong_key_unauthorized() {
        let error = keys()
            .authorize(&headers(Some("Apikey secret-g"), Some("acme")))
            .unwrap_err();
        assert!(error.is_forbidden());
        let error = keys()
            .authorize(&headers(Some("Apikey guess"), Some("acme")))
            .unwrap_err();
        assert_eq!(error, AuthError::UnknownKey);
        assert!(!error.is_forbidden());
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        let keys = keys();
        assert_eq!(
            keys.authorize(&headers(None, Some("acme"))),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            keys.authorize(&headers(Some("Bearer secret-a"), Some("acme"))),
            Err(AuthError::MalformedKey)
        );
        assert_eq!(
            keys.authorize(&headers(Some("Apikey secret-a"), None)),
            Err(AuthError::MissingTenant)
        );
        assert_eq!(
            keys.authorize(&headers(Some("Apikey secret-a"), Some("  "))),
            Err(AuthError::MissingTenant)
        );
    }

    #[test]
    fn debug_output_names_tenants_but_not_keys_or_digests() {
        let debug = format!("{:?}", keys());
        assert!(debug.contains("acme"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
        let digest_debug = format!("{:?}", digest("secret-a"));
        assert!(!debug.contains(&digest_debug[1..10]), "{debug}");
    }

    #[test]
    fn errors_never_echo_the_key() {
        let error = keys()
            .authorize(&headers(Some("Apikey secret-g"), Some("acme")))
            .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
