"""Parses every mail in a Maildir (as aiosmtpd's Mailbox handler keeps them) with Python's
email package, as a mail client would.

Usage: parse_mail.py MAILDIR
Prints one JSON list, oldest first: {"from", "to", "subject", "message_id", "content_type",
"text", "html"}, the last two the decoded text/plain and text/html parts (null if missing).
Exits non-zero if a mail does not parse.
"""
import email
import email.policy
import json
import mailbox
import sys

mails = []
for message in mailbox.Maildir(sys.argv[1], create=False):
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    mails.append({
        "from": str(parsed["From"]),
        "to": str(parsed["To"]),
        "subject": str(parsed["Subject"]),
        "message_id": str(parsed["Message-ID"]),
        "date": str(parsed["Date"]),
        "content_type": parsed.get_content_type(),
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    })
mails.sort(key=lambda mail: mail["subject"])
print(json.dumps(mails))
