//! The settings page: three files compiled into the binary, served with a
//! strict Content-Security-Policy (no inline script or style, same origin
//! only) and never framed unless the operator names the origins that may
//! frame it. Nothing is fetched from anywhere else.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

fn asset(req: &HttpRequest, content_type: &str, body: &'static str) -> HttpResponse {
    let access = req
        .app_data::<web::Data<crate::AppState>>()
        .map(|s| std::sync::Arc::clone(&s.browser_access))
        .unwrap_or_default();
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, access.csp()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if !access.framable() {
        response.insert_header((header::X_FRAME_OPTIONS, "DENY"));
    }
    response.body(body)
}

pub(crate) async fn index(req: HttpRequest) -> HttpResponse {
    asset(&req, "text/html; charset=utf-8", INDEX)
}

pub(crate) async fn app_js(req: HttpRequest) -> HttpResponse {
    asset(&req, "text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn style_css(req: HttpRequest) -> HttpResponse {
    asset(&req, "text/css; charset=utf-8", STYLE_CSS)
}
