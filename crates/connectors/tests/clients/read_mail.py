"""Reads emails back from an IMAP folder as a user's mail client would: imaplib for the
mailbox, email for the message and its MIME parts.

usage: read_mail.py HOST PORT USER PASSWORD FOLDER MESSAGE-ID EXPECTED [TIMEOUT_S]

Waits (mail arrives through Postfix and LMTP a fraction of a second after it was accepted) until
at least EXPECTED messages with that Message-ID are in FOLDER, or TIMEOUT_S passed, then prints
one JSON object: {"messages": [...]} with, for each message, its flags and what a client shows:
subject, Message-ID, From, Sender, To, Cc, Date, the text/plain and text/html bodies.
"""
import email
import email.policy
import imaplib
import json
import sys
import time


def read(host, port, user, password, folder, message_id):
    imap = imaplib.IMAP4(host, port)
    try:
        imap.login(user, password)
        typ, data = imap.select(folder, readonly=True)
        assert typ == "OK", (typ, data)
        typ, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", f'"{message_id}"')
        assert typ == "OK", (typ, data)
        out = []
        for uid in data[0].split():
            typ, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
            assert typ == "OK", (typ, parts)
            flags = imaplib.ParseFlags(parts[0][0])
            raw = parts[0][1]
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            out.append(describe(msg, [f.decode() for f in flags]))
        return out
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def describe(msg, flags):
    found = {
        "flags": flags,
        "subject": str(msg["Subject"]),
        "message_id": str(msg["Message-ID"]),
        "from": str(msg["From"]),
        "sender": str(msg["Sender"]) if msg["Sender"] is not None else None,
        "to": str(msg["To"]) if msg["To"] is not None else None,
        "cc": str(msg["Cc"]) if msg["Cc"] is not None else None,
        "date": str(msg["Date"]) if msg["Date"] is not None else None,
        "content_type": msg.get_content_type(),
        "text": None,
        "html": None,
    }
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and found["text"] is None:
            found["text"] = part.get_content().strip()
        elif part.get_content_type() == "text/html" and found["html"] is None:
            found["html"] = part.get_content().strip()
    return found


def main():
    host, port, user, password, folder, message_id, expected = sys.argv[1:8]
    timeout = float(sys.argv[8]) if len(sys.argv) > 8 else 10.0
    deadline = time.monotonic() + timeout
    while True:
        messages = read(host, int(port), user, password, folder, message_id)
        if len(messages) >= int(expected) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    print(json.dumps({"messages": messages}))


if __name__ == "__main__":
    main()
