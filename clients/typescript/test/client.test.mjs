// The client against the real server: typed answers, typed errors, retries that reuse one
// Idempotency-Key (a retried track counts once), and the origin design's functions.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { FeatureNotInPlanError, LimitExceededError, RateLimitedError, Tally, TallyTimeoutError } from "../dist/index.js";
import { checkFeature, checkUsage, configureTally, getUserUsageStats, incrementUsage, usageMiddleware } from "../dist/origin.js";
import { ADMIN_KEY, SERVICE_KEY, startTally } from "./server.mjs";

let server;
before(async () => {
  server = await startTally();
});
after(() => server.stop());

test("check and track answer typed results, and the hard limit throws LimitExceededError", async () => {
  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  const check = await tally.check("ts-ann", "prompts", { amount: 5 });
  assert.equal(check.allowed, true);
  assert.equal(check.limit, 30);
  const tracked = await tally.track("ts-ann", "prompts", { amount: 30 });
  assert.equal(tracked.used, 30);
  await assert.rejects(tally.track("ts-ann", "prompts"), (error) => {
    assert.ok(error instanceof LimitExceededError);
    assert.equal(error.upgradeTo, "solo");
    assert.equal(error.scope, "user");
    assert.equal(error.status, 429);
    return true;
  });
});

test("a reservation holds against the limit, commits once through a retry, and a second commit is refused", async () => {
  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  const held = await tally.reserve("ts-res", "prompts", { amount: 25, ttlSecs: 600 });
  assert.equal(held.state, "open");
  assert.equal(held.reserved, 25);
  assert.equal((await tally.check("ts-res", "prompts", { amount: 6 })).allowed, false);
  await assert.rejects(tally.reserve("ts-res", "prompts", { amount: 6 }), LimitExceededError);
  let calls = 0;
  const flaky = async (url, init) => {
    calls += 1;
    const response = await fetch(url, init);
    if (calls === 1) throw new TypeError("fetch failed: the connection dropped after the request was sent");
    return response;
  };
  const retrying = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY, fetch: flaky });
  const committed = await retrying.commitReservation(held.reservation_id, { amount: 18 });
  assert.equal(calls, 2, "the commit was sent twice");
  assert.equal(committed.state, "committed");
  assert.equal(committed.used, 18, "and recorded once");
  await assert.rejects(tally.releaseReservation(held.reservation_id), (error) => {
    assert.equal(error.status, 409);
    assert.equal(error.code, "reservation_closed");
    return true;
  });
});

test("a forecast is typed and projects at least what was used", async () => {
  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  await tally.track("ts-fc", "prompts", { amount: 4 });
  const forecast = await tally.getUserForecast("ts-fc", "prompts");
  assert.deepEqual(Object.keys(forecast.metrics), ["prompts"]);
  const prompts = forecast.metrics.prompts;
  assert.equal(prompts.used, 4);
  assert.ok(prompts.projected_low >= 4 && prompts.projected_low <= prompts.projected && prompts.projected <= prompts.projected_high);
  const admin = new Tally({ baseUrl: server.url, apiKey: ADMIN_KEY });
  const stored = await admin.admin.forecast();
  assert.equal(stored.computed_at, null, "the hourly job has not run yet");
});

test("a network failure after the server answered is retried with the same key and counts once", async () => {
  let calls = 0;
  const keys = [];
  const flaky = async (url, init) => {
    calls += 1;
    keys.push(init.headers["idempotency-key"]);
    const response = await fetch(url, init);
    if (calls === 1) throw new TypeError("fetch failed: the connection dropped after the request was sent");
    return response;
  };
  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY, fetch: flaky, retries: 2 });
  const result = await tally.track("ts-retry", "prompts", { amount: 7 });
  assert.equal(calls, 2);
  assert.equal(keys[0], keys[1], "one Idempotency-Key for every attempt");
  assert.equal(result.used, 7);
  const view = await tally.getUser("ts-retry");
  assert.equal(view.usage.prompts.used, 7, "stored once");
});

test("features throw FeatureNotInPlanError and RateLimitedError with retryAfterMs", async () => {
  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  await assert.rejects(tally.useFeature("ts-bob", "git_export"), (error) => {
    assert.ok(error instanceof FeatureNotInPlanError);
    assert.equal(error.planRequired, "solo");
    return true;
  });
  await tally.putUser("ts-solo", { plan: "solo" });
  await tally.useFeature("ts-solo", "active_project_snapshots");
  await assert.rejects(tally.useFeature("ts-solo", "active_project_snapshots"), (error) => {
    assert.ok(error instanceof RateLimitedError);
    assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 60_000, String(error.retryAfterMs));
    return true;
  });
});

