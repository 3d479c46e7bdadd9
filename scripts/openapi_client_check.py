"""Drives a live Tally through a Python client generated from docs/openapi.yaml by
openapi-python-client (scripts/openapi.sh generates it and starts the server).

The server runs a config of its own, with metric, plan and feature names that are not the
built-in defaults: a client generated from a spec that listed the defaults as enums raised
`ValueError: 'gold' is not a valid Plan` on the first answer naming one. Every call below
must come back with its documented status, parsed into the documented model; any other
status raises (raise_on_unexpected_status) and so does a body the model cannot parse.

Usage: openapi_client_check.py PACKAGE_DIR BASE_URL ADMIN_KEY
"""

import sys
from pathlib import Path

package_dir, base_url, admin_key = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path.insert(0, str(package_dir.parent))
client_module = __import__(package_dir.name)

from importlib import import_module  # noqa: E402


def api(tag, operation):
    return import_module(f"{package_dir.name}.api.{tag}.{operation}")


models = import_module(f"{package_dir.name}.models")
client = client_module.AuthenticatedClient(base_url=base_url, token=admin_key, raise_on_unexpected_status=True)
checked = []


def call(tag, operation, status, model, **kwargs):
    """Calls an operation; its answer must have `status` and parse into `model`."""
    response = api(tag, operation).sync_detailed(client=client, **kwargs)
    body = response.content.decode(errors="replace")
    assert response.status_code == status, f"{operation}: {response.status_code}, expected {status}: {body}"
    assert isinstance(response.parsed, model), f"{operation}: parsed as {type(response.parsed)}: {body}"
    checked.append(f"{operation} {status}")
    return response.parsed


call("health", "healthz", 200, models.Health)
call("health", "readyz", 200, models.Ready)

check = call("metering", "check", 200, models.CheckResult, body=models.CheckRequest(user_id="ada", metric="tokens"))
assert (check.plan, check.metric, check.allowed) == ("free", "tokens", True), check

for used in (1, 2):
    tracked = call("metering", "track", 200, models.TrackResult, body=models.TrackRequest(user_id="ada", metric="tokens"))
    assert (tracked.plan, tracked.used) == ("free", used), tracked
refused = call("metering", "track", 429, models.LimitExceeded, body=models.TrackRequest(user_id="ada", metric="tokens"))
assert (refused.error.code, refused.error.plan, refused.error.upgrade_to) == ("limit_exceeded", "free", "gold"), refused

gate = call("features", "check_feature", 200, models.FeatureResult, body=models.FeatureRequest(user_id="ada", feature="sso"))
assert (gate.allowed, gate.plan_required) == (False, "gold"), gate

view = call("users", "put_user", 200, models.UserView, user_id="ada", body=models.PutUserRequest(plan="gold"))
assert view.plan == "gold", view
assert set(view.usage.additional_properties) == {"tokens", "builds"}, view.usage
assert set(view.features.additional_properties) == {"sso", "exports"}, view.features

used = call("features", "use_feature", 200, models.FeatureResult, body=models.FeatureRequest(user_id="ada", feature="exports"))
assert used.remaining_in_window == 0, used
limited = call("features", "use_feature", 429, models.RateLimited, body=models.FeatureRequest(user_id="ada", feature="exports"))
assert (limited.error.code, limited.error.feature, limited.error.plan) == ("rate_limited", "exports", "gold"), limited
assert limited.error.user_id == "ada", limited

view = call("users", "get_user", 200, models.UserView, user_id="ada")
assert view.usage.additional_properties["tokens"].used == 2, view

call("admin", "admin_get_user", 200, models.AdminUserDetails, user_id="ada")
summary = call("admin", "admin_usage_summary", 200, models.UsageSummary, metric="tokens")
call("admin", "admin_plans", 200, list)
call("admin", "admin_offenders", 200, models.OffendersReport, metric="tokens")
report = call("billing", "admin_billing", 200, models.BillingReport)
line = report.customers[0]
assert (line.customer_id, line.plan, line.total_cents) == ("ada", "gold", 4900), report
assert set(line.metrics.additional_properties) == {"tokens", "builds"}, line.metrics
call("monitoring", "admin_events", 200, models.EventPage)
call("admin", "admin_change_plan", 200, models.UserView, user_id="ada", body=models.PutUserRequest(plan="free"))

print(f"openapi_client_check: {len(checked)} answers parsed by the generated client: {', '.join(checked)}")
