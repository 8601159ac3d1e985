//! A minimal OpenAI-shaped provider for the load benchmark
//! (`scripts/load-bench.sh`): every `POST /v1/chat/completions` gets the same
//! small answer with usage, at once. One worker thread, so it leaves the
//! other core to byok.
//!
//! ```sh
//! cargo run --release -p byok-examples --example load_mock -- 127.0.0.1:18181
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#;

async fn chat() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(ANSWER)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18181".to_owned());
    HttpServer::new(|| App::new().route("/v1/chat/completions", web::post().to(chat)))
        .workers(1)
        .bind(&address)?
        .run()
        .await
}
