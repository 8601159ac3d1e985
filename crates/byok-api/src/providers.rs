//! What the settings page and API clients need to know about each provider,
//! and validation of the non-secret settings a key carries.

use byok_core::ProviderKind;
use byok_store::keys::KeySettings;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ServiceError;

/// One input a provider's key needs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderField {
    /// The JSON field name in the save request.
    pub name: &'static str,
    /// Whether the field must be given.
    pub required: bool,
    /// Whether the value is secret (shown as a password field).
    pub secret: bool,
    /// What to enter.
    pub description: &'static str,
}

/// A provider as the settings page shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderInfo {
    /// The wire id: `openai`, `deepseek`, `anthropic`, `gemini` or `azure_openai`.
    #[schema(value_type = String, example = "openai")]
    pub id: ProviderKind,
    /// A human-readable name.
    pub display_name: &'static str,
    /// What it is best for.
    pub best_for: &'static str,
    /// The fields its key needs.
    pub fields: Vec<ProviderField>,
    /// What a key looks like.
    pub key_format_hint: &'static str,
    /// Where to create a key.
    pub console_url: &'static str,
}

const API_KEY: ProviderField = ProviderField {
    name: "api_key",
    required: true,
    secret: true,
    description: "the provider API key",
};

/// Every provider, in a stable order.
#[must_use]
pub fn catalog() -> Vec<ProviderInfo> {
    ProviderKind::ALL.into_iter().map(info).collect()
}

/// What the settings page shows for `provider`.
#[must_use]
pub fn info(provider: ProviderKind) -> ProviderInfo {
    let (best_for, console_url) = match provider {
        ProviderKind::OpenAi => (
            "general chat, code, embeddings and reasoning (o-series)",
            "https://platform.openai.com/api-keys",
        ),
        ProviderKind::DeepSeek => (
            "low-cost chat and reasoning (deepseek-flash, deepseek-v4-pro)",
            "https://platform.deepseek.com/api_keys",
        ),
        ProviderKind::Anthropic => (
            "careful writing, long context and code (Claude)",
            "https://console.anthropic.com/settings/keys",
        ),
        ProviderKind::Gemini => (
            "long context, multimodal input and embeddings; a free tier",
            "https://aistudio.google.com/apikey",
        ),
        ProviderKind::AzureOpenAi => (
            "OpenAI models in your own Azure resource and region",
            "https://portal.azure.com/",
        ),
        _ => ("", ""),
    };
    let hint = byok_providers::key_format::hint(provider);
    let mut fields = vec![API_KEY];
    if provider == ProviderKind::Anthropic {
        fields.push(ProviderField {
            name: "workspace_id",
            required: false,
            secret: false,
            description: "wrkspc_… — only for keys bound to a workspace or a person (Anthropic then requires it)",
        });
    }
    if provider == ProviderKind::AzureOpenAi {
        fields.extend([
            ProviderField {
                name: "endpoint",
                required: true,
                secret: false,
                description: "https://<resource>.openai.azure.com",
            },
            ProviderField {
                name: "deployment",
                required: true,
                secret: false,
                description: "the chat model deployment name",
            },
            ProviderField {
                name: "api_version",
                required: false,
                secret: false,
                description: "v1 (default: the /openai/v1 API) or a dated version such as 2024-10-21",
            },
            ProviderField {
                name: "embedding_deployment",
                required: false,
                secret: false,
                description: "the embedding model deployment name",
            },
        ]);
    }
    ProviderInfo {
        id: provider,
        display_name: provider.display_name(),
        best_for,
        fields,
        key_format_hint: hint,
        console_url,
    }
}

/// The non-secret inputs that come with a key (Azure's, today).
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// Azure: `https://<resource>.openai.azure.com`.
    pub endpoint: Option<String>,
    /// Azure: the chat deployment.
    pub deployment: Option<String>,
    /// Azure: the API version.
    pub api_version: Option<String>,
    /// Azure: the embedding deployment.
    pub embedding_deployment: Option<String>,
    /// Anthropic: the workspace id a workspace-bound key needs.
    pub workspace_id: Option<String>,
}

