//! `/api/admin/...`: users and tokens. Admin tokens only.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::{ApiError, Caller, ErrorBody, JsonBody, context};

use super::user_id;

/// Create a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
    user_id: String,
}

/// A created user and their first token, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedUser {
    /// The user.
    user_id: String,
    /// The public id of the token, for revocation.
    token_id: String,
    /// The token. Store it now: only its hash is kept.
    token: String,
}

/// A new token, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    /// The public id of the token, for revocation.
    token_id: String,
    /// The token. Store it now: only its hash is kept.
    token: String,
}

#[utoipa::path(
    post, path = "/api/admin/users", tag = "admin",
    request_body = CreateUserRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedUser),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin token"),
        (status = 409, body = ErrorBody, description = "the user id is taken"),
    )
)]
pub(crate) async fn create_user(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&body.0.user_id)?;
    let issued = state
        .service
        .create_user(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Created().json(CreatedUser {
        user_id: user.to_string(),
        token_id: issued.id,
        token: issued.token.expose_secret().to_owned(),
    }))
}

#[utoipa::path(
    delete, path = "/api/admin/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 204, description = "the user, their keys and tokens are gone; the audit trail stays"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_user(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    state
        .service
        .delete_user(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post, path = "/api/admin/users/{user_id}/tokens", tag = "admin",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 201, body = CreatedToken),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn issue_token(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let issued = state
        .service
        .issue_token(&caller.0, Some(&user), &context(&req))
        .await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        token_id: issued.id,
        token: issued.token.expose_secret().to_owned(),
    }))
}

#[utoipa::path(
    delete, path = "/api/admin/tokens/{token_id}", tag = "admin",
    params(("token_id" = String, Path, description = "the token's public id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked (idempotent)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .revoke_token(&caller.0, &path, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Paging and filtering of the user list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersQuery {
    /// Only users whose id starts with this.
    prefix: Option<String>,
    /// Continue after this user id (a page's `next_after`).
    after: Option<String>,
    /// At most this many users (1 to 500, default 100).
    limit: Option<u32>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    /// In id order.
    users: Vec<crate::service::UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<String>,
}

#[utoipa::path(
    get, path = "/api/admin/users", tag = "admin",
    params(UsersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
pub(crate) async fn list_users(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let users = state
        .service
        .list_users(
            &caller.0,
            query.prefix.as_deref().unwrap_or(""),
            query.after.as_deref(),
            limit,
        )
        .await?;
    let full = u32::try_from(users.len()).is_ok_and(|n| n == limit);
    let next_after = full
        .then(|| users.last().map(|u| u.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(UserPage { users, next_after }))
}

/// Disable or enable a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserRequest {
    /// `true` refuses every token of the user (keys and data stay).
    disabled: bool,
}

#[utoipa::path(
    patch, path = "/api/admin/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path, description = "the user")),
    request_body = UpdateUserRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "done"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub(crate) async fn update_user(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    state
        .service
        .set_user_disabled(&caller.0, &user, body.0.disabled, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get, path = "/api/admin/users/{user_id}/tokens", tag = "admin", operation_id = "admin_list_user_tokens",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = crate::routes::tokens::TokenList, description = "metadata only, never a secret"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn list_tokens(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    if !matches!(caller.0, crate::Principal::Admin { .. }) {
        return Err(crate::ServiceError::Forbidden.into());
    }
    super::tokens::list(req, caller, state, web::Path::from(user.to_string())).await
}

#[utoipa::path(
    get, path = "/api/admin/users/{user_id}/limits", tag = "admin",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = crate::limits::RateLimits, description = "the user's own limits; absent ones are the defaults"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn user_limits(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let limits = state.service.user_limits(&caller.0, &user).await?;
    Ok(HttpResponse::Ok().json(limits))
}

#[utoipa::path(
    put, path = "/api/admin/users/{user_id}/limits", tag = "admin",
    params(("user_id" = String, Path, description = "the user")),
    request_body = crate::limits::RateLimits,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "set; `{}` goes back to the defaults"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a limit of 0"),
    )
)]
pub(crate) async fn set_user_limits(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<crate::limits::RateLimits>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    state
        .service
        .set_user_limits(&caller.0, &user, body.0, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
