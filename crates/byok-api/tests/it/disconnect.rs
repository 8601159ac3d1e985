//! A client that disconnects mid-stream cancels the upstream request: the
//! provider sees its connection closed (so it stops generating tokens the
//! user would pay for), and the partial usage is still recorded — and
//! settles the request's budget reservation.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use byok_test_support::{TestApp, TestDb};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::{key_body, openai_key};

/// A provider that streams a chunk every 50 ms until its client goes away,
/// then reports how many chunks it managed to send.
fn endless_provider() -> (String, mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).unwrap();
        let event =
            r#"data: {"choices":[{"index":0,"delta":{"content":"tick "},"finish_reason":null}]}"#;
        let frame = format!("{event}\n\n");
        let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
        let mut sent = 0;
        for _ in 0..600 {
            if socket
                .write_all(chunk.as_bytes())
                .and_then(|()| socket.flush())
                .is_err()
            {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = tx.send(sent);
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_cancels_the_upstream_request() {
    let (provider_url, sent) = endless_provider();
    let providers = byok_providers::ProviderSettings {
        openai_base_url: url::Url::parse(&provider_url).unwrap(),
        ..byok_providers::ProviderSettings::default()
    };
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers).await;
    let token = app.create_user("alice").await;
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&openai_key("dc")))
            .await
            .status(),
        201
    );

    let budget = app
        .client
        .post(app.url("/api/user/api-keys/alice/budgets"))
        .bearer_auth(&token)
        .json(&json!({"period": "month", "limit_usd": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(budget.status(), 201);

    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tick"));
    drop(body); // the client goes away

    // The provider notices within a second or two, long before its 30 s of ticks.
    let chunks = tokio::task::spawn_blocking(move || sent.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the upstream connection was closed");
    assert!(
        chunks < 100,
        "the upstream kept streaming for {chunks} chunks"
    );

    // The partial stream's usage is recorded (as cancelled).
    let store = app.service.store().clone();
    app.stop().await;
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "cancelled");
    // The reservation is settled to the partial answer's (estimated) cost.
    let alice = byok_core::UserId::parse("alice").unwrap();
    let now = byok_store::now();
    let budgets = store
        .run(move |c| byok_store::budgets::states(c, &alice, None, now))
        .await
        .unwrap();
    assert_eq!(budgets[0].reserved, 0);
    assert_eq!(Some(budgets[0].spent), records[0].cost_picodollars);
    assert!(budgets[0].spent > 0);
}
