//! The vault and the store together in a program without a server or an
//! async runtime: save a key to SQLite, restart, open it again.
//!
//! Run with `cargo run -p byok-examples --example store_embedded`.

#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::error::Error;

use byok_core::{ApiKey, ProviderKind, UserId};
use byok_store::audit::{Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::keys::{self, KeySettings, NewProviderKey};
use byok_store::{Store, StoreConfig, now, users};
use byok_vault::{Binding, KeyVault, MasterKey, MasterKeyId, SealedKey};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let config = || StoreConfig::new(dir.path().join("byok.db").display().to_string());
    let vault = KeyVault::new(MasterKeyId::new(1), MasterKey::from_bytes([9; 32]));
    let alice = UserId::parse("alice")?;

    {
        let store = Store::connect_blocking(&config())?; // creates and migrates the file
        let key = ApiKey::parse("sk-ant-api03-Ex4mpleKeyForTheEmbeddedStoreDemo0123456789")?;
        // Each key has its own id, and its sealed bytes are bound to it.
        let key_id = "7f1c2d3e-0000-4000-8000-000000000001";
        let sealed = vault.seal(
            &key,
            &Binding::for_key(&alice, ProviderKind::Anthropic, key_id),
        )?;
        store.run_blocking(|conn| {
            let event = NewAuditEvent::new(
                Actor::System,
                AuditAction::UserCreate,
                AuditOutcome::Success,
            )
            .user(&alice);
            users::create(conn, &alice, &event, now())?;
            let new = NewProviderKey {
                id: key_id,
                label: Some("personal"),
                user_id: &alice,
                provider: ProviderKind::Anthropic,
                sealed_key: sealed.as_bytes(),
                master_key_id: vault.active_key_id().get(),
                masked_key: &key.masked(),
                settings: &KeySettings::new(),
            };
            let event = NewAuditEvent::new(
                Actor::User(alice.clone()),
                AuditAction::KeyCreate,
                AuditOutcome::Success,
            )
            .user(&alice)
            .provider(ProviderKind::Anthropic);
            keys::put(conn, &new, event, now())
        })?;
        println!("saved {}", key.masked());
    }

    // A new process would start here.
    let store = Store::connect_blocking(&config())?;
    let stored = store
        .run_blocking(|conn| keys::get(conn, &alice, ProviderKind::Anthropic))?
        .ok_or("the key should survive a restart")?;
    let opened = vault.open(
        &SealedKey::from_bytes(stored.sealed_key.clone()),
        &Binding::for_key(&alice, ProviderKind::Anthropic, &stored.id),
    )?;
    println!(
        "after restart: {} (stored mask {})",
        opened.masked(),
        stored.masked_key
    );
    Ok(())
}
