//! The guard against server-side request forgery through user-supplied Azure
//! endpoints: host rules checked on the URL, and address rules checked on
//! every address DNS returns, inside the HTTP client's resolver (so the
//! connection uses only addresses that passed, and DNS rebinding between
//! check and use does not help).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::ProviderError;

/// Host suffixes of Azure OpenAI resources.
pub const AZURE_HOST_SUFFIXES: [&str; 3] = [
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
];

const fn refused(reason: &'static str) -> ProviderError {
    ProviderError::EndpointNotAllowed { reason }
}

/// Checks a user-supplied Azure endpoint and returns it normalised
/// (`https://host`, lower case, no trailing dot).
///
/// Rules: https only; no credentials, port, query, fragment or path; the host
/// is one DNS label under an Azure OpenAI suffix. With `allow_private`
/// (operator setting `BYOK_ALLOW_PRIVATE_ENDPOINTS`) any host is accepted, and
/// plain http too for loopback hosts (local proxies and tests).
///
/// # Errors
/// [`ProviderError::EndpointNotAllowed`] naming the rule that failed.
pub fn check_azure_endpoint(raw: &str, allow_private: bool) -> Result<Url, ProviderError> {
    let raw = raw.trim();
    if !raw.is_ascii() {
        return Err(refused("the endpoint must be ASCII"));
    }
    let url = Url::parse(raw).map_err(|_| refused("the endpoint is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("credentials in the endpoint are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(refused("the endpoint must have no path, query or fragment"));
    }
    let host = url.host().ok_or(refused("the endpoint has no host"))?;
    let loopback = match &host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => *name == "localhost",
    };
    let scheme_ok =
        url.scheme() == "https" || (allow_private && loopback && url.scheme() == "http");
    if !scheme_ok {
        return Err(refused("https is required"));
    }
    if allow_private {
        return Ok(url);
    }
    if url.port().is_some() {
        return Err(refused("a port in the endpoint is not allowed"));
    }
    let url::Host::Domain(name) = host else {
        return Err(refused("an IP address is not allowed as the endpoint host"));
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let allowed = AZURE_HOST_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|label| {
            (2..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.starts_with("xn--")
        })
    });
    if !allowed {
        return Err(refused(
            "the host must be <resource>.openai.azure.com (or .cognitiveservices.azure.com, .services.ai.azure.com)",
        ));
    }
    Url::parse(&format!("https://{name}")).map_err(|_| refused("the endpoint is not a URL"))
}

/// Whether `ip` is loopback, private, link-local, shared, reserved,
/// multicast or otherwise not a public unicast address. IPv4 embedded in IPv6
/// (mapped, NAT64, 6to4) is judged by the embedded address.
#[must_use]
pub fn is_internal_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_internal_v4(v4_from(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_internal_v4(v4_from(s[1], s[2]));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0 && s[1..6] == [0, 0, 0, 0, 0]) // IPv4-compatible and other ::/80 forms
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
}

fn v4_from(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Resolves a host name to addresses. The default uses the system resolver;
/// tests substitute a fixed table.
pub trait Lookup: Send + Sync + 'static {
    /// The addresses of `host`.
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 443))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The error a refused resolution carries, found again in the transport
/// error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("the endpoint resolves to an internal address")]
pub(crate) struct InternalAddress;

/// A reqwest resolver that refuses a host when any of its addresses is
/// internal, and hands the connector only addresses that passed.
pub(crate) struct GuardedResolver {
    pub(crate) lookup: Arc<dyn Lookup>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = lookup.lookup(host).await?;
            if addresses.is_empty() || addresses.iter().any(|ip| is_internal_address(*ip)) {
                return Err(Box::new(InternalAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_endpoints_are_refused() {
        for bad in [
            "http://res.openai.azure.com",
            "https://127.0.0.1",
            "https://169.254.169.254/",
            "https://[::1]",
            "https://[::ffff:127.0.0.1]",
            "https://2130706433",
            "https://0x7f.1",
            "https://017700000001",
            "https://0177.0.0.1",
            "https://0.0.0.0",
            "https://localhost",
            "https://x.openai.azure.com@evil.example",
            "https://x.openai.azure.com.evil.example",
            "https://evil.example/.openai.azure.com",
            "https://evil.example#.openai.azure.com",
            "https://evil.com%2F.openai.azure.com",
            "https://openai.azure.com",
            "https://a.b.openai.azure.com",
            "https://x.openai.azure.com:8443",
            "https://u:p@x.openai.azure.com",
            "https://x.openai.azure.com/?x=1",
            "https://x.openai.azure.com/openai",
            "https://rés.openai.azure.com",
            "https://res.openai\u{3002}azure.com",
            "https://xn--rs-9ia.openai.azure.com",
        ] {
            assert!(check_azure_endpoint(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_endpoints_are_normalised() {
        for (raw, expected) in [
            (
                "https://My-Res.openai.azure.com",
                "https://my-res.openai.azure.com/",
            ),
            (
                "https://res.openai.azure.com./",
                "https://res.openai.azure.com/",
            ),
            (
                "https://res.cognitiveservices.azure.com/",
                "https://res.cognitiveservices.azure.com/",
            ),
            (
                "https://res.services.ai.azure.com",
                "https://res.services.ai.azure.com/",
            ),
        ] {
            assert_eq!(check_azure_endpoint(raw, false).unwrap().as_str(), expected);
        }
    }

    #[test]
    fn allow_private_lifts_host_rules_but_keeps_https_off_loopback() {
        assert!(check_azure_endpoint("https://gateway.internal.example:8443", true).is_ok());
        assert!(check_azure_endpoint("http://127.0.0.1:9000", true).is_ok());
        assert!(check_azure_endpoint("http://gateway.internal.example", true).is_err());
        assert!(check_azure_endpoint("https://u:p@gateway.internal.example", true).is_err());
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.0.0.5",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.0.8",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:5",
            "2002:a00:1::",
            "::127.0.0.1",
        ] {
            assert!(is_internal_address(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "20.42.1.1",
            "8.8.8.8",
            "2603:1030::1",
            "::ffff:20.42.1.1",
            "64:ff9b::1443:101",
        ] {
            assert!(!is_internal_address(public.parse().unwrap()), "{public}");
        }
    }
}
