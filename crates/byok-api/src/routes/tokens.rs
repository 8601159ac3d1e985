//! `/api/user/api-keys/{user_id}/tokens`: a user's own tokens, and the
//! operator's service tokens under `/api/admin/service-tokens`.

use actix_web::{HttpRequest, HttpResponse, web};
use byok_core::ProviderKind;
use byok_store::tokens::{Door, TokenScope};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::{ApiError, Caller, ErrorBody, JsonBody, context};
use crate::service::{TokenRequest, TokenView};

use super::user_id;

/// A token to create. Unknown fields are refused; a part left out is not
/// restricted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenRequest {
    /// What the token is for ("laptop IDE", "CI"); at most 64 characters.
    #[serde(default)]
    label: String,
    /// When it stops working (RFC 3339, in the future).
    expires_at: Option<DateTime<Utc>>,
    /// The parts of byok it may use: `keys` (key and token management),
    /// `gateway` (`/v1`), `reports` (read-only: usage, status, audit, key list).
    #[schema(value_type = Option<Vec<String>>, example = json!(["gateway"]))]
    doors: Option<Vec<Door>>,
    /// The providers the gateway may route its requests to.
    #[schema(value_type = Option<Vec<String>>, example = json!(["openai", "anthropic"]))]
    providers: Option<Vec<ProviderKind>>,
    /// The models the gateway may answer it with.
    #[schema(example = json!(["gpt-4o-mini"]))]
    models: Option<Vec<String>>,
    /// Its own limit on gateway requests per minute.
    requests_per_minute: Option<u32>,
    /// Its own limit on tokens per minute.
    tokens_per_minute: Option<u64>,
    /// Its own limit on streams open at once.
    concurrent_streams: Option<u32>,
}

/// Service tokens also name the users they may act for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateServiceTokenRequest {
    /// What the token is for; at most 64 characters.
    #[serde(default)]
    label: String,
    /// When it stops working (RFC 3339, in the future).
    expires_at: Option<DateTime<Utc>>,
    /// The users it may act for (with `user_prefix`: either matches).
    #[schema(value_type = Option<Vec<String>>)]
    users: Option<Vec<byok_core::UserId>>,
    /// It may act for users whose id starts with this. With neither
    /// `users` nor `user_prefix` it may act for any user.
    user_prefix: Option<String>,
    /// As for user tokens.
    #[schema(value_type = Option<Vec<String>>)]
    doors: Option<Vec<Door>>,
    /// As for user tokens.
    #[schema(value_type = Option<Vec<String>>)]
    providers: Option<Vec<ProviderKind>>,
    /// As for user tokens.
    models: Option<Vec<String>>,
    /// As for user tokens.
    requests_per_minute: Option<u32>,
    /// As for user tokens.
    tokens_per_minute: Option<u64>,
    /// As for user tokens.
    concurrent_streams: Option<u32>,
}

/// A new token, shown this once, with what it may do.
#[derive(Serialize, ToSchema)]
pub(crate) struct IssuedTokenView {
    /// The token. Store it now: only its hash is kept.
    token: String,
    /// Everything else about it.
    #[serde(flatten)]
    view: TokenView,
}

/// A list of tokens; never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    /// Newest first.
    pub(crate) tokens: Vec<TokenView>,
}

fn issued(issued: &crate::IssuedToken, view: TokenView) -> HttpResponse {
    HttpResponse::Created().json(IssuedTokenView {
        token: issued.token.expose_secret().to_owned(),
        view,
    })
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/tokens", operation_id = "list_tokens", tag = "tokens",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let tokens = state
        .service
        .list_tokens(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(TokenList { tokens }))
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/tokens", operation_id = "create_token", tag = "tokens",
    description = "Creates a token for the user, with an optional expiry and scope. Needs an unrestricted token.",
    params(("user_id" = String, Path, description = "the user")),
    request_body = CreateTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = IssuedTokenView, description = "the secret is in `token`, this once"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a scoped token cannot manage tokens"),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad label, expiry or scope"),
    )
)]
pub(crate) async fn create(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<CreateTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let body = body.0;
    let request = TokenRequest {
        label: body.label,
        expires_at: body.expires_at,
        scope: TokenScope {
            doors: body.doors,
            providers: body.providers,
            models: body.models,
            users: None,
            user_prefix: None,
            requests_per_minute: body.requests_per_minute,
            tokens_per_minute: body.tokens_per_minute,
            concurrent_streams: body.concurrent_streams,
        },
    };
    let (token, view) = state
        .service
        .create_token(&caller.0, &user, request, &context(&req))
        .await?;
    Ok(issued(&token, view))
}

#[utoipa::path(
    delete, path = "/api/user/api-keys/{user_id}/tokens/{token_id}", operation_id = "revoke_user_token", tag = "tokens",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("token_id" = String, Path, description = "the token's public id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked (idempotent)"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path.0)?;
    state
        .service
        .revoke_user_token(&caller.0, &user, &path.1, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get, path = "/api/admin/service-tokens", operation_id = "list_service_tokens", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
pub(crate) async fn list_service(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.service.list_service_tokens(&caller.0).await?;
    Ok(HttpResponse::Ok().json(TokenList { tokens }))
}

#[utoipa::path(
    post, path = "/api/admin/service-tokens", operation_id = "create_service_token", tag = "admin",
    description = "Issues a service token: an app backend sends it with `X-BYOK-User: <user id>` to act for that user on the gateway and the user routes (never on admin routes). Revoke it with `DELETE /api/admin/tokens/{token_id}`.",
    request_body = CreateServiceTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = IssuedTokenView, description = "the secret is in `token`, this once"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn create_service(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<CreateServiceTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let request = TokenRequest {
        label: body.label,
        expires_at: body.expires_at,
        scope: TokenScope {
            doors: body.doors,
            providers: body.providers,
            models: body.models,
            users: body.users,
            user_prefix: body.user_prefix,
            requests_per_minute: body.requests_per_minute,
            tokens_per_minute: body.tokens_per_minute,
            concurrent_streams: body.concurrent_streams,
        },
    };
    let (token, view) = state
        .service
        .issue_service_token(&caller.0, request, &context(&req))
        .await?;
    Ok(issued(&token, view))
}
