//! HTTP translation: status codes, JSON error bodies, the bearer-token
//! extractor, request ids and the per-request log line.

use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::{Principal, RequestContext};
use crate::{AppState, ServiceError};

/// The body of every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `user_not_found`.
    pub code: &'static str,
    /// What went wrong, in words. Never quotes the request.
    pub message: String,
}

pub(crate) fn error_response(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response.json(ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
        },
    })
}

/// An error leaving the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A service failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Too many refused authentications from this client address.
    #[error("too many failed authentications; retry later")]
    TooManyFailures {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// A request that could not be parsed.
    #[error("{message}")]
    BadRequest {
        /// Status to answer with.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// Message; never quotes the request.
        message: &'static str,
    },
}

impl ApiError {
    /// Its status, stable code, a message safe to show (server errors say
    /// only that, and are logged), and any `Retry-After` seconds: for doors
    /// that answer in another API's error shape.
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String, Option<u64>) {
        let status = self.status_code();
        match self {
            Self::BadRequest { code, message, .. } => (status, code, (*message).to_owned(), None),
            Self::TooManyFailures { retry_after_secs } => (
                status,
                "too_many_failures",
                self.to_string(),
                Some(*retry_after_secs),
            ),
            Self::Service(ServiceError::TooManyTests { retry_after_secs }) => (
                status,
                "too_many_tests",
                self.to_string(),
                Some(*retry_after_secs),
            ),
            Self::Service(error) if status.is_server_error() => {
                tracing::error!(error = %ErrorChain(self), code = error.code(), "request failed");
                (status, error.code(), "internal error".to_owned(), None)
            }
            Self::Service(error) => (status, error.code(), error.to_string(), None),
        }
    }

    pub(crate) const fn bad(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self::BadRequest {
            status,
            code,
            message,
        }
    }
}

/// The HTTP status of a service error, on every door.
pub(crate) fn service_status(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Unauthenticated => StatusCode::UNAUTHORIZED,
        ServiceError::Forbidden | ServiceError::Denied { .. } => StatusCode::FORBIDDEN,
        ServiceError::BadHeader { .. } => StatusCode::BAD_REQUEST,
        ServiceError::UserNotFound
        | ServiceError::KeyNotFound
        | ServiceError::TokenNotFound
        | ServiceError::BudgetNotFound => StatusCode::NOT_FOUND,
        ServiceError::UserExists | ServiceError::KeyUnusable => StatusCode::CONFLICT,
        ServiceError::Invalid { .. } | ServiceError::InvalidKeyFormat(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ServiceError::TooManyTests { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Busy | ServiceError::KeyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { status, .. } => *status,
            Self::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Service(error) => service_status(error),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (code, message) = match self {
            Self::BadRequest { code, message, .. } => (*code, (*message).to_owned()),
            Self::TooManyFailures { retry_after_secs } => {
                let mut response = error_response(status, "too_many_failures", self.to_string());
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
            Self::Service(ServiceError::TooManyTests { retry_after_secs }) => {
                let mut response = error_response(status, "too_many_tests", self.to_string());
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
            Self::Service(error) => (error.code(), error.to_string()),
        };
        if status.is_server_error() {
            tracing::error!(error = %ErrorChain(self), code, "request failed");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let mut response = error_response(status, code, "internal error");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            return error_response(status, code, "internal error");
        }
        error_response(status, code, message)
    }
}

/// Formats an error with its whole `source()` chain, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The request's id, from the middleware.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

pub(crate) fn context(req: &HttpRequest) -> RequestContext {
    RequestContext {
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
    }
}

/// Assigns a request id (always a new UUID, never the client's own
/// `X-Request-Id`), returns it in the response, and logs one line per
/// request: id, method, route pattern (never the raw path or query, which
/// could carry a token), status and latency.
pub(crate) async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    // Always our own id: a client-chosen one could carry anything (even a
    // key-shaped string) into the logs and the audit trail.
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let mut response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(target: "byok::http", request_id = %id, %method, route, status, latency_ms, "request");
    Ok(response)
}

/// Turns any error response that is not already JSON (actix's own 404, 405,
/// 413, ...) into the JSON error shape, and marks API responses uncacheable.
pub(crate) async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, BoxBody>>, actix_web::Error> {
    let response = match next.call(req).await {
        Ok(response) => response,
        Err(error) => return Err(error),
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (code, message) = generic_error(status);
        let (req, _) = response.into_parts();
        let replaced = error_response(status, code, message);
        return Ok(ServiceResponse::new(req, replaced).map_into_right_body());
    }
    let mut response = response;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response.map_into_left_body())
}

fn generic_error(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send application/json"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("headers_too_large", "request headers are too large")
        }
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("error", "the request failed"),
    }
}

