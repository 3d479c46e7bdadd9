//! The gateway's rules, as validated from `[gateway]`: which proxied request tracks which
//! metric or uses which feature, and the pure matching of a request's method and path
//! against them. Where the method and path come from (nginx, Traefik, Envoy) is http/'s.

/// `[gateway]`: whose request it is, the rules in order, and what an unmatched request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The header the proxy puts the user id in, lower-cased (a valid header name).
    pub user_header: String,
    /// Whether a request no rule matches is allowed (`default = "allow"`) or refused.
    pub allow_unmatched: bool,
    pub rules: Vec<GatewayRule>,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway { user_header: "x-user-id".to_owned(), allow_unmatched: true, rules: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRule {
    /// Upper case, e.g. "POST"; `None` matches any method.
    pub method: Option<String>,
    /// Starts with `/`; matches itself and whatever lies below it (`/api/prompts` matches
    /// `/api/prompts/7`, not `/api/promptsx`).
    pub path_prefix: String,
    pub action: GatewayAction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayAction {
    Track { metric: String, amount: u64 },
    Feature { feature: String },
}

impl Gateway {
    /// The first rule matching `method` and `path` (a path already normalized by
    /// `normalize_path`, without its query).
    pub fn find_rule(&self, method: &str, path: &str) -> Option<&GatewayRule> {
        self.rules.iter().find(|rule| {
            rule.method.as_deref().is_none_or(|wanted| wanted.eq_ignore_ascii_case(method))
                && under_prefix(&rule.path_prefix, path)
        })
    }
}

fn under_prefix(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// The path a rule is matched against, as the application behind the proxy would read it:
/// the query dropped, then segment by segment (split on the raw `/` first, so an encoded
/// `%2F` never becomes a separator) percent-escapes decoded, empty and `.` segments dropped
/// and `..` applied. Without this, `/api/%70rompts` or `/x/../api/prompts` would reach the
/// application's prompts route past a rule for `/api/prompts`. `None` (the caller refuses the
/// request) when a segment is not UTF-8 once decoded, decodes to hold `/` or `\`, is an
/// encoded `.` or `..`, or carries `;` parameters: paths an application may read differently
/// from this function.
pub fn normalize_path(uri: &str) -> Option<String> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
        let ambiguous =
            segment.contains(['/', '\\', ';']) || (segment != raw && matches!(segment.as_ref(), "." | ".."));
        if ambiguous {
            return None;
        }
        match segment.as_ref() {
            "" | "." => {}
            ".." => _ = segments.pop(),
            _ => segments.push(segment.into_owned()),
        }
    }
    let mut normalized = String::with_capacity(path.len() + 1);
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || path.ends_with('/') {
        normalized.push('/');
    }
    Some(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Gateway {
        let rule = |method: Option<&str>, path_prefix: &str, action| GatewayRule {
            method: method.map(str::to_owned),
            path_prefix: path_prefix.to_owned(),
            action,
        };
        Gateway {
            rules: vec![
                rule(Some("POST"), "/api/prompts", GatewayAction::Track { metric: "prompts".into(), amount: 1 }),
                rule(None, "/api/export", GatewayAction::Feature { feature: "git_export".into() }),
                rule(None, "/api", GatewayAction::Track { metric: "calls".into(), amount: 2 }),
            ],
            ..Gateway::default()
        }
    }

    fn matched(method: &str, uri: &str) -> Option<GatewayAction> {
        let path = normalize_path(uri)?;
        gateway().find_rule(method, &path).map(|rule| rule.action.clone())
    }

    #[test]
    fn the_first_matching_rule_wins_and_method_is_optional() {
        assert!(
            matches!(matched("POST", "/api/prompts"), Some(GatewayAction::Track { metric, .. }) if metric == "prompts")
        );
        assert!(
            matches!(matched("post", "/api/prompts/7?x=1"), Some(GatewayAction::Track { metric, .. }) if metric == "prompts")
        );
        assert!(
            matches!(matched("GET", "/api/prompts"), Some(GatewayAction::Track { metric, .. }) if metric == "calls")
        );
        assert!(matches!(matched("DELETE", "/api/export/1"), Some(GatewayAction::Feature { .. })));
        assert_eq!(matched("GET", "/healthz"), None);
    }

    #[test]
    fn a_prefix_matches_whole_segments_only() {
        assert!(
            matches!(matched("POST", "/api/promptsx"), Some(GatewayAction::Track { metric, .. }) if metric == "calls")
        );
        assert_eq!(matched("GET", "/apix"), None);
    }

    #[test]
    fn escapes_dot_segments_and_doubled_slashes_do_not_slip_past_a_rule() {
        for uri in ["/api/%70rompts", "//api//prompts", "/x/../api/prompts", "/api/./prompts/", "/../api/prompts"] {
            assert!(
                matches!(matched("POST", uri), Some(GatewayAction::Track { metric, .. }) if metric == "prompts"),
                "{uri}"
            );
        }
        assert_eq!(normalize_path("/api/%ff"), None);
        // An encoded separator or dot segment, or `;` parameters, would be read differently
        // by the application behind the proxy: refused.
        assert_eq!(normalize_path("/api/prompts/x%2F..%2F.."), None);
        assert_eq!(normalize_path("/api/prompts/%2e%2e"), None);
        assert_eq!(normalize_path("/api/prompts/a%5Cb"), None);
        assert_eq!(normalize_path("/api/prompts;v=1"), None);
        assert_eq!(normalize_path("/api/%70rompts/7").as_deref(), Some("/api/prompts/7"));
        assert_eq!(normalize_path("").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a/b/?q").as_deref(), Some("/a/b/"));
    }
}
