//! [`ConfigFile`]: a `nowstream.toml` for a test, pointing the stages at a test broker, a
//! simulator (as ServiceNow) and sei-local (as SEI).
//!
//! Tests differ in a few keys of a stage's section; the skeleton (`[kafka]`, `[http]`,
//! `[telemetry]`, `[[integrations]]`, `[sei]`) is written here once. The file is parsed with
//! the stages' own loader before a test uses it ([`ConfigFile::config`]), so a broken test
//! config fails in the test, not as a start-up error of a child process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nowstream_runtime::{Config, ConfigError, Format};

use crate::fixtures::INTEGRATION_ID;

/// The simulator's integration user's credentials, as `[integrations.auth]` lines.
pub fn basic_auth(username: &str, password: &str) -> String {
    format!("type = \"basic\"\nusername = \"{username}\"\npassword = \"{password}\"")
}

/// One `[[integrations]]` entry.
#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub url: String,
    /// `allow_http`: the simulator listens on plain HTTP.
    pub allow_http: bool,
    /// `exclude_fields`, as written (labels or column names).
    pub exclude_fields: Vec<String>,
    /// Lines of `[integrations.auth]`.
    pub auth: String,
    /// Further lines of the entry (`mapped_fields = …`).
    pub extra: String,
}

impl Integration {
    /// Integration [`INTEGRATION_ID`] at `url` with basic auth that is never used (the
    /// normalizer and the sink never call ServiceNow).
    pub fn new(url: &str) -> Self {
        Self {
            id: INTEGRATION_ID.to_owned(),
            url: url.to_owned(),
            allow_http: false,
            exclude_fields: Vec::new(),
            auth: basic_auth("reader", "unused"),
            extra: String::new(),
        }
    }
}

/// `[sei]`: where the sink loads entities.
#[derive(Debug, Clone)]
pub struct Sei {
    pub url: String,
    pub tenant: String,
    pub api_key: String,
}

/// A `nowstream.toml` under construction; every field can be adjusted before it is rendered.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub bootstrap_servers: String,
    pub topic_prefix: String,
    /// `[kafka.properties]`, in order.
    pub kafka_properties: Vec<(String, String)>,
    /// Raw extra lines of `[kafka.properties]`, after the pairs.
    pub kafka_property_lines: String,
    pub sei: Option<Sei>,
    pub integrations: Vec<Integration>,
    /// `[http] listen`; port 0 so parallel tests never collide.
    pub listen: String,
    /// `[telemetry]` lines (`log_format = "json"`).
    pub telemetry: String,
    /// Stage sections (`fetcher`, `normalizer`, `sink`) and their lines, in order.
    pub sections: Vec<(String, String)>,
}

impl ConfigFile {
    pub fn new(bootstrap_servers: &str, topic_prefix: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic_prefix: topic_prefix.to_owned(),
            kafka_properties: Vec::new(),
            kafka_property_lines: String::new(),
            sei: None,
            integrations: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
            telemetry: String::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a `[kafka.properties]` entry.
    pub fn kafka_property(mut self, key: &str, value: impl ToString) -> Self {
        self.kafka_properties
            .push((key.to_owned(), value.to_string()));
        self
    }

    pub fn sei(mut self, url: &str, tenant: &str, api_key: &str) -> Self {
        self.sei = Some(Sei {
            url: url.to_owned(),
            tenant: tenant.to_owned(),
            api_key: api_key.to_owned(),
        });
        self
    }

    pub fn integration(mut self, integration: Integration) -> Self {
        self.integrations.push(integration);
        self
    }

    pub fn telemetry(mut self, lines: &str) -> Self {
        self.telemetry = lines.to_owned();
        self
    }

    /// Adds `[name]` with `lines`.
    pub fn section(mut self, name: &str, lines: &str) -> Self {
        self.sections.push((name.to_owned(), lines.to_owned()));
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{}\"\n",
            self.bootstrap_servers, self.topic_prefix
        );
        if !self.kafka_properties.is_empty() || !self.kafka_property_lines.is_empty() {
            text.push_str("[kafka.properties]\n");
            for (key, value) in &self.kafka_properties {
                let _ = writeln!(text, "{key:?} = {value:?}");
            }
            let _ = writeln!(text, "{}", self.kafka_property_lines);
        }
        if let Some(sei) = &self.sei {
            let _ = write!(
                text,
                "\n[sei]\nurl = \"{}\"\ntenant = \"{}\"\napi_key = \"{}\"\n",
                sei.url, sei.tenant, sei.api_key
            );
        }
        for integration in &self.integrations {
            let excluded: Vec<String> = integration
                .exclude_fields
                .iter()
                .map(|field| format!("{field:?}"))
                .collect();
            let _ = write!(
                text,
                "\n[[integrations]]\nid = \"{}\"\nurl = \"{}\"\n",
                integration.id, integration.url
            );
            if integration.allow_http {
                text.push_str("allow_http = true\n");
            }
            if !excluded.is_empty() {
                let _ = writeln!(text, "exclude_fields = [{}]", excluded.join(", "));
            }
            let _ = write!(
                text,
                "{}\n[integrations.auth]\n{}\n",
                integration.extra, integration.auth
            );
        }
        let _ = write!(text, "\n[http]\nlisten = \"{}\"\n", self.listen);
        if !self.telemetry.is_empty() {
            let _ = write!(text, "\n[telemetry]\n{}\n", self.telemetry);
        }
        for (name, lines) in &self.sections {
            let _ = write!(text, "\n[{name}]\n{lines}\n");
        }
        text
    }

    /// The file as the stages load it.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        Config::parse(&self.text(), Format::Toml)
    }

    /// The file as the stages load it.
    ///
    /// # Panics
    /// When the stages' loader refuses it: the test's config is wrong.
    pub fn config(&self) -> Config {
        self.parse()
            .unwrap_or_else(|error| panic!("test config is valid: {error}\n{}", self.text()))
    }

    /// Checks the file, writes it to `dir/<name>` and returns the path, for a stage binary.
    ///
    /// # Panics
    /// When the config is invalid or cannot be written.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        self.config();
        let path = dir.join(name);
        std::fs::write(&path, self.text())
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        path
    }
}
