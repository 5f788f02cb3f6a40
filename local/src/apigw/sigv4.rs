//! SigV4 on `AWS_IAM` routes: the request's `Authorization` header is
//! checked the way API Gateway checks it — algorithm, credential scope
//! (date, region, `execute-api`), `X-Amz-Date` within 5 minutes, a known
//! access key — and the signature is computed again with `aws-sigv4` from
//! the request as received (method, path, query, the signed headers, the
//! body's hash) and compared. The only known key is the local cloud's
//! ([`crate::LOCAL_ACCESS_KEY_ID`]); any session token is accepted with it.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SessionTokenMode, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use axum::http::HeaderMap;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::response::Refusal;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const SERVICE: &str = "execute-api";
/// How far `X-Amz-Date` may be from the gateway's clock.
pub const CLOCK_SKEW_SECONDS_MAX: u64 = 300;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The key pair requests must be signed with.
#[derive(Clone, Copy)]
pub struct SigningKey<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// A received request, as signed.
pub struct Received<'a> {
    pub method: &'a str,
    /// As sent (still percent-encoded), with its query.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// The access key of a request whose signature holds, or why not.
pub fn verify(
    request: &Received<'_>,
    now: SystemTime,
    region: &str,
    key: SigningKey<'_>,
) -> Result<String, Refusal> {
    let Some(header) = request.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(Refusal::missing_authentication_token());
    };
    let incomplete = |what: &str| Refusal::signature(what, "IncompleteSignatureException");
    let header = header
        .to_str()
        .map_err(|_| incomplete("Authorization header is not text"))?;
    let authorization = parse_authorization(header).map_err(|what| incomplete(&what))?;
    let date_text = request
        .headers
        .get(X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
        })?;
    let signed_at = parse_amz_date(date_text).ok_or_else(|| {
        incomplete(&format!(
            "X-Amz-Date {date_text} is not a date of the form YYYYMMDD'T'HHMMSS'Z'"
        ))
    })?;
    check_skew(date_text, signed_at, now)?;
    if authorization.date != date_text.get(..8).unwrap_or_default() {
        return Err(Refusal::signature(
            &format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{date_text}'.",
                authorization.date,
                date_text.get(..8).unwrap_or_default()
            ),
            "InvalidSignatureException",
        ));
    }
    if authorization.region != region {
        return Err(Refusal::signature(
            &format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                authorization.region
            ),
            "InvalidSignatureException",
        ));
    }
    if authorization.service != SERVICE || authorization.terminator != "aws4_request" {
        return Err(Refusal::signature(
            &format!("Credential should be scoped to correct service: '{SERVICE}'. "),
            "InvalidSignatureException",
        ));
    }
    if authorization.access_key_id != key.access_key_id {
        return Err(Refusal::signature(
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        ));
    }
    if !authorization.signed_headers.contains(&"host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let expected = signature(request, &authorization, signed_at, region, key)
        .ok_or_else(|| Refusal::signature(MISMATCH, "InvalidSignatureException"))?;
    if !constant_time_eq(expected.as_bytes(), authorization.signature.as_bytes()) {
        return Err(Refusal::signature(MISMATCH, "InvalidSignatureException"));
    }
    Ok(authorization.access_key_id.to_owned())
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, String> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| format!("Authorization header requires the {ALGORITHM} algorithm."))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(missing.join(" "));
    }
    let scope: Vec<&str> = credential.unwrap_or_default().split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(
            "Credential should be of the form <key>/<date>/<region>/<service>/aws4_request."
                .to_owned(),
        );
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: signed_headers.unwrap_or_default().split(';').collect(),
        signature: signature.unwrap_or_default(),
    })
}

fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = PrimitiveDateTime::parse(text, format).ok()?;
    Some(SystemTime::from(parsed.assume_utc()))
}

fn amz_date(time: SystemTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    OffsetDateTime::from(time)
        .format(format)
        .unwrap_or_default()
}

/// `X-Amz-Date` within [`CLOCK_SKEW_SECONDS_MAX`] of `now`, either way.
fn check_skew(date_text: &str, signed_at: SystemTime, now: SystemTime) -> Result<(), Refusal> {
    let skew = Duration::from_secs(CLOCK_SKEW_SECONDS_MAX);
    let now_text = amz_date(now);
    if let Some(earliest) = now.checked_sub(skew)
        && signed_at < earliest
    {
        return Err(Refusal::signature(
            &format!(
                "Signature expired: {date_text} is now earlier than {} ({now_text} - 5 min.)",
                amz_date(earliest)
            ),
            "InvalidSignatureException",
        ));
    }
    if let Some(latest) = now.checked_add(skew)
        && signed_at > latest
    {
        return Err(Refusal::signature(
            &format!(
                "Signature not yet current: {date_text} is still later than {} ({now_text} + 5 min.)",
                amz_date(latest)
            ),
            "InvalidSignatureException",
        ));
    }
    Ok(())
}

/// The signature of `request` as its signer must have computed it: the same
/// signed headers, time, scope and the body's hash. `None` when a signed
/// header is missing or not text (the signature cannot match then).
fn signature(
    request: &Received<'_>,
    authorization: &Authorization<'_>,
    signed_at: SystemTime,
    region: &str,
    key: SigningKey<'_>,
) -> Option<String> {
    let signs = |name: &str| authorization.signed_headers.contains(&name);
    // The signer adds these itself, from the time, the token and the body.
    let added_by_signer = [X_AMZ_DATE, X_AMZ_SECURITY_TOKEN, X_AMZ_CONTENT_SHA256];
    let mut headers = Vec::new();
    for name in &authorization.signed_headers {
        if added_by_signer.contains(name) {
            continue;
        }
        let values = request.headers.get_all(*name);
        let mut found = false;
        for value in values {
            headers.push((*name, value.to_str().ok()?));
            found = true;
        }
        if !found {
            return None;
        }
    }
    let session_token = request
        .headers
        .get(X_AMZ_SECURITY_TOKEN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity = Credentials::new(
        key.access_key_id,
        key.secret_access_key,
        session_token,
        None,
        "local-cloud",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Only what the client signed is passed in, so nothing is excluded.
    settings.excluded_headers = Some(Vec::new());
    settings.session_token_mode = if signs(X_AMZ_SECURITY_TOKEN) {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };
    if signs(X_AMZ_CONTENT_SHA256) {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(signed_at)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let host = request
        .headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())?;
    let uri = format!("http://{host}{}", request.path_and_query);
    let signable = SignableRequest::new(
        request.method,
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .ok()?;
    let (_, signature) = sign(signable, &params).ok()?.into_parts();
    Some(signature)
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0_u8, |difference, (l, r)| difference | (l ^ r))
            == 0
}
