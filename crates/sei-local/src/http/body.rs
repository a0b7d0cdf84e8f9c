//! Reading a request body within the size limit, and undoing `Content-Encoding: gzip`.
//!
//! The limit applies twice: to the bytes on the wire, and again to the decoded bytes, so a
//! small gzip body cannot expand into gigabytes in memory.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use flate2::read::MultiGzDecoder;
use futures::StreamExt;

use super::error::ApiError;

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// As is.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
}

impl ContentEncoding {
    /// The encoding named by `Content-Encoding`; none (or `identity`) means as is.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(CONTENT_ENCODING) else {
            return Ok(Self::Identity);
        };
        let text = value.to_str().unwrap_or_default().trim();
        if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
            Ok(Self::Gzip)
        } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
            Ok(Self::Identity)
        } else {
            Err(ApiError::UnsupportedEncoding {
                encoding: text.chars().take(64).collect(),
            })
        }
    }

    /// The decoded body; at most `limit` bytes.
    pub fn decode(self, raw: Vec<u8>, limit: usize) -> Result<Vec<u8>, ApiError> {
        match self {
            Self::Identity => Ok(raw),
            Self::Gzip => {
                let mut decoded = Vec::new();
                // One byte past the limit tells "exactly at the limit" from "over it".
                let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
                MultiGzDecoder::new(raw.as_slice())
                    .take(cap)
                    .read_to_end(&mut decoded)
                    .map_err(|error| ApiError::BadBody {
                        reason: format!("not valid gzip: {error}"),
                    })?;
                if decoded.len() > limit {
                    return Err(ApiError::TooLarge {
                        limit,
                        decoded: true,
                    });
                }
                Ok(decoded)
            }
        }
    }
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes (or at once when
/// `Content-Length` already says it will).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(ApiError::TooLarge {
            limit,
            decoded: false,
        });
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::BadBody {
            reason: error.to_string(),
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge {
                limit,
                decoded: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_decode_up_to_the_limit_exactly() {
        let body = vec![b'x'; 100];
        assert_eq!(
            ContentEncoding::Gzip.decode(gzip(&body), 100).unwrap(),
            body
        );
        let error = ContentEncoding::Gzip.decode(gzip(&body), 99).unwrap_err();
        assert!(
            matches!(error, ApiError::TooLarge { decoded: true, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_body_that_is_not_gzip_is_a_bad_body() {
        let error = ContentEncoding::Gzip
            .decode(b"{}".to_vec(), 100)
            .unwrap_err();
        assert!(matches!(error, ApiError::BadBody { .. }), "{error:?}");
    }

    #[test]
    fn encodings_other_than_gzip_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            ContentEncoding::from_headers(&headers).unwrap(),
            ContentEncoding::Identity
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(
            ContentEncoding::from_headers(&headers).unwrap(),
            ContentEncoding::Gzip
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(ContentEncoding::from_headers(&headers).is_err());
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_while_reading() {
        let headers = HeaderMap::new();
        let error = read_limited(&headers, Body::from(vec![0u8; 11]), 10)
            .await
            .unwrap_err();
        assert!(matches!(error, ApiError::TooLarge { decoded: false, .. }));
        let read = read_limited(&headers, Body::from(vec![0u8; 10]), 10)
            .await
            .unwrap();
        assert_eq!(read.len(), 10);
    }
}
