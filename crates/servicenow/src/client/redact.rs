//! Scrubbing secrets out of text that came from the server or the network stack.
//!
//! The client never puts a secret into an error itself, but it does keep what the server
//! said (error messages, the start of a non-JSON body) because that is what explains a
//! failure. A misbehaving proxy or instance could echo a request back; so every piece of
//! foreign text passes through [`Redactor::clean`], which knows the configured secrets and
//! the tokens issued so far.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";
/// Tokens remembered for scrubbing; older ones are long expired.
const REMEMBERED_TOKENS: usize = 8;
/// Longest piece of foreign text kept in an error.
const MAX_FOREIGN_TEXT: usize = 300;

#[derive(Debug, Default)]
pub(crate) struct Redactor {
    configured: Vec<SecretString>,
    issued: Mutex<VecDeque<SecretString>>,
}

impl Redactor {
    pub(crate) fn new(configured: Vec<SecretString>) -> Self {
        Redactor {
            configured: configured
                .into_iter()
                .filter(|s| !s.expose_secret().is_empty())
                .collect(),
            issued: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers a token the instance issued.
    pub(crate) fn learn(&self, token: &SecretString) {
        if token.expose_secret().is_empty() {
            return;
        }
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if issued.len() == REMEMBERED_TOKENS {
            issued.pop_front();
        }
        issued.push_back(token.clone());
    }

    /// `text` cut to a readable length, with every known secret replaced.
    pub(crate) fn clean(&self, text: &str) -> String {
        let mut cleaned = text.to_owned();
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        for secret in self.configured.iter().chain(issued.iter()) {
            let secret = secret.expose_secret();
            if cleaned.contains(secret) {
                cleaned = cleaned.replace(secret, REDACTED);
            }
        }
        truncate(cleaned)
    }
}

/// Cuts after [`MAX_FOREIGN_TEXT`] characters, on a char boundary. Cutting happens after
/// redaction, so a secret straddling the cut cannot survive in part.
fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_FOREIGN_TEXT) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_and_issued_secrets_are_replaced() {
        let redactor = Redactor::new(vec![SecretString::from("hunter2"), SecretString::from("")]);
        redactor.learn(&SecretString::from("tok-123"));
        assert_eq!(
            redactor.clean("user=admin password=hunter2 token=tok-123 ok"),
            "user=admin password=[REDACTED] token=[REDACTED] ok"
        );
    }

    #[test]
    fn only_the_latest_tokens_are_remembered() {
        let redactor = Redactor::new(Vec::new());
        for i in 0..=REMEMBERED_TOKENS {
            redactor.learn(&SecretString::from(format!("token-{i:02}")));
        }
        assert_eq!(redactor.clean("token-00"), "token-00");
        assert_eq!(redactor.clean("token-01"), REDACTED);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_FOREIGN_TEXT + 10);
        let cleaned = Redactor::new(Vec::new()).clean(&text);
        assert_eq!(cleaned.chars().count(), MAX_FOREIGN_TEXT + 1);
        assert!(cleaned.ends_with('…'));
    }
}
