"""Another IMAP client, as a user's mail program acts on the mailbox ledgersync reads:
Python's imaplib creates and deletes folders, APPENDs messages and MOVEs them.

    imap_client.py HOST PORT USER PASSWORD create FOLDER
    imap_client.py HOST PORT USER PASSWORD delete FOLDER
    imap_client.py HOST PORT USER PASSWORD append FOLDER   (the message on standard input)
    imap_client.py HOST PORT USER PASSWORD move FROM TO MESSAGE-ID
    imap_client.py HOST PORT USER PASSWORD append-big FOLDER MESSAGE-ID MEGABYTES

The message appended gets the current time as its INTERNALDATE. Exits non-zero with the
server's answer when a command is refused.
"""
import imaplib
import sys
import time


def ok(what, answer):
    typ, data = answer
    if typ != 'OK':
        sys.exit('%s refused: %s %r' % (what, typ, data))
    return data


def main():
    host, port, user, password, op = sys.argv[1:6]
    args = sys.argv[6:]
    m = imaplib.IMAP4(host, int(port))
    ok('LOGIN', m.login(user, password))
    if op == 'create':
        ok('CREATE', m.create(args[0]))
    elif op == 'delete':
        ok('DELETE', m.delete(args[0]))
    elif op == 'append':
        ok('APPEND', m.append(args[0], None, imaplib.Time2Internaldate(time.time()),
                              sys.stdin.buffer.read()))
    elif op == 'append-big':
        folder, message_id, mb = args
        head = ('From: Zoe Washburne <zoe@customer.example>\r\nTo: %s\r\n'
                'Subject: A big attachment\r\nMessage-ID: %s\r\n'
                'Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n'
                'Content-Type: text/plain\r\n\r\n' % (user, message_id)).encode()
        line = b'x' * 998 + b'\r\n'
        body = line * (int(mb) * 1024 * 1024 // len(line) + 1)
        ok('APPEND', m.append(folder, None, imaplib.Time2Internaldate(time.time()), head + body))
    elif op == 'move':
        source, target, message_id = args
        ok('SELECT', m.select(source))
        uids = ok('SEARCH', m.uid('SEARCH', 'HEADER', 'Message-ID', message_id))[0].split()
        if len(uids) != 1:
            sys.exit('expected one message %s in %s, found %r' % (message_id, source, uids))
        ok('MOVE', m.uid('MOVE', uids[0].decode(), target))
    else:
        sys.exit('unknown operation ' + op)
    m.logout()


if __name__ == '__main__':
    main()
