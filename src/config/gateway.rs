//! Validation of `[gateway]` and its `[[gateway.rules]]` into the domain's `Gateway`: every
//! rule names a known metric or a known feature (exactly one), a method HTTP defines, and a
//! path prefix that starts with `/`.

use super::raw::{RawConfig, RawGatewayRule};
use super::{ConfigError, Validator};
use crate::domain::gateway::{Gateway, GatewayAction, GatewayRule};
use crate::domain::usage::AMOUNT_MAX;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Validator<'_> {
    pub(super) fn gateway(&self, raw: &RawConfig) -> Result<Gateway, ConfigError> {
        let gateway = &raw.gateway;
        let user_header = gateway.user_header.trim();
        if user_header.is_empty() || ::http::HeaderName::from_bytes(user_header.as_bytes()).is_err() {
            return Err(self.error(
                "gateway.user_header",
                format!("{:?} is not a header name", gateway.user_header),
                "name the header your proxy puts the user id in, e.g. \"X-User-Id\"",
            ));
        }
        let allow_unmatched = match gateway.default.as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(self.error(
                    "gateway.default",
                    format!("{other:?} is neither \"allow\" nor \"deny\""),
                    "use \"allow\" (a request no rule matches passes) or \"deny\" (it gets 403)",
                ));
            }
        };
        // Every bad rule is recorded, so one check-config run names them all.
        let rules = gateway.rules.iter().enumerate().filter_map(|(index, rule)| self.keep(self.rule(raw, index, rule)));
        let rules: Vec<GatewayRule> = rules.collect();
        Ok(Gateway { user_header: user_header.to_ascii_lowercase(), allow_unmatched, rules })
    }

    fn rule(&self, raw: &RawConfig, index: usize, rule: &RawGatewayRule) -> Result<GatewayRule, ConfigError> {
        let key = format!("gateway.rules[{index}]");
        let method = match &rule.method {
            None => None,
            Some(method) if METHODS.contains(&method.as_str()) => Some(method.clone()),
            Some(method) => {
                return Err(self.error(
                    format!("{key}.method"),
                    format!("{method:?} is not a method a rule can match"),
                    format!("use one of {} in upper case, or leave method out to match any", METHODS.join(", ")),
                ));
            }
        };
        if !rule.path_prefix.starts_with('/') {
            return Err(self.error(
                format!("{key}.path_prefix"),
                format!("{:?} does not start with /", rule.path_prefix),
                "write the path the proxy receives, e.g. \"/api/prompts\" (\"/\" matches every path)",
            ));
        }
        let action = match (&rule.metric, &rule.feature) {
            (Some(metric), None) => {
                if !raw.metrics.contains_key(metric) {
                    let known: Vec<&str> = raw.metrics.keys().map(String::as_str).collect();
                    return Err(self.error(
                        format!("{key}.metric"),
                        format!("metric {metric:?} is not defined under [metrics]"),
                        format!("use one of {}", known.join(", ")),
                    ));
                }
                let amount = rule.amount.unwrap_or(1);
                if !(1..=AMOUNT_MAX as i64).contains(&amount) {
                    return Err(self.error(
                        format!("{key}.amount"),
                        format!("{amount} is out of range"),
                        format!("use a whole number from 1 to {AMOUNT_MAX}"),
                    ));
                }
                GatewayAction::Track { metric: metric.clone(), amount: amount as u64 }
            }
            (None, Some(feature)) => {
                if rule.amount.is_some() {
                    return Err(self.error(
                        format!("{key}.amount"),
                        "is set on a feature rule",
                        "remove it: a feature rule uses the feature once per request",
                    ));
                }
                if !raw.plans.values().any(|plan| plan.features.contains_key(feature)) {
                    return Err(self.error(
                        format!("{key}.feature"),
                        format!("feature {feature:?} is not named by any plan"),
                        "use a feature the plans list under features",
                    ));
                }
                GatewayAction::Feature { feature: feature.clone() }
            }
            (Some(_), Some(_)) => {
                return Err(self.error(
                    key,
                    "names both a metric and a feature",
                    "split it into two rules, or keep one of metric and feature",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    key,
                    "names neither a metric nor a feature",
                    "add metric = \"...\" (tracks it) or feature = \"...\" (uses it)",
                ));
            }
        };
        Ok(GatewayRule { method, path_prefix: rule.path_prefix.clone(), action })
    }
}
