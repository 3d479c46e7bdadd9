//! What a customer (a user or an account) carries for billing and mail: a Stripe customer id
//! and an email address. Their checks, and the one audited change that sets or clears them.
//! Terms (overrides, grants) are terms.rs; what a customer owes is billing.rs.

use super::admin::Actor;
use super::ports::{AdminWrite, BillingWrite, CustomerFields, StoreError};
use super::terms::{Customer, audit_target};
use serde_json::json;

/// The longest address SMTP carries (RFC 5321: a 256-octet path, less its angle brackets).
pub const EMAIL_MAX: usize = 254;

/// The longest Stripe id Stripe documents for any object.
pub const STRIPE_ID_MAX: usize = 255;

/// Checks an email address: ASCII `local@domain`, at most `EMAIL_MAX` characters, a local
/// part with no spaces, quotes or brackets (dots only between others), and a domain of
/// dot-separated labels (letters, digits, inner hyphens; at most 63 each) whose last is at
/// least two letters. Internationalized addresses are not accepted. docs/openapi.yaml's
/// `Email` pattern says the same (schemathesis holds the two together).
pub fn validate_email(text: &str) -> Result<(), String> {
    let problem = |what: &str| Err(format!("email {text:?} {what}; write an address such as ops@example.com"));
    if text.is_empty() || text.len() > EMAIL_MAX {
        return problem(&format!("must be 1 to {EMAIL_MAX} characters"));
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return problem("has no @");
    };
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&byte));
    if !local_ok {
        return problem("has a part before the @ that is not a plain mailbox name");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    let top_ok = labels.last().is_some_and(|top| top.len() >= 2 && top.bytes().all(|byte| byte.is_ascii_alphabetic()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !top_ok {
        return problem("has no valid domain after the @");
    }
    Ok(())
}

/// Checks a Stripe customer id: `cus_` and 1 or more letters and digits, at most
/// `STRIPE_ID_MAX` characters in all.
pub fn validate_stripe_customer_id(text: &str) -> Result<(), String> {
    let rest = text.strip_prefix("cus_").unwrap_or_default();
    if !rest.is_empty() && text.len() <= STRIPE_ID_MAX && rest.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(format!(
        "stripe_customer_id {text:?} is not a Stripe customer id: write cus_ and letters and digits \
         (at most {STRIPE_ID_MAX} characters), as Stripe shows it"
    ))
}

/// A change of a customer's fields: for each, `None` keeps it, `Some(None)` clears it and
/// `Some(Some(value))` sets it (a value already checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldsChange {
    pub stripe_customer_id: Option<Option<String>>,
    pub email: Option<Option<String>>,
}

impl FieldsChange {
    pub fn is_empty(&self) -> bool {
        self.stripe_customer_id.is_none() && self.email.is_none()
    }

    /// `current` with the change applied.
    pub fn applied_to(&self, current: CustomerFields) -> CustomerFields {
        CustomerFields {
            stripe_customer_id: self.stripe_customer_id.clone().unwrap_or(current.stripe_customer_id),
            email: self.email.clone().unwrap_or(current.email),
        }
    }
}

/// Applies `change` to an existing customer; audited under `actor` when it changes anything,
/// naming the fields but not their values (an email in the audit log would outlive the
/// customer's erasure). Returns the fields as they now stand.
pub fn set_fields(
    tx: &(impl BillingWrite + AdminWrite + ?Sized),
    customer: Customer<'_>,
    change: &FieldsChange,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<CustomerFields, StoreError> {
    let current = tx.customer_fields(customer.key())?;
    let fields = change.applied_to(current.clone());
    if fields == current {
        return Ok(fields);
    }
    if !tx.set_customer_fields(customer.key(), &fields, now_ms)? {
        return Err(StoreError::backend("the customer whose fields were to be set does not exist"));
    }
    let changed: Vec<&str> = [
        ("stripe_customer_id", fields.stripe_customer_id != current.stripe_customer_id),
        ("email", fields.email != current.email),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    let details = json!({ "changed": changed });
    tx.append_audit(now_ms, actor, "customer_fields_changed", Some(&audit_target(customer)), &details.to_string())?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_addresses_and_refuses_the_rest() {
        for good in ["ops@example.com", "a.b+tag@mail.example.co", "x_y@a-b.io", "o'neil@example.org"] {
            assert_eq!(validate_email(good), Ok(()), "{good}");
        }
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        let long_label = format!("ops@{}.com", "b".repeat(64));
        assert_eq!(validate_email(&format!("{}@example.com", "a".repeat(200))), Ok(()), "only the whole is bounded");
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "ops@example",
            "ops@example.c",
            "ops@-example.com",
            "ops@exa_mple.com",
            "o ps@example.com",
            ".ops@example.com",
            "o..ps@example.com",
            "ops@example.com ",
            "ops@@example.com",
            "\"ops\"@example.com",
            "opé@example.com",
            &long_label,
            &long,
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert!(validate_email("ops").unwrap_err().contains("ops@example.com"), "the message shows a valid form");
    }

    #[test]
    fn a_stripe_customer_id_is_cus_and_letters_and_digits() {
        assert_eq!(validate_stripe_customer_id("cus_NffrFeUfNV2Hib"), Ok(()));
        let longest = format!("cus_{}", "a".repeat(STRIPE_ID_MAX - 4));
        assert_eq!(validate_stripe_customer_id(&longest), Ok(()));
        for bad in ["", "cus_", "cus", "acct_123", "cus_12 3", "cus_12-3", "CUS_123", &format!("{longest}a")] {
            assert!(validate_stripe_customer_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_change_keeps_clears_or_sets_each_field() {
        let current = CustomerFields { stripe_customer_id: Some("cus_1".into()), email: Some("a@b.io".into()) };
        let change = FieldsChange { stripe_customer_id: None, email: Some(None) };
        assert_eq!(
            change.applied_to(current.clone()),
            CustomerFields { stripe_customer_id: Some("cus_1".into()), email: None }
        );
        let set = FieldsChange { stripe_customer_id: Some(Some("cus_2".into())), email: None };
        assert_eq!(set.applied_to(current).stripe_customer_id.as_deref(), Some("cus_2"));
        assert!(FieldsChange::default().is_empty());
    }
}
