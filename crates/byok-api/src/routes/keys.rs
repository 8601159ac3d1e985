//! `/api/user/api-keys/...`: a user's keys and audit trail.

use actix_web::{HttpRequest, HttpResponse, web};
use byok_store::audit::AuditEvent;
use byok_store::keys::PutOutcome;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::http::{ApiError, Caller, ErrorBody, JsonBody, MaybeJsonBody, context};
use crate::providers::{self, KeyOptions, ProviderInfo};
use crate::service::{KeyInput, KeyTestReport, KeyView};

use super::{provider, user_id};

/// Save a key. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SaveKeyRequest {
    /// The provider API key. Trimmed; printable ASCII without spaces, at most 512 bytes.
    #[schema(value_type = String, example = "sk-proj-...")]
    api_key: SecretString,
    /// Azure OpenAI only: `https://<resource>.openai.azure.com`.
    endpoint: Option<String>,
    /// Azure OpenAI only: the chat deployment name.
    deployment: Option<String>,
    /// Azure OpenAI only: `v1` (the default for new keys: the `/openai/v1/`
    /// API, no version) or a dated version such as `2024-10-21`.
    api_version: Option<String>,
    /// Azure OpenAI only: the embedding deployment name.
    embedding_deployment: Option<String>,
    /// Anthropic only: the workspace id (`wrkspc_…`) an identity-linked or
    /// workspace-scoped key must send as `anthropic-workspace-id`.
    workspace_id: Option<String>,
}

impl SaveKeyRequest {
    fn into_input(self) -> KeyInput {
        KeyInput {
            api_key: self.api_key,
            options: KeyOptions {
                endpoint: self.endpoint,
                deployment: self.deployment,
                api_version: self.api_version,
                embedding_deployment: self.embedding_deployment,
                workspace_id: self.workspace_id,
            },
        }
    }
}

impl std::fmt::Debug for SaveKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveKeyRequest")
            .field("api_key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A user's keys.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// The keys, masked, ordered by provider.
    keys: Vec<KeyView>,
}

/// The five providers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderList {
    /// The providers.
    providers: Vec<ProviderInfo>,
}

/// Audit paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Return events older than this id (a page's `next_before`).
    before: Option<i64>,
    /// At most this many events (1 to 200, default 50).
    limit: Option<u32>,
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// Events, newest first.
    #[schema(value_type = Vec<Object>)]
    events: Vec<AuditEvent>,
    /// Pass as `before` to get the next page; absent on the last page.
    next_before: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/user/api-keys/providers", tag = "keys",
    responses((status = 200, body = ProviderList))
)]
pub(crate) async fn list_providers() -> HttpResponse {
    HttpResponse::Ok().json(ProviderList {
        providers: providers::catalog(),
    })
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/keys", tag = "keys",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyList),
        (status = 400, body = ErrorBody, description = "invalid user id"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user (or not yours)"),
    )
)]
pub(crate) async fn list_keys(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let keys = state
        .service
        .list_keys(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(KeyList { keys }))
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/keys/{provider}", tag = "keys",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "openai, deepseek, anthropic, gemini or azure_openai"),
    ),
    request_body = SaveKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = KeyView, description = "saved where there was no key"),
        (status = 200, body = KeyView, description = "replaced the earlier key"),
        (status = 400, body = ErrorBody, description = "malformed JSON, unknown field or invalid user id"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user, or unknown provider"),
        (status = 413, body = ErrorBody, description = "body over 16 KiB"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the key or a setting is not acceptable"),
        (status = 503, body = ErrorBody, description = "database busy; nothing was saved"),
    )
)]
pub(crate) async fn save_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<SaveKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider) = (user_id(&path.0)?, provider(&path.1)?);
    let input = body.0.into_input();
    let (outcome, view) = state
        .service
        .put_key(&caller.0, &user, provider, input, &context(&req))
        .await?;
    Ok(match outcome {
        PutOutcome::Created => HttpResponse::Created().json(view),
        PutOutcome::Replaced => HttpResponse::Ok().json(view),
    })
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/keys/{provider}/test", tag = "keys",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
    ),
    request_body(content = Option<SaveKeyRequest>, description = "optional: a candidate key to test without saving it"),
    security(("bearer" = [])),
    responses(
        (status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 200, body = KeyTestReport, description = "the provider was asked; `status` says what it answered"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user, provider, or stored key"),
        (status = 422, body = ErrorBody, description = "the candidate key or a setting is not acceptable"),
        (status = 429, body = ErrorBody, description = "too many tests; see Retry-After"),
    )
)]
pub(crate) async fn test_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: MaybeJsonBody<SaveKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider) = (user_id(&path.0)?, provider(&path.1)?);
    let candidate = body.0.map(SaveKeyRequest::into_input);
    let report = state
        .service
        .test_key(&caller.0, &user, provider, candidate, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

#[utoipa::path(
    delete, path = "/api/user/api-keys/{user_id}/keys/{provider}", tag = "keys",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 204, description = "deleted; the sealed key is gone"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user, provider or key"),
    )
)]
pub(crate) async fn delete_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider) = (user_id(&path.0)?, provider(&path.1)?);
    state
        .service
        .delete_key(&caller.0, &user, provider, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/audit", tag = "keys",
    params(("user_id" = String, Path, description = "the user"), AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn audit(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let events = state
        .service
        .audit(&caller.0, &user, query.before, limit, &context(&req))
        .await?;
    let full_page = u32::try_from(events.len()).is_ok_and(|n| n == limit);
    let next_before = if full_page {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage {
        events,
        next_before,
    }))
}

/// Who the token belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// The user id (absent for an admin token).
    user_id: Option<String>,
    /// `user` or `admin`.
    role: &'static str,
}

#[utoipa::path(
    get, path = "/api/user/whoami", tag = "keys",
    security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody))
)]
pub(crate) async fn whoami(caller: Caller) -> HttpResponse {
    let body = match caller.0 {
        crate::Principal::User { user, .. } => WhoAmI {
            user_id: Some(user.to_string()),
            role: "user",
        },
        crate::Principal::Admin { .. } => WhoAmI {
            user_id: None,
            role: "admin",
        },
    };
    HttpResponse::Ok().json(body)
}
