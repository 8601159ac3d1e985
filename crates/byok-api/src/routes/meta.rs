//! Liveness, readiness and the OpenAPI document.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::http::{ErrorBody, error_response};

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` or `ready`.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

#[utoipa::path(
    get, path = "/readyz", tag = "meta",
    responses(
        (status = 200, body = Health, description = "database reachable, migrations applied"),
        (status = 503, body = ErrorBody),
    )
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.service.store().ready().await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ready" }),
        Err(error) => {
            tracing::warn!(error = %error, "not ready");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "internal error",
            )
        }
    }
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "this document")))]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}
