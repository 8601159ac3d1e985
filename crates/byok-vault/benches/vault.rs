//! Seal and open costs for a realistic 164-character key, beside the raw
//! AES-256-GCM cost of the same payload, so the envelope's overhead shows.

#![expect(
    clippy::unwrap_used,
    reason = "a benchmark may abort on a setup failure"
)]

use std::hint::black_box;

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use byok_core::{ApiKey, ProviderKind, UserId};
use byok_vault::{Binding, KeyVault, MasterKey, MasterKeyId};
use criterion::{Criterion, criterion_group, criterion_main};

/// The shape of an OpenAI project key: `sk-proj-` and 156 more characters.
fn realistic_key() -> String {
    let body: String = "T3BlbkFJabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
        .chars()
        .cycle()
        .take(156)
        .collect();
    format!("sk-proj-{body}")
}

fn vault_benches(c: &mut Criterion) {
    let raw = realistic_key();
    assert_eq!(raw.len(), 164);
    let key = ApiKey::parse(raw.clone()).unwrap();
    let user = UserId::parse("alice@example.com").unwrap();
    let binding = Binding::new(&user, ProviderKind::OpenAi);
    let vault = KeyVault::new(MasterKeyId::new(1), MasterKey::generate());
    let sealed = vault.seal(&key, &binding).unwrap();

    let mut group = c.benchmark_group("vault_164_char_key");
    group.bench_function("seal", |b| {
        b.iter(|| vault.seal(black_box(&key), &binding).unwrap());
    });
    group.bench_function("open", |b| {
        b.iter(|| vault.open(black_box(&sealed), &binding).unwrap());
    });
    group.bench_function("open_and_mask", |b| {
        b.iter(|| vault.open(black_box(&sealed), &binding).unwrap().masked());
    });

    // The same work without the envelope: one AEAD call on the same sizes.
    let cipher = Aes256Gcm::new(&Aes256Gcm::generate_key(&mut OsRng));
    let aad = [0u8; 48];
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: raw.as_bytes(),
                aad: &aad,
            },
        )
        .unwrap();
    group.bench_function("raw_aes256gcm_encrypt", |b| {
        b.iter(|| {
            cipher.encrypt(
                &nonce,
                Payload {
                    msg: black_box(raw.as_bytes()),
                    aad: &aad,
                },
            )
        });
    });
    group.bench_function("raw_aes256gcm_decrypt", |b| {
        b.iter(|| {
            cipher.decrypt(
                &nonce,
                Payload {
                    msg: black_box(&ciphertext),
                    aad: &aad,
                },
            )
        });
    });
    group.bench_function("raw_nonce_from_os_rng", |b| {
        b.iter(|| Aes256Gcm::generate_nonce(&mut OsRng));
    });
    group.finish();
}

criterion_group!(benches, vault_benches);
criterion_main!(benches);
