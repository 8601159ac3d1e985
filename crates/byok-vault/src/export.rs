//! A passphrase-protected export of a user's provider keys, to move them
//! between byok installs (a desktop and a server) without the master key:
//! the keys are opened, then sealed again under a key derived from the
//! passphrase with Argon2id (memory-hard) and AES-256-GCM. Nothing is in
//! plain text; the KDF parameters and format are bound as associated data.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use byok_core::{ApiKey, ProviderKind};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::VaultError;

/// Random bytes from the operating system.
fn rand_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore as _;
    let mut bytes = [0u8; N];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The `format` field of an export file.
pub const EXPORT_FORMAT: &str = "byok-export";
/// Its version.
pub const EXPORT_VERSION: u32 = 1;
/// Argon2id memory in KiB (64 MiB), iterations and lanes for new exports.
pub const EXPORT_KDF: (u32, u32, u32) = (64 * 1024, 3, 1);
/// The most memory an export may ask to derive its key (256 MiB, four
/// times what byok writes): a crafted file cannot make an import exhaust the
/// machine.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Shortest passphrase accepted for a new export.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// One provider key and its settings, as an export carries it.
pub struct ExportedKey {
    /// The provider.
    pub provider: ProviderKind,
    /// The key's label.
    pub label: String,
    /// Its place in the provider's order.
    pub position: i32,
    /// Its weight among keys at the same position.
    pub weight: i32,
    /// Whether it is used.
    pub enabled: bool,
    /// Non-secret settings (Azure's endpoint and deployment, ...).
    pub settings: BTreeMap<String, String>,
    /// The key.
    pub api_key: ApiKey,
}

impl std::fmt::Debug for ExportedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedKey")
            .field("provider", &self.provider)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    kdf: Kdf,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct PlainKey {
    provider: ProviderKind,
    label: String,
    position: i32,
    weight: i32,
    enabled: bool,
    settings: BTreeMap<String, String>,
    api_key: String,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    keys: Vec<PlainKey>,
}

/// What binds the file's parameters to its ciphertext.
fn associated(file: &File) -> String {
    format!(
        "{}/{}/{}/{}/{}/{}/{}/{}",
        file.format,
        file.version,
        file.kdf.algorithm,
        file.kdf.memory_kib,
        file.kdf.iterations,
        file.kdf.parallelism,
        file.kdf.salt,
        file.cipher
    )
}

fn derive(
    passphrase: &SecretString,
    kdf: &Kdf,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    if kdf.algorithm != "argon2id"
        || kdf.memory_kib > MAX_MEMORY_KIB
        || kdf.iterations == 0
        || kdf.iterations > 8
        || salt.len() < 16
        || kdf.parallelism == 0
        || kdf.parallelism > 8
    {
        return Err(VaultError::Export("unsupported key derivation parameters"));
    }
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|_| VaultError::Export("unsupported key derivation parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, key.as_mut())
        .map_err(|_| VaultError::Export("the key could not be derived"))?;
    Ok(key)
}

/// Seals `keys` under `passphrase` (at least [`MIN_PASSPHRASE_CHARS`]
/// characters) as an export file's text.
///
/// # Errors
/// A short passphrase, or the cipher refusing.
pub fn seal_export(keys: &[ExportedKey], passphrase: &SecretString) -> Result<String, VaultError> {
    seal_export_with(keys, passphrase, EXPORT_KDF)
}

/// [`seal_export`] with explicit Argon2id parameters (memory KiB,
/// iterations, lanes).
///
/// # Errors
/// As [`seal_export`].
pub fn seal_export_with(
    keys: &[ExportedKey],
    passphrase: &SecretString,
    (memory_kib, iterations, parallelism): (u32, u32, u32),
) -> Result<String, VaultError> {
    if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(VaultError::Export(
            "the passphrase must be at least 12 characters",
        ));
    }
    let salt: [u8; 16] = rand_bytes();
    let nonce: [u8; 12] = rand_bytes();
    let mut file = File {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        kdf: Kdf {
            algorithm: "argon2id".to_owned(),
            memory_kib,
            iterations,
            parallelism,
            salt: STANDARD.encode(salt),
        },
        cipher: "aes-256-gcm".to_owned(),
        nonce: STANDARD.encode(nonce),
        ciphertext: String::new(),
    };
    let key = derive(passphrase, &file.kdf, &salt)?;
    let plain = Plain {
        keys: keys
            .iter()
            .map(|k| PlainKey {
                provider: k.provider,
                label: k.label.clone(),
                position: k.position,
                weight: k.weight,
                enabled: k.enabled,
                settings: k.settings.clone(),
                api_key: k.api_key.expose_secret().to_owned(),
            })
            .collect(),
    };
    let text = Zeroizing::new(serde_json::to_vec(&plain).map_err(|_| VaultError::Seal)?);
    for key in plain.keys {
        drop(Zeroizing::new(key.api_key));
    }
    let aad = associated(&file);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| VaultError::Seal)?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &text,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Seal)?;
    file.ciphertext = STANDARD.encode(sealed);
    serde_json::to_string_pretty(&file).map_err(|_| VaultError::Seal)
}