/// A JSON request body, read and parsed by byok rather than by actix-web's
/// `Json`: its errors never quote the body (serde's messages do), and nothing
/// is logged (actix-web's debug log names the request path, which a client
/// may have put a key into).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit::KEY_ROUTES);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let payload = web::Payload::from_request(req, payload);
        let body_read_timeout = req
            .app_data::<web::Data<AppState>>()
            .map_or(std::time::Duration::from_secs(30), |s| s.body_read_timeout);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::bad(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as application/json",
                ));
            }
            let too_large = ApiError::bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                limit.too_large,
            );
            if declared.is_some_and(|length| length > limit.bytes) {
                return Err(too_large);
            }
            let unreadable = || {
                ApiError::bad(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
            };
            let read = async {
                payload
                    .await
                    .map_err(|_| unreadable())?
                    .to_bytes_limited(limit.bytes)
                    .await
                    .map_err(|_| too_large)?
                    .map_err(|_| unreadable())
            };
            // A body that trickles in is not held forever.
            let bytes = tokio::time::timeout(body_read_timeout, read)
                .await
                .map_err(|_| {
                    ApiError::bad(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        "the request body did not arrive in time",
                    )
                })??;
            serde_json::from_slice(&bytes).map(JsonBody).map_err(|_| {
                ApiError::bad(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "body must be a JSON object with exactly the documented fields",
                )
            })
        })
    }
}

/// An optional JSON body: an empty body is `None`; anything else must be
/// JSON, parsed as [`JsonBody`] parses.
#[derive(Debug)]
pub(crate) struct MaybeJsonBody<T>(pub(crate) Option<T>);

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for MaybeJsonBody<T> {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            || (!req.headers().contains_key(header::CONTENT_LENGTH)
                && !req.headers().contains_key(header::TRANSFER_ENCODING));
        if empty {
            return Box::pin(async { Ok(MaybeJsonBody(None)) });
        }
        let body = JsonBody::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|b| MaybeJsonBody(Some(b.0))) })
    }
}

/// The body size limit [`JsonBody`] enforces where it is registered as
/// `app_data`, with the refusal that names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit {
    bytes: usize,
    too_large: &'static str,
}

impl BodyLimit {
    /// The key routes (and the default).
    pub(crate) const KEY_ROUTES: Self = Self {
        bytes: crate::KEY_ROUTE_BODY_LIMIT,
        too_large: "request body is larger than 16 KiB",
    };
    /// The gateway (`/v1`).
    pub(crate) const GATEWAY: Self = Self {
        bytes: crate::GATEWAY_BODY_LIMIT,
        too_large: "request body is larger than 4 MiB",
    };
}

/// Query strings that do not parse: a generic 400.
pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|_error, _req| {
        ApiError::bad(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "query parameters are not valid",
        )
        .into()
    })
}

/// Path segments that do not parse: a generic 404.
pub(crate) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_error, _req| {
        ApiError::bad(StatusCode::NOT_FOUND, "not_found", "no such route").into()
    })
}

/// The header Anthropic's clients send their API key in.
const API_KEY_HEADER: &str = "x-api-key";

/// The header a service token names the user it acts for with.
pub(crate) const USER_HEADER: &str = "x-byok-user";

enum ActingFor {
    Nobody,
    User(String),
    Malformed,
}

