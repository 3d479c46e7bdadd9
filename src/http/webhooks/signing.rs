//! The signatures every delivery carries: `Tally-Signature` (Stripe's scheme, keyed with the
//! secret as written) and `webhook-signature` (Standard Webhooks, keyed with the decoded
//! `whsec_` secret). Each header holds one signature per configured secret, so a receiver
//! rotating its secret accepts deliveries signed with either.

use crate::config::WebhookSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `t=UNIX,v1=HEX[,v1=HEX...]`: HEX is HMAC-SHA256 of `"{t}.{body}"` keyed with each secret's
/// text, as Stripe signs (its verifiers accept any of several `v1` values).
pub fn tally_signature(secrets: &[WebhookSecret], unix_secs: i64, body: &str) -> String {
    let timestamp = unix_secs.to_string();
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let mac = hmac_sha256(secret.text.as_bytes(), &[timestamp.as_bytes(), b".", body.as_bytes()]);
        header.push_str(",v1=");
        header.push_str(&crate::domain::hex(&mac));
    }
    header
}

/// `v1,BASE64[ v1,BASE64...]`: BASE64 is HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed
/// with each secret's Standard Webhooks key (Standard Webhooks 1.0).
pub fn standard_signature(secrets: &[WebhookSecret], message_id: &str, unix_secs: i64, body: &str) -> String {
    let timestamp = unix_secs.to_string();
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| {
            let parts: [&[u8]; 5] = [message_id.as_bytes(), b".", timestamp.as_bytes(), b".", body.as_bytes()];
            format!("v1,{}", BASE64.encode(hmac_sha256(&secret.standard_key, &parts)))
        })
        .collect();
    signatures.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str, standard_key: &[u8]) -> WebhookSecret {
        WebhookSecret { text: text.to_owned(), standard_key: standard_key.to_vec() }
    }

    #[test]
    fn tally_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Checked with: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            tally_signature(&[secret("whsec_test", b"")], 1_700_000_000, "{\"a\":1}"),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn standard_signature_is_base64_hmac_of_id_timestamp_and_body_with_the_decoded_key() {
        // Checked with: printf 'msg_1.1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'test' -binary | base64
        assert_eq!(
            standard_signature(&[secret("whsec_dGVzdA==", b"test")], "msg_1", 1_700_000_000, "{\"a\":1}"),
            "v1,QKFeUV75r8ysyhbBhN+dvVQF4ZihID+asCUGD1wfQL8="
        );
    }

    #[test]
    fn every_secret_signs_while_rotating() {
        let secrets = [secret("new", b"new"), secret("old", b"old")];
        let tally = tally_signature(&secrets, 1, "{}");
        assert_eq!(tally.matches(",v1=").count(), 2, "{tally}");
        let standard = standard_signature(&secrets, "id", 1, "{}");
        assert_eq!(standard.split(' ').count(), 2, "{standard}");
        assert!(standard.split(' ').all(|part| part.starts_with("v1,")));
        assert_eq!(standard.split(' ').next(), Some(standard_signature(&secrets[..1], "id", 1, "{}").as_str()));
    }
}
