//! `/api/user/api-keys/{user_id}/budgets`: caps on a user's own spend.

use actix_web::{HttpRequest, HttpResponse, web};
use byok_core::ProviderKind;
use byok_store::budgets::Period;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::{ApiError, Caller, ErrorBody, JsonBody, context};
use crate::service::{BudgetInput, BudgetView};

use super::user_id;

/// A budget to set. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetRequest {
    /// `day` or `month` (calendar, in `time_zone`).
    #[schema(value_type = String, example = "month")]
    period: Period,
    /// Only this provider's spend; absent for all providers.
    #[schema(value_type = Option<String>, example = "openai")]
    provider: Option<ProviderKind>,
    /// Only what one of the user's tokens spends (its public id); absent for all.
    token_id: Option<String>,
    /// The limit in dollars, as a decimal string (`"5"`, `"0.50"`).
    #[schema(example = "5")]
    limit_usd: String,
    /// `true`: requests that would go over are refused (`402
    /// budget_exceeded`); `false`: served and flagged.
    #[serde(default = "yes")]
    hard: bool,
    /// An IANA time zone for the period's boundaries (default `UTC`).
    #[schema(example = "Europe/Paris")]
    time_zone: Option<String>,
}

/// A change to a budget: its limit, kind and time zone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetChange {
    /// The limit in dollars.
    #[schema(example = "10")]
    limit_usd: String,
    /// Hard or soft.
    #[serde(default = "yes")]
    hard: bool,
    /// An IANA time zone (default `UTC`).
    time_zone: Option<String>,
}

const fn yes() -> bool {
    true
}

/// A user's budgets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BudgetList {
    /// With the current period's spend.
    budgets: Vec<BudgetView>,
}

#[utoipa::path(
    get, path = "/api/user/api-keys/{user_id}/budgets", operation_id = "list_budgets", tag = "budgets",
    params(("user_id" = String, Path, description = "the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = BudgetList),
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
    let budgets = state
        .service
        .list_budgets(&caller.0, &user, &context(&req))
        .await?;
    Ok(HttpResponse::Ok().json(BudgetList { budgets }))
}

#[utoipa::path(
    post, path = "/api/user/api-keys/{user_id}/budgets", operation_id = "create_budget", tag = "budgets",
    params(("user_id" = String, Path, description = "the user")),
    request_body = BudgetRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = BudgetView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad limit or time zone, above the operator's ceiling, or a budget for this period and provider exists"),
    )
)]
pub(crate) async fn create(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<BudgetRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    let body = body.0;
    let view = state
        .service
        .create_budget(
            &caller.0,
            &user,
            BudgetInput {
                period: body.period,
                provider: body.provider,
                token_id: body.token_id,
                limit_usd: body.limit_usd,
                hard: body.hard,
                time_zone: body.time_zone,
            },
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(
    put, path = "/api/user/api-keys/{user_id}/budgets/{budget_id}", operation_id = "update_budget", tag = "budgets",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("budget_id" = String, Path, description = "the budget"),
    ),
    request_body = BudgetChange,
    security(("bearer" = [])),
    responses(
        (status = 200, body = BudgetView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn update(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<BudgetChange>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path.0)?;
    let body = body.0;
    let view = state
        .service
        .update_budget(
            &caller.0,
            &user,
            &path.1,
            BudgetInput {
                period: Period::Month,
                provider: None,
                token_id: None,
                limit_usd: body.limit_usd,
                hard: body.hard,
                time_zone: body.time_zone,
            },
            &context(&req),
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    delete, path = "/api/user/api-keys/{user_id}/budgets/{budget_id}", operation_id = "delete_budget", tag = "budgets",
    params(
        ("user_id" = String, Path, description = "the user"),
        ("budget_id" = String, Path, description = "the budget"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the operator requires this budget"),
    )
)]
pub(crate) async fn delete(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path.0)?;
    state
        .service
        .delete_budget(&caller.0, &user, &path.1, &context(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
