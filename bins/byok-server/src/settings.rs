//! Configuration: defaults, then an optional TOML file, then `BYOK_*`
//! environment variables. Secrets also accept a `_FILE` variant naming a file
//! that holds the value. A bad setting is one line naming it and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// One setting: its TOML key (the environment variable is `BYOK_` + upper case).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setting {
    /// The TOML key.
    pub key: &'static str,
    /// Whether a `_FILE` variant exists (secrets).
    pub secret: bool,
}

/// Every setting. `docs/configuration.md` documents each one (a test checks).
pub(crate) const SETTINGS: &[Setting] = &[
    Setting {
        key: "bind",
        secret: false,
    },
    Setting {
        key: "data_dir",
        secret: false,
    },
    Setting {
        key: "database_url",
        secret: true,
    },
    Setting {
        key: "database_max_connections",
        secret: false,
    },
    Setting {
        key: "master_key",
        secret: true,
    },
    Setting {
        key: "master_key_id",
        secret: false,
    },
    Setting {
        key: "retired_master_keys",
        secret: true,
    },
    Setting {
        key: "admin_token",
        secret: true,
    },
    Setting {
        key: "log",
        secret: false,
    },
    Setting {
        key: "log_format",
        secret: false,
    },
    Setting {
        key: "shutdown_timeout_secs",
        secret: false,
    },
    Setting {
        key: "usage_durability",
        secret: false,
    },
    Setting {
        key: "usage_batch_window_ms",
        secret: false,
    },
    Setting {
        key: "body_read_timeout_secs",
        secret: false,
    },
    Setting {
        key: "max_requests_per_address",
        secret: false,
    },
    Setting {
        key: "max_keys_per_provider",
        secret: false,
    },
    Setting {
        key: "provider_pool_max_idle_per_host",
        secret: false,
    },
    Setting {
        key: "cors_origins",
        secret: false,
    },
    Setting {
        key: "default_monthly_budget_usd",
        secret: false,
    },
    Setting {
        key: "user_requests_per_minute",
        secret: false,
    },
    Setting {
        key: "alert_webhook_url",
        secret: false,
    },
    Setting {
        key: "alert_webhook_secret",
        secret: true,
    },
    Setting {
        key: "export_passphrase",
        secret: true,
    },
    Setting {
        key: "user_tokens_per_minute",
        secret: false,
    },
    Setting {
        key: "user_concurrent_streams",
        secret: false,
    },
    Setting {
        key: "monthly_budget_ceiling_usd",
        secret: false,
    },
    Setting {
        key: "frame_ancestors",
        secret: false,
    },
    Setting {
        key: "gateway_deadline_secs",
        secret: false,
    },
    Setting {
        key: "gateway_attempt_secs",
        secret: false,
    },
    Setting {
        key: "gateway_first_byte_secs",
        secret: false,
    },
    Setting {
        key: "gateway_stall_secs",
        secret: false,
    },
    Setting {
        key: "gateway_max_concurrent_per_provider",
        secret: false,
    },
    Setting {
        key: "openai_base_url",
        secret: false,
    },
    Setting {
        key: "deepseek_base_url",
        secret: false,
    },
    Setting {
        key: "anthropic_base_url",
        secret: false,
    },
    Setting {
        key: "gemini_base_url",
        secret: false,
    },
    Setting {
        key: "allow_private_endpoints",
        secret: false,
    },
    Setting {
        key: "price_catalog_file",
        secret: false,
    },
    Setting {
        key: "baseline_model",
        secret: false,
    },
];

/// A setting that cannot be used, with the fix.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}; {fix}")]
pub(crate) struct SettingsError {
    /// The environment variable (or file key) at fault.
    pub setting: String,
    /// What is wrong. Never the value of a secret.
    pub problem: String,
    /// How to fix it.
    pub fix: &'static str,
}

fn env_name(key: &str) -> String {
    format!("BYOK_{}", key.to_ascii_uppercase())
}