impl KeyOptions {
    fn is_empty(&self) -> bool {
        self.endpoint.is_none()
            && self.deployment.is_none()
            && self.api_version.is_none()
            && self.embedding_deployment.is_none()
            && self.workspace_id.is_none()
    }

    fn azure_only_is_empty(&self) -> bool {
        KeyOptions {
            workspace_id: None,
            ..self.clone()
        }
        .is_empty()
    }
}

/// Checks `options` for `provider` and turns them into stored settings.
///
/// # Errors
/// [`ServiceError::Invalid`] naming the field that is missing or malformed.
pub fn validate_options(
    provider: ProviderKind,
    options: KeyOptions,
    allow_private: bool,
) -> Result<KeySettings, ServiceError> {
    if provider == ProviderKind::Anthropic && options.azure_only_is_empty() {
        let mut settings = KeySettings::new();
        if let Some(workspace) = options.workspace_id {
            settings.insert("workspace_id".to_owned(), check_workspace(&workspace)?);
        }
        return Ok(settings);
    }
    if provider != ProviderKind::AzureOpenAi {
        return if options.is_empty() {
            Ok(KeySettings::new())
        } else {
            Err(ServiceError::invalid(
                "unexpected_field",
                "endpoint, deployment, api_version and embedding_deployment apply to azure_openai only; workspace_id to anthropic only",
            ))
        };
    }
    if options.workspace_id.is_some() {
        return Err(ServiceError::invalid(
            "unexpected_field",
            "workspace_id applies to anthropic only",
        ));
    }
    let endpoint = options.endpoint.ok_or(ServiceError::invalid(
        "endpoint_required",
        "azure_openai needs an endpoint",
    ))?;
    let deployment = options.deployment.ok_or(ServiceError::invalid(
        "deployment_required",
        "azure_openai needs a deployment",
    ))?;
    let mut settings = KeySettings::new();
    let endpoint = byok_providers::endpoint::check_azure_endpoint(&endpoint, allow_private)
        .map_err(|_| ServiceError::invalid("invalid_endpoint", ENDPOINT_RULE))?;
    settings.insert(
        "endpoint".to_owned(),
        endpoint.as_str().trim_end_matches('/').to_owned(),
    );
    settings.insert("deployment".to_owned(), check_deployment(&deployment)?);
    // New keys use Azure's v1 API unless a dated version is asked for.
    let version = options.api_version.unwrap_or_else(|| "v1".to_owned());
    settings.insert("api_version".to_owned(), check_api_version(&version)?);
    if let Some(embedding) = options.embedding_deployment {
        settings.insert(
            "embedding_deployment".to_owned(),
            check_deployment(&embedding)?,
        );
    }
    Ok(settings)
}

const ENDPOINT_RULE: &str = "endpoint must be https://<resource>.openai.azure.com (or .cognitiveservices.azure.com, .services.ai.azure.com) with no path, port, query or credentials";

