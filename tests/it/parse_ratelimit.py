"""Parses RateLimit headers as a client would, with `http-sf` (an RFC 9651 parser).

Usage: parse_ratelimit.py ANSWERS.json
ANSWERS.json is a list of {"RateLimit-Policy": "...", "RateLimit": "..."} (either may be
null). Prints one JSON document: {"answers": [{"policy": {name: {param: value}}, "state":
{name: {param: value}}}], "seconds_to_month_end": N}, the second figure measured now on this
machine's clock in UTC, for the monthly `t`. Exits non-zero if a header does not parse as
a structured-field list of strings with integer parameters.
"""
import datetime
import json
import sys

import http_sf


def items(text):
    if text is None:
        return None
    parsed = http_sf.parse(text.encode("ascii"), tltype="list")
    out = {}
    for value, params in parsed:
        if not isinstance(value, str):
            sys.exit(f"an item of {text!r} is not an sf-string: {value!r}")
        for name, param in params.items():
            if isinstance(param, bool) or not isinstance(param, int):
                sys.exit(f"parameter {name} of {text!r} is not an integer: {param!r}")
        out[value] = dict(params)
    return out


def main():
    with open(sys.argv[1]) as file:
        answers = json.load(file)
    now = datetime.datetime.now(datetime.timezone.utc)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + datetime.timedelta(days=32)).replace(day=1)
    parsed = [{"policy": items(a.get("RateLimit-Policy")), "state": items(a.get("RateLimit"))} for a in answers]
    print(json.dumps({"answers": parsed, "seconds_to_month_end": (following - now).total_seconds()}))


main()
