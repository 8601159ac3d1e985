//! The vault with no database at all: seal, open, mask and rotate keys kept
//! in a `HashMap`, as a desktop app or a CLI might.
//!
//! Run with `cargo run -p byok-examples --example vault_in_memory`.

#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::collections::HashMap;
use std::error::Error;

use byok_core::{ApiKey, ProviderKind, UserId};
use byok_vault::{Binding, KeyVault, MasterKey, MasterKeyId, SealedKey};

/// An in-memory key store: sealed blobs by owner and provider.
#[derive(Default)]
struct MemoryStore {
    sealed: HashMap<(UserId, ProviderKind), SealedKey>,
}

fn main() -> Result<(), Box<dyn Error>> {
    // In a real program the master key comes from a key file or a KMS.
    let first_master_key = MasterKey::generate().to_base64();
    let vault = KeyVault::new(
        MasterKeyId::new(1),
        MasterKey::from_base64(secrecy::ExposeSecret::expose_secret(&first_master_key))?,
    );

    let alice = UserId::parse("alice")?;
    let mut store = MemoryStore::default();

    // Seal: the pasted key is trimmed, validated, sealed for (alice, openai).
    let pasted = ApiKey::parse("  sk-proj-Ex4mpleKeyForTheInMemoryVaultDemo0123456789  \n")?;
    let binding = Binding::new(&alice, ProviderKind::OpenAi);
    store.sealed.insert(
        (alice.clone(), ProviderKind::OpenAi),
        vault.seal(&pasted, &binding)?,
    );
    println!("stored alice/openai as {}", pasted.masked());
    println!("debug output stays redacted: {pasted:?}");

    // Open: only for the same user and provider.
    let sealed = &store.sealed[&(alice.clone(), ProviderKind::OpenAi)];
    let opened = vault.open(sealed, &binding)?;
    println!("opened for alice/openai: {}", opened.masked());
    let bob = UserId::parse("bob")?;
    let stolen = vault.open(sealed, &Binding::new(&bob, ProviderKind::OpenAi));
    println!(
        "opened for bob/openai: {}",
        stolen.map_or_else(|e| e.to_string(), |k| k.masked().to_string())
    );

    // Rotate: a new active key, the old one retired, then rewrap every blob.
    let rotated = KeyVault::new(MasterKeyId::new(2), MasterKey::generate()).with_retired(
        MasterKeyId::new(1),
        MasterKey::from_base64(secrecy::ExposeSecret::expose_secret(&first_master_key))?,
    )?;
    for ((owner, provider), sealed) in &mut store.sealed {
        if rotated.needs_reseal(sealed) {
            *sealed = rotated.reseal(sealed, &Binding::new(owner, *provider))?;
        }
    }
    let after = &store.sealed[&(alice.clone(), ProviderKind::OpenAi)];
    println!(
        "after rewrap the blob names master key {:?}",
        after.master_key_id().map(MasterKeyId::get)
    );
    println!(
        "and still opens: {}",
        rotated.open(after, &binding)?.masked()
    );
    Ok(())
}