/// Writes an export file: a new file, owner-only (0600 on Unix); an
/// existing file is never replaced.
///
/// # Errors
/// The file exists, or cannot be written.
pub fn write_export_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Opens an export file's text with `passphrase`. A wrong passphrase and a
/// tampered file are the same error.
///
/// # Errors
/// [`VaultError::Export`] for a file that is not an export, [`VaultError::Open`]
/// for a wrong passphrase or a tampered file.
pub fn open_export(text: &str, passphrase: &SecretString) -> Result<Vec<ExportedKey>, VaultError> {
    let file: File =
        serde_json::from_str(text).map_err(|_| VaultError::Export("not a byok export file"))?;
    if file.format != EXPORT_FORMAT
        || file.version != EXPORT_VERSION
        || file.cipher != "aes-256-gcm"
    {
        return Err(VaultError::Export(
            "not a byok export file this version reads",
        ));
    }
    let salt = STANDARD
        .decode(&file.kdf.salt)
        .map_err(|_| VaultError::Export("not a byok export file"))?;
    let nonce = STANDARD
        .decode(&file.nonce)
        .ok()
        .filter(|n| n.len() == 12)
        .ok_or(VaultError::Export("not a byok export file"))?;
    let sealed = STANDARD
        .decode(&file.ciphertext)
        .map_err(|_| VaultError::Export("not a byok export file"))?;
    let key = derive(passphrase, &file.kdf, &salt)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| VaultError::Open)?;
    let aad = associated(&file);
    let text = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Open)?,
    );
    let plain: Plain = serde_json::from_slice(&text).map_err(|_| VaultError::Open)?;
    plain
        .keys
        .into_iter()
        .map(|k| {
            let api_key = ApiKey::parse(k.api_key).map_err(|_| VaultError::Open)?;
            Ok(ExportedKey {
                provider: k.provider,
                label: k.label,
                position: k.position,
                weight: k.weight,
                enabled: k.enabled,
                settings: k.settings,
                api_key,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small Argon2id parameters: the format and the cipher are what these
    /// tests check; one test runs the real ones.
    const FAST: (u32, u32, u32) = (64, 1, 1);

    fn keys() -> Vec<ExportedKey> {
        vec![ExportedKey {
            provider: ProviderKind::AzureOpenAi,
            label: "team".to_owned(),
            position: 0,
            weight: 2,
            enabled: false,
            settings: BTreeMap::from([(
                "endpoint".to_owned(),
                "https://r.openai.azure.com".to_owned(),
            )]),
            api_key: ApiKey::parse("0123456789abcdef0123456789abcdef").unwrap(),
        }]
    }

    fn passphrase() -> SecretString {
        SecretString::from("correct horse battery staple".to_owned())
    }

    #[test]
    fn an_export_opens_with_its_passphrase_only_and_holds_no_plain_key() {
        let text = seal_export_with(&keys(), &passphrase(), FAST).unwrap();
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(
            !text.contains("team") && !text.contains("azure"),
            "settings and labels are sealed too"
        );
        let opened = open_export(&text, &passphrase()).unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(
            opened[0].api_key.expose_secret(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(opened[0].provider, ProviderKind::AzureOpenAi);
        assert_eq!(
            (
                opened[0].label.as_str(),
                opened[0].weight,
                opened[0].enabled
            ),
            ("team", 2, false)
        );
        assert_eq!(opened[0].settings["endpoint"], "https://r.openai.azure.com");
        let wrong = SecretString::from("correct horse battery stapler".to_owned());
        assert!(matches!(open_export(&text, &wrong), Err(VaultError::Open)));
    }

    #[test]
    fn changed_parameters_or_ciphertext_do_not_open() {
        let text = seal_export_with(&keys(), &passphrase(), FAST).unwrap();
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        // The parameters are bound: a file claiming other ones does not open.
        file["kdf"]["iterations"] = serde_json::json!(2);
        assert!(matches!(
            open_export(&file.to_string(), &passphrase()),
            Err(VaultError::Open)
        ));
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut sealed = STANDARD
            .decode(file["ciphertext"].as_str().unwrap())
            .unwrap();
        sealed[0] ^= 1;
        file["ciphertext"] = serde_json::json!(STANDARD.encode(sealed));
        assert!(matches!(
            open_export(&file.to_string(), &passphrase()),
            Err(VaultError::Open)
        ));
    }

    #[test]
    fn hostile_files_and_short_passphrases_are_refused() {
        let short = SecretString::from("too short".to_owned());
        assert!(matches!(
            seal_export_with(&keys(), &short, FAST),
            Err(VaultError::Export(_))
        ));
        let text = seal_export_with(&keys(), &passphrase(), FAST).unwrap();
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        // A file asking for 4 TiB of memory is refused before deriving anything.
        file["kdf"]["memory_kib"] = serde_json::json!(u32::MAX);
        assert!(matches!(
            open_export(&file.to_string(), &passphrase()),
            Err(VaultError::Export(_))
        ));
        for junk in ["", "{}", "not json", r#"{"format":"other"}"#] {
            assert!(
                matches!(open_export(junk, &passphrase()), Err(VaultError::Export(_))),
                "{junk}"
            );
        }
        // Errors never carry the passphrase.
        let error = open_export("{}", &passphrase()).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("horse"));
    }

    #[test]
    fn new_exports_use_argon2id_with_64_mib() {
        let text = seal_export(&keys(), &passphrase()).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(file["kdf"]["algorithm"], "argon2id");
        assert_eq!(file["kdf"]["memory_kib"], 65_536);
        assert_eq!(open_export(&text, &passphrase()).unwrap().len(), 1);
    }
}
