//! Token estimates for answers whose provider reported no usage (a stream
//! cut short, an Azure api-version without stream usage, Gemini embeddings).
//! OpenAI-family models are counted with their real tokenizer (`o200k_base`,
//! bundled, loaded on first use); other providers' tokenizers are not
//! available offline, so their text is counted at four bytes a token. Either
//! way the cost is recorded as *estimated*, never as exact.

use std::sync::OnceLock;

use byok_core::ProviderKind;

/// How a token count was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// OpenAI's `o200k_base` tokenizer.
    Tokenizer,
    /// Four bytes a token.
    Bytes,
}

fn o200k() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Estimated tokens of `texts` for `provider`'s models, and how.
#[must_use]
pub fn tokens<'a>(
    provider: ProviderKind,
    texts: impl IntoIterator<Item = &'a str>,
) -> (u64, Method) {
    let openai_family = matches!(provider, ProviderKind::OpenAi | ProviderKind::AzureOpenAi);
    match o200k().filter(|_| openai_family) {
        Some(bpe) => (
            texts
                .into_iter()
                .map(|t| bpe.encode_ordinary(t).len() as u64)
                .sum(),
            Method::Tokenizer,
        ),
        None => (
            texts
                .into_iter()
                .map(|t| (t.len() as u64).div_ceil(4))
                .sum(),
            Method::Bytes,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_text_is_counted_with_its_tokenizer() {
        // "hello world" is two o200k tokens; four bytes a token would say three.
        assert_eq!(
            tokens(ProviderKind::OpenAi, ["hello world"]),
            (2, Method::Tokenizer)
        );
        assert_eq!(
            tokens(ProviderKind::Anthropic, ["hello world"]),
            (3, Method::Bytes)
        );
        assert_eq!(tokens(ProviderKind::AzureOpenAi, ["a", "b"]).0, 2);
    }
}
