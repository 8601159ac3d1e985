//! Per-provider key shapes (providers.md §6): strict enough to catch a pasted
//! `Bearer ` prefix, quotes, a truncated key or another provider's key, loose
//! enough for every real shape seen.

use byok_core::{ApiKey, ProviderKind};

/// A key that does not have its provider's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{provider} keys {expected}")]
pub struct KeyFormatError {
    /// The provider the key was given for.
    pub provider: ProviderKind,
    /// The shape expected, in words (also shown as the hint on settings pages).
    pub expected: &'static str,
}

impl KeyFormatError {
    /// Always `invalid_key_format`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        "invalid_key_format"
    }
}

/// The shape `provider`'s keys have, in words.
#[must_use]
pub fn hint(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::OpenAi => {
            "start with sk- (sk-proj-, sk-svcacct-) and are 40 to 300 characters; admin keys (sk-admin-) cannot be used"
        }
        ProviderKind::DeepSeek => {
            "start with sk- followed by 20 to 64 letters and digits (usually 32 hex characters)"
        }
        ProviderKind::Anthropic => "start with sk-ant-api03- (108 characters in all)",
        ProviderKind::Gemini => {
            "start with AIza (39 characters) or look like AQ. followed by 30 to 120 characters"
        }
        ProviderKind::AzureOpenAi => "are 32 hex characters or 84 letters and digits",
        _ => "have an unknown shape",
    }
}

