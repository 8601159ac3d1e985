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
use crate::service::{KeyInput, KeyTarget, KeyTestReport, KeyView};

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
    /// A label for the key ("team", "project B"); at most 64 characters.
    /// Left out, a replaced key keeps its label.
    label: Option<String>,
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
            label: self.label,
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
#[into_params(parameter_in = Query)]
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
    description = "Saves the provider's default (first) key: replaces it, or creates it when the provider has none.",
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
    description = "Tests the provider's default (first) key, or a candidate key without saving it.",
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
        .test_key(&caller.0, &user, provider, None, candidate, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

#[utoipa::path(
    delete, path = "/api/user/api-keys/{user_id}/keys/{provider}", tag = "keys",
    description = "Deletes every key the user has for the provider.",
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
    /// `user`, `admin` or `service` (a service token that names a user with
    /// `X-BYOK-User` is that user).
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
        crate::Principal::Service { .. } => WhoAmI {
            user_id: None,
            role: "service",
        },
    };
    HttpResponse::Ok().json(body)
}

/// Change a key's label, place in its provider's order, weight or switch.
/// Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKeyRequest {
    /// A label; at most 64 characters.
    label: Option<String>,
    /// 0 to 1000; lower is tried first. Moving a key to 0 promotes it.
    position: Option<i32>,
    /// 1 to 1000: its share of traffic among keys with the same position.
    weight: Option<i32>,
    /// Whether routing may use it.
    enabled: Option<bool>,
    /// Azure OpenAI: a new endpoint (the key stays).
    endpoint: Option<String>,
    /// Azure OpenAI: a new chat deployment.
    deployment: Option<String>,
    /// Azure OpenAI: a new API version.
    api_version: Option<String>,
    /// Azure OpenAI: a new embedding deployment.
    embedding_deployment: Option<String>,
    /// Anthropic: a new workspace id.
    workspace_id: Option<String>,
}

fn key_path(
    path: &(String, String, String),
) -> Result<(byok_core::UserId, byok_core::ProviderKind, &str), ApiError> {
    let id = path.2.as_str();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(crate::ServiceError::KeyNotFound.into());
    }
    Ok((user_id(&path.0)?, provider(&path.1)?, id))
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/keys/{provider}/add", tag = "keys",
    description = "Adds another key for the provider, last in its order (at most the configured number per provider).",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "openai, deepseek, anthropic, gemini or azure_openai"),
    ),
    request_body = SaveKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = KeyView, description = "added"),
        (status = 400, body = ErrorBody, description = "malformed JSON, unknown field or invalid user id"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the token's scope does not include key management"),
        (status = 404, body = ErrorBody, description = "no such user, or unknown provider"),
        (status = 413, body = ErrorBody, description = "body over 16 KiB"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the key or a setting is not acceptable, or the provider has the most keys allowed (`too_many_keys`)"),
        (status = 503, body = ErrorBody, description = "database busy; nothing was saved"),
    )
)]
pub(crate) async fn add_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<SaveKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider) = (user_id(&path.0)?, provider(&path.1)?);
    let (_, view) = state
        .service
        .save_key(
            &caller.0,
            &user,
            provider,
            KeyTarget::New,
            body.0.into_input(),
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    put, path = "/api/user/api-keys/{user_id}/keys/{provider}/{key_id}", tag = "keys",
    description = "Replaces the secret (and settings) of one key; its id, place and label stay unless given.",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
        ("key_id" = String, Path, description = "the key's id"),
    ),
    request_body = SaveKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyView, description = "replaced"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user, provider or key"),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub(crate) async fn replace_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    body: JsonBody<SaveKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider, id) = key_path(&path)?;
    let (_, view) = state
        .service
        .save_key(
            &caller.0,
            &user,
            provider,
            KeyTarget::Id(id.to_owned()),
            body.0.into_input(),
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    patch, path = "/api/user/api-keys/{user_id}/keys/{provider}/{key_id}", tag = "keys",
    description = "Changes a key's label, position (0 promotes it to the provider's default), weight, on/off switch, or its non-secret settings (Azure endpoint, deployments, API version; Anthropic workspace) without the key.",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
        ("key_id" = String, Path, description = "the key's id"),
    ),
    request_body = UpdateKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a label, position or weight out of range"),
    )
)]
pub(crate) async fn update_key(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    body: JsonBody<UpdateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider, id) = key_path(&path)?;
    let body = body.0;
    let options = KeyOptions {
        endpoint: body.endpoint,
        deployment: body.deployment,
        api_version: body.api_version,
        embedding_deployment: body.embedding_deployment,
        workspace_id: body.workspace_id,
    };
    let touched = options.endpoint.is_some()
        || options.deployment.is_some()
        || options.api_version.is_some()
        || options.embedding_deployment.is_some()
        || options.workspace_id.is_some();
    let changes = byok_store::keys::KeyChanges {
        label: body.label,
        position: body.position,
        weight: body.weight,
        enabled: body.enabled,
        settings: None,
    };
    let view = state
        .service
        .update_key(
            &caller.0,
            &user,
            provider,
            id,
            (changes, touched.then_some(options)),
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete, path = "/api/user/api-keys/{user_id}/keys/{provider}/{key_id}", tag = "keys",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
        ("key_id" = String, Path, description = "the key's id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted; the sealed key is gone"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_key_by_id(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider, id) = key_path(&path)?;
    state
        .service
        .delete_key_by_id(&caller.0, &user, provider, id, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/keys/{provider}/{key_id}/test", tag = "keys",
    description = "Tests one stored key with its provider's cheapest authenticated call; the result is recorded on the key.",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("provider" = String, Path, description = "the provider"),
        ("key_id" = String, Path, description = "the key's id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyTestReport, description = "the provider was asked; `status` says what it answered"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many tests; see Retry-After"),
    )
)]
pub(crate) async fn test_key_by_id(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, provider, id) = key_path(&path)?;
    let report = state
        .service
        .test_key(&caller.0, &user, provider, Some(id), None, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}
