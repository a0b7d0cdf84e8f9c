//! From an `[[integrations]]` entry to a ServiceNow client for that instance.

use url::Url;

use nowstream_runtime::{AuthConfig, FetcherConfig, IntegrationConfig, OAuthGrant};
use nowstream_servicenow::client::{self, Auth, Client, ClientConfig};

use crate::FetchError;
use crate::token_file;

/// Also reachable here, where `preflight` and the tests have always read the token file from.
pub use crate::token_file::read_refresh_token;

/// Client settings for one integration. The `[fetcher]` section supplies paging, retry and proxy
/// settings; the integration supplies URL and credentials. With a refresh token from
/// `auth.refresh_token_file`, every refresh token the token endpoint rotates to is written back
/// to that file (see [`token_file`]), so whatever builds a client from this (the fetcher, `validate`)
/// leaves the file holding the valid token.
pub fn client_config(
    integration: &IntegrationConfig,
    fetcher: &FetcherConfig,
) -> Result<ClientConfig, FetchError> {
    let invalid = |reason: String| FetchError::Integration {
        integration_id: integration.id.clone(),
        reason,
    };
    let instance_url = Url::parse(&integration.url)
        .map_err(|error| invalid(format!("url is not a URL: {error}")))?;
    // Where the grant's refresh token came from, and so where a rotated one goes.
    let mut token_file = None;
    let auth = match &integration.auth {
        AuthConfig::Basic(basic) => Auth::Basic {
            username: basic.username.clone(),
            password: basic.password.clone(),
        },
        AuthConfig::Oauth(oauth) => {
            let grant =
                match oauth.grant {
                    OAuthGrant::Password => client::OAuthGrant::Password {
                        username: oauth.username.clone().ok_or_else(|| {
                            invalid("the password grant needs auth.username".into())
                        })?,
                        password: oauth.password.clone().ok_or_else(|| {
                            invalid("the password grant needs auth.password".into())
                        })?,
                    },
                    OAuthGrant::ClientCredentials => client::OAuthGrant::ClientCredentials,
                    OAuthGrant::RefreshToken | OAuthGrant::AuthorizationCode => {
                        let file = oauth.refresh_token_file.as_deref().ok_or_else(|| {
                            invalid("this grant needs auth.refresh_token_file".into())
                        })?;
                        token_file = Some(file);
                        client::OAuthGrant::RefreshToken {
                            refresh_token: read_refresh_token(file)
                                .map_err(|error| invalid(error.to_string()))?,
                        }
                    }
                };
            let token_url = oauth
                .token_url
                .as_deref()
                .map(Url::parse)
                .transpose()
                .map_err(|error| invalid(format!("auth.token_url is not a URL: {error}")))?;
            Auth::OAuth {
                client_id: oauth.client_id.clone(),
                client_secret: oauth.client_secret.clone(),
                grant,
                token_url,
                scope: oauth.scope.clone(),
            }
        }
    };
    let mut config = ClientConfig::new(instance_url, auth);
    config.page_size = fetcher.page_size as usize;
    config.max_concurrency = fetcher.max_concurrency;
    config.max_response_bytes = fetcher.max_response_bytes;
    config.request_timeout = fetcher.request_timeout;
    config.max_retries = fetcher.max_retries;
    config.allow_http = integration.allow_http;
    config.refresh_token_observer =
        token_file.map(|file| token_file::write_back_observer(&integration.id, file));
    // The client ignores proxy variables on purpose (what the config says happens); the fetcher
    // honours HTTPS_PROXY as the documented fallback, as operators expect of a CLI tool.
    let host = config
        .instance_url
        .host_str()
        .unwrap_or_default()
        .to_owned();
    let proxy = fetcher
        .https_proxy
        .clone()
        .or_else(|| env_proxy_for(&host))
        .filter(|proxy| !proxy.trim().is_empty());
    config.proxy = proxy
        .map(|proxy| Url::parse(&proxy))
        .transpose()
        .map_err(|error| invalid(format!("https proxy is not a URL: {error}")))?;
    Ok(config)
}

/// `HTTPS_PROXY` unless `NO_PROXY` names the host (exactly, or as a `.suffix`/`suffix` of it) or
/// the host is a loopback address, as curl and most HTTP tools treat these variables.
fn env_proxy_for(host: &str) -> Option<String> {
    let variable = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_lowercase()))
            .ok()
    };
    let proxy = variable("HTTPS_PROXY")?;
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let excluded = variable("NO_PROXY").is_some_and(|list| {
        list.split(',').map(str::trim).any(|entry| {
            entry == "*"
                || (!entry.is_empty()
                    && (host == entry.trim_start_matches('.')
                        || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))))
        })
    });
    (!loopback && !excluded).then_some(proxy)
}

/// Builds the client for one integration.
pub fn client(
    integration: &IntegrationConfig,
    fetcher: &FetcherConfig,
) -> Result<Client, FetchError> {
    let config = client_config(integration, fetcher)?;
    Client::new(config).map_err(|error| FetchError::Integration {
        integration_id: integration.id.clone(),
        reason: error.to_string(),
    })
}