fn check_deployment(raw: &str) -> Result<String, ServiceError> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && raw != "."
        && raw != "..";
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ServiceError::invalid(
            "invalid_deployment",
            "deployment must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// Anthropic workspace ids: `wrkspc_` then letters and digits.
fn check_workspace(raw: &str) -> Result<String, ServiceError> {
    let ok = raw.strip_prefix("wrkspc_").is_some_and(|rest| {
        (8..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ServiceError::invalid(
            "invalid_workspace_id",
            "workspace_id looks like wrkspc_01AbCdEf… (from the Claude Console's workspace settings)",
        ))
    }
}

fn check_api_version(raw: &str) -> Result<String, ServiceError> {
    if raw == "v1" {
        return Ok(raw.to_owned());
    }
    let date = raw.strip_suffix("-preview").unwrap_or(raw).as_bytes();
    let ok = date.len() == 10
        && date.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ServiceError::invalid(
            "invalid_api_version",
            "api_version is v1 or a date such as 2024-10-21 or 2024-10-01-preview",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(provider: ProviderKind, options: KeyOptions) -> Result<KeySettings, ServiceError> {
        validate_options(provider, options, false)
    }

    fn azure(endpoint: &str) -> KeyOptions {
        KeyOptions {
            endpoint: Some(endpoint.to_owned()),
            deployment: Some("gpt-4o".to_owned()),
            ..KeyOptions::default()
        }
    }

    #[test]
    fn catalog_lists_the_five_providers_and_azure_fields() {
        let all = catalog();
        assert_eq!(all.len(), 5);
        let azure = all
            .iter()
            .find(|p| p.id == ProviderKind::AzureOpenAi)
            .unwrap();
        let names: Vec<_> = azure.fields.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "api_key",
                "endpoint",
                "deployment",
                "api_version",
                "embedding_deployment"
            ]
        );
        assert!(all.iter().all(|p| !p.key_format_hint.is_empty()));
    }

    #[test]
    fn azure_endpoints_are_normalised() {
        let settings = check(
            ProviderKind::AzureOpenAi,
            azure("https://My-Res.OpenAI.Azure.com./"),
        )
        .unwrap();
        assert_eq!(settings["endpoint"], "https://my-res.openai.azure.com");
        for ok in [
            "https://res.cognitiveservices.azure.com",
            "https://res-2.services.ai.azure.com/",
        ] {
            assert!(check(ProviderKind::AzureOpenAi, azure(ok)).is_ok(), "{ok}");
        }
        assert_eq!(settings["deployment"], "gpt-4o");
    }

    #[test]
    fn hostile_azure_endpoints_are_refused() {
        for bad in [
            "http://res.openai.azure.com",
            "https://127.0.0.1",
            "https://[::1]",
            "https://169.254.169.254/",
            "https://2130706433",
            "https://0x7f.1",
            "https://res.openai.azure.com:8443",
            "https://u:p@res.openai.azure.com",
            "https://res.openai.azure.com@evil.example",
            "https://res.openai.azure.com/?x=1",
            "https://res.openai.azure.com/#frag",
            "https://res.openai.azure.com/openai",
            "https://rés.openai.azure.com",
            "https://xn--rs-9ia.openai.azure.com",
            "https://localhost",
            "https://res.openai.azure.com.evil.example",
            "https://evil.example/.openai.azure.com",
            "https://openai.azure.com",
            "https://a.b.openai.azure.com",
            "https://evil.com#.openai.azure.com",
            "https://-res.openai.azure.com",
            "not a url",
        ] {
            let err = check(ProviderKind::AzureOpenAi, azure(bad)).unwrap_err();
            assert_eq!(err.code(), "invalid_endpoint", "{bad}");
        }
    }

    #[test]
    fn deployment_and_version_injection_is_refused() {
        for bad in [
            "../../x",
            "a?b",
            "a#b",
            "a/b",
            "%2e%2e",
            "..",
            &"d".repeat(65),
        ] {
            let mut options = azure("https://res.openai.azure.com");
            options.deployment = Some(bad.to_owned());
            assert_eq!(
                check(ProviderKind::AzureOpenAi, options)
                    .unwrap_err()
                    .code(),
                "invalid_deployment",
                "{bad}"
            );
        }
        for bad in [
            "2024-02-01&evil=1",
            "latest",
            "2024-2-01",
            "2024-02-01-beta",
        ] {
            let mut options = azure("https://res.openai.azure.com");
            options.api_version = Some(bad.to_owned());
            assert_eq!(
                check(ProviderKind::AzureOpenAi, options)
                    .unwrap_err()
                    .code(),
                "invalid_api_version",
                "{bad}"
            );
        }
    }

    #[test]
    fn azure_fields_on_other_providers_are_refused() {
        let err = check(ProviderKind::OpenAi, azure("https://res.openai.azure.com")).unwrap_err();
        assert_eq!(err.code(), "unexpected_field");
        assert!(
            check(ProviderKind::OpenAi, KeyOptions::default())
                .unwrap()
                .is_empty()
        );
        let missing = check(ProviderKind::AzureOpenAi, KeyOptions::default()).unwrap_err();
        assert_eq!(missing.code(), "endpoint_required");
    }
}
