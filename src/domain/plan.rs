//! Plans as data: metrics, limits, features and the ranking that picks an upgrade. Built once
//! from the validated config; read-only afterwards. No parsing here (that is config.rs).

use indexmap::IndexMap;
use serde::Serialize;

/// How a limit is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// A use past the limit is refused.
    Hard,
    /// A use past the limit is allowed and flagged.
    Soft,
    Unlimited,
}

/// A plan's monthly limit for one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Hard(u64),
    Soft(u64),
}

impl Limit {
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Hard(limit) | Limit::Soft(limit) => Some(limit),
        }
    }

    pub fn enforcement(self) -> Enforcement {
        match self {
            Limit::Unlimited => Enforcement::Unlimited,
            Limit::Hard(_) => Enforcement::Hard,
            Limit::Soft(_) => Enforcement::Soft,
        }
    }
}

/// What a plan grants for one feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureGrant {
    Boolean(bool),
    /// At most `limit` successful uses in any rolling `window_secs` seconds; 0 grants nothing.
    Rate {
        limit: u32,
        window_secs: u32,
    },
}

impl FeatureGrant {
    pub fn is_granted(self) -> bool {
        match self {
            FeatureGrant::Boolean(granted) => granted,
            FeatureGrant::Rate { limit, .. } => limit > 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub name: String,
    pub unit: String,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub price_cents: u64,
    /// How many users an account on this plan may have; None: no cap.
    pub max_members: Option<u32>,
    /// One entry per configured metric, in the catalog's metric order.
    pub limits: IndexMap<String, Limit>,
    /// One entry per configured feature, in the catalog's feature order.
    pub features: IndexMap<String, FeatureGrant>,
    /// The metrics whose unused allowance rolls over to the next period, with the most that
    /// may roll over (`rollover_max`).
    pub rollover_max: IndexMap<String, u64>,
    /// The metrics whose use past the limit is billed, with their price.
    pub overage: IndexMap<String, Overage>,
}

/// The price of what passes a limit: `price_cents` for every started `per_units` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overage {
    pub price_cents: u64,
    /// At least 1.
    pub per_units: u64,
}

impl Plan {
    /// The plan's limit for `metric`; `Unlimited` for a metric the catalog does not know,
    /// which validation makes impossible for a plan in the catalog.
    pub fn limit(&self, metric: &str) -> Limit {
        self.limits.get(metric).copied().unwrap_or(Limit::Unlimited)
    }

    /// What the plan grants of `feature`; a feature it does not name is not granted.
    pub fn feature(&self, feature: &str) -> FeatureGrant {
        self.features.get(feature).copied().unwrap_or(FeatureGrant::Boolean(false))
    }
}

/// Every metric, feature and plan the server knows, plans in rank order.
#[derive(Clone, Debug)]
pub struct Catalog {
    metrics: IndexMap<String, Metric>,
    features: Vec<String>,
    /// Ranked: cheapest first, then by name.
    plans: Vec<Plan>,
    default_plan: usize,
}

impl Catalog {
    /// Ranks `plans` and checks that `default_plan` is one of them. Completeness of each
    /// plan (every metric, every feature) is the config validator's job.
    pub fn new(
        metrics: Vec<Metric>,
        features: Vec<String>,
        mut plans: Vec<Plan>,
        default_plan: &str,
    ) -> Option<Catalog> {
        plans.sort_by(|a, b| a.price_cents.cmp(&b.price_cents).then_with(|| a.name.cmp(&b.name)));
        let default_plan = plans.iter().position(|plan| plan.name == default_plan)?;
        let metrics = metrics.into_iter().map(|metric| (metric.name.clone(), metric)).collect();
        Some(Catalog { metrics, features, plans, default_plan })
    }

    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.values()
    }

    pub fn has_metric(&self, name: &str) -> bool {
        self.metrics.contains_key(name)
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Plans cheapest first.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn find_plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|plan| plan.name == name)
    }

    pub fn default_plan(&self) -> &Plan {
        &self.plans[self.default_plan]
    }

    /// The stored plan of a user; a user whose plan was removed from the config since is
    /// served (and counted) on the default plan, with its limits, until given another plan.
    pub fn plan_or_default(&self, name: &str) -> &Plan {
        self.find_plan(name).unwrap_or_else(|| self.default_plan())
    }

    /// The longest rolling window any plan gives `feature`; `None` for a boolean feature.
    pub fn longest_window_secs(&self, feature: &str) -> Option<u32> {
        self.plans
            .iter()
            .filter_map(|plan| match plan.feature(feature) {
                FeatureGrant::Rate { window_secs, .. } => Some(window_secs),
                _ => None,
            })
            .max()
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|feature| feature == name)
    }

    /// The one ranking rule behind every upgrade hint: the cheapest plan other than
    /// `current` for which `accepts` holds.
    pub fn cheapest_plan_where(&self, current: &str, accepts: impl Fn(&Plan) -> bool) -> Option<&Plan> {
        self.plans.iter().find(|plan| plan.name != current && accepts(plan))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn plan(name: &str, price_cents: u64, prompts: Limit) -> Plan {
        Plan {
            name: name.to_owned(),
            price_cents,
            max_members: None,
            limits: [("prompts".to_owned(), prompts)].into_iter().collect(),
            features: IndexMap::new(),
            rollover_max: IndexMap::new(),
            overage: IndexMap::new(),
        }
    }

    pub(crate) fn catalog(plans: Vec<Plan>) -> Catalog {
        let metric = Metric { name: "prompts".into(), unit: "prompts".into() };
        let default = plans[0].name.clone();
        Catalog::new(vec![metric], vec![], plans, &default).unwrap()
    }

    #[test]
    fn ranks_plans_by_price_then_name() {
        let catalog = catalog(vec![
            plan("teams", 4900, Limit::Unlimited),
            plan("b", 1900, Limit::Unlimited),
            plan("a", 1900, Limit::Unlimited),
            plan("trial", 0, Limit::Hard(30)),
        ]);
        let names: Vec<_> = catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
        assert_eq!(names, ["trial", "a", "b", "teams"]);
    }

    #[test]
    fn cheapest_plan_where_skips_the_current_plan() {
        let catalog = catalog(vec![plan("trial", 0, Limit::Hard(30)), plan("solo", 1900, Limit::Soft(10))]);
        let found = catalog.cheapest_plan_where("trial", |_| true).unwrap();
        assert_eq!(found.name, "solo");
        assert!(catalog.cheapest_plan_where("solo", |plan| plan.name == "solo").is_none());
    }

    #[test]
    fn unknown_stored_plan_falls_back_to_default() {
        let catalog = catalog(vec![plan("trial", 0, Limit::Hard(30))]);
        assert_eq!(catalog.plan_or_default("gone").name, "trial");
    }
}
