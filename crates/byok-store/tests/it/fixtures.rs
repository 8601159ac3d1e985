//! Shared fixtures: a vault, users and sealed keys.

use byok_core::{ApiKey, ProviderKind, UserId};
use byok_store::audit::{Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::keys::{self, KeySettings, NewProviderKey, PutOutcome};
use byok_store::{Store, users};
use byok_vault::{Binding, KeyVault, MasterKey, MasterKeyId};

pub(crate) fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub(crate) fn vault() -> KeyVault {
    KeyVault::new(MasterKeyId::new(1), MasterKey::from_bytes([42; 32]))
}

pub(crate) fn event(actor: &UserId) -> NewAuditEvent {
    NewAuditEvent::new(
        Actor::User(actor.clone()),
        AuditAction::KeyCreate,
        AuditOutcome::Success,
    )
    .user(actor)
    .request_id("req-1")
}

pub(crate) async fn create_user(store: &Store, id: &str) -> UserId {
    let user = user(id);
    let u = user.clone();
    store
        .run(move |conn| {
            let event = NewAuditEvent::new(
                Actor::System,
                AuditAction::UserCreate,
                AuditOutcome::Success,
            )
            .user(&u);
            users::create(conn, &u, &event, byok_store::now())
        })
        .await
        .unwrap();
    user
}

/// Seals `raw` for (`owner`, `provider`) and saves it.
pub(crate) async fn put_key(
    store: &Store,
    vault: &KeyVault,
    owner: &UserId,
    provider: ProviderKind,
    raw: &str,
) -> Result<PutOutcome, byok_store::StoreError> {
    put_key_with(store, vault, owner, provider, raw, KeySettings::new()).await
}

pub(crate) async fn put_key_with(
    store: &Store,
    vault: &KeyVault,
    owner: &UserId,
    provider: ProviderKind,
    raw: &str,
    settings: KeySettings,
) -> Result<PutOutcome, byok_store::StoreError> {
    let key = ApiKey::parse(raw).unwrap();
    // The provider's default key is replaced; a new key gets a new id.
    let o = owner.clone();
    let id = store
        .run(move |conn| keys::default_id(conn, &o, provider))
        .await?
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let sealed = vault
        .seal(&key, &Binding::for_key(owner, provider, &id))
        .unwrap();
    let masked = key.masked();
    let owner = owner.clone();
    let master_key_id = vault.active_key_id().get();
    store
        .run(move |conn| {
            let new = NewProviderKey {
                id: &id,
                label: None,
                user_id: &owner,
                provider,
                sealed_key: sealed.as_bytes(),
                master_key_id,
                masked_key: &masked,
                settings: &settings,
            };
            keys::put(
                conn,
                &new,
                event(&owner).provider(provider),
                byok_store::now(),
            )
        })
        .await
}

/// Opens `owner`'s stored key for `provider`, if any.
pub(crate) async fn open_key(
    store: &Store,
    vault: &KeyVault,
    owner: &UserId,
    provider: ProviderKind,
) -> Option<String> {
    let o = owner.clone();
    let stored = store
        .run(move |conn| keys::get(conn, &o, provider))
        .await
        .unwrap()?;
    let sealed = byok_vault::SealedKey::from_bytes(stored.sealed_key.clone());
    Some(
        vault
            .open(&sealed, &Binding::for_key(owner, provider, &stored.id))
            .unwrap()
            .expose_secret()
            .to_owned(),
    )
}
