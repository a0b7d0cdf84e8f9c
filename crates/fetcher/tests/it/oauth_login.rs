//! `oauth login` against the ServiceNow simulator: the test plays the browser by following the
//! printed authorization URL, which the simulator approves and redirects to the login's
//! listener on 127.0.0.1.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nowstream_fetcher::instance;
use nowstream_fetcher::oauth_login::{LoginError, LoginOptions, login};
use nowstream_runtime::{
    AuthConfig, BasicAuth, Config, FetcherConfig, IntegrationConfig, OAuthConfig, OAuthGrant,
};
use nowstream_servicenow::client::ListRequest;
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GeneratorConfig, RunningSim, SimConfig, Simulator,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

const ID: &str = "acme";

/// The terminal: a writer whose text the test can read while `login` runs.
#[derive(Clone, Default)]
struct Terminal(Arc<Mutex<Vec<u8>>>);

impl Write for Terminal {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Terminal {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits until `login` printed the authorization URL, and returns it.
    async fn authorize_url(&self) -> Url {
        for _ in 0..500 {
            let printed = self.text();
            let line = printed
                .lines()
                .map(str::trim)
                .find(|line| line.starts_with("http") && line.contains("/oauth_auth.do"));
            if let Some(line) = line {
                return Url::parse(line).expect("the printed URL parses");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no authorization URL was printed: {:?}", self.text());
    }
}

async fn start_sim() -> RunningSim {
    Simulator::start(SimConfig {
        data: GeneratorConfig {
            incidents: 10,
            change_requests: 2,
            users: 3,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn integration(url: &str, grant: OAuthGrant, token_file: Option<PathBuf>) -> IntegrationConfig {
    IntegrationConfig {
        id: ID.to_owned(),
        url: url.to_owned(),
        auth: AuthConfig::Oauth(OAuthConfig {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: SecretString::from(DEFAULT_CLIENT_SECRET),
            grant,
            username: None,
            password: None,
            refresh_token_file: token_file,
            token_url: None,
            scope: None,
        }),
        exclude_fields: Vec::new(),
        allow_http: true,
        exclude_at_source: false,
        metadata: Default::default(),
    }
}

fn config_with(integration: IntegrationConfig) -> Config {
    Config {
        integrations: vec![integration],
        ..Config::default()
    }
}

fn options(timeout: Duration) -> LoginOptions {
    LoginOptions {
        redirect_uri: "http://127.0.0.1:0/oauth/callback".to_owned(),
        timeout,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn login_stores_a_private_refresh_token_that_the_fetcher_can_use() {
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens/acme.refresh_token");
    let config = config_with(integration(
        sim.base_url(),
        OAuthGrant::AuthorizationCode,
        Some(token_file.clone()),
    ));
    let terminal = Terminal::default();

    let browser = async {
        let url = terminal.authorize_url().await;
        assert_eq!(url.path(), "/oauth_auth.do");
        assert_eq!(query_param(&url, "response_type").as_deref(), Some("code"));
        assert_eq!(
            query_param(&url, "client_id").as_deref(),
            Some(DEFAULT_CLIENT_ID)
        );
        let redirect = query_param(&url, "redirect_uri").expect("redirect_uri");
        assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
        assert!(
            !redirect.contains(":0/"),
            "the bound port is sent: {redirect}"
        );
        // Approve at the simulator and follow its redirect to the login's listener.
        let page = reqwest::get(url).await.expect("the browser round trip");
        let status = page.status();
        let body = page.text().await.unwrap();
        (status, body)
    };
    let (stored, (status, body)) = tokio::join!(
        login(
            &config,
            ID,
            options(Duration::from_secs(30)),
            terminal.clone()
        ),
        browser
    );
    let stored = stored.expect("login succeeds");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Authorization received"), "{body}");
    assert_eq!(stored, token_file);
    assert_eq!(mode(&token_file), 0o600);

    let refresh_token = instance::read_refresh_token(&token_file).expect("the token reads back");
    assert!(!refresh_token.expose_secret().is_empty());
    assert!(
        !terminal.text().contains(refresh_token.expose_secret()),
        "the token is never printed"
    );
    assert!(terminal.text().contains("Stored the refresh token"));

    // The fetcher starts from the stored token with the refresh_token grant.
    let fetcher_view = integration(
        sim.base_url(),
        OAuthGrant::RefreshToken,
        Some(token_file.clone()),
    );
    let client = instance::client(&fetcher_view, &FetcherConfig::default()).expect("client");
    let page = client
        .list_page(&ListRequest {
            table: "incident".to_owned(),
            query: String::new(),
            limit: 1,
            offset: 0,
            fields: None,
        })
        .await
        .expect("the stored token authenticates Table API reads");
    assert_eq!(page.records.len(), 1);
    assert_eq!(
        sim.stats().count("/oauth_token.do", 200),
        2,
        "one code exchange, one refresh_token grant"
    );
}

#[tokio::test]
async fn a_redirect_with_a_foreign_state_is_refused_and_nothing_is_stored() {
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("acme.refresh_token");
    let config = config_with(integration(
        sim.base_url(),
        OAuthGrant::AuthorizationCode,
        Some(token_file.clone()),
    ));
    let terminal = Terminal::default();

    let forger = async {
        let url = terminal.authorize_url().await;
        let approved = no_redirects().get(url).send().await.unwrap();
        assert_eq!(approved.status(), 302);
        let location = Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
        let mut forged = location.clone();
        forged
            .query_pairs_mut()
            .clear()
            .append_pair("code", &query_param(&location, "code").unwrap())
            .append_pair("state", "forged-state");
        no_redirects().get(forged).send().await.unwrap().status()
    };
    let (result, status) = tokio::join!(
        login(
            &config,
            ID,
            options(Duration::from_secs(30)),
            terminal.clone()
        ),
        forger
    );
    assert_eq!(status, 400);
    let error = result.expect_err("a foreign state must not log in");
    assert!(matches!(error, LoginError::StateMismatch { .. }), "{error}");
    assert!(
        error.to_string().contains("does not belong to this login"),
        "{error}"
    );
    assert!(!token_file.exists());
    assert_eq!(
        sim.stats().requests_to("/oauth_token.do"),
        0,
        "no code was exchanged"
    );
}

#[tokio::test]
async fn an_error_in_the_redirect_is_reported() {
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("acme.refresh_token");
    let config = config_with(integration(
        sim.base_url(),
        OAuthGrant::AuthorizationCode,
        Some(token_file.clone()),
    ));
    let terminal = Terminal::default();

    let denier = async {
        let url = terminal.authorize_url().await;
        let mut callback = Url::parse(&query_param(&url, "redirect_uri").unwrap()).unwrap();
        callback
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "the user denied access")
            .append_pair("state", &query_param(&url, "state").unwrap());
        no_redirects().get(callback).send().await.unwrap().status()
    };
    let (result, _) = tokio::join!(
        login(
            &config,
            ID,
            options(Duration::from_secs(30)),
            terminal.clone()
        ),
        denier
    );
    let error = result.expect_err("a denial must not log in");
    assert!(
        error.to_string().contains(
            "ServiceNow refused the authorization: access_denied (the user denied access)"
        ),
        "{error}"
    );
    assert!(!token_file.exists());
}

#[tokio::test]
async fn login_gives_up_when_no_browser_comes_back() {
    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(integration(
        sim.base_url(),
        OAuthGrant::AuthorizationCode,
        Some(dir.path().join("acme.refresh_token")),
    ));
    let error = login(
        &config,
        ID,
        options(Duration::from_millis(200)),
        Terminal::default(),
    )
    .await
    .expect_err("nobody approves");
    assert!(matches!(error, LoginError::Timeout { .. }), "{error}");
}

#[tokio::test]
async fn login_refuses_integrations_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    let mut config = config_with(integration(
        url,
        OAuthGrant::AuthorizationCode,
        Some(dir.path().join("t")),
    ));
    let error = login(
        &config,
        "other",
        LoginOptions::default(),
        Terminal::default(),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no integration with id \"other\" in the configuration (configured: acme)"),
        "{error}"
    );

    config.integrations[0].auth = AuthConfig::Basic(BasicAuth {
        username: "u".to_owned(),
        password: SecretString::from("basic-password"),
    });
    let error = login(&config, ID, LoginOptions::default(), Terminal::default())
        .await
        .unwrap_err();
    assert!(matches!(error, LoginError::NotOAuth { .. }), "{error}");

    config.integrations[0] = integration(url, OAuthGrant::AuthorizationCode, None);
    let error = login(&config, ID, LoginOptions::default(), Terminal::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, LoginError::NoRefreshTokenFile { .. }),
        "{error}"
    );

    config.integrations[0] = integration(url, OAuthGrant::ClientCredentials, None);
    let error = login(&config, ID, LoginOptions::default(), Terminal::default())
        .await
        .unwrap_err();
    assert!(matches!(error, LoginError::WrongGrant { .. }), "{error}");
}
