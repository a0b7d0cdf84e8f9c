//! One line for an error and everything that caused it.
//!
//! It lives in the model crate only because that is the lowest crate every user shares: the
//! ServiceNow client, the fetcher's preflight and the sink's SEI client all report HTTP errors,
//! and HTTP libraries (reqwest, hyper) keep the useful part ("connection refused", "invalid
//! peer certificate") in the error's *source*, not in its own message. It uses only `std`.

use std::error::Error;

/// `error` followed by each of its sources, joined with `: `. A cause whose text the line
/// already holds (many errors repeat their source in their own message) is not repeated.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[derive(Debug)]
    struct Failure {
        message: &'static str,
        source: Option<Box<Failure>>,
    }

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl Error for Failure {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source
                .as_deref()
                .map(|source| source as &(dyn Error + 'static))
        }
    }

    fn failure(message: &'static str, source: Option<Failure>) -> Failure {
        Failure {
            message,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn every_cause_follows_the_error_it_caused() {
        let error = failure(
            "error sending request",
            Some(failure(
                "client error (Connect)",
                Some(failure("connection refused", None)),
            )),
        );
        assert_eq!(
            error_chain(&error),
            "error sending request: client error (Connect): connection refused"
        );
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let error = failure(
            "cannot connect: connection refused",
            Some(failure("connection refused", None)),
        );
        assert_eq!(error_chain(&error), "cannot connect: connection refused");
    }
}