/// The authenticated caller: `Authorization: Bearer <token>`, exactly one
/// header, exactly that scheme spelling (or, on the gateway's `/v1` routes
/// and without it, one `x-api-key` header, as Anthropic's clients send it). Tokens in query strings are ignored.
/// A service token acts for the user its `X-BYOK-User` header names.
#[derive(Debug)]
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let mut values = req.headers().get_all(header::AUTHORIZATION);
        let bearer = match (values.next(), values.next()) {
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .filter(|t| !t.is_empty() && t.len() <= 512)
                .map(str::to_owned),
            _ => None,
        };
        // Anthropic's clients send their key as `x-api-key`: taken when
        // there is no `Authorization` header, on the same terms.
        let mut api_keys = req.headers().get_all(API_KEY_HEADER);
        // Only on the gateway: the key routes and the page take `Authorization`.
        let gateway = req.path().starts_with("/v1/");
        let bearer = if req.headers().contains_key(header::AUTHORIZATION) || !gateway {
            bearer
        } else {
            match (api_keys.next(), api_keys.next()) {
                (Some(value), None) => value
                    .to_str()
                    .ok()
                    .filter(|t| !t.is_empty() && t.len() <= 512)
                    .map(str::to_owned),
                _ => None,
            }
        };
        let present = req.headers().contains_key(header::AUTHORIZATION)
            || (gateway && req.headers().contains_key(API_KEY_HEADER));
        let mut named = req.headers().get_all(USER_HEADER);
        let acting_for = match (named.next(), named.next()) {
            (None, _) => ActingFor::Nobody,
            (Some(value), None) => value
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 64)
                .map_or(ActingFor::Malformed, |v| ActingFor::User(v.to_owned())),
            (Some(_), Some(_)) => ActingFor::Malformed,
        };
        let ctx = context(req);
        let peer = req.peer_addr().map(|a| a.ip());
        Box::pin(async move {
            let Some(state) = state else {
                return Err(
                    ServiceError::internal(std::io::Error::other("byok AppState missing")).into(),
                );
            };
            let now = std::time::Instant::now();
            // A malformed header counts as a presented (invalid) token.
            let presented = bearer.or_else(|| present.then(String::new));
            let key = peer.map(crate::throttle::client_key);
            // The throttle first: a blocked address still gets in with a valid
            // token (users behind one proxy must not be locked out by someone
            // guessing), but its refusals cost no audit write.
            let blocked = key.and_then(|k| state.auth_throttle.blocked(&k, now));
            let found = state.service.lookup(presented.as_deref()).await?;
            if let Some(principal) = found {
                // A service token names the user it acts for; nobody else may.
                return match acting_for {
                    ActingFor::Nobody => Ok(Caller(principal)),
                    ActingFor::User(named) => Ok(Caller(
                        state.service.act_for(principal, &named, &ctx).await?,
                    )),
                    ActingFor::Malformed => Err(ServiceError::BadHeader {
                        code: "invalid_user_header",
                        message: "send one X-BYOK-User header with a user id",
                    }
                    .into()),
                };
            }
            let (count, ended) =
                key.map_or((1, None), |k| state.auth_throttle.record_rolling(k, now));
            // The trail gets an address's first refusal in a window, the
            // refusal that blocks it, and (when the address comes back after
            // its window) how many refusals that window held — not one row
            // per request of a flood.
            if let Some(total) = ended.filter(|&n| n > 1) {
                state.service.audit_refusal_window(total, &ctx).await?;
            }
            if blocked.is_none() && (count == 1 || count == state.auth_throttle.max()) {
                state
                    .service
                    .audit_refused_authentication(presented.is_some(), &ctx)
                    .await?;
            }
            match blocked {
                Some(wait) => Err(ApiError::TooManyFailures {
                    retry_after_secs: wait.as_secs().max(1),
                }),
                None => Err(ServiceError::Unauthenticated.into()),
            }
        })
    }
}

#[cfg(test)]
mod body_limit_tests {
    use super::BodyLimit;

    #[test]
    fn each_refusal_names_its_own_limit() {
        for limit in [BodyLimit::KEY_ROUTES, BodyLimit::GATEWAY] {
            let named = if limit.bytes % (1024 * 1024) == 0 {
                format!("{} MiB", limit.bytes / (1024 * 1024))
            } else {
                format!("{} KiB", limit.bytes / 1024)
            };
            assert!(limit.too_large.ends_with(&named), "{limit:?}");
        }
    }
}

/// Requests in flight per client address (IPv6 by /64): a cap, so one peer
/// holding many slow requests open cannot take every connection.
#[derive(Debug)]
pub struct PeerLimit {
    max: usize,
    in_flight: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PeerLimit {
    /// At most `max` requests in flight per address.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            in_flight: std::sync::Mutex::default(),
        }
    }

    fn enter(self: &std::sync::Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let key = crate::throttle::client_key(ip);
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            limit: std::sync::Arc::clone(self),
            key,
        })
    }
}

struct PeerSlot {
    limit: std::sync::Arc<PeerLimit>,
    key: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self
            .limit
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Refuses a request when its address already has the most in flight
/// (`429 too_many_requests_in_flight`).
pub(crate) async fn per_peer_limit(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|s| std::sync::Arc::clone(&s.peer_limit));
    let mut slot = None;
    if let (Some(limit), Some(peer)) = (limit, req.peer_addr()) {
        slot = limit.enter(peer.ip());
        if slot.is_none() {
            let response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests_in_flight",
                "this address has too many requests in flight; wait for some to finish",
            );
            return Ok(req.into_response(response));
        }
    }
    let response = next.call(req).await?.map_into_boxed_body();
    drop(slot);
    Ok(response)
}
