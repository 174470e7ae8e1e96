"""Reads meeting messages back from an IMAP INBOX as a user's mail client would: imaplib for the
mailbox, email for the MIME structure, icalendar for the calendar part.

usage: read_meeting_mail.py HOST PORT USER PASSWORD MESSAGE-ID EXPECTED [TIMEOUT_S]

Waits (mail arrives through Postfix and LMTP a fraction of a second after it was accepted) until
at least EXPECTED messages with that Message-ID are in the INBOX, or TIMEOUT_S passed, then
prints one JSON object: {"messages": [...]} with, for each message, what a client shows and
reads: subject, Message-ID, the Content-Type and method parameter of the text/calendar part,
and the calendar's METHOD, UID, SEQUENCE, STATUS, ORGANIZER and ATTENDEEs.
"""
import email
import email.policy
import imaplib
import json
import sys
import time

import icalendar


def read(host, port, user, password, message_id):
    imap = imaplib.IMAP4(host, port)
    try:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        typ, data = imap.search(None, "HEADER", "Message-ID", f'"{message_id}"')
        assert typ == "OK", (typ, data)
        out = []
        for num in data[0].split():
            typ, parts = imap.fetch(num, "(BODY.PEEK[])")
            assert typ == "OK", (typ, parts)
            raw = parts[0][1]
            out.append(describe(email.message_from_bytes(raw, policy=email.policy.default)))
        return out
    finally:
        try:
            imap.logout()
        except Exception:
            pass


def describe(msg):
    found = {"subject": str(msg["Subject"]), "message_id": str(msg["Message-ID"]), "calendar": None}
    for part in msg.walk():
        if part.get_content_type() != "text/calendar":
            continue
        cal = icalendar.Calendar.from_ical(part.get_content())
        events = [c for c in cal.walk("VEVENT")]
        assert len(events) == 1, f"one VEVENT expected, got {len(events)}"
        ev = events[0]
        attendees = ev.get("ATTENDEE", [])
        if not isinstance(attendees, list):
            attendees = [attendees]
        found["calendar"] = {
            "content_type": part.get_content_type(),
            "method_param": part.get_param("method"),
            "METHOD": str(cal.get("METHOD")),
            "UID": str(ev.get("UID")),
            "SEQUENCE": int(ev.get("SEQUENCE", 0)),
            "STATUS": str(ev.get("STATUS")) if ev.get("STATUS") is not None else None,
            "ORGANIZER": str(ev.get("ORGANIZER")),
            "ATTENDEE": [str(a) for a in attendees],
            "SUMMARY": str(ev.get("SUMMARY")),
        }
    return found


def main():
    host, port, user, password, message_id, expected = sys.argv[1:7]
    timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 15.0
    deadline = time.monotonic() + timeout
    while True:
        messages = read(host, int(port), user, password, message_id)
        if len(messages) >= int(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(json.dumps({"messages": messages}))


if __name__ == "__main__":
    main()
