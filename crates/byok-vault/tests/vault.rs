//! Behaviour of the vault as a caller sees it: round trips, tampering,
//! bindings, formats and rotation.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on a bad fixture"
)]

use std::collections::HashSet;

use byok_core::{ApiKey, ProviderKind, UserId};
use byok_vault::{Binding, HEADER_LEN, KeyVault, MasterKey, MasterKeyId, SealedKey, VaultError};
use proptest::prelude::*;

const KEY: &str = "sk-proj-CANARY-4f2b9c1e7d3a8b6c5e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b";

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn key() -> ApiKey {
    ApiKey::parse(KEY).unwrap()
}

fn vault(id: u32, bytes: [u8; 32]) -> KeyVault {
    KeyVault::new(MasterKeyId::new(id), MasterKey::from_bytes(bytes))
}

fn sealed_for_alice(vault: &KeyVault) -> SealedKey {
    let alice = user("alice");
    vault
        .seal(&key(), &Binding::new(&alice, ProviderKind::OpenAi))
        .unwrap()
}

fn opens_for(
    vault: &KeyVault,
    sealed: &SealedKey,
    owner: &str,
    provider: ProviderKind,
) -> Result<String, VaultError> {
    let owner = user(owner);
    vault
        .open(sealed, &Binding::new(&owner, provider))
        .map(|k| k.expose_secret().to_owned())
}

proptest! {
    #[test]
    fn any_key_round_trips_for_any_binding(
        raw in "[!-~]{1,512}",
        owner in "[A-Za-z0-9._@-]{1,64}",
        provider in prop::sample::select(ProviderKind::ALL.to_vec()),
    ) {
        let vault = vault(1, [3; 32]);
        let owner = user(&owner);
        let binding = Binding::new(&owner, provider);
        let sealed = vault.seal(&ApiKey::parse(raw.clone()).unwrap(), &binding).unwrap();
        prop_assert_eq!(sealed.as_bytes().len(), HEADER_LEN + raw.len() + 16);
        prop_assert!(!sealed.as_bytes().windows(raw.len()).any(|w| w == raw.as_bytes()) || raw.len() < 4);
        let opened = vault.open(&sealed, &binding).unwrap();
        prop_assert_eq!(opened.expose_secret(), raw.as_str());
    }
}

#[test]
fn every_single_bit_flip_fails_to_open_and_leaves_the_blob_unchanged() {
    let vault = vault(1, [5; 32]);
    let sealed = sealed_for_alice(&vault);
    let original = sealed.as_bytes().to_vec();
    for byte in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[byte] ^= 1 << bit;
            let tampered = SealedKey::from_bytes(bytes.clone());
            assert_eq!(
                opens_for(&vault, &tampered, "alice", ProviderKind::OpenAi),
                Err(VaultError::Open),
                "byte {byte} bit {bit}"
            );
            assert_eq!(
                tampered.as_bytes(),
                bytes.as_slice(),
                "input must not be modified"
            );
        }
    }
    assert_eq!(
        opens_for(&vault, &sealed, "alice", ProviderKind::OpenAi).unwrap(),
        KEY
    );
}

#[test]
fn a_blob_copied_to_another_user_or_provider_does_not_open() {
    let vault = vault(1, [5; 32]);
    let sealed = sealed_for_alice(&vault);
    for other in ["bob", "Alice", "alice.", "alicf", "alic"] {
        assert_eq!(
            opens_for(&vault, &sealed, other, ProviderKind::OpenAi),
            Err(VaultError::Open)
        );
    }
    for provider in ProviderKind::ALL
        .into_iter()
        .filter(|p| *p != ProviderKind::OpenAi)
    {
        assert_eq!(
            opens_for(&vault, &sealed, "alice", provider),
            Err(VaultError::Open)
        );
    }
}

