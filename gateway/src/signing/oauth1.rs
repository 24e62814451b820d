//! OAuth 1.0 signatures (RFC 5849 §3.4): the signature base string, HMAC-SHA1 and HMAC-SHA256
//! signing, and the parts of verification that need no state.
//!
//! It owns the byte-exact rules (percent-encoding §3.6, parameter collection §3.4.1.3, base
//! string URI §3.4.1.2). It never looks up apps or nonces: the private `auth::request` module
//! does that. Signing is public: outbound OAuth1 deliveries and the tests use it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Accepted clock skew of a request's `oauth_timestamp`, in seconds either way (a nonce is
/// remembered for twice as long).
pub const TIMESTAMP_WINDOW_SECS: u64 = 300;

/// A signature method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `HMAC-SHA1` (RFC 5849 §3.4.2).
    HmacSha1,
    /// `HMAC-SHA256` (same construction, SHA-256).
    HmacSha256,
    /// `PLAINTEXT` (§3.4.4): signing only; the gateway never accepts it.
    Plaintext,
}

impl SignatureMethod {
    /// The `oauth_signature_method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC-SHA1",
            Self::HmacSha256 => "HMAC-SHA256",
            Self::Plaintext => "PLAINTEXT",
        }
    }

    /// Parses an `oauth_signature_method` value.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::HmacSha1, Self::HmacSha256, Self::Plaintext]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Why a request could not be signed or its OAuth1 parameters read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuth1Error {
    /// Not an absolute `http`/`https` URL.
    #[error("`{0}` is not an absolute http(s) URL")]
    BadUrl(String),
    /// The `Authorization: OAuth` header cannot be read.
    #[error("malformed OAuth Authorization header: {0}")]
    MalformedHeader(String),
    /// A decoded parameter is not UTF-8 (`%FF`): it has no one text to sign, so it is refused
    /// rather than decoded lossily (which would make `%FF` and `%FE` sign alike).
    #[error("a parameter is not UTF-8 once percent-decoded: `{0}`")]
    NotUtf8(String),
    /// A required protocol parameter is absent.
    #[error("the OAuth parameter `{0}` is missing")]
    Missing(&'static str),
    /// A protocol parameter appears twice.
    #[error("the OAuth parameter `{0}` is given more than once")]
    Duplicate(String),
    /// A protocol parameter has a value we do not accept.
    #[error("the OAuth parameter `{name}` has an unsupported value `{value}`")]
    Unsupported {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// OAuth1 credentials: the consumer's, and optionally a token's. Secrets are redacted in
/// `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OAuth1Credentials {
    /// `oauth_consumer_key`.
    pub consumer_key: String,
    /// The consumer secret.
    pub consumer_secret: String,
    /// `oauth_token`, when requests are made with token credentials.
    pub token: Option<String>,
    /// The token secret (empty without a token).
    pub token_secret: String,
}

impl std::fmt::Debug for OAuth1Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth1Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"[redacted]")
            .field("token", &self.token)
            .field("token_secret", &"[redacted]")
            .finish()
    }
}

/// Percent-encodes per RFC 5849 §3.6: every byte of the UTF-8 text except `A-Z a-z 0-9 - . _ ~`
/// becomes `%XX` with upper-case hex.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as forms do). A `%` not
/// followed by two hex digits is kept as it is; bytes that do not form UTF-8 are refused.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, OAuth1Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
            {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| OAuth1Error::NotUtf8(s.to_owned()))
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Parses `application/x-www-form-urlencoded` text (a query or a form body) into decoded
/// name/value pairs, keeping order and repeats; `name` without `=` has an empty value.
pub fn parse_form(s: &str) -> Result<Vec<(String, String)>, OAuth1Error> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// The base string URI (§3.4.1.2) of an absolute URL: scheme and host in lower case, the
/// default port dropped, no query or fragment.
pub fn base_string_uri(url: &str) -> Result<String, OAuth1Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| OAuth1Error::BadUrl(url.to_owned()))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let (Some(scheme), Some(host)) = (scheme, uri.host()) else {
        return Err(OAuth1Error::BadUrl(url.to_owned()));
    };
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(OAuth1Error::BadUrl(url.to_owned())),
    };
    let host = host.to_ascii_lowercase();
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    Ok(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}{path}"),
        _ => format!("{scheme}://{host}{path}"),
    })
}

