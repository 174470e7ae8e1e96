#!/usr/bin/env python3
"""Reads a Dovecot INBOX the way an attendee's mail client does, and prints its meeting messages.

Used by the CalDAV serve tests (crates/cli/tests/serve_dav.rs): the messages ledgersync sent
through SMTP are fetched with Python's `imaplib` (RFC 3501), parsed with `email` and their
`text/calendar` parts with `icalendar` (RFC 5545, 5546, 6047), none of which ledgersync wrote.

  imap_inbox.py HOST PORT USER PASSWORD UID

prints one JSON object per line for every message of the INBOX with a text/calendar part about
the meeting whose UID is UID: message_id, subject, content_type method, METHOD, UID, SEQUENCE,
STATUS, ORGANIZER, ATTENDEEs. A message that does not parse makes the script exit 1 with the
parser's error.
"""

import email
import email.policy
import imaplib
import json
import sys

import icalendar


def address(value):
    return None if value is None else str(value).lower().removeprefix("mailto:")


def main():
    host, port, user, password, uid = sys.argv[1:6]
    imap = imaplib.IMAP4(host, int(port))
    imap.login(user, password)
    status, _ = imap.select("INBOX", readonly=True)
    if status != "OK":
        sys.exit(f"cannot select INBOX of {user}")
    status, data = imap.uid("SEARCH", None, "ALL")
    for number in data[0].split():
        status, parts = imap.uid("FETCH", number, "(BODY.PEEK[])")
        raw = parts[0][1]
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() != "text/calendar":
                continue
            calendar = icalendar.Calendar.from_ical(part.get_content())
            for event in calendar.walk("VEVENT"):
                if str(event.get("UID")) != uid:
                    continue
                attendees = event.get("ATTENDEE") or []
                if not isinstance(attendees, list):
                    attendees = [attendees]
                print(json.dumps({
                    "message_id": message["Message-ID"],
                    "subject": message["Subject"],
                    "to": message["To"],
                    "content_type_method": part.get_param("method"),
                    "method": str(calendar.get("METHOD")),
                    "uid": str(event.get("UID")),
                    "sequence": int(event.get("SEQUENCE", 0)),
                    "status": None if event.get("STATUS") is None else str(event.get("STATUS")),
                    "summary": str(event.get("SUMMARY")),
                    "organizer": address(event.get("ORGANIZER")),
                    "attendees": sorted(address(a) for a in attendees),
                }))
    imap.logout()


if __name__ == "__main__":
    main()
