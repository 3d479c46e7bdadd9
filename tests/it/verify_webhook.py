"""Verifies one webhook delivery Tally made, with the receivers' own libraries.

Usage: verify_webhook.py DELIVERY.json SECRET [SECRET...]
DELIVERY.json holds {"headers": {name: value}, "body": "..."} as the receiver got them. Each
SECRET must verify with both schemes: Standard Webhooks (the official `standardwebhooks`
package, headers webhook-id / webhook-timestamp / webhook-signature) and Stripe's scheme
(`stripe.WebhookSignature.verify_header` on Tally-Signature). A secret prefixed with `!` must
be refused by both. Prints one line per check; exits non-zero on the first surprise.
"""
import json
import sys

import stripe
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verifies(secret, headers, body):
    results = []
    try:
        Webhook(secret).verify(body, headers)
        results.append(True)
    except WebhookVerificationError:
        results.append(False)
    try:
        stripe.WebhookSignature.verify_header(body, headers["tally-signature"], secret, tolerance=300)
        results.append(True)
    except stripe.SignatureVerificationError:
        results.append(False)
    return results


def main():
    with open(sys.argv[1]) as file:
        delivery = json.load(file)
    headers = {name.lower(): value for name, value in delivery["headers"].items()}
    body = delivery["body"]
    for secret in sys.argv[2:]:
        expected = not secret.startswith("!")
        secret = secret.lstrip("!")
        standard, stripe_scheme = verifies(secret, headers, body)
        print(f"{secret[:12]}...: standardwebhooks={standard} stripe={stripe_scheme} expected={expected}")
        if standard != expected or stripe_scheme != expected:
            sys.exit(1)


main()
