//! Secret API keys and their display-safe masked form.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::CoreError;

/// The longest API key accepted, in bytes, after trimming.
pub const MAX_KEY_LEN: usize = 512;

/// How many characters a mask shows at each end of a key.
const SHOWN: usize = 4;
/// Keys of this many characters or fewer are masked entirely.
const FULLY_MASKED_UP_TO: usize = 12;
/// The fixed middle of every mask; fixed so a mask does not reveal the length.
const MIDDLE: &str = "********";
/// The mask of a short key: as wide as every other mask.
const FULL_MASK: &str = "****************";
const MASK_LEN: usize = 2 * SHOWN + MIDDLE.len();

/// A provider API key supplied by a user.
///
/// The value lives in a [`SecretString`], so it is zeroized when the key is
/// dropped. There is deliberately no `Serialize`, `Display` or `Clone`, and
/// `Debug` prints `ApiKey([REDACTED])`: the raw value is reachable only
/// through [`ApiKey::expose_secret`], to be called at the point of use (the
/// vault's seal, an HTTP header).
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Validates a pasted key: surrounding ASCII whitespace is trimmed, then
    /// the key must be 1 to [`MAX_KEY_LEN`] bytes of printable ASCII with no
    /// spaces. The untrimmed input is zeroized.
    ///
    /// # Errors
    /// [`CoreError::KeyEmpty`], [`CoreError::KeyTooLong`] or
    /// [`CoreError::KeyInvalidChars`]; none of them quotes the input.
    pub fn parse(raw: impl Into<String>) -> Result<Self, CoreError> {
        let raw = Zeroizing::new(raw.into());
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(CoreError::KeyEmpty);
        }
        if trimmed.len() > MAX_KEY_LEN {
            return Err(CoreError::KeyTooLong);
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CoreError::KeyInvalidChars);
        }
        Ok(Self(SecretString::from(trimmed.to_owned())))
    }

    /// Returns the raw key. Call it only where the key must leave its
    /// wrapper: sealing it, or writing it into a request header.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The display-safe form of this key; see [`MaskedKey`].
    #[must_use]
    pub fn masked(&self) -> MaskedKey {
        MaskedKey::of(self.expose_secret())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// The display form of an [`ApiKey`]: its first 4 and last 4 characters
/// around a fixed `********`, or `****************` for keys of 12 characters
/// or fewer.
///
/// Every mask is 16 characters wide whatever the key's length, and shows at
/// most 8 characters of the key. This is the only key type that implements
/// `Serialize`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MaskedKey(String);

impl MaskedKey {
    fn of(raw: &str) -> Self {
        // Validated keys are ASCII, so counting bytes counts characters; the
        // char-based branch only keeps masking total for any input.
        if raw.is_ascii() {
            if raw.len() <= FULLY_MASKED_UP_TO {
                return Self(FULL_MASK.to_owned());
            }
            let mut out = String::with_capacity(MASK_LEN);
            out.push_str(&raw[..SHOWN]);
            out.push_str(MIDDLE);
            out.push_str(&raw[raw.len() - SHOWN..]);
            return Self(out);
        }
        let chars: Vec<char> = raw.chars().collect();
        if chars.len() <= FULLY_MASKED_UP_TO {
            return Self(FULL_MASK.to_owned());
        }
        let mut out = String::with_capacity(MASK_LEN);
        out.extend(&chars[..SHOWN]);
        out.push_str(MIDDLE);
        out.extend(&chars[chars.len() - SHOWN..]);
        Self(out)
    }

    /// Rebuilds a mask read back from storage, checking it has a mask's shape
    /// so that nothing longer than a mask can pose as one.
    ///
    /// # Errors
    /// [`CoreError::NotMasked`] when `stored` is not 16 characters with
    /// `********` in the middle (or all asterisks).
    pub fn from_stored(stored: impl Into<String>) -> Result<Self, CoreError> {
        let stored = stored.into();
        if Self::looks_masked(&stored) {
            Ok(Self(stored))
        } else {
            Err(CoreError::NotMasked)
        }
    }

    /// Whether `value` has the shape of a mask. Useful to refuse a mask that a
    /// client echoes back as if it were a new key.
    #[must_use]
    pub fn looks_masked(value: &str) -> bool {
        value.len() == MASK_LEN
            && value.bytes().all(|b| b.is_ascii_graphic())
            && value.get(SHOWN..SHOWN + MIDDLE.len()) == Some(MIDDLE)
    }

    /// The mask as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: &str = "sk-proj-CANARY-abcdefghijklmnopqrstuvwxyz-0123456789";

    #[test]
    fn debug_never_prints_the_key() {
        let key = ApiKey::parse(KEY).unwrap();
        let debug = format!("{key:?} {:?}", Some(&key));
        assert_eq!(debug, "ApiKey([REDACTED]) Some(ApiKey([REDACTED]))");
        assert!(!debug.contains("CANARY"));
    }

    #[test]
    fn parse_trims_ascii_whitespace_only_at_the_ends() {
        let key = ApiKey::parse(format!(" \t{KEY}\r\n")).unwrap();
        assert_eq!(key.expose_secret(), KEY);
    }

    #[test]
    fn parse_rejects_bad_keys_with_stable_codes_and_no_echo() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let cases = [
            ("", "key_empty"),
            (" \n\t ", "key_empty"),
            (long.as_str(), "key_too_long"),
            ("sk-abc def", "key_invalid_chars"),
            ("sk-abc\0def", "key_invalid_chars"),
            ("sk-abc\u{200b}def", "key_invalid_chars"),
            ("sk-аbcdef", "key_invalid_chars"), // Cyrillic a
            ("Bearer sk-abcdef", "key_invalid_chars"),
        ];
        for (raw, code) in cases {
            let err = ApiKey::parse(raw).unwrap_err();
            assert_eq!(err.code(), code, "{raw:?}");
            assert!(!err.to_string().contains("abc"), "{err}");
        }
        assert!(ApiKey::parse("k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn mask_rules_by_length() {
        let key = |n: usize| ApiKey::parse("abcdefghijklmnopqrstuvwxyz".repeat(8)[..n].to_owned());
        assert_eq!(key(8).unwrap().masked().as_str(), "****************");
        assert_eq!(key(12).unwrap().masked().as_str(), "****************");
        assert_eq!(key(13).unwrap().masked().as_str(), "abcd********jklm");
        assert_eq!(key(40).unwrap().masked().as_str(), "abcd********klmn");
        assert_eq!(key(200).unwrap().masked().as_str(), "abcd********opqr");
    }

    #[test]
    fn masking_is_total_on_non_ascii_input() {
        assert_eq!(MaskedKey::of("ключ-ключ-ключ").as_str(), "ключ********ключ");
        assert_eq!(MaskedKey::of("ключ").as_str(), FULL_MASK);
    }

    #[test]
    fn masked_key_serialises_as_a_plain_string() {
        let masked = ApiKey::parse(KEY).unwrap().masked();
        assert_eq!(
            serde_json::to_string(&masked).unwrap(),
            "\"sk-p********6789\""
        );
        assert_eq!(masked.to_string(), "sk-p********6789");
    }

    #[test]
    fn from_stored_accepts_masks_only() {
        let masked = ApiKey::parse(KEY).unwrap().masked();
        assert_eq!(MaskedKey::from_stored(masked.as_str()).unwrap(), masked);
        assert!(MaskedKey::from_stored(FULL_MASK).is_ok());
        for bad in [
            KEY,
            "",
            "sk-p*******6789",
            "sk-p********67890",
            "sk-p********67 9",
        ] {
            assert_eq!(
                MaskedKey::from_stored(bad),
                Err(CoreError::NotMasked),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn mask_is_fixed_width_and_shows_at_most_eight_key_chars(
            raw in "[!-~]{1,512}"
        ) {
            let masked = ApiKey::parse(raw.clone()).unwrap().masked();
            let m = masked.as_str();
            prop_assert_eq!(m.len(), 16);
            prop_assert!(MaskedKey::looks_masked(m));
            if raw.len() <= 12 {
                prop_assert_eq!(m, FULL_MASK);
            } else {
                prop_assert_eq!(&m[..4], &raw[..4]);
                prop_assert_eq!(&m[12..], &raw[raw.len() - 4..]);
                prop_assert_eq!(&m[4..12], MIDDLE);
            }
        }

        #[test]
        fn parse_round_trips_every_valid_key(raw in "[!-~]{1,512}") {
            let key = ApiKey::parse(raw.clone()).unwrap();
            prop_assert_eq!(key.expose_secret(), raw.as_str());
        }
    }
}
