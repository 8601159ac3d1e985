//! `/api/user/api-keys/{user_id}/services`, `.../status`, `.../usage`,
//! `.../requests`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::http::{ApiError, Caller, ErrorBody, context};
use crate::reports::{RequestLog, Services, Status, UsageReport, parse_time};

use super::user_id;

fn gateway(state: &AppState) -> Result<&crate::gateway::Gateway, ApiError> {
    state.gateway.as_ref().ok_or(ApiError::bad(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway_disabled",
        "routing is not enabled on this server",
    ))
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/services", tag = "routing",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses((status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 200, body = Services), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub(crate) async fn services(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let routes = gateway(&state)?
        .services(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(Services { tasks: routes }))
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/status", tag = "routing",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses((status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 200, body = Status), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub(crate) async fn status(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let status = gateway(&state)?
        .status(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(status))
}

/// The usage period.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    /// Start, `YYYY-MM-DD` or RFC 3339 (default: the start of `to`'s month).
    from: Option<String>,
    /// End, exclusive (default: now).
    to: Option<String>,
    /// The model savings are measured against, `provider:model` from the
    /// catalog (default: the operator's baseline).
    baseline: Option<String>,
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/usage", tag = "routing",
    params(("user_id" = String, Path, description = "the user"), UsageQuery),
    security(("bearer" = [])),
    responses((status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 200, body = UsageReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
pub(crate) async fn usage(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let from = query.from.as_deref().map(parse_time).transpose()?;
    let to = query.to.as_deref().map(parse_time).transpose()?;
    let baseline = query
        .baseline
        .as_deref()
        .map(byok_router::ModelRef::parse)
        .transpose()
        .map_err(|_| {
            ApiError::bad(
                StatusCode::BAD_REQUEST,
                "invalid_baseline",
                "baseline is provider:model, such as openai:gpt-4o",
            )
        })?;
    let report = gateway(&state)?
        .usage(&caller.0, &user, (from, to), baseline, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// A page of the request log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestsQuery {
    /// Start, `YYYY-MM-DD` or RFC 3339 (default: 24 hours before `to`).
    from: Option<String>,
    /// End, exclusive (default: now).
    to: Option<String>,
    /// Only requests older than this id (`next_before` of the last page).
    before: Option<i64>,
    /// Requests per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/requests", tag = "routing",
    params(("user_id" = String, Path, description = "the user"), RequestsQuery),
    security(("bearer" = [])),
    responses((status = 400, description = "a malformed user id or provider name", body = ErrorBody), (status = 200, body = RequestLog), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
pub(crate) async fn requests(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<RequestsQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let from = query.from.as_deref().map(parse_time).transpose()?;
    let to = query.to.as_deref().map(parse_time).transpose()?;
    let log = gateway(&state)?
        .requests(
            &caller.0,
            &user,
            (from, to),
            query.before,
            query.limit,
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Ok().json(log))
}
