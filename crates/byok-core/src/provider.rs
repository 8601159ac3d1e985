//! The providers byok can hold keys for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// An AI provider whose API keys a user can bring.
///
/// The wire name ([`ProviderKind::as_str`]) is the same in JSON, in URLs and
/// in the database, and parsing is exact: `OPENAI` or `openai ` is not a
/// provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProviderKind {
    /// OpenAI (`openai`).
    #[serde(rename = "openai")]
    OpenAi,
    /// DeepSeek (`deepseek`).
    #[serde(rename = "deepseek")]
    DeepSeek,
    /// Anthropic (`anthropic`).
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini (`gemini`).
    #[serde(rename = "gemini")]
    Gemini,
    /// Azure OpenAI (`azure_openai`).
    #[serde(rename = "azure_openai")]
    AzureOpenAi,
}

impl ProviderKind {
    /// Every provider, in a stable order.
    pub const ALL: [Self; 5] = [
        Self::OpenAi,
        Self::DeepSeek,
        Self::Anthropic,
        Self::Gemini,
        Self::AzureOpenAi,
    ];

    /// The wire name: `openai`, `deepseek`, `anthropic`, `gemini` or `azure_openai`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::DeepSeek => "deepseek",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::AzureOpenAi => "azure_openai",
        }
    }

    /// A human-readable name, for settings pages and messages.
    #[must_use]
    pub const fn display_name(self) -> &'static str {
        match self {
            Self::OpenAi => "OpenAI",
            Self::DeepSeek => "DeepSeek",
            Self::Anthropic => "Anthropic",
            Self::Gemini => "Google Gemini",
            Self::AzureOpenAi => "Azure OpenAI",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = CoreError;

    /// Parses a wire name exactly (case-sensitive, no trimming).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(CoreError::UnknownProvider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_exactly_the_documented_strings() {
        let names: Vec<_> = ProviderKind::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            ["openai", "deepseek", "anthropic", "gemini", "azure_openai"]
        );
    }

    #[test]
    fn json_and_from_str_agree_with_as_str() {
        for kind in ProviderKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ProviderKind>(&json).unwrap(), kind);
            assert_eq!(kind.as_str().parse::<ProviderKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn near_misses_are_not_providers() {
        for bad in [
            "OPENAI",
            "OpenAI",
            "openai ",
            " openai",
            "openai\0",
            "open_ai",
            "azure-openai",
            "azure",
            "google",
            "",
            "openai/../admin",
        ] {
            assert_eq!(
                bad.parse::<ProviderKind>(),
                Err(CoreError::UnknownProvider),
                "{bad:?}"
            );
        }
    }
}
