// Where the origin design had lib/middleware/usage.ts: configure Tally once and re-export
// the same names, so route handlers keep their imports' shape.
import { configureTally } from "@tally/client/origin";

configureTally({
  baseUrl: process.env.TALLY_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.TALLY_API_KEY,
  // Your auth decides who the user is; here a header set by your own middleware.
  userId: (request) => request.headers.get("x-user-id"),
});

export { checkFeature, checkUsage, usageMiddleware } from "@tally/client/origin";