/// The normalised parameter string (§3.4.1.3.2): each name and value encoded, sorted by name
/// then value, joined as `name=value&...`.
pub fn normalized_parameters(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| (percent_encode(n), percent_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signature base string (§3.4.1): method, base string URI and normalised parameters
/// (which must exclude `oauth_signature` and `realm`).
pub fn signature_base_string(
    http_method: &str,
    base_uri: &str,
    params: &[(String, String)],
) -> String {
    format!(
        "{}&{}&{}",
        percent_encode(&http_method.to_ascii_uppercase()),
        percent_encode(base_uri),
        percent_encode(&normalized_parameters(params))
    )
}

/// Signs a base string: the value of `oauth_signature` (before any header encoding).
pub fn sign(
    base_string: &str,
    consumer_secret: &str,
    token_secret: &str,
    method: SignatureMethod,
) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    match method {
        SignatureMethod::HmacSha1 => STANDARD.encode(hmac_sha1(&key, base_string)),
        SignatureMethod::HmacSha256 => STANDARD.encode(hmac_sha256(&key, base_string)),
        SignatureMethod::Plaintext => key,
    }
}

fn hmac_sha1(key: &str, message: &str) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &str, message: &str) -> Vec<u8> {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Signs a request: `url` is the absolute request URL (its query parameters are included),
/// `params` the other parameters (the `oauth_*` protocol parameters without
/// `oauth_signature`, and a form-encoded body's parameters, if any).
pub fn sign_request(
    http_method: &str,
    url: &str,
    params: &[(String, String)],
    consumer_secret: &str,
    token_secret: &str,
    method: SignatureMethod,
) -> Result<String, OAuth1Error> {
    let base_uri = base_string_uri(url)?;
    let mut all = query_params(url)?;
    all.extend(params.iter().cloned());
    Ok(sign(
        &signature_base_string(http_method, &base_uri, &all),
        consumer_secret,
        token_secret,
        method,
    ))
}

fn query_params(url: &str) -> Result<Vec<(String, String)>, OAuth1Error> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    without_fragment
        .split_once('?')
        .map_or(Ok(Vec::new()), |(_, q)| parse_form(q))
}

/// Builds a signed `Authorization: OAuth ...` header value for a request with the given
/// timestamp (seconds) and nonce. `form_params` are the body's parameters when it is
/// `application/x-www-form-urlencoded`, else empty.
pub fn authorization_header(
    http_method: &str,
    url: &str,
    form_params: &[(String, String)],
    credentials: &OAuth1Credentials,
    method: SignatureMethod,
    timestamp: u64,
    nonce: &str,
) -> Result<String, OAuth1Error> {
    let mut protocol = vec![
        (
            "oauth_consumer_key".to_owned(),
            credentials.consumer_key.clone(),
        ),
        ("oauth_nonce".to_owned(), nonce.to_owned()),
        (
            "oauth_signature_method".to_owned(),
            method.as_str().to_owned(),
        ),
        ("oauth_timestamp".to_owned(), timestamp.to_string()),
        ("oauth_version".to_owned(), "1.0".to_owned()),
    ];
    if let Some(token) = &credentials.token {
        protocol.push(("oauth_token".to_owned(), token.clone()));
    }
    let mut params = protocol.clone();
    params.extend(form_params.iter().cloned());
    let signature = sign_request(
        http_method,
        url,
        &params,
        &credentials.consumer_secret,
        &credentials.token_secret,
        method,
    )?;
    protocol.push(("oauth_signature".to_owned(), signature));
    let fields: Vec<String> = protocol
        .iter()
        .map(|(n, v)| format!("{}=\"{}\"", percent_encode(n), percent_encode(v)))
        .collect();
    Ok(format!("OAuth {}", fields.join(", ")))
}

/// [`authorization_header`] with the current time and a fresh random nonce.
pub fn authorization_header_now(
    http_method: &str,
    url: &str,
    form_params: &[(String, String)],
    credentials: &OAuth1Credentials,
    method: SignatureMethod,
) -> Result<String, OAuth1Error> {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let now = crate::time::now_ms() / 1000;
    authorization_header(
        http_method,
        url,
        form_params,
        credentials,
        method,
        now,
        &nonce,
    )
}

/// Reads the parameters of an `Authorization: OAuth ...` header (§3.5.1), decoded, `realm`
/// and `oauth_signature` included.
pub fn parse_authorization(header: &str) -> Result<Vec<(String, String)>, OAuth1Error> {
    let malformed = |m: &str| OAuth1Error::MalformedHeader(m.to_owned());
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("OAuth") {
        return Err(malformed("the scheme is not OAuth"));
    }
    let mut params = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| malformed("a parameter has no `=`"))?;
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| malformed("a value is not quoted"))?;
        let (value, after) = after
            .split_once('"')
            .ok_or_else(|| malformed("a quoted value is not closed"))?;
        params.push((
            percent_decode(name.trim(), false)?,
            percent_decode(value, false)?,
        ));
        rest = after.trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(malformed("parameters are not separated by commas")),
        };
    }
    Ok(params)
}

/// Compares a received signature with the expected one in constant time.
pub(crate) fn signature_matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests;