fn body_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks `key` against `provider`'s shapes.
///
/// # Errors
/// [`KeyFormatError`] naming the provider and the expected shape; it never
/// quotes the key.
pub fn check(provider: ProviderKind, key: &ApiKey) -> Result<(), KeyFormatError> {
    let k = key.expose_secret();
    let ok = match provider {
        ProviderKind::OpenAi => {
            k.starts_with("sk-")
                && !k.starts_with("sk-ant-")
                && !k.starts_with("sk-admin-")
                && (40..=300).contains(&k.len())
                && body_chars(&k[3..])
        }
        ProviderKind::DeepSeek => k.strip_prefix("sk-").is_some_and(|rest| {
            (20..=64).contains(&rest.len())
                && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                && !rest.contains("T3BlbkFJ")
        }),
        ProviderKind::Anthropic => k.strip_prefix("sk-ant-api").is_some_and(|rest| {
            let (version, body) = rest.split_at_checked(3).unwrap_or(("", ""));
            version.len() == 3
                && version[..2].bytes().all(|b| b.is_ascii_digit())
                && version.ends_with('-')
                && body.len() >= 20
                && body_chars(body)
        }),
        ProviderKind::Gemini => {
            let legacy = k.len() == 39 && k.starts_with("AIza") && body_chars(&k[4..]);
            let auth = k.split_at_checked(3).is_some_and(|(prefix, body)| {
                prefix.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
                    && prefix.ends_with('.')
                    && (30..=120).contains(&body.len())
                    && body_chars(body)
            });
            legacy || auth
        }
        ProviderKind::AzureOpenAi => {
            (k.len() == 32
                && k.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                || (k.len() == 84 && k.bytes().all(|b| b.is_ascii_alphanumeric()))
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(KeyFormatError {
            provider,
            expected: hint(provider),
        })
    }
}

/// A warning when `key` is of a kind its provider is retiring: Google
/// rejects unrestricted standard (`AIza`) Gemini keys and is phasing standard
/// keys out for auth keys (`AQ.`).
#[must_use]
pub fn retiring_kind(provider: ProviderKind, key: &ApiKey) -> Option<&'static str> {
    (provider == ProviderKind::Gemini && key.expose_secret().starts_with("AIza")).then_some(
        "this is a standard Google API key (AIza…): Google rejects unrestricted ones and is retiring standard keys; create an auth key (AQ.…) in AI Studio (https://aistudio.google.com/apikey)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> ApiKey {
        ApiKey::parse(raw).unwrap()
    }

    fn repeat(unit: &str, n: usize) -> String {
        unit.repeat(n)
    }

    #[test]
    fn real_shapes_are_accepted() {
        let cases = [
            (
                ProviderKind::OpenAi,
                format!("sk-proj-{}T3BlbkFJ{}", repeat("Ab1_-", 20), repeat("x", 40)),
            ),
            (
                ProviderKind::OpenAi,
                format!("sk-svcacct-{}", repeat("Zz9", 30)),
            ),
            (
                ProviderKind::OpenAi,
                format!("sk-None-{}", repeat("a1", 24)),
            ),
            (ProviderKind::OpenAi, format!("sk-{}", repeat("aB3", 16))), // legacy 51 characters
            (
                ProviderKind::DeepSeek,
                format!("sk-{}", repeat("0123456789abcdef", 2)),
            ),
            (
                ProviderKind::Anthropic,
                format!("sk-ant-api03-{}AA", repeat("aZ0_-", 18) + "abc"),
            ),
            (ProviderKind::Gemini, format!("AIza{}", repeat("Sy_-0", 7))),
            (
                ProviderKind::Gemini,
                format!("AQ.Ab8RN6{}", repeat("k", 44)),
            ),
            (ProviderKind::AzureOpenAi, repeat("0123456789abcdef", 2)),
            (
                ProviderKind::AzureOpenAi,
                format!(
                    "{}JQQJ99AB{}XJ3w3AAAAACOG{}",
                    repeat("a1B2", 13),
                    "AC12345",
                    "wxyz"
                ),
            ),
        ];
        for (provider, raw) in cases {
            assert!(
                check(provider, &key(&raw)).is_ok(),
                "{provider}: {raw} ({} chars)",
                raw.len()
            );
        }
    }

    #[test]
    fn wrong_shapes_are_refused_without_quoting_the_key() {
        let anthropic = format!("sk-ant-api03-{}AA", repeat("a", 93));
        let openai = format!("sk-proj-{}", repeat("x", 60));
        let cases = [
            (ProviderKind::OpenAi, anthropic.clone()),
            (
                ProviderKind::OpenAi,
                format!("sk-admin-{}", repeat("x", 60)),
            ),
            (ProviderKind::OpenAi, "sk-proj-tooshort".to_owned()),
            (ProviderKind::OpenAi, format!("\"{openai}\"")),
            (ProviderKind::OpenAi, format!("Bearer:{openai}")),
            (ProviderKind::OpenAi, format!("AIza{}", repeat("a", 35))),
            (ProviderKind::DeepSeek, openai.clone()),
            (
                ProviderKind::DeepSeek,
                format!("sk-{}T3BlbkFJ{}", repeat("a", 20), repeat("b", 20)),
            ),
            (ProviderKind::Anthropic, openai.clone()),
            (
                ProviderKind::Anthropic,
                "sk-ant-admin01-abcdefghijklmnopqrstuvwxyz".to_owned(),
            ),
            (ProviderKind::Gemini, format!("AIza{}", repeat("a", 34))),
            (ProviderKind::Gemini, openai.clone()),
            (
                ProviderKind::Gemini,
                "ya29.abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
            ),
            (ProviderKind::AzureOpenAi, repeat("0123456789ABCDEF", 2)),
            (ProviderKind::AzureOpenAi, openai.clone()),
        ];
        for (provider, raw) in cases {
            let err = check(provider, &key(&raw)).unwrap_err();
            assert_eq!(err.code(), "invalid_key_format");
            assert!(err.to_string().starts_with(provider.as_str()), "{err}");
            assert!(!err.to_string().contains(&raw[raw.len() - 8..]), "{err}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any key a user can paste: checked for every provider without a
        /// panic, and a refusal never quotes it.
        #[test]
        fn any_key_is_checked_without_echoing_it(
            // A random tail of 16 or more: refusals name expected prefixes
            // (`sk-ant-api03-`), which a key made of a prefix alone would match.
            raw in prop_oneof![
                "(sk-|sk-ant-api03-|sk-proj-|AIza|AQ\\.)?[A-Za-z0-9_.-]{16,140}",
                "[!-~]{16,80}",
            ],
        ) {
            if let Ok(key) = ApiKey::parse(&raw) {
                for provider in ProviderKind::ALL {
                    if let Err(error) = check(provider, &key) {
                        let text = format!("{error} {error:?}");
                        prop_assert!(!text.contains(&raw), "{text}");
                    }
                    let _ = retiring_kind(provider, &key);
                }
            }
        }
    }
}
