//! The settings page: three files compiled into the binary, served with a
//! strict Content-Security-Policy (no inline script or style, same origin
//! only) and never framed. Nothing is fetched from anywhere else.

use actix_web::HttpResponse;
use actix_web::http::header;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

/// The policy every page response carries.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub(crate) async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn style_css() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
