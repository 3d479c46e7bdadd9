// A prompt endpoint as in the origin design: gated on the prompts limit before the handler,
// tracked (with the answer's bytes) after a successful answer.
import { NextResponse } from "next/server";
import { usageMiddleware } from "../../../lib/usage.js";

export const POST = usageMiddleware.prompts(async (request, context) => {
  const { text } = (await request.json()) as { text: string };
  return NextResponse.json({
    prompt: { owner: context.userId, text },
    usage: {
      plan: context.user.plan,
      remainingInPlan: context.usage.limit === null ? null : context.usage.limit - context.usage.currentUsage,
    },
  });
});