fn bad(key: &str, problem: impl Into<String>, fix: &'static str) -> SettingsError {
    SettingsError {
        setting: env_name(key),
        problem: problem.into(),
        fix,
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the master key comes from.
#[derive(Debug)]
pub(crate) enum MasterKeySource {
    /// Given inline (`BYOK_MASTER_KEY`) or read from `BYOK_MASTER_KEY_FILE`.
    Given(SecretString),
    /// Neither was set: this file is used, and generated if it is missing.
    DefaultFile(PathBuf),
}

/// The server's settings, validated.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The database URL (a SQLite path, `sqlite://...` or `postgres://...`).
    pub database_url: SecretString,
    /// Most database connections.
    pub database_max_connections: u32,
    /// The active master key.
    pub master_key: MasterKeySource,
    /// The active master key's id.
    pub master_key_id: u32,
    /// Decrypt-only keys during a rotation: `ID:BASE64` entries.
    pub retired_master_keys: Option<SecretString>,
    /// An operator-chosen admin token.
    pub admin_token: Option<SecretString>,
    /// Log filter (`info`, `byok=debug`, ...).
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Provider base URLs and the endpoint policy.
    pub providers: byok_providers::ProviderSettings,
    /// The price catalog: built in, with the operator's overrides.
    pub catalog: byok_router::PriceCatalog,
    /// Bounds on every wait of a gateway request.
    pub gateway_limits: byok_api::gateway::GatewayLimits,
    /// How usage records reach the database.
    pub usage_durability: byok_api::usage::Durability,
    /// `BYOK_USAGE_BATCH_WINDOW_MS`: the batched writer's group-commit window.
    pub usage_batch_window_ms: u64,
    /// The longest a request body may take to arrive.
    pub body_read_timeout_secs: u64,
    /// Requests in flight at once from one client address.
    pub max_requests_per_address: usize,
    /// Most keys a user may keep per provider.
    pub max_keys_per_provider: u32,
    /// Origins allowed to call the user routes from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// Origins allowed to frame the settings page (CSP `frame-ancestors`).
    pub frame_ancestors: Vec<String>,
    /// Budgets: a default for new users and a ceiling.
    pub budget_policy: byok_api::service::BudgetPolicy,
    /// Every user's gateway rate limits, unless set per user.
    pub rate_limits: byok_api::limits::RateLimits,
    /// Where alerts are delivered, if anywhere.
    pub alert_webhook: Option<byok_api::alerts::Webhook>,
    /// The passphrase `export-keys` seals with and `import-keys` opens with.
    pub export_passphrase: Option<SecretString>,
}

impl Settings {
    /// Loads settings from `file` (if given) and the `BYOK_*` entries of `env`.
    /// Returns the settings and warnings about unknown `BYOK_*` variables.
    ///
    /// # Errors
    /// The first setting that is malformed, conflicting or unreadable.
    pub(crate) fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<(Self, Vec<String>), SettingsError> {
        let mut raw = Layered::default();
        if let Some(path) = file {
            raw.read_file(path)?;
        }
        let warnings = raw.read_env(env);
        raw.resolve_files()?;
        Ok((raw.into_settings()?, warnings))
    }
}

/// Values by key, each with the layer it came from (0 file, 1 env).
#[derive(Default)]
struct Layered {
    values: BTreeMap<String, (u8, SecretString)>,
}

impl Layered {
    fn known(key: &str) -> bool {
        SETTINGS
            .iter()
            .any(|s| s.key == key || (s.secret && key.strip_suffix("_file") == Some(s.key)))
    }

    fn set(&mut self, key: &str, layer: u8, value: String) {
        self.values
            .insert(key.to_owned(), (layer, SecretString::from(value)));
    }

    fn read_file(&mut self, path: &Path) -> Result<(), SettingsError> {
        let fail = |problem: String| SettingsError {
            setting: format!("--config {}", path.display()),
            problem,
            fix: "give a readable TOML file with the keys listed in docs/configuration.md",
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
        // The parser's message could quote a line holding a secret: keep only its position.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            fail(format!(
                "not valid TOML{}",
                e.span()
                    .map(|s| format!(" at byte {}", s.start))
                    .unwrap_or_default()
            ))
        })?;
        for (key, value) in table {
            if !Self::known(&key) {
                return Err(fail(format!("unknown setting `{key}`")));
            }
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                _ => return Err(fail(format!("`{key}` must be a string or a number"))),
            };
            self.set(&key, 0, value);
        }
        Ok(())
    }

    fn read_env(&mut self, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("BYOK_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if Self::known(&key) {
                self.set(&key, 1, value.clone());
            } else if !name.starts_with("BYOK_TEST") {
                warnings.push(format!("ignoring unknown setting {name}"));
            }
        }
        warnings
    }

    /// Replaces each `X_FILE` with the contents of the file it names, keeping
    /// the highest layer's choice and refusing both forms in one layer.
    fn resolve_files(&mut self) -> Result<(), SettingsError> {
        for setting in SETTINGS.iter().filter(|s| s.secret) {
            let file_key = format!("{}_file", setting.key);
            let Some((file_layer, path)) = self.values.remove(&file_key) else {
                continue;
            };
            match self.values.get(setting.key) {
                Some((layer, _)) if *layer == file_layer => {
                    return Err(bad(
                        setting.key,
                        format!("both {0} and {0}_FILE are set", env_name(setting.key)),
                        "set only one of them",
                    ));
                }
                Some((layer, _)) if *layer > file_layer => continue,
                _ => {}
            }
            let path = PathBuf::from(secrecy::ExposeSecret::expose_secret(&path));
            let text = std::fs::read_to_string(&path).map_err(|e| SettingsError {
                setting: format!("{}_FILE", env_name(setting.key)),
                problem: format!("cannot read {} ({e})", path.display()),
                fix: "point it at a readable file that holds the value",
            })?;
            self.set(
                setting.key,
                file_layer,
                text.trim_end_matches(['\n', '\r']).to_owned(),
            );
        }
        Ok(())
    }

    fn take(&mut self, key: &str) -> Option<SecretString> {
        self.values.remove(key).map(|(_, v)| v)
    }

    fn plain(&mut self, key: &str) -> Option<String> {
        self.take(key)
            .map(|v| secrecy::ExposeSecret::expose_secret(&v).trim().to_owned())
    }

    fn number<T: std::str::FromStr>(
        &mut self,
        key: &str,
        default: T,
        fix: &'static str,
    ) -> Result<T, SettingsError> {
        match self.plain(key) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| bad(key, format!("`{text}` is not a valid number here"), fix)),
        }
    }

    /// `BYOK_ADMIN_TOKEN`: long, and not predictable.
    fn admin_token(&mut self) -> Result<Option<SecretString>, SettingsError> {
        let admin_token = self.take("admin_token");
        if let Some(token) = &admin_token
            && secrecy::ExposeSecret::expose_secret(token).len() < 24
        {
            return Err(bad(
                "admin_token",
                "shorter than 24 characters",
                "use a long random value, e.g. `openssl rand -base64 32`",
            ));
        }
        if let Some(token) = &admin_token {
            let distinct: std::collections::BTreeSet<char> =
                secrecy::ExposeSecret::expose_secret(token)
                    .chars()
                    .collect();
            if distinct.len() < 12 {
                return Err(bad(
                    "admin_token",
                    "too predictable (fewer than 12 different characters)",
                    "use a long random value, e.g. `openssl rand -base64 32`",
                ));
            }
        }
        Ok(admin_token)
    }

    fn usage_durability(&mut self) -> Result<byok_api::usage::Durability, SettingsError> {
        Ok(match self.plain("usage_durability").as_deref() {
            None | Some("batched") => byok_api::usage::Durability::Batched,
            Some("strict") => byok_api::usage::Durability::Strict,
            Some(other) => {
                return Err(bad(
                    "usage_durability",
                    format!("`{other}` is not a mode"),
                    "use batched (the default) or strict",
                ));
            }
        })
    }

    fn gateway_limits(&mut self) -> Result<byok_api::gateway::GatewayLimits, SettingsError> {
        let defaults = byok_api::gateway::GatewayLimits::default();
        let secs = |this: &mut Self, key: &str, default: std::time::Duration| {
            this.number(
                key,
                default.as_secs(),
                "use a whole number of seconds, at least 1",
            )
            .and_then(|n: u64| {
                if n == 0 {
                    Err(bad(
                        key,
                        "is 0",
                        "use a whole number of seconds, at least 1",
                    ))
                } else {
                    Ok(std::time::Duration::from_secs(n))
                }
            })
        };
        let limits = byok_api::gateway::GatewayLimits {
            deadline: secs(self, "gateway_deadline_secs", defaults.deadline)?,
            attempt: secs(self, "gateway_attempt_secs", defaults.attempt)?,
            first_byte: secs(self, "gateway_first_byte_secs", defaults.first_byte)?,
            stall: secs(self, "gateway_stall_secs", defaults.stall)?,
            per_provider_concurrency: self.number(
                "gateway_max_concurrent_per_provider",
                defaults.per_provider_concurrency,
                "use a whole number, at least 1",
            )?,
        };
        if limits.per_provider_concurrency == 0 {
            return Err(bad(
                "gateway_max_concurrent_per_provider",
                "is 0",
                "use a whole number, at least 1",
            ));
        }
        Ok(limits)
    }

    fn catalog(&mut self) -> Result<byok_router::PriceCatalog, SettingsError> {
        let mut catalog = byok_router::PriceCatalog::builtin();
        if let Some(path) = self.plain("price_catalog_file") {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    "price_catalog_file",
                    format!("cannot read {path} ({e})"),
                    "point it at a readable TOML file",
                )
            })?;
            catalog = catalog.with_overrides(&text).map_err(|e| {
                bad(
                    "price_catalog_file",
                    e.to_string(),
                    "fix the file; docs/routing.md describes the format",
                )
            })?;
        }
        if let Some(model) = self.plain("baseline_model") {
            let parsed = byok_router::ModelRef::parse(&model).map_err(|e| {
                bad(
                    "baseline_model",
                    e.to_string(),
                    "use provider:model, e.g. openai:gpt-5.4",
                )
            })?;
            catalog = catalog.with_baseline(parsed).map_err(|e| {
                bad(
                    "baseline_model",
                    e.to_string(),
                    "use a model the price catalog lists",
                )
            })?;
        }
        Ok(catalog)
    }

    fn providers(&mut self) -> Result<byok_providers::ProviderSettings, SettingsError> {
        let mut providers = byok_providers::ProviderSettings::default();
        for (key, target) in [
            ("openai_base_url", &mut providers.openai_base_url),
            ("deepseek_base_url", &mut providers.deepseek_base_url),
            ("anthropic_base_url", &mut providers.anthropic_base_url),
            ("gemini_base_url", &mut providers.gemini_base_url),
        ] {
            if let Some(text) = self.plain(key) {
                *target = url::Url::parse(&text)
                    .ok()
                    .filter(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.host().is_some()
                            && u.username().is_empty()
                            && u.password().is_none()
                    })
                    .ok_or_else(|| {
                        bad(
                            key,
                            format!("`{text}` is not an http(s) URL"),
                            "give the provider's base URL, e.g. https://api.openai.com/v1",
                        )
                    })?;
            }
        }
        providers.pool_max_idle_per_host = self.number(
            "provider_pool_max_idle_per_host",
            providers.pool_max_idle_per_host,
            "use a whole number of connections",
        )?;
        providers.allow_private_endpoints = match self.plain("allow_private_endpoints").as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(bad(
                    "allow_private_endpoints",
                    format!("`{other}` is not true or false"),
                    "use true or false",
                ));
            }
        };
        Ok(providers)
    }

    fn bind(&mut self) -> Result<SocketAddr, SettingsError> {
        Ok(match self.plain("bind") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(text) => text.parse().map_err(|_| {
                bad(
                    "bind",
                    format!("`{text}` is not an address"),
                    "use HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
                )
            })?,
        })
    }

    fn log_format(&mut self) -> Result<LogFormat, SettingsError> {
        match self.plain("log_format").as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(bad(
                "log_format",
                format!("`{other}` is not a format"),
                "use text or json",
            )),
        }
    }

    fn into_settings(mut self) -> Result<Settings, SettingsError> {
        let bind = self.bind()?;
        let data_dir = PathBuf::from(
            self.plain("data_dir")
                .unwrap_or_else(|| "./byok-data".to_owned()),
        );
        let database_url = self.take("database_url").unwrap_or_else(|| {
            SecretString::from(format!("sqlite://{}", data_dir.join("byok.db").display()))
        });
        byok_store::Backend::from_url(secrecy::ExposeSecret::expose_secret(&database_url))
            .map_err(|e| {
                bad(
                    "database_url",
                    e.to_string(),
                    "use a SQLite path, sqlite://PATH or postgres://USER@HOST/DB",
                )
            })?;
        let database_max_connections = self.number(
            "database_max_connections",
            8u32,
            "use a whole number such as 8",
        )?;
        if database_max_connections == 0 {
            return Err(bad(
                "database_max_connections",
                "0 connections",
                "use at least 1",
            ));
        }
        let master_key = match self.take("master_key") {
            Some(key) => MasterKeySource::Given(key),
            None => MasterKeySource::DefaultFile(data_dir.join("master.key")),
        };
        let master_key_id = self.number(
            "master_key_id",
            1u32,
            "use a whole number; the first key is 1",
        )?;
        let retired_master_keys = self.take("retired_master_keys");
        let admin_token = self.admin_token()?;
        let log = self.plain("log").unwrap_or_else(|| "info".to_owned());
        let log_format = self.log_format()?;
        let shutdown_timeout_secs = self.number(
            "shutdown_timeout_secs",
            30u64,
            "use a whole number of seconds",
        )?;
        let providers = self.providers()?;
        let catalog = self.catalog()?;
        let gateway_limits = self.gateway_limits()?;
        let usage_durability = self.usage_durability()?;
        let usage_batch_window_ms = self.number(
            "usage_batch_window_ms",
            100u64,
            "use a whole number of milliseconds",
        )?;
        let body_read_timeout_secs = self.number(
            "body_read_timeout_secs",
            30u64,
            "use a whole number of seconds",
        )?;
        let max_requests_per_address =
            self.number("max_requests_per_address", 256usize, "use a whole number")?;
        let (max_keys_per_provider, cors_origins, frame_ancestors) = self.access()?;
        let export_passphrase = self.take("export_passphrase");
        let (budget_policy, rate_limits, alert_webhook) = (
            self.budget_policy()?,
            self.rate_limits()?,
            self.alert_webhook()?,
        );
        Ok(Settings {
            bind,
            database_url,
            database_max_connections,
            master_key,
            master_key_id,
            retired_master_keys,
            admin_token,
            log,
            log_format,
            shutdown_timeout_secs,
            providers,
            catalog,
            gateway_limits,
            usage_durability,
            usage_batch_window_ms,
            body_read_timeout_secs,
            max_requests_per_address,
            max_keys_per_provider,
            cors_origins,
            frame_ancestors,
            budget_policy,
            rate_limits,
            alert_webhook,
            export_passphrase,
        })
    }

    fn alert_webhook(&mut self) -> Result<Option<byok_api::alerts::Webhook>, SettingsError> {
        let url = self.plain("alert_webhook_url");
        let secret = self.take("alert_webhook_secret");
        match (url, secret) {
            (None, None) => Ok(None),
            (Some(url), Some(secret)) => {
                let parsed = url::Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                    .ok_or_else(|| {
                        bad(
                            "alert_webhook_url",
                            format!("`{url}` is not an http(s) URL"),
                            "use https://host/path",
                        )
                    })?;
                if secrecy::ExposeSecret::expose_secret(&secret).len() < 16 {
                    return Err(bad(
                        "alert_webhook_secret",
                        "it is shorter than 16 characters".to_owned(),
                        "use a random secret of at least 16 characters (e.g. openssl rand -hex 32)",
                    ));
                }
                Ok(Some(byok_api::alerts::Webhook::new(parsed, secret)))
            }
            (Some(_), None) => Err(bad(
                "alert_webhook_secret",
                "a webhook URL is set without a secret".to_owned(),
                "set BYOK_ALERT_WEBHOOK_SECRET: alerts are always signed",
            )),
            (None, Some(_)) => Err(bad(
                "alert_webhook_url",
                "a webhook secret is set without a URL".to_owned(),
                "set BYOK_ALERT_WEBHOOK_URL, or remove the secret",
            )),
        }
    }

    fn rate_limits(&mut self) -> Result<byok_api::limits::RateLimits, SettingsError> {
        let fix = "use a whole number from 1, or leave it out for no limit";
        let mut limit = |key: &str| -> Result<Option<u64>, SettingsError> {
            match self.plain(key) {
                None => Ok(None),
                Some(text) => match text.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(bad(key, format!("`{text}` is not a limit"), fix)),
                },
            }
        };
        let narrow = |n: Option<u64>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(byok_api::limits::RateLimits {
            requests_per_minute: narrow(limit("user_requests_per_minute")?),
            tokens_per_minute: limit("user_tokens_per_minute")?,
            concurrent_streams: narrow(limit("user_concurrent_streams")?),
        })
    }

    fn budget_policy(&mut self) -> Result<byok_api::service::BudgetPolicy, SettingsError> {
        let mut money = |key: &str| -> Result<Option<byok_router::Money>, SettingsError> {
            self.plain(key)
                .map(|text| {
                    byok_router::Money::parse_usd(&text).map_err(|_| {
                        bad(
                            key,
                            format!("`{text}` is not an amount of dollars"),
                            "write dollars as a decimal, e.g. 5 or 0.50",
                        )
                    })
                })
                .transpose()
        };
        let default_monthly = money("default_monthly_budget_usd")?;
        let ceiling_monthly = money("monthly_budget_ceiling_usd")?;
        if let (Some(default), Some(ceiling)) = (default_monthly, ceiling_monthly)
            && default > ceiling
        {
            return Err(bad(
                "default_monthly_budget_usd",
                "the default is above the ceiling".to_owned(),
                "set BYOK_DEFAULT_MONTHLY_BUDGET_USD at or below BYOK_MONTHLY_BUDGET_CEILING_USD",
            ));
        }
        Ok(byok_api::service::BudgetPolicy {
            default_monthly,
            ceiling_monthly,
        })
    }

    /// The key cap and the browser access settings.
    fn access(&mut self) -> Result<(u32, Vec<String>, Vec<String>), SettingsError> {
        let max_keys_per_provider = self.number(
            "max_keys_per_provider",
            byok_api::service::DEFAULT_MAX_KEYS_PER_PROVIDER,
            "use a whole number from 1",
        )?;
        if max_keys_per_provider == 0 {
            return Err(bad(
                "max_keys_per_provider",
                "0 would refuse every key".to_owned(),
                "use a whole number from 1",
            ));
        }
        let cors_origins = self.origins("cors_origins")?;
        let frame_ancestors = self.origins("frame_ancestors")?;
        Ok((max_keys_per_provider, cors_origins, frame_ancestors))
    }

    /// A list of web origins (`https://app.example.com`), separated by
    /// commas or spaces; never a wildcard.
    fn origins(&mut self, key: &str) -> Result<Vec<String>, SettingsError> {
        let Some(text) = self.plain(key) else {
            return Ok(Vec::new());
        };
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|o| !o.is_empty())
            .map(|origin| {
                byok_api::cors::parse_origin(origin).ok_or_else(|| {
                    bad(
                        key,
                        format!("`{origin}` is not an origin"),
                        "list origins as scheme://host[:port] (no path, no wildcard), separated by commas",
                    )
                })
            })
            .collect()
    }
}