#[test]
fn unknown_version_algorithm_or_key_id_fails_like_everything_else() {
    let vault = vault(1, [5; 32]);
    let sealed = sealed_for_alice(&vault);
    let cases: [(usize, &[u8]); 3] = [
        (0, &[0, 2, 0xff]),    // format version
        (1, &[0, 2, 0xff]),    // algorithm
        (5, &[0, 2, 7, 0xff]), // low byte of the master-key id
    ];
    for (offset, values) in cases {
        for &value in values {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[offset] = value;
            let relabelled = SealedKey::from_bytes(bytes);
            assert_eq!(
                opens_for(&vault, &relabelled, "alice", ProviderKind::OpenAi),
                Err(VaultError::Open),
                "offset {offset} value {value}"
            );
        }
    }
    // The header still says which key is missing, for the operator's log.
    let mut bytes = sealed.as_bytes().to_vec();
    bytes[5] = 7;
    assert_eq!(
        SealedKey::from_bytes(bytes).master_key_id(),
        Some(MasterKeyId::new(7))
    );
}

#[test]
fn truncated_or_extended_blobs_fail_cleanly() {
    let vault = vault(1, [5; 32]);
    let sealed = sealed_for_alice(&vault);
    let bytes = sealed.as_bytes();
    for len in 0..bytes.len() {
        let truncated = SealedKey::from_bytes(bytes[..len].to_vec());
        assert_eq!(
            opens_for(&vault, &truncated, "alice", ProviderKind::OpenAi),
            Err(VaultError::Open),
            "len {len}"
        );
    }
    let mut extended = bytes.to_vec();
    extended.push(0);
    assert_eq!(
        opens_for(
            &vault,
            &SealedKey::from_bytes(extended),
            "alice",
            ProviderKind::OpenAi
        ),
        Err(VaultError::Open)
    );
}

#[test]
fn a_different_master_key_with_the_same_id_does_not_open() {
    let sealed = sealed_for_alice(&vault(1, [5; 32]));
    assert_eq!(
        opens_for(&vault(1, [6; 32]), &sealed, "alice", ProviderKind::OpenAi),
        Err(VaultError::Open)
    );
}

#[test]
fn rotation_keeps_old_blobs_open_and_reseal_moves_them() {
    let v1 = [11u8; 32];
    let v2 = [22u8; 32];
    let old_vault = vault(1, v1);
    let old_blob = sealed_for_alice(&old_vault);

    // Step 1: v2 active, v1 retired. Old blobs open, new ones use v2.
    let rotating = vault(2, v2)
        .with_retired(MasterKeyId::new(1), MasterKey::from_bytes(v1))
        .unwrap();
    assert_eq!(
        opens_for(&rotating, &old_blob, "alice", ProviderKind::OpenAi).unwrap(),
        KEY
    );
    assert!(rotating.needs_reseal(&old_blob));
    let new_blob = sealed_for_alice(&rotating);
    assert_eq!(new_blob.master_key_id(), Some(MasterKeyId::new(2)));
    assert!(!rotating.needs_reseal(&new_blob));

    // Step 2: rewrap.
    let alice = user("alice");
    let binding = Binding::new(&alice, ProviderKind::OpenAi);
    let rewrapped = rotating.reseal(&old_blob, &binding).unwrap();
    assert_eq!(rewrapped.master_key_id(), Some(MasterKeyId::new(2)));
    assert_ne!(
        rewrapped.as_bytes()[6..18],
        old_blob.as_bytes()[6..18],
        "fresh nonce"
    );

    // Step 3: v1 removed. Rewrapped blobs open, unrewrapped ones do not.
    let after = vault(2, v2);
    assert_eq!(
        opens_for(&after, &rewrapped, "alice", ProviderKind::OpenAi).unwrap(),
        KEY
    );
    assert_eq!(
        opens_for(&after, &old_blob, "alice", ProviderKind::OpenAi),
        Err(VaultError::Open)
    );
    // A reseal never moves a blob to another binding.
    assert_eq!(
        rotating.reseal(&old_blob, &Binding::new(&user("bob"), ProviderKind::OpenAi)),
        Err(VaultError::Open)
    );
}

