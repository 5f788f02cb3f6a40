//! The one credential a request carries, read from its headers. Header names
//! are case-insensitive (`HeaderMap` lowercases them); a header sent twice,
//! both credentials, neither, another scheme or an empty value is refused.

use aws_lambda_events::http::HeaderMap;

use crate::Refusal;

/// The service clients' header (API Gateway's name for API keys).
pub const HEADER_API_KEY: &str = "x-api-key";
pub const HEADER_AUTHORIZATION: &str = "authorization";
/// Longer than any token the user pool issues (Cognito's are under 2 KiB
/// without custom claims), shorter than anything worth parsing.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;
/// API Gateway keys are 20 to 128 characters.
pub const API_KEY_BYTES_MAX: usize = 256;
const BEARER: &str = "Bearer";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An end user's JWT (the text after `Bearer `).
    Bearer(&'a str),
    /// A service client's API key, as sent.
    ApiKey(&'a str),
}

// Never the credential itself in a log line.
impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(***)"),
            Self::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

impl<'a> Credential<'a> {
    /// `headers` and `multi_value_headers` of the REQUEST authorizer event:
    /// API Gateway fills both, the second with every value of a repeated
    /// header.
    pub fn from_headers(headers: &'a HeaderMap, multi: &'a HeaderMap) -> Result<Self, Refusal> {
        let authorization = single(headers, multi, HEADER_AUTHORIZATION)?;
        let api_key = single(headers, multi, HEADER_API_KEY)?;
        match (authorization, api_key) {
            (Some(_), Some(_)) => Err(Refusal::BothCredentials),
            (None, None) => Err(Refusal::NoCredential),
            (Some(value), None) => bearer(value).map(Self::Bearer),
            (None, Some(value)) => api_key_value(value).map(Self::ApiKey),
        }
    }
}

/// The header's one value, if it is there.
fn single<'a>(
    headers: &'a HeaderMap,
    multi: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, Refusal> {
    let count = headers.get_all(name).iter().count();
    let multi_count = multi.get_all(name).iter().count();
    if count > 1 || multi_count > 1 {
        return Err(Refusal::RepeatedHeader(name));
    }
    let value = match (headers.get(name), multi.get(name)) {
        (Some(value), Some(other)) if value != other => {
            return Err(Refusal::RepeatedHeader(name));
        }
        (Some(value), _) | (None, Some(value)) => value,
        (None, None) => return Ok(None),
    };
    value
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::UnreadableHeader(name))
}

/// `Bearer <jwt>`, the scheme in any case (RFC 9110: schemes are
/// case-insensitive).
fn bearer(value: &str) -> Result<&str, Refusal> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Refusal::EmptyCredential(HEADER_AUTHORIZATION));
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case(BEARER) {
        return Err(Refusal::UnsupportedScheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::EmptyCredential(HEADER_AUTHORIZATION));
    }
    if token.len() > TOKEN_BYTES_MAX {
        return Err(Refusal::CredentialTooLong(HEADER_AUTHORIZATION));
    }
    Ok(token)
}

fn api_key_value(value: &str) -> Result<&str, Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::EmptyCredential(HEADER_API_KEY));
    }
    if value.len() > API_KEY_BYTES_MAX {
        return Err(Refusal::CredentialTooLong(HEADER_API_KEY));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use aws_lambda_events::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn read(pairs: &[(&'static str, &'static str)]) -> Result<String, Refusal> {
        let map = headers(pairs);
        Credential::from_headers(&map, &HeaderMap::new()).map(|credential| match credential {
            Credential::Bearer(token) => format!("bearer {token}"),
            Credential::ApiKey(key) => format!("key {key}"),
        })
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(
            read(&[("authorization", "Bearer a.b.c")]).unwrap(),
            "bearer a.b.c"
        );
        assert_eq!(
            read(&[("authorization", "bearer a.b.c")]).unwrap(),
            "bearer a.b.c"
        );
        assert_eq!(
            read(&[("authorization", "BEARER  a.b.c ")]).unwrap(),
            "bearer a.b.c"
        );
    }

    #[test]
    fn an_api_key_is_taken_as_sent() {
        assert_eq!(read(&[("x-api-key", "k-123")]).unwrap(), "key k-123");
    }

    #[test]
    fn other_schemes_and_empty_values_are_refused() {
        assert_eq!(
            read(&[("authorization", "Basic dXNlcjpwYXNz")]),
            Err(Refusal::UnsupportedScheme)
        );
        assert_eq!(
            read(&[("authorization", "Bearertoken")]),
            Err(Refusal::UnsupportedScheme)
        );
        assert_eq!(
            read(&[("authorization", "Bearer ")]),
            Err(Refusal::EmptyCredential(HEADER_AUTHORIZATION))
        );
        assert_eq!(
            read(&[("authorization", "")]),
            Err(Refusal::EmptyCredential(HEADER_AUTHORIZATION))
        );
        assert_eq!(
            read(&[("x-api-key", " ")]),
            Err(Refusal::EmptyCredential(HEADER_API_KEY))
        );
    }

    #[test]
    fn both_neither_or_a_repeated_header_is_refused() {
        assert_eq!(
            read(&[("authorization", "Bearer a.b.c"), ("x-api-key", "k")]),
            Err(Refusal::BothCredentials)
        );
        assert_eq!(read(&[("accept", "*/*")]), Err(Refusal::NoCredential));
        assert_eq!(
            read(&[("x-api-key", "k1"), ("x-api-key", "k2")]),
            Err(Refusal::RepeatedHeader(HEADER_API_KEY))
        );
    }

    #[test]
    fn a_header_repeated_in_the_multi_value_map_is_refused() {
        let single = headers(&[("authorization", "Bearer a.b.c")]);
        let multi = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer x"),
        ]);
        assert_eq!(
            Credential::from_headers(&single, &multi),
            Err(Refusal::RepeatedHeader(HEADER_AUTHORIZATION))
        );
    }

    #[test]
    fn an_oversized_token_is_refused() {
        let value = format!("Bearer {}", "a".repeat(TOKEN_BYTES_MAX + 1));
        let mut map = HeaderMap::new();
        map.insert("authorization", HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            Credential::from_headers(&map, &HeaderMap::new()),
            Err(Refusal::CredentialTooLong(HEADER_AUTHORIZATION))
        );
    }

    #[test]
    fn the_credential_never_shows_in_debug() {
        assert_eq!(format!("{:?}", Credential::ApiKey("secret")), "ApiKey(***)");
        assert_eq!(format!("{:?}", Credential::Bearer("a.b.c")), "Bearer(***)");
    }
}
