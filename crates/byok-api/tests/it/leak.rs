//! The leak sweep: a run that saves, lists, replaces and deletes keys
//! (malformed ones included) and presents bad tokens, with every log line
//! captured at TRACE. No key or submitted token may appear in any log line
//! or response.

use byok_test_support::{TestApp, TestDb, both_backends, captured_logs};
use serde_json::json;

use crate::key_body;

both_backends!(no_key_or_token_reaches_logs_or_responses);

fn variants(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = vec![
        secret.to_owned(),
        hex::encode(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
        secret.replace('-', "%2D"),
    ];
    // Any 12-character run: masks show 4 + 4 characters, never 12 in a row.
    out.extend(
        secret
            .as_bytes()
            .windows(12)
            .map(|w| String::from_utf8_lossy(w).into_owned()),
    );
    out
}

async fn dump(response: reqwest::Response) -> String {
    let headers = format!("{:?}", response.headers());
    headers + &response.text().await.unwrap()
}

#[expect(clippy::too_many_lines, reason = "one sweep, read top to bottom")]
async fn no_key_or_token_reaches_logs_or_responses(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let keys = [
        format!("sk-proj-CANARYONE{tag}"),
        format!("sk-ant-api03-CANARYTWO{tag}"),
        format!("AIzaCANARYTHREE{}", &tag[..24]), // exactly Gemini's 39 characters
        format!("sk-proj-CANARYFOUR{tag}"),
    ];
    let bad_token = format!("byok_0123456789abcdef_CANARYTOKEN{tag}xxxxxxxx");
    let mut responses = String::new();
    let mut record = |text: String| responses.push_str(&text);

    for (provider, key) in ["openai", "anthropic", "gemini"].iter().zip(&keys) {
        let r = app.save_key(&token, "alice", provider, key_body(key)).await;
        assert_eq!(
            r.status(),
            201,
            "{provider} must be saved for the sweep to mean anything"
        );
        record(dump(r).await);
    }
    let r = app
        .save_key(&token, "alice", "openai", key_body(&keys[3]))
        .await;
    assert_eq!(r.status(), 200, "the replace must happen");
    record(dump(r).await);
    // A key test of the stored key (no provider answers: it is unreachable).
    let r = app
        .client
        .post(app.url("/api/user/api-keys/alice/keys/anthropic/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    record(dump(r).await);
    let r = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    record(dump(r).await);
    let malformed = [
        json!({ "api_key": format!("{} spaced", keys[0]) }),
        json!({ "api_key": keys[0], "extra": keys[1] }),
        json!({ "api_key": 1, "endpoint": keys[0] }),
        json!({ "api_key": keys[1], "endpoint": format!("https://{}.example", keys[0]), "deployment": "d" }),
    ];
    for body in malformed {
        for provider in ["openai", "azure_openai", &keys[0]] {
            let r = app.save_key(&token, "alice", provider, body.clone()).await;
            record(dump(r).await);
        }
    }
    let r = app
        .client
        .post(app.url("/api/user/api-keys/alice/keys/openai"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"api_key\":\"{}\"", keys[0]))
        .send()
        .await
        .unwrap();
    record(dump(r).await);
    for path in ["/api/user/api-keys/alice/keys", "/api/admin/users"] {
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(&bad_token)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
        let r = app
            .client
            .get(app.url(&format!("{path}?access_token={bad_token}")))
            .send()
            .await
            .unwrap();
        record(dump(r).await);
    }
    // Several keys per provider: add, replace by id, change, test, delete.
    let extra = format!("sk-proj-CANARYFIVE{tag}");
    let r = app
        .client
        .post(app.url("/api/user/api-keys/alice/keys/openai/add"))
        .bearer_auth(&token)
        .json(&json!({"api_key": keys[0], "label": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    record(text.clone());
    let added: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    let by_id = app.url(&format!("/api/user/api-keys/alice/keys/openai/{id}"));
    let r = app
        .client
        .put(&by_id)
        .bearer_auth(&token)
        .json(&key_body(&extra))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    record(dump(r).await);
    for change in [
        json!({"position": 0}),
        json!({"label": extra}),
        json!({"enabled": false}),
    ] {
        let r = app
            .client
            .patch(&by_id)
            .bearer_auth(&token)
            .json(&change)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
    }
    // A key pasted as a label is refused, not echoed.
    let r = app
        .client
        .patch(&by_id)
        .bearer_auth(&token)
        .json(&json!({"label": extra}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .post(format!("{by_id}/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    record(dump(r).await);
    // Tokens: the secret is in the one response that creates it, never after.
    let r = app
        .client
        .post(app.url("/api/user/api-keys/alice/tokens"))
        .bearer_auth(&token)
        .json(&json!({"label": "ci", "doors": ["gateway"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let scoped = created["token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url("/api/user/api-keys/alice/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    record(dump(r).await);
    // Hostile X-BYOK-User values with a token that may not use it.
    for named in [keys[0].as_str(), bad_token.as_str(), "alice"] {
        let r = app
            .client
            .get(app.url("/api/user/api-keys/alice/keys"))
            .bearer_auth(&scoped)
            .header("X-BYOK-User", named)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
    }
    // The Messages and Responses doors: a bad token as x-api-key, keys in
    // bodies and in a beta header; the providers are unreachable.
    for (route, auth) in [
        ("/v1/messages", bad_token.as_str()),
        ("/v1/messages", token.as_str()),
        ("/v1/messages/count_tokens", token.as_str()),
        ("/v1/responses", bad_token.as_str()),
        ("/v1/responses", token.as_str()),
    ] {
        let body = json!({"model": "auto", "max_tokens": 10, "input": keys[0],
            "messages": [{"role": "user", "content": keys[1]}], keys[2].clone(): 1});
        let r = app
            .client
            .post(app.url(route))
            .header("x-api-key", auth)
            .header("anthropic-beta", keys[3].as_str())
            .json(&body)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
        let r = app
            .client
            .post(app.url(route))
            .header("x-api-key", auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
    }
    for provider in ["openai", "anthropic", "gemini"] {
        let r = app
            .client
            .delete(app.url(&format!("/api/user/api-keys/alice/keys/{provider}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        record(dump(r).await);
    }

    let logs = captured_logs();
    assert!(
        logs.contains("/api/user/api-keys/{user_id}/keys/{provider}"),
        "the capture must see the request log"
    );
    let submitted: Vec<&String> = keys.iter().chain([&bad_token, &extra]).collect();
    assert_absent(&logs, "logs", &submitted);
    // A token's public id is shown by design; its secret part never.
    let scoped_secret = scoped[22..].to_owned();
    assert_absent(&logs, "logs", &[&token, &scoped_secret]);
    assert_absent(&responses, "a response", &[&scoped_secret]);
    assert_absent(&responses, "a response", &submitted);
    // The user's own token appears only in the one response that issued it.
    assert!(!responses.contains(&token[22..]));
}

pub(crate) fn assert_absent(haystack: &str, place: &str, secrets: &[&String]) {
    for secret in secrets {
        for variant in variants(secret) {
            let found = haystack.find(&variant);
            let context =
                found.map(|at| &haystack[at.saturating_sub(300)..(at + 100).min(haystack.len())]);
            assert!(
                found.is_none(),
                "a secret reached {place}: {variant} in {context:?}"
            );
        }
    }
}