test("a server that does not answer in time is a TallyTimeoutError", async () => {
  const never = (_url, init) => new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" }))));
  const tally = new Tally({ baseUrl: server.url, timeoutMs: 50, retries: 1, fetch: never });
  await assert.rejects(tally.check("x", "prompts"), TallyTimeoutError);
});

test("accounts and the admin methods", async () => {
  const admin = new Tally({ baseUrl: server.url, apiKey: ADMIN_KEY });
  await admin.putAccount("ts-team", "trial");
  await admin.putUser("ts-m1", { account_id: "ts-team" });
  const result = await admin.track("ts-m1", "prompts", { amount: 3 });
  assert.equal(result.account_id, "ts-team");
  const account = await admin.getAccount("ts-team");
  assert.equal(account.usage.prompts.used, 3);
  const plans = await admin.admin.plans();
  assert.ok(plans.some((plan) => plan.plan === "trial" && plan.accounts === 1));
  const grant = await admin.admin.grant({ account: "ts-team" }, { metric: "prompts", amount: 10 });
  assert.ok(grant.grant_id > 0);
  assert.equal((await admin.getAccount("ts-team")).usage.prompts.limit, 40);
});

test("billing fields and the month's billing report", async () => {
  const admin = new Tally({ baseUrl: server.url, apiKey: ADMIN_KEY });
  const view = await admin.putUser("ts-payer", { plan: "solo", stripe_customer_id: "cus_Ts1", email: "ts@example.com" });
  assert.equal(view.stripe_customer_id, "cus_Ts1");
  assert.equal(view.email, "ts@example.com");
  await admin.track("ts-payer", "prompts", { amount: 10_101 });
  const report = await admin.admin.billing();
  assert.equal(report.closed, false);
  const line = report.customers.find((customer) => customer.customer_id === "ts-payer");
  assert.deepEqual(line.metrics.prompts, { included: 10_000, used: 10_101, overage_units: 200, overage_cents: 2 });
  assert.equal(line.total_cents, 1_902);
});

test("the origin design's functions keep their names and result shapes", async () => {
  configureTally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  const usage = await checkUsage("ts-origin", "prompts", 5);
  assert.deepEqual(usage, { allowed: true, isHardLimit: true, limit: 30, currentUsage: 0, remaining: 30 });
  const feature = await checkFeature("ts-origin", "gitExport");
  assert.deepEqual(feature, { allowed: false, planRequired: "solo" });
  const incremented = await incrementUsage("ts-origin", "prompts", 4);
  assert.equal(incremented.currentUsage, 4);
  const stats = await getUserUsageStats("ts-origin");
  assert.equal(stats.usage.prompts.used, 4);
});

test("usageMiddleware gates before the handler and tracks after a successful answer", async () => {
  configureTally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  let ran = 0;
  const route = usageMiddleware.prompts(async (_request, context) => {
    ran += 1;
    return Response.json({ remainingInPlan: context.usage.limit - context.usage.currentUsage, plan: context.user.plan });
  });
  const request = (user) => new Request("http://app.test/api/prompts", { method: "POST", headers: { "x-user-id": user } });
  const first = await route(request("ts-mw"));
  assert.equal(first.status, 200);
  assert.deepEqual(await first.json(), { remainingInPlan: 30, plan: "trial" });
  const stats = await getUserUsageStats("ts-mw");
  assert.equal(stats.usage.prompts.used, 1, "tracked after the answer");
  assert.ok(stats.usage.bytes_out.used > 0, "the answer's bytes too");

  const tally = new Tally({ baseUrl: server.url, apiKey: SERVICE_KEY });
  await tally.track("ts-mw", "prompts", { amount: 29 });
  const refused = await route(request("ts-mw"));
  assert.equal(refused.status, 429);
  assert.equal(ran, 1, "the handler never ran past the limit");

  const exportRoute = usageMiddleware.gitExport(async () => Response.json({ exported: true }));
  const denied = await exportRoute(request("ts-mw"));
  assert.equal(denied.status, 403);
  assert.equal((await denied.json()).error.plan_required, "solo");
  assert.equal((await route(new Request("http://app.test/api/prompts", { method: "POST" }))).status, 401);
});
