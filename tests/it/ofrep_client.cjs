// Evaluates Tally's flags through the real OpenFeature server SDK and OFREP provider (from npm,
// installed by scripts/install-node.sh; NODE_PATH points at them), as an application would.
// Usage: node ofrep_client.cjs BASE_URL KEY CASES_JSON
// CASES_JSON: [{"type": "boolean" | "string", "flag", "default", "context"}]. Prints one JSON
// array: each case's evaluation details as the SDK gives them.
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

async function main() {
  const [baseUrl, key, casesJson] = process.argv.slice(2);
  const provider = new OFREPProvider({ baseUrl, headers: [['Authorization', `Bearer ${key}`]] });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  const results = [];
  for (const { type, flag, default: fallback, context } of JSON.parse(casesJson)) {
    const details =
      type === 'string'
        ? await client.getStringDetails(flag, fallback, context)
        : await client.getBooleanDetails(flag, fallback, context);
    results.push({
      flag: details.flagKey,
      value: details.value,
      variant: details.variant ?? null,
      reason: details.reason ?? null,
      errorCode: details.errorCode ?? null,
      metadata: details.flagMetadata ?? {},
    });
  }
  console.log(JSON.stringify(results));
  await OpenFeature.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
