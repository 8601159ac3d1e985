//! The shared HTTP clients and the plumbing every adapter uses: sending,
//! refusing redirects, reading bounded bodies, mapping transport errors and
//! reading retry hints.

use std::sync::Arc;
use std::time::Duration;

use byok_core::ProviderKind;
use futures_util::StreamExt as _;
use reqwest::{RequestBuilder, Response, StatusCode};
use url::Url;

use crate::ProviderError;
use crate::endpoint::{GuardedResolver, InternalAddress, Lookup, SystemLookup};

/// Where the providers are and how long to wait for them. Base URLs are
/// operator settings, never user input.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// OpenAI, default `https://api.openai.com/v1`.
    pub openai_base_url: Url,
    /// DeepSeek, default `https://api.deepseek.com`.
    pub deepseek_base_url: Url,
    /// Anthropic, default `https://api.anthropic.com`.
    pub anthropic_base_url: Url,
    /// Gemini, default `https://generativelanguage.googleapis.com`.
    pub gemini_base_url: Url,
    /// Lifts the Azure endpoint host and address rules (private deployments, tests).
    pub allow_private_endpoints: bool,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole non-streaming request.
    pub request_timeout: Duration,
    /// Longest silence inside a stream before it is abandoned.
    pub stream_idle_timeout: Duration,
    /// Largest response body read into memory.
    pub max_response_bytes: usize,
    /// Idle kept-alive connections kept per provider host (reused by later
    /// requests instead of a new TCP and TLS handshake).
    pub pool_max_idle_per_host: usize,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        let url = |s: &str| Url::parse(s).unwrap_or_else(|_| unreachable!("a constant URL parses"));
        Self {
            openai_base_url: url("https://api.openai.com/v1"),
            deepseek_base_url: url("https://api.deepseek.com"),
            anthropic_base_url: url("https://api.anthropic.com"),
            gemini_base_url: url("https://generativelanguage.googleapis.com"),
            allow_private_endpoints: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            stream_idle_timeout: Duration::from_secs(120),
            max_response_bytes: 8 * 1024 * 1024,
            pool_max_idle_per_host: 64,
        }
    }
}

/// The two clients, built once: one for the operator-configured providers,
/// one for user-supplied Azure endpoints whose resolver refuses internal
/// addresses. Neither follows redirects (reqwest would forward `x-api-key`,
/// `api-key` and `x-goog-api-key` to the new host).
#[derive(Debug, Clone)]
pub struct HttpClients {
    pub(crate) fixed: reqwest::Client,
    pub(crate) azure: reqwest::Client,
    pub(crate) settings: Arc<ProviderSettings>,
    lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for dyn Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup")
    }
}

impl HttpClients {
    /// Builds the clients with the system resolver.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(settings: ProviderSettings) -> Result<Self, reqwest::Error> {
        Self::with_lookup(settings, Arc::new(SystemLookup))
    }

    /// Builds the clients resolving Azure hosts with `lookup` (tests use a
    /// fixed table to exercise the address rules without DNS).
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn with_lookup(
        settings: ProviderSettings,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(settings.connect_timeout)
                .read_timeout(settings.stream_idle_timeout)
                // Connections are kept and reused; HTTP/2 where the provider
                // offers it (ALPN).
                .pool_max_idle_per_host(settings.pool_max_idle_per_host)
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .tcp_nodelay(true)
                .tcp_keepalive(std::time::Duration::from_secs(60))
                .user_agent(concat!("byok/", env!("CARGO_PKG_VERSION")))
        };
        let fixed = builder().build()?;
        // No proxy for user-supplied endpoints: a proxy would resolve the host
        // itself, out of reach of the guarded resolver.
        let azure = if settings.allow_private_endpoints {
            builder().no_proxy().build()?
        } else {
            builder()
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver {
                    lookup: lookup.clone(),
                }))
                .build()?
        };
        Ok(Self {
            fixed,
            azure,
            settings: Arc::new(settings),
            lookup,
        })
    }

    /// The settings the clients were built with.
    #[must_use]
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// Checks a user-supplied Azure endpoint completely, as when a key is
    /// saved: the host rules of [`crate::endpoint::check_azure_endpoint`],
    /// then (unless private endpoints are allowed) that the name resolves and
    /// every address is public. The same address rules apply again on every
    /// connection.
    ///
    /// # Errors
    /// [`ProviderError::EndpointNotAllowed`].
    pub async fn check_azure_endpoint(&self, raw: &str) -> Result<Url, ProviderError> {
        let allow_private = self.settings.allow_private_endpoints;
        let url = crate::endpoint::check_azure_endpoint(raw, allow_private)?;
        if allow_private {
            return Ok(url);
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let addresses =
            self.lookup
                .lookup(host)
                .await
                .map_err(|_| ProviderError::EndpointNotAllowed {
                    reason: "the endpoint host does not resolve",
                })?;
        if addresses.is_empty()
            || addresses
                .iter()
                .any(|ip| crate::endpoint::is_internal_address(*ip))
        {
            return Err(ProviderError::EndpointNotAllowed {
                reason: "the endpoint resolves to an internal address",
            });
        }
        Ok(url)
    }
}

