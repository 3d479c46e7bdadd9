// Typed errors: every non-2xx answer becomes a TallyError carrying the server's stable
// `code`, with subclasses for the refusals an app acts on.

/** The server's error body: `{"error": {"code", "message", ...}}`. */
export interface ErrorBody {
  error: { code: string; message: string; [field: string]: unknown };
}

export class TallyError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: ErrorBody | undefined;

  constructor(status: number, code: string, message: string, body?: ErrorBody) {
    super(message);
    this.name = "TallyError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** 429 `limit_exceeded`: a hard limit refused a track; nothing was recorded. */
export class LimitExceededError extends TallyError {
  /** The cheapest plan under which the request would pass, if any. */
  readonly upgradeTo: string | null;
  readonly used: number;
  readonly limit: number;
  /** Whose limit refused it: the user's own or their account's pool. */
  readonly scope: "user" | "account";

  constructor(status: number, body: ErrorBody) {
    super(status, body.error.code, body.error.message, body);
    this.name = "LimitExceededError";
    this.upgradeTo = (body.error.upgrade_to as string | null | undefined) ?? null;
    this.used = Number(body.error.used ?? 0);
    this.limit = Number(body.error.limit ?? 0);
    this.scope = body.error.scope === "account" ? "account" : "user";
  }
}

/** 429 `rate_limited`: a rate-limited feature's window is full. */
export class RateLimitedError extends TallyError {
  /** How long until a use is allowed again. */
  readonly retryAfterMs: number;

  constructor(status: number, body: ErrorBody) {
    super(status, body.error.code, body.error.message, body);
    this.name = "RateLimitedError";
    this.retryAfterMs = Number(body.error.retry_after_ms ?? 0);
  }
}

/** 403 `feature_not_in_plan`: the user's plan does not grant the feature. */
export class FeatureNotInPlanError extends TallyError {
  readonly planRequired: string | null;

  constructor(status: number, body: ErrorBody) {
    super(status, body.error.code, body.error.message, body);
    this.name = "FeatureNotInPlanError";
    this.planRequired = (body.error.plan_required as string | null | undefined) ?? null;
  }
}

/** No answer within the client's timeout (after its retries). */
export class TallyTimeoutError extends TallyError {
  constructor(message: string) {
    super(0, "timeout", message);
    this.name = "TallyTimeoutError";
  }
}

/** The error for an answer of `status` with `body` (parsed JSON, or undefined). */
export function errorFor(status: number, body: unknown): TallyError {
  const parsed = body as ErrorBody | undefined;
  const code = parsed?.error?.code;
  if (parsed && code === "limit_exceeded") return new LimitExceededError(status, parsed);
  if (parsed && code === "rate_limited") return new RateLimitedError(status, parsed);
  if (parsed && code === "feature_not_in_plan") return new FeatureNotInPlanError(status, parsed);
  const message = parsed?.error?.message ?? `Tally answered HTTP ${status}`;
  return new TallyError(status, code ?? `http_${status}`, message, parsed);
}
