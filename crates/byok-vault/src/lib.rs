#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod envelope;
mod error;
pub mod export;
mod master_key;
mod vault;

pub use envelope::{ALG_AES_256_GCM, Binding, FORMAT_V1, FORMAT_V2, HEADER_LEN, SealedKey};
pub use error::{Result, VaultError};
pub use export::{ExportedKey, open_export, seal_export};
pub use master_key::{MASTER_KEY_LEN, MasterKey, MasterKeyId};
pub use vault::KeyVault;
