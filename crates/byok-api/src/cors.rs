//! Browser access, off by default: which web origins may call the user
//! routes (CORS), and which may frame the settings page (CSP
//! `frame-ancestors`). Origins are exact (`scheme://host[:port]`): never a
//! wildcard, and credentials (cookies) are never allowed — byok's tokens go
//! in `Authorization`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web;

use crate::AppState;

/// The request headers a browser page may send to the user routes.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-request-id, x-byok-user";
/// The response headers it may read.
const EXPOSED_HEADERS: &str = "x-request-id, retry-after";
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// Parses `origin` as a web origin, `scheme://host[:port]` with scheme
/// `http` or `https`, no path, query, user or wildcard; returns its
/// normalised form (as browsers send it in `Origin`).
#[must_use]
pub fn parse_origin(origin: &str) -> Option<String> {
    if origin.contains('*') {
        return None;
    }
    let url = url::Url::parse(origin).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !origin.trim_end_matches('/').ends_with(':');
    let normalised = url.origin().ascii_serialization();
    (plain && origin.trim_end_matches('/') == normalised).then_some(normalised)
}

/// Which origins may use byok from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserAccess {
    cors_origins: Vec<String>,
    frame_ancestors: Vec<String>,
}

impl BrowserAccess {
    /// Pages on `cors_origins` may call the user routes; pages on
    /// `frame_ancestors` may frame the settings page. Entries that are not
    /// origins (see [`parse_origin`]) are dropped.
    #[must_use]
    pub fn new(cors_origins: Vec<String>, frame_ancestors: Vec<String>) -> Self {
        let keep = |list: Vec<String>| list.iter().filter_map(|o| parse_origin(o)).collect();
        Self {
            cors_origins: keep(cors_origins),
            frame_ancestors: keep(frame_ancestors),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o == origin)
    }

    /// The settings page's Content-Security-Policy.
    pub(crate) fn csp(&self) -> String {
        let ancestors = if self.frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            self.frame_ancestors.join(" ")
        };
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
        )
    }

    /// Whether the page may be framed at all (`X-Frame-Options: DENY` otherwise).
    pub(crate) fn framable(&self) -> bool {
        !self.frame_ancestors.is_empty()
    }
}

/// CORS for `/api/user/...`: answers preflights from allowed origins (and
/// refuses others), and marks answers to allowed origins readable.
pub(crate) async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let user_route = req.path().starts_with("/api/user/");
    let (Some(origin), true) = (origin, user_route) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let allowed = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.browser_access.allows(&origin));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let response = if allowed {
            actix_web::HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .insert_header((header::VARY, "Origin"))
                .finish()
        } else {
            crate::http::error_response(
                StatusCode::FORBIDDEN,
                "cors_origin_not_allowed",
                "this origin may not call byok from a browser; the operator can allow it with BYOK_CORS_ORIGINS",
            )
        };
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    if allowed && let Ok(value) = header::HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn only_plain_origins_parse() {
        assert_eq!(
            parse_origin("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            parse_origin("http://localhost:3000/").as_deref(),
            Some("http://localhost:3000")
        );
        for bad in [
            "*",
            "https://*.example.com",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "ftp://example.com",
            "https://user@example.com",
            "example.com",
            "null",
            "",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }
}
