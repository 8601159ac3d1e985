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
    // Its own deadline: a database that does not answer is not ready, now.
    let checked = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.service.store().ready(),
    )
    .await;
    let reason = match checked {
        Ok(Ok(())) => return HttpResponse::Ok().json(Health { status: "ready" }),
        Ok(Err(byok_store::StoreError::Corrupt(reason))) => reason,
        Ok(Err(
            byok_store::StoreError::Pool(_)
            | byok_store::StoreError::Connect(_)
            | byok_store::StoreError::Busy,
        )) => "the database is unreachable",
        Ok(Err(_)) => "the database refused a check",
        Err(_) => "the database did not answer within 2 s",
    };
    tracing::warn!(reason, "not ready");
    error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason)
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "this document")))]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}

/// `GET /metrics`: Prometheus text format. Admin token only: spend is business data.
#[utoipa::path(
    get, path = "/metrics", tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "gateway metrics in the Prometheus/OpenMetrics text format"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin token"),
    )
)]
pub(crate) async fn metrics(
    caller: crate::http::Caller,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !matches!(caller.0, crate::Principal::Admin { .. }) {
        return error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs an admin token",
        );
    }
    let body = state
        .gateway
        .as_ref()
        .map(|g| {
            g.metrics().observe_circuits(g.health());
            g.metrics().render()
        })
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body)
}
