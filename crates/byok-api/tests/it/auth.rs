//! Authentication: bearer tokens only, uniform refusals, revocation.

use byok_test_support::{ADMIN_TOKEN, TestApp, TestDb, both_backends};

use crate::{body, key_body, openai_key};

both_backends!(
    refusals_are_uniform_and_never_echo_the_token,
    revoked_tokens_stop_working
);

async fn refusals_are_uniform_and_never_echo_the_token(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let url = app.url("/api/user/api-keys/alice/keys");
    let unknown = format!("byok_{}_{}", "0123456789abcdef", "A".repeat(43));
    let wrong_secret = format!("{}{}", &token[..22], "B".repeat(43));
    let requests = vec![
        app.client.get(&url),
        app.client
            .get(&url)
            .header("authorization", format!("bearer {token}")),
        app.client
            .get(&url)
            .header("authorization", format!("Bearer  {token}")),
        app.client
            .get(&url)
            .header("authorization", format!("Basic {token}")),
        app.client
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
        app.client.get(&url).bearer_auth("x".repeat(8 * 1024)),
        app.client.get(&url).bearer_auth(&unknown),
        app.client.get(&url).bearer_auth(&wrong_secret),
        app.client.get(&url).bearer_auth("' OR '1'='1"),
        app.client.get(&url).bearer_auth("%27--"),
        app.client.get(format!("{url}?access_token={token}")),
    ];
    let mut bodies = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "case {i}"
        );
        let (status, body) = body(response).await;
        assert_eq!(status, 401, "case {i}: {body}");
        assert!(!body.to_string().contains(&token[22..]), "case {i}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every refusal looks the same"
    );
    // The right token works, and the admin token works on any user.
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        !byok_test_support::captured_logs().contains(&token[22..]),
        "a token reached the logs"
    );
}

async fn revoked_tokens_stop_working(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    app.create_user("alice").await;
    let issued = app
        .client
        .post(app.url("/api/admin/users/alice/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, issued) = body(issued).await;
    assert_eq!(status, 201);
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&openai_key("a")))
            .await
            .status(),
        201
    );

    let revoke = app.client.delete(app.url(&format!(
        "/api/admin/tokens/{}",
        issued["token_id"].as_str().unwrap()
    )));
    assert_eq!(
        revoke
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&openai_key("b")))
            .await
            .status(),
        401
    );
    let again = app.client.delete(app.url(&format!(
        "/api/admin/tokens/{}",
        issued["token_id"].as_str().unwrap()
    )));
    assert_eq!(
        again
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        204,
        "revocation is idempotent"
    );
    let missing = app
        .client
        .delete(app.url("/api/admin/tokens/0000000000000000"))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(
        body(missing.send().await.unwrap()).await.1["error"]["code"],
        "token_not_found"
    );
}

both_backends!(
    repeated_failures_from_one_address_are_throttled,
    a_flood_is_summed_up_in_one_row_when_its_window_ends,
    a_flood_that_never_comes_back_is_summed_up_too
);

async fn a_flood_that_never_comes_back_is_summed_up_too(db: TestDb) {
    let app = TestApp::spawn_throttled(
        &db,
        byok_api::AuthThrottle::new(3, std::time::Duration::from_millis(400)),
    )
    .await;
    let url = app.url("/api/user/api-keys/alice/keys");
    for i in 0..25 {
        let response = app
            .client
            .get(&url)
            .bearer_auth(format!("byok-guess-{i}"))
            .send()
            .await
            .unwrap();
        assert!(matches!(response.status().as_u16(), 401 | 429));
    }
    let details = || async {
        app.service
            .store()
            .run(|c| {
                byok_store::audit::list_by_action(
                    c,
                    byok_store::audit::AuditAction::AuthFailure,
                    100,
                )
            })
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.detail)
            .collect::<Vec<_>>()
    };
    let mut found = details().await;
    for _ in 0..40 {
        if found.iter().any(|d| d.starts_with("refused_in_window")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        found = details().await;
    }
    // Two rows of their own (the first refusal, the blocking one) and one
    // summary with the window's total, though the address never returned.
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found.iter().any(|d| d == "refused_in_window:25"),
        "{found:?}"
    );
}

async fn a_flood_is_summed_up_in_one_row_when_its_window_ends(db: TestDb) {
    let app = TestApp::spawn_throttled(
        &db,
        byok_api::AuthThrottle::new(3, std::time::Duration::from_millis(700)),
    )
    .await;
    let url = app.url("/api/user/api-keys/alice/keys");
    let refuse = |i: usize| {
        app.client
            .get(&url)
            .bearer_auth(format!("byok-guess-{i}"))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(refuse(i).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    // The address comes back after its window: its total is written once.
    assert_eq!(refuse(10).await.unwrap().status(), 401);
    let details: Vec<Option<String>> = app
        .service
        .store()
        .run(|c| {
            byok_store::audit::list_by_action(c, byok_store::audit::AuditAction::AuthFailure, 100)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        details,
        [
            Some("invalid_token".to_owned()),
            Some("invalid_token".to_owned()),
            Some("refused_in_window:10".to_owned()),
            Some("invalid_token".to_owned()),
        ],
        "first refusal, the blocking one, the window's total, the next window's first"
    );
}

async fn repeated_failures_from_one_address_are_throttled(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let url = app.url("/api/user/api-keys/alice/keys");
    for i in 0..30 {
        let response = app
            .client
            .get(&url)
            .bearer_auth(format!("byok-guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "failure {i}");
    }
    let throttled = app
        .client
        .get(&url)
        .bearer_auth("byok-guess-31")
        .send()
        .await
        .unwrap();
    assert!(throttled.headers().get("retry-after").is_some());
    let (status, throttled) = body(throttled).await;
    assert_eq!(
        (status, throttled["error"]["code"].as_str()),
        (429, Some("too_many_failures"))
    );
    // The flood goes on: no audit row per request. The trail holds the
    // address's first refusal and the one that blocked it.
    for i in 0..70 {
        let response = app
            .client
            .get(&url)
            .bearer_auth(format!("byok-flood-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
    }
    let failures = app
        .service
        .store()
        .run(|c| byok_store::audit::count(c, byok_store::audit::AuditAction::AuthFailure))
        .await
        .unwrap();
    assert_eq!(failures, 2, "101 refusals, two audit rows");
    // A valid token still works from the same address: guessing never locks out real users.
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Another address is unaffected.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    assert_eq!(
        other
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let other_bad = other
        .get(&url)
        .bearer_auth("byok-guess-x")
        .send()
        .await
        .unwrap();
    assert_eq!(other_bad.status(), 401);
}
