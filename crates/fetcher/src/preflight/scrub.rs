//! Defence in depth for the report's text: whatever a check wrote, the integration's configured
//! secrets are replaced before the report leaves `validate` (ServiceNow or a proxy could echo a
//! request back).

use secrecy::{ExposeSecret, SecretString};

use nowstream_runtime::{AuthConfig, IntegrationConfig};

use crate::instance;

/// The integration's secrets, for scrubbing report text.
pub(super) fn configured_secrets(integration: &IntegrationConfig) -> Vec<SecretString> {
    match &integration.auth {
        AuthConfig::Basic(basic) => vec![basic.password.clone()],
        AuthConfig::Oauth(oauth) => {
            let mut secrets = vec![oauth.client_secret.clone()];
            secrets.extend(oauth.password.clone());
            if let Some(path) = &oauth.refresh_token_file {
                secrets.extend(instance::read_refresh_token(path).ok());
            }
            secrets
        }
    }
}

/// Shortest secret that is scrubbed; replacing a one- or two-character "secret" everywhere
/// would garble the report and protects nothing.
const MIN_SCRUBBED_LEN: usize = 3;

pub(super) fn scrub(text: &str, secrets: &[SecretString]) -> String {
    let mut clean = text.to_owned();
    for secret in secrets {
        let secret = secret.expose_secret();
        if secret.len() >= MIN_SCRUBBED_LEN && clean.contains(secret) {
            clean = clean.replace(secret, "[REDACTED]");
        }
    }
    clean
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn scrubbing_replaces_secrets_but_not_tiny_ones() {
        let secrets = [SecretString::from("hunter2"), SecretString::from("ab")];
        assert_eq!(scrub("pw hunter2 in ab", &secrets), "pw [REDACTED] in ab");
    }
}
