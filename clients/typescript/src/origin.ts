// The origin design's functions (lib/middleware/usage.ts of the app Tally grew from), with
// the same names and result shapes, on Tally: code that used them moves over by changing an
// import. Names may be written as the origin wrote them (camelCase: 'gitExport', 'e2eRuns');
// they are sent as Tally's snake_case names ('git_export', 'e2e_runs').
//
// Configure once (or set TALLY_URL and TALLY_API_KEY):
//   configureTally({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env.TALLY_KEY,
//                    userId: (req) => auth(req).userId });

import { FeatureNotInPlanError, LimitExceededError, RateLimitedError, Tally, TallyError } from "./index.js";
import type { TallyOptions, UserView } from "./index.js";

export interface OriginOptions extends Partial<TallyOptions> {
  /** How a route handler's request names its user; default: the `x-user-id` header. */
  userId?: (request: Request) => string | null | Promise<string | null>;
}

let configured: { tally: Tally; userId: NonNullable<OriginOptions["userId"]> } | undefined;

export function configureTally(options: OriginOptions = {}): Tally {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  const tally = new Tally({
    ...options,
    baseUrl: options.baseUrl ?? env.TALLY_URL ?? "http://127.0.0.1:8080",
    apiKey: options.apiKey ?? env.TALLY_API_KEY,
  });
  configured = { tally, userId: options.userId ?? ((request) => request.headers.get("x-user-id")) };
  return tally;
}

function current() {
  return configured ?? (configureTally(), configured!);
}

/** 'gitExport' -> 'git_export'; snake_case names pass unchanged. */
export function tallyName(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

export interface UsageCheck {
  allowed: boolean;
  isHardLimit: boolean;
  limit: number | null;
  currentUsage: number;
  remaining: number | null;
}

/** May the user use `amount` more of `metric`? Changes nothing. */
export async function checkUsage(userId: string, metric: string, amount = 1): Promise<UsageCheck> {
  const verdict = await current().tally.check(userId, tallyName(metric), { amount });
  return {
    allowed: verdict.allowed,
    isHardLimit: verdict.enforcement === "hard",
    limit: verdict.limit ?? null,
    currentUsage: verdict.used,
    remaining: verdict.remaining ?? null,
  };
}

export interface FeatureCheck {
  allowed: boolean;
  planRequired: string | null;
}

/** May the user use `feature` now? Changes nothing. */
export async function checkFeature(userId: string, feature: string): Promise<FeatureCheck> {
  const verdict = await current().tally.checkFeature(userId, tallyName(feature));
  return { allowed: verdict.allowed, planRequired: verdict.plan_required ?? null };
}

/** Records `amount` of `metric`; past a hard limit it throws LimitExceededError. */
export async function incrementUsage(userId: string, metric: string, amount = 1): Promise<UsageCheck> {
  const result = await current().tally.track(userId, tallyName(metric), { amount });
  return {
    allowed: result.allowed,
    isHardLimit: result.enforcement === "hard",
    limit: result.limit ?? null,
    currentUsage: result.used,
    remaining: result.remaining ?? null,
  };
}

/** The user's plan and usage this month. */
export function getUserUsageStats(userId: string): Promise<UserView> {
  return current().tally.getUser(userId);
}

/** The admin summary (needs an admin key). */
export function getAdminUsageStats(period?: string) {
  return current().tally.admin.usage({ period });
}

/** Deletes counters older than `retentionMonths` periods (needs an admin key). */
export function cleanupOldCounters(retentionMonths = 12) {
  return current().tally.admin.cleanup(retentionMonths);
}

export interface UsageContext {
  userId: string;
  user: { plan: string };
  usage: { limit: number | null; currentUsage: number; remaining: number | null };
}

type Handler<C> = (request: Request, context: C & UsageContext) => Response | Promise<Response>;

function refusal(error: TallyError): Response {
  const status = error instanceof FeatureNotInPlanError ? 403 : error.status || 502;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (error instanceof RateLimitedError) headers["retry-after"] = String(Math.ceil(error.retryAfterMs / 1000));
  return new Response(JSON.stringify(error.body ?? { error: { code: error.code, message: error.message } }), {
    status,
    headers,
  });
}

/** Gate on a metric before the handler, track it (and the answer's bytes) after a 2xx. */
function metered<C>(metric: string, bytesMetric: string | null, handler: Handler<C>) {
  return async (request: Request, context: C = {} as C): Promise<Response> => {
    const { tally, userId: resolve } = current();
    const userId = await resolve(request);
    if (!userId) return new Response(JSON.stringify({ error: { code: "unauthorized", message: "no user" } }), { status: 401 });
    const verdict = await tally.check(userId, metric);
    if (!verdict.allowed) {
      return refusal(new LimitExceededError(429, { error: { code: "limit_exceeded", message: `${metric} limit reached`, ...verdict, upgrade_to: null } }));
    }
    const usage = { limit: verdict.limit ?? null, currentUsage: verdict.used, remaining: verdict.remaining ?? null };
    const response = await handler(request, { ...context, userId, user: { plan: verdict.plan }, usage });
    if (response.ok) {
      try {
        await tally.track(userId, metric);
        if (bytesMetric) {
          const bytes = (await response.clone().arrayBuffer()).byteLength;
          if (bytes > 0) await tally.track(userId, bytesMetric, { amount: bytes, enforce: false });
        }
      } catch (error) {
        if (error instanceof LimitExceededError) return refusal(error);
        throw error;
      }
    }
    return response;
  };
}

/** Use a feature before the handler (a rate-limited one is counted then). */
function gated<C>(feature: string, handler: Handler<C>) {
  return async (request: Request, context: C = {} as C): Promise<Response> => {
    const { tally, userId: resolve } = current();
    const userId = await resolve(request);
    if (!userId) return new Response(JSON.stringify({ error: { code: "unauthorized", message: "no user" } }), { status: 401 });
    let plan: string;
    try {
      plan = (await tally.useFeature(userId, feature)).plan;
    } catch (error) {
      if (error instanceof TallyError && error.status !== 0) return refusal(error);
      throw error;
    }
    return handler(request, { ...context, userId, user: { plan }, usage: { limit: null, currentUsage: 0, remaining: null } });
  };
}

/** Next.js route-handler wrappers, as in the origin design. */
export const usageMiddleware = {
  prompts: <C>(handler: Handler<C>) => metered("prompts", "bytes_out", handler),
  e2eRuns: <C>(handler: Handler<C>) => metered("e2e_runs", "bytes_out", handler),
  gitExport: <C>(handler: Handler<C>) => gated("git_export", handler),
  multiUser: <C>(handler: Handler<C>) => gated("multi_user", handler),
  snapshots: <C>(handler: Handler<C>) => gated("active_project_snapshots", handler),
};
