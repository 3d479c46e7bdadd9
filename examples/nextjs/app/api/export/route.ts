// Git export behind a feature gate; a manual check before an expensive step.
import { NextResponse } from "next/server";
import { checkUsage, usageMiddleware } from "../../../lib/usage.js";

export const POST = usageMiddleware.gitExport(async (_request, context) => {
  const usageCheck = await checkUsage(context.userId, "e2eRuns", 1);
  if (!usageCheck.allowed && usageCheck.isHardLimit) {
    return NextResponse.json({ error: "Usage limit exceeded" }, { status: 429 });
  }
  return NextResponse.json({ exportData: { owner: context.userId } });
});
