//! Never a plaintext key in the database: write canary keys, then search
//! every byte the database holds (SQLite file, WAL and shm; a PostgreSQL
//! dump) for the keys and their common encodings.

use base64::Engine as _;
use byok_core::ProviderKind;
use byok_store::audit::{Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::tokens::{self, NewToken, TokenRole};
use byok_test_support::{TestDb, both_backends};
use sha2::Digest as _;

use crate::fixtures::{create_user, put_key, vault};

both_backends!(no_plaintext_key_reaches_the_database);

fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let b = secret.as_bytes();
    vec![
        b.to_vec(),
        hex::encode(b).into_bytes(),
        hex::encode_upper(b).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(b)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(b)
            .into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn no_plaintext_key_reaches_the_database(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    let canaries: Vec<(ProviderKind, String)> = ProviderKind::ALL
        .into_iter()
        .map(|p| (p, format!("sk-CANARY-{}", uuid::Uuid::new_v4().simple())))
        .collect();
    for (provider, raw) in &canaries {
        put_key(&store, &vault, &alice, *provider, raw)
            .await
            .unwrap();
    }
    // A token's secret never reaches the store at all: only its hash does.
    let token_secret = format!("byok_CANARYTOKEN{}", uuid::Uuid::new_v4().simple());
    let hash = sha2::Sha256::digest(token_secret.as_bytes()).to_vec();
    let a = alice.clone();
    store
        .run(move |c| {
            let event = NewAuditEvent::new(
                Actor::System,
                AuditAction::TokenIssue,
                AuditOutcome::Success,
            )
            .user(&a);
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_1",
                    role: TokenRole::User(a.clone()),
                    secret_hash: &hash,
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &event,
                byok_store::now(),
            )
        })
        .await
        .unwrap();
    // Scan twice: while the store is open (recent pages still in SQLite's
    // WAL), and after it closed (checkpointed into the main file).
    let open_dump = db.raw_dump();
    if let Some(path) = db.sqlite_path() {
        let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap();
        assert!(
            wal.len() > 0,
            "the open-store scan must include a non-empty WAL"
        );
    }
    drop(store);
    let mut dump = db.raw_dump();
    dump.extend(open_dump);
    assert!(dump.len() > 1000, "the dump must hold the database");
    assert!(
        contains(&dump, b"sk-C********"),
        "masked keys are stored, so the dump is readable"
    );
    for secret in canaries
        .iter()
        .map(|(_, raw)| raw.as_str())
        .chain([token_secret.as_str()])
    {
        for encoded in encodings(secret) {
            assert!(
                !contains(&dump, &encoded),
                "plaintext secret found in the {:?} database",
                db.backend()
            );
        }
        // No 12-character run of the key either (masks show 4 + 4, never contiguous).
        for window in secret.as_bytes().windows(12) {
            assert!(
                !contains(&dump, window),
                "part of a secret found in the {:?} database",
                db.backend()
            );
        }
    }
}
