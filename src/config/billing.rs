//! Validation of what billing reads: `[billing] currency` and a limit's `overage` price.
//! Amounts are whole cents of the one configured currency; Tally converts nothing.

use super::raw::{RawConfig, RawOverage};
use super::{ConfigError, Validator};
use crate::domain::plan::Overage;

impl Validator<'_> {
    /// `[billing] currency`: an ISO 4217 code, three capital letters ("USD", "EUR").
    pub(super) fn currency(&self, raw: &RawConfig) -> Result<String, ConfigError> {
        let currency = &raw.billing.currency;
        if currency.len() == 3 && currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Ok(currency.clone());
        }
        Err(self.error(
            "billing.currency",
            format!("{currency:?} is not a currency code"),
            "write the ISO 4217 code in three capital letters, e.g. \"USD\" or \"EUR\"",
        ))
    }

    /// A limit's `overage = { price_cents, per_units }`, at `key` (the limit's key). Only a
    /// soft limit can be passed, so only a soft limit may carry a price.
    pub(super) fn overage(&self, key: &str, enforcement: &str, raw: &RawOverage) -> Result<Overage, ConfigError> {
        let key = format!("{key}.overage");
        if enforcement != "soft" {
            return Err(self.error(
                key,
                format!("is set on a limit with enforcement {enforcement:?}, which nothing passes"),
                "set enforcement = \"soft\" (uses past the limit are allowed and billed), or remove overage",
            ));
        }
        let price_cents = self.in_range(&format!("{key}.price_cents"), raw.price_cents, 0, i64::MAX)? as u64;
        let per_units = self.in_range(&format!("{key}.per_units"), raw.per_units, 1, i64::MAX)? as u64;
        Ok(Overage { price_cents, per_units })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors};
    use crate::domain::plan::Overage;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml("test.toml", text, &|_| None)
    }

    fn plan(limit: &str) -> String {
        format!(
            "[metrics]\nprompts = {{ unit = \"prompts\" }}\n[plans.p]\nprice_cents = 900\n\
             limits = {{ prompts = {limit} }}\nfeatures = {{}}\n[usage]\ndefault_plan = \"p\"\n"
        )
    }

    fn keys(text: &str) -> Vec<String> {
        load(text).expect_err("refused").errors.into_iter().map(|error| error.key).collect()
    }

    #[test]
    fn the_currency_defaults_to_usd_and_must_be_three_capitals() {
        assert_eq!(load("").unwrap().rules.currency, "USD");
        assert_eq!(load("[billing]\ncurrency = \"EUR\"\n").unwrap().rules.currency, "EUR");
        for bad in ["usd", "US", "EURO", "U5D"] {
            assert_eq!(keys(&format!("[billing]\ncurrency = \"{bad}\"\n")), ["billing.currency"], "{bad}");
        }
    }

    #[test]
    fn a_soft_limit_carries_an_overage_price() {
        let config =
            load(&plan("{ limit = 100, enforcement = \"soft\", overage = { price_cents = 2, per_units = 10 } }"))
                .unwrap();
        let plan_p = config.rules.catalog.find_plan("p").unwrap();
        assert_eq!(plan_p.overage.get("prompts"), Some(&Overage { price_cents: 2, per_units: 10 }));
    }

    #[test]
    fn every_bad_overage_is_named_with_its_key() {
        let hard = plan("{ limit = 100, enforcement = \"hard\", overage = { price_cents = 2, per_units = 10 } }");
        assert_eq!(keys(&hard), ["plans.p.limits.prompts.overage"]);
        let bad = plan("{ limit = 100, enforcement = \"soft\", overage = { price_cents = -1, per_units = 0 } }")
            .replace("[usage]", "[billing]\ncurrency = \"eur\"\n[usage]");
        assert_eq!(
            keys(&bad),
            [
                "plans.p.limits.prompts.overage.price_cents",
                "plans.p.limits.prompts.overage.per_units",
                "billing.currency"
            ]
        );
        let unknown = plan("{ limit = 100, enforcement = \"soft\", overage = { cents = 2, per_units = 10 } }");
        let error = load(&unknown).unwrap_err().errors.remove(0);
        assert_eq!(error.key, "plans.p.limits.prompts");
        assert!(error.fix.contains("overage = { price_cents = N, per_units = N }"), "{error}");
    }
}
