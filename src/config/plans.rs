//! Validation of the catalog: `[metrics]` and `[plans]` (limits and features) become the
//! domain's `Catalog`, with every plan stating every metric and feature.

use super::raw::{self, RawConfig, RawFeature, RawLimit};
use super::{ConfigError, Validator};
use crate::domain::plan::{Catalog, FeatureGrant, Limit, Metric, Plan};
use indexmap::IndexMap;

impl Validator<'_> {
    fn name(&self, key: &str, name: &str, what: &str) -> Result<(), ConfigError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(self.error(
                key,
                format!("{name:?} is not a valid {what} name"),
                "use 1 to 64 characters from a-z A-Z 0-9 _ -",
            ))
        }
    }

    pub(super) fn catalog(&self, raw: &RawConfig) -> Result<Catalog, ConfigError> {
        if raw.metrics.is_empty() {
            return Err(self.error(
                "metrics",
                "no metric is defined",
                "define at least one, e.g. prompts = { unit = \"prompts\" }",
            ));
        }
        if raw.plans.is_empty() {
            return Err(self.error("plans", "no plan is defined", "define at least one plan, e.g. [plans.trial]"));
        }
        let mut metrics = Vec::new();
        for (name, metric) in &raw.metrics {
            self.name(&format!("metrics.{name}"), name, "metric")?;
            metrics.push(Metric { name: name.clone(), unit: metric.unit.clone() });
        }
        // Features are whatever the plans name; each plan must then name them all.
        let mut features: IndexMap<String, (bool, String)> = IndexMap::new();
        for (plan_name, plan) in &raw.plans {
            for (feature, grant) in &plan.features {
                if feature == "plan" {
                    // OFREP serves the features as flags beside the string flag `plan`.
                    return Err(self.error(
                        format!("plans.{plan_name}.features.{feature}"),
                        "\"plan\" is reserved: OFREP serves the user's plan as the flag `plan`",
                        "rename the feature",
                    ));
                }
                let is_rate = !matches!(grant, RawFeature::Switch(_));
                let (first_is_rate, first_plan) =
                    features.entry(feature.clone()).or_insert_with(|| (is_rate, plan_name.clone())).clone();
                if first_is_rate != is_rate {
                    return Err(self.error(
                        format!("plans.{plan_name}.features.{feature}"),
                        format!("is {} here but {} in plan {first_plan}", kind_name(is_rate), kind_name(first_is_rate)),
                        "make the feature boolean in every plan, or rate-limited in every plan",
                    ));
                }
            }
        }
        let mut plans = Vec::new();
        // Every plan is checked; the caller records the last refusal after the others.
        let mut refusals = Vec::new();
        for (plan_name, plan) in &raw.plans {
            match self.plan(plan_name, plan, &raw.metrics, &features) {
                Ok(plan) => plans.push(plan),
                Err(refusal) => refusals.push(refusal),
            }
        }
        if let Some(last) = refusals.pop() {
            refusals.into_iter().for_each(|refusal| self.refuse(refusal));
            return Err(last);
        }
        let default_plan = &raw.usage.default_plan;
        let plan_names: Vec<&str> = raw.plans.keys().map(String::as_str).collect();
        Catalog::new(metrics, features.into_keys().collect(), plans, default_plan).ok_or_else(|| {
            self.error(
                "usage.default_plan",
                format!("{default_plan:?} is not a configured plan"),
                format!("use one of: {}", plan_names.join(", ")),
            )
        })
    }

    fn plan(
        &self,
        plan_name: &str,
        raw: &raw::RawPlan,
        metrics: &IndexMap<String, raw::RawMetric>,
        features: &IndexMap<String, (bool, String)>,
    ) -> Result<Plan, ConfigError> {
        let prefix = format!("plans.{plan_name}");
        self.name(&prefix, plan_name, "plan")?;
        let price_cents = self.in_range(&format!("{prefix}.price_cents"), raw.price_cents, 0, i64::MAX)? as u64;
        for metric in raw.limits.keys() {
            if !metrics.contains_key(metric) {
                return Err(self.error(
                    format!("{prefix}.limits.{metric}"),
                    format!("{metric:?} is not a metric under [metrics]"),
                    "define the metric under [metrics], or remove this limit",
                ));
            }
        }
        let mut limits = IndexMap::new();
        let mut rollover = IndexMap::new();
        let mut overage = IndexMap::new();
        for metric in metrics.keys() {
            let key = format!("{prefix}.limits.{metric}");
            let limit = match raw.limits.get(metric) {
                None => {
                    return Err(self.error(
                        key,
                        format!("plan {plan_name} does not state a limit for metric {metric}"),
                        format!("add {metric} = \"unlimited\" or {metric} = {{ limit = N, enforcement = \"hard\" }} to its limits"),
                    ));
                }
                Some(RawLimit::Word(word)) if word == "unlimited" => Limit::Unlimited,
                Some(RawLimit::Word(word)) => {
                    return Err(self.error(
                        key,
                        format!("{word:?} is not a limit"),
                        "write \"unlimited\" or { limit = N, enforcement = \"hard\" }",
                    ));
                }
                Some(RawLimit::Capped(raw::RawCapped { limit, enforcement, rollover_max, overage: raw_overage })) => {
                    if let Some(raw_overage) = raw_overage
                        && let Some(price) = self.keep(self.overage(&key, enforcement, raw_overage))
                    {
                        overage.insert(metric.clone(), price);
                    }
                    if let Some(max) = rollover_max {
                        let max = self.in_range(&format!("{key}.rollover_max"), *max, 0, i64::MAX)?;
                        if enforcement == "unlimited" {
                            return Err(self.error(
                                format!("{key}.rollover_max"),
                                "is set on an unlimited metric",
                                "remove rollover_max: nothing is left over from an unlimited allowance",
                            ));
                        }
                        rollover.insert(metric.clone(), max as u64);
                    }
                    if *limit < 0 {
                        return Err(self.error(
                            format!("{key}.limit"),
                            format!("{limit} is negative"),
                            "use a limit of 0 or more, or \"unlimited\"",
                        ));
                    }
                    match enforcement.as_str() {
                        "hard" => Limit::Hard(*limit as u64),
                        "soft" => Limit::Soft(*limit as u64),
                        other => {
                            return Err(self.error(
                                format!("{key}.enforcement"),
                                format!("{other:?} is not an enforcement"),
                                "use \"hard\" (refuse past the limit) or \"soft\" (allow and flag)",
                            ));
                        }
                    }
                }
            };
            limits.insert(metric.clone(), limit);
        }
        let mut grants = IndexMap::new();
        for feature in features.keys() {
            let key = format!("{prefix}.features.{feature}");
            let grant = match raw.features.get(feature) {
                None => {
                    return Err(self.error(
                        key,
                        format!("plan {plan_name} does not state feature {feature}, which other plans name"),
                        format!("add {feature} = true/false or {{ per_minute = N }} to its features"),
                    ));
                }
                Some(RawFeature::Switch(on)) => FeatureGrant::Boolean(*on),
                Some(RawFeature::PerMinute(raw::RawPerMinute { per_minute })) => FeatureGrant::Rate {
                    limit: self.in_range(&format!("{key}.per_minute"), *per_minute, 0, u32::MAX.into())? as u32,
                    window_secs: 60,
                },
                Some(RawFeature::Window(raw::RawWindow { limit, window_secs })) => FeatureGrant::Rate {
                    limit: self.in_range(&format!("{key}.limit"), *limit, 0, u32::MAX.into())? as u32,
                    window_secs: self.in_range(&format!("{key}.window_secs"), *window_secs, 1, 86_400)? as u32,
                },
            };
            self.name(&key, feature, "feature")?;
            grants.insert(feature.clone(), grant);
        }
        let max_members = match raw.max_members {
            Some(max) => Some(self.in_range(&format!("{prefix}.max_members"), max, 1, 1_000_000)? as u32),
            None => None,
        };
        Ok(Plan {
            name: plan_name.to_owned(),
            price_cents,
            max_members,
            limits,
            features: grants,
            rollover_max: rollover,
            overage,
        })
    }
}

fn kind_name(is_rate: bool) -> &'static str {
    if is_rate { "rate-limited" } else { "boolean" }
}
