//! Alert delivery: the outbox's alerts sent (`POST`) to the operator's webhook as
//! JSON, signed with HMAC-SHA256 over the timestamp and the body, retried
//! with exponential backoff until delivered. Alerts never carry a key or a
//! token.
//!
//! Each delivery has `X-BYOK-Event` (`budget.crossed`, `key.refused`),
//! `X-BYOK-Delivery` (the alert's id: the same on every retry) and
//! `X-BYOK-Signature: t=<unix seconds>,v1=<hex>` where `v1` is
//! HMAC-SHA256(secret, `"<t>.<body>"`). Receivers should check the
//! signature, and reject timestamps more than five minutes old.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::service::KeyService;

/// Where alerts go.
#[derive(Clone)]
pub struct Webhook {
    url: url::Url,
    secret: SecretString,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl Webhook {
    /// Alerts to `url`, signed with `secret`.
    #[must_use]
    pub fn new(url: url::Url, secret: SecretString) -> Self {
        Self { url, secret }
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[must_use]
pub fn signature(secret: &SecretString, at: DateTime<Utc>, body: &str) -> String {
    let t = at.timestamp();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// How long to wait after `attempts` failed deliveries: 2, 4, 8 … seconds,
/// at most an hour.
fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    Duration::from_secs((2u64 << exponent).min(3600))
}

/// Delivers due alerts to `webhook` every second, for ever.
pub(crate) async fn deliver(service: KeyService, webhook: Webhook) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "alerts cannot be delivered: no HTTP client");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = service.now();
        let due = match service
            .store()
            .run(move |c| byok_store::alerts::due(c, now, 20))
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not read the alert outbox");
                continue;
            }
        };
        for alert in due {
            let at = service.now();
            let sent = client
                .post(webhook.url.clone())
                .header("content-type", "application/json")
                .header("x-byok-event", &alert.event)
                .header("x-byok-delivery", alert.id.to_string())
                .header(
                    "x-byok-signature",
                    signature(&webhook.secret, at, &alert.body),
                )
                .body(alert.body.clone())
                .send()
                .await;
            let outcome = match sent {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
                Err(error) if error.is_timeout() => Err("timeout".to_owned()),
                Err(_) => Err("unreachable".to_owned()),
            };
            let id = alert.id;
            let written = match outcome {
                Ok(()) => {
                    service
                        .store()
                        .run(move |c| byok_store::alerts::delivered(c, id, at))
                        .await
                }
                Err(error) => {
                    let retry = at
                        + chrono::Duration::from_std(backoff(alert.attempts)).unwrap_or_default();
                    tracing::warn!(alert = id, event = alert.event, %error, "alert delivery failed; retried later");
                    service
                        .store()
                        .run(move |c| byok_store::alerts::failed(c, id, &error, retry))
                        .await
                }
            };
            if let Err(error) = written {
                tracing::warn!(%error, "could not record an alert delivery");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn signatures_cover_time_and_body_and_backoff_is_bounded() {
        let secret = SecretString::from("whsec_test".to_owned());
        let at = Utc.timestamp_opt(1_764_489_600, 0).unwrap();
        let a = signature(&secret, at, "{}");
        assert!(a.starts_with("t=1764489600,v1="));
        assert_ne!(a, signature(&secret, at, "{ }"));
        assert_ne!(
            a,
            signature(&secret, at + chrono::Duration::seconds(1), "{}")
        );
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }
}
