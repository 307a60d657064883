//! Webhook signatures, in Stripe's scheme: the sender puts
//! `X-Xcomponent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` on the
//! request, keyed with the shared secret (`--webhook-secret`). The server recomputes the HMAC
//! over the bytes it received, compares in constant time, and refuses a timestamp further than
//! [`WEBHOOK_SIGNATURE_TOLERANCE`] from its clock (either way), so a captured request cannot be
//! replayed later. Several `v1=` entries may be given (a sender rotating its secret); one valid
//! entry is enough. Other schemes (`v0=`, ...) are ignored, as Stripe does.

use crate::error::ApiError;
use axum::http::StatusCode;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;
use xcomponent_core::instance::Millis;

/// The header carrying the signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-xcomponent-signature";

/// Largest difference between a signature's timestamp and the server's clock.
pub const WEBHOOK_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

/// Longest signature header read (a few `v1=` entries fit easily).
const MAX_SIGNATURE_HEADER: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for `body` sent at `timestamp` (unix seconds): what a sender
/// computes, `t=<timestamp>,v1=<hex>`.
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac_of(secret, timestamp, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={timestamp},v1={mac}")
}

/// The HMAC state after `"<t>.<body>"` (`None` never happens: HMAC takes keys of any length).
fn mac_of(secret: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Checks a signature header against `body`, at `now` (ms since epoch). Errors are 401s:
/// `signature_malformed` (not `t=...,v1=...`), `signature_expired` (timestamp outside the
/// tolerance) and `signature_mismatch` (no `v1` entry matches).
pub(crate) fn verify(secret: &str, header: &str, body: &[u8], now: Millis) -> Result<(), ApiError> {
    if header.len() > MAX_SIGNATURE_HEADER {
        return Err(refused(
            "signature_malformed",
            format!("the signature header is longer than {MAX_SIGNATURE_HEADER} bytes"),
        ));
    }
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else { continue };
        match name.trim() {
            "t" => timestamp = value.trim().parse().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(value.trim()) {
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let malformed = |what: &str| {
        refused(
            "signature_malformed",
            format!(
                "{what}: {WEBHOOK_SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">"
            ),
        )
    };
    let Some(timestamp) = timestamp else { return Err(malformed("no timestamp (t=)")) };
    if candidates.is_empty() {
        return Err(malformed("no hex v1= signature"));
    }
    let tolerance = WEBHOOK_SIGNATURE_TOLERANCE.as_secs() as i64;
    let now_seconds = now.div_euclid(1000);
    if timestamp.abs_diff(now_seconds) > tolerance.unsigned_abs() {
        return Err(refused(
            "signature_expired",
            format!(
                "the signature's timestamp {timestamp} is more than {tolerance} s away from the server's clock ({now_seconds}); sign again with the current time"
            ),
        ));
    }
    // `verify_slice` compares in constant time; each candidate gets a fresh copy of the state.
    if let Some(mac) = mac_of(secret, timestamp, body)
        && candidates.iter().any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        return Ok(());
    }
    Err(refused(
        "signature_mismatch",
        "the signature does not match the body: sign \"<t>.<raw body>\" with the webhook secret",
    ))
}

#[cfg(test)]
mod tests {
    use super::{verify, webhook_signature};

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let header = webhook_signature("whsec", NOW / 1000, b"{\"a\":1}");
        assert!(verify("whsec", &header, b"{\"a\":1}", NOW).is_ok());
        let code = |result: Result<(), crate::error::ApiError>| result.err().map(|e| e.code);
        assert_eq!(code(verify("whsec", &header, b"{\"a\":2}", NOW)), Some("signature_mismatch"));
        assert_eq!(code(verify("other", &header, b"{\"a\":1}", NOW)), Some("signature_mismatch"));
        let late = NOW + 301_000;
        assert_eq!(code(verify("whsec", &header, b"{\"a\":1}", late)), Some("signature_expired"));
        let early = NOW - 301_000;
        assert_eq!(code(verify("whsec", &header, b"{\"a\":1}", early)), Some("signature_expired"));
        assert!(verify("whsec", &header, b"{\"a\":1}", NOW + 299_000).is_ok());
        for bad in ["", "v1=00", "t=1", "t=x,v1=00", "t=1,v1=zz"] {
            assert_eq!(code(verify("whsec", bad, b"", NOW)), Some("signature_malformed"), "{bad}");
        }
    }

    #[test]
    fn one_valid_entry_among_several_is_enough() {
        let good = webhook_signature("new", NOW / 1000, b"{}");
        let v1 = good.split_once(",v1=").map(|(_, hex)| hex.to_owned()).unwrap_or_default();
        let header = format!("t={}, v1={}, v0=abc, v1={v1}", NOW / 1000, "00".repeat(32));
        assert!(verify("new", &header, b"{}", NOW).is_ok());
    }

    #[test]
    fn matches_a_known_vector() {
        // printf '%s' '1700000000.{"x":1}' | openssl dgst -sha256 -hmac secret
        let header = webhook_signature("secret", 1_700_000_000, b"{\"x\":1}");
        assert_eq!(
            header,
            "t=1700000000,v1=f3261f8b42908c182e5fb01269345543392417596f1d288447fde4ccbb4d6698"
        );
    }
}