/// Parses `BYOK_RETIRED_MASTER_KEYS`: `ID:BASE64` entries separated by commas
/// or whitespace.
///
/// # Errors
/// Names the entry's position (never its key).
pub(crate) fn parse_retired(
    text: &str,
) -> Result<Vec<(u32, byok_vault::MasterKey)>, SettingsError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let fix = "write each retired key as ID:BASE64, e.g. 1:AAAA...=, separated by commas";
            let (id, key) = entry.split_once(':').ok_or_else(|| {
                bad(
                    "retired_master_keys",
                    format!("entry {} has no ID: prefix", i + 1),
                    fix,
                )
            })?;
            let id = id.parse().map_err(|_| {
                bad(
                    "retired_master_keys",
                    format!("entry {} has a bad id", i + 1),
                    fix,
                )
            })?;
            let key = byok_vault::MasterKey::from_base64(key)
                .map_err(|e| bad("retired_master_keys", format!("entry {}: {e}", i + 1), fix))?;
            Ok((id, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let (settings, warnings) = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&settings.database_url),
            "sqlite://./byok-data/byok.db"
        );
        assert!(
            matches!(settings.master_key, MasterKeySource::DefaultFile(ref p) if p.ends_with("master.key"))
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn env_overrides_file_and_file_variants_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("byok.toml");
        std::fs::write(
            &config,
            "bind = \"0.0.0.0:9000\"\nmaster_key_id = 3\nlog = \"debug\"\n",
        )
        .unwrap();
        let token_file = dir.path().join("admin");
        std::fs::write(&token_file, "a-very-long-admin-token-from-a-file\n").unwrap();
        let (settings, warnings) = Settings::load(
            Some(&config),
            &env(&[
                ("BYOK_BIND", "127.0.0.1:7000"),
                ("BYOK_ADMIN_TOKEN_FILE", token_file.to_str().unwrap()),
                ("BYOK_NONSENSE", "1"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:7000");
        assert_eq!(settings.master_key_id, 3);
        assert_eq!(settings.log, "debug");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(settings.admin_token.as_ref().unwrap()),
            "a-very-long-admin-token-from-a-file"
        );
        assert_eq!(warnings, ["ignoring unknown setting BYOK_NONSENSE"]);
    }

    #[test]
    fn errors_name_the_setting_and_never_the_secret() {
        let cases = [
            (env(&[("BYOK_BIND", "nowhere")]), "BYOK_BIND"),
            (
                env(&[("BYOK_DATABASE_URL", "mysql://secret-db-password@x/y")]),
                "BYOK_DATABASE_URL",
            ),
            (
                env(&[("BYOK_ADMIN_TOKEN", "short-secret")]),
                "BYOK_ADMIN_TOKEN",
            ),
            (env(&[("BYOK_LOG_FORMAT", "xml")]), "BYOK_LOG_FORMAT"),
            (
                env(&[("BYOK_MASTER_KEY", "x"), ("BYOK_MASTER_KEY_FILE", "/nope")]),
                "BYOK_MASTER_KEY",
            ),
            (
                env(&[("BYOK_ADMIN_TOKEN_FILE", "/nonexistent/file")]),
                "BYOK_ADMIN_TOKEN_FILE",
            ),
            (
                env(&[("BYOK_SHUTDOWN_TIMEOUT_SECS", "soon")]),
                "BYOK_SHUTDOWN_TIMEOUT_SECS",
            ),
            (
                env(&[("BYOK_OPENAI_BASE_URL", "ftp://x")]),
                "BYOK_OPENAI_BASE_URL",
            ),
            (
                env(&[("BYOK_ALLOW_PRIVATE_ENDPOINTS", "maybe")]),
                "BYOK_ALLOW_PRIVATE_ENDPOINTS",
            ),
        ];
        for (vars, setting) in cases {
            let err = Settings::load(None, &vars).unwrap_err();
            let line = err.to_string();
            assert!(line.starts_with(setting), "{line}");
            assert!(!line.contains('\n'));
            assert!(
                !line.contains("secret-db-password") && !line.contains("short-secret"),
                "{line}"
            );
        }
    }

    #[test]
    fn unknown_file_keys_and_bad_toml_are_refused_without_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("byok.toml");
        std::fs::write(&config, "bnd = \"x\"\n").unwrap();
        assert!(
            Settings::load(Some(&config), &env(&[]))
                .unwrap_err()
                .to_string()
                .contains("unknown setting `bnd`")
        );
        std::fs::write(&config, "master_key = \"oops-secret\n").unwrap();
        let line = Settings::load(Some(&config), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            line.contains("not valid TOML") && !line.contains("oops-secret"),
            "{line}"
        );
    }

    #[test]
    fn provider_base_urls_and_the_endpoint_policy_are_settings() {
        let (settings, _) = Settings::load(
            None,
            &env(&[
                ("BYOK_GEMINI_BASE_URL", "http://127.0.0.1:9999"),
                ("BYOK_ALLOW_PRIVATE_ENDPOINTS", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.providers.gemini_base_url.as_str(),
            "http://127.0.0.1:9999/"
        );
        assert_eq!(
            settings.providers.openai_base_url.as_str(),
            "https://api.openai.com/v1"
        );
        assert!(settings.providers.allow_private_endpoints);
    }

    #[test]
    fn docs_configuration_lists_every_setting_and_nothing_else() {
        let doc = include_str!("../../../docs/configuration.md");
        for setting in SETTINGS {
            let name = env_name(setting.key);
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/configuration.md"
            );
            if setting.secret {
                assert!(
                    doc.contains(&format!("`{name}` (`_FILE`)")),
                    "{name}'s _FILE variant is not documented"
                );
            }
        }
        let documented = doc.lines().filter(|l| l.starts_with("| `BYOK_")).count();
        assert_eq!(
            documented,
            SETTINGS.len(),
            "the table documents a setting that does not exist"
        );
    }

    #[test]
    fn retired_keys_parse_and_errors_do_not_quote_them() {
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let parsed = parse_retired(&format!("1:{key}, 2:{key}")).unwrap();
        assert_eq!(parsed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2]);
        let err = parse_retired(key).unwrap_err().to_string();
        assert!(err.contains("entry 1") && !err.contains(key), "{err}");
    }
}