#[test]
fn duplicate_master_key_ids_are_refused() {
    let err = vault(1, [1; 32])
        .with_retired(MasterKeyId::new(1), MasterKey::generate())
        .unwrap_err();
    assert_eq!(err, VaultError::DuplicateKeyId(MasterKeyId::new(1)));
    assert_eq!(err.code(), "duplicate_master_key_id");
}

#[test]
fn nonces_and_ciphertexts_never_repeat() {
    let vault = vault(1, [5; 32]);
    let alice = user("alice");
    let binding = Binding::new(&alice, ProviderKind::OpenAi);
    let key = key();
    let mut nonces = HashSet::new();
    let mut blobs = HashSet::new();
    let n = 20_000;
    for _ in 0..n {
        let sealed = vault.seal(&key, &binding).unwrap();
        nonces.insert(sealed.as_bytes()[6..18].to_vec());
        blobs.insert(sealed.into_bytes());
    }
    assert_eq!(nonces.len(), n);
    assert_eq!(blobs.len(), n);
}

#[test]
fn no_secret_in_any_debug_or_error_output() {
    let bytes = [0x5a; 32];
    let vault = vault(1, bytes)
        .with_retired(MasterKeyId::new(9), MasterKey::generate())
        .unwrap();
    let alice = user("alice");
    let binding = Binding::new(&alice, ProviderKind::OpenAi);
    let sealed = vault.seal(&key(), &binding).unwrap();
    let opened = vault.open(&sealed, &binding).unwrap();
    let err = vault
        .open(&SealedKey::from_bytes(vec![1; 40]), &binding)
        .unwrap_err();
    let master = MasterKey::from_bytes(bytes);
    let output = format!(
        "{vault:?} {sealed:?} {opened:?} {err:?} {err} {master:?} {binding:?} {:?}",
        master.to_base64()
    );
    assert!(!output.contains("CANARY"), "{output}");
    assert!(
        !output.contains("ZZZZ"),
        "master key base64 leaked: {output}"
    ); // 0x5a... in base64
    assert!(
        !output.contains(&format!("{:?}", &sealed.as_bytes()[18..26])),
        "{output}"
    );
    assert!(output.contains("[REDACTED]") && output.contains("MasterKey(..)"));
}

#[test]
fn a_key_bound_to_its_id_opens_only_with_that_id_and_never_as_version_1() {
    let vault = KeyVault::new(MasterKeyId::new(1), MasterKey::from_bytes([7; 32]));
    let alice = UserId::parse("alice").unwrap();
    let key = ApiKey::parse("sk-proj-abcdefghijklmnop").unwrap();
    let bound = Binding::for_key(&alice, ProviderKind::OpenAi, "key-1");
    let sealed = vault.seal(&key, &bound).unwrap();
    assert_eq!(sealed.format_version(), Some(byok_vault::FORMAT_V2));
    assert_eq!(
        vault.open(&sealed, &bound).unwrap().expose_secret(),
        key.expose_secret()
    );
    // Another key's id, no id at all, or a version byte flipped to 1: refused.
    let other = Binding::for_key(&alice, ProviderKind::OpenAi, "key-2");
    assert!(vault.open(&sealed, &other).is_err());
    let legacy = Binding::new(&alice, ProviderKind::OpenAi);
    assert!(vault.open(&sealed, &legacy).is_err());
    let mut downgraded = sealed.as_bytes().to_vec();
    downgraded[0] = byok_vault::FORMAT_V1;
    assert!(
        vault
            .open(&SealedKey::from_bytes(downgraded), &legacy)
            .is_err()
    );
    // A version-1 blob is upgraded by rebinding, and then opens only with its id.
    let old = vault.seal(&key, &legacy).unwrap();
    assert_eq!(old.format_version(), Some(byok_vault::FORMAT_V1));
    assert!(vault.open(&old, &bound).is_err());
    let upgraded = vault.rebind(&old, &legacy, &bound).unwrap();
    assert_eq!(
        vault.open(&upgraded, &bound).unwrap().expose_secret(),
        key.expose_secret()
    );
    assert!(vault.open(&upgraded, &legacy).is_err());
}