/// Sends `request`, refusing redirects and mapping transport failures.
pub(crate) async fn send(
    provider: ProviderKind,
    request: RequestBuilder,
) -> Result<Response, ProviderError> {
    let response = request.send().await.map_err(|e| transport(provider, e))?;
    if response.status().is_redirection() {
        return Err(ProviderError::Redirected { provider });
    }
    Ok(response)
}

/// Maps a reqwest error, dropping its URL (`Display` would include it).
pub(crate) fn transport(provider: ProviderKind, error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::Timeout { provider };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause.is::<InternalAddress>() {
            return ProviderError::EndpointNotAllowed {
                reason: "the endpoint resolves to an internal address",
            };
        }
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return ProviderError::Timeout { provider };
        }
        source = cause.source();
    }
    ProviderError::Unreachable {
        provider,
        source: Some(error.without_url()),
    }
}

/// Reads a whole body, at most `limit` bytes.
pub(crate) async fn read_body(
    provider: ProviderKind,
    response: Response,
    limit: usize,
) -> Result<Vec<u8>, ProviderError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProviderError::BadResponse { provider });
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(provider, e))?;
        if body.len() + chunk.len() > limit {
            return Err(ProviderError::BadResponse { provider });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON body; anything else is a bad response (never quoted).
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    provider: ProviderKind,
    body: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|_| ProviderError::BadResponse { provider })
}

/// A successful response's JSON, or the error the adapter's classifier makes
/// of a failed one.
pub(crate) async fn json_or_error<T: serde::de::DeserializeOwned>(
    provider: ProviderKind,
    response: Response,
    limit: usize,
    classify: fn(ProviderKind, StatusCode, &reqwest::header::HeaderMap, &[u8]) -> ProviderError,
) -> Result<T, ProviderError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_body(provider, response, limit).await?;
    if status.is_success() {
        parse(provider, &body)
    } else {
        Err(classify(provider, status, &headers, &body))
    }
}

/// The retry delay from `retry-after-ms`, `retry-after` (seconds) or
/// OpenAI's `x-ratelimit-reset-*` durations, whichever comes first.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    if let Some(secs) = text("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(secs);
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|name| text(name).and_then(parse_duration))
        .max()
}

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && (0.0..86_400.0).contains(&value)).then(|| Duration::from_secs_f64(value))
}

/// Parses durations such as `36s`, `1.5s`, `84ms` and `6m0s`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += number
            * match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
        rest = tail;
    }
    seconds(total)
}

/// A non-success status with no better classification.
pub(crate) fn by_status(provider: ProviderKind, status: StatusCode) -> ProviderError {
    match status.as_u16() {
        401 | 403 => ProviderError::InvalidKey { provider },
        429 => ProviderError::RateLimited {
            provider,
            retry_after: None,
        },
        s @ 500..=599 => ProviderError::Unavailable {
            provider,
            status: s,
        },
        s @ 400..=499 => ProviderError::BadRequest {
            provider,
            status: s,
            kind: crate::BadRequestKind::Other,
        },
        _ => ProviderError::BadResponse { provider },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_providers_write_them() {
        assert_eq!(parse_duration("36s"), Some(Duration::from_secs(36)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("84ms"), Some(Duration::from_millis(84)));
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn retry_hints_prefer_milliseconds_then_seconds_then_reset_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
        headers.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(360)));
        headers.insert("retry-after", "6".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(6)));
        headers.insert("retry-after-ms", "6500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(6500)));
    }
}
