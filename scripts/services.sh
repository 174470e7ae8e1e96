#!/usr/bin/env bash
# The servers ledgersync's tests need, on loopback only. Called by scripts/test before the tests.
#
#   scripts/services.sh start    # (default) start what is not running; check what is
#   scripts/services.sh status   # what listens on the ports the tests use
#   scripts/services.sh stop     # stop the mail and DAV servers this script started
#
# Idempotent and non-interactive (CI runs it with CI=true and no input). A server that already
# listens is only checked, never reconfigured or restarted. A server that is missing is
# installed with apt (as root) and started with a loopback-only configuration.
#
# RabbitMQ (the AMQP bus tests, crates/bus and crates/runtime): 127.0.0.1:5672, guest/guest
# (guest may only log in from loopback, RabbitMQ's default). The tests create a vhost of their
# own with rabbitmqctl, so rabbitmqctl must be able to talk to the node (as root, or as the
# rabbitmq user). Configuration as measured in shared/infra/services.md §3a: node
# rabbit@localhost, every listener on 127.0.0.1, plugins enabled offline before the start,
# readiness awaited on the node's pid file.
#
# Mail and DAV (the connector tests, crates/connectors), as measured in services.md §3b-3d:
#   Dovecot 2.3   IMAP 127.0.0.1:1143, POP3 1110, LMTP 2424, submission 1587 (AUTH PLAIN,
#                 relays to 2525)
#   Postfix 3.7   SMTP 127.0.0.1:2525, the test domains delivered to Dovecot over LMTP;
#                 unknown recipients are refused at RCPT (550 5.1.1); nothing leaves the machine
#   Radicale 3.9  CalDAV/CardDAV http://127.0.0.1:5232/, htpasswd (plain), rights owner_only
# Users (password: the local part + "pw"):
#   IMAP/SMTP  alice@example.org, bob@example.org, paul@example.org, and the example
#              organization of `ledgersync example`: jayne@serenity.example,
#              paul@serenity.example, zoe@customer.example, linda@customer.example,
#              river@customer.example; kaylee@serenity.example, whose INBOX only the
#              incoming-email tests of `ledgersync serve` read
#   Radicale   alice, bob, paul, jayne (alice/alicepw ...)
#
# Where their files live: these servers are one per machine (fixed ports), so their
# configuration, mail and collections live in one place per machine, not in a checkout (a
# fresh clone, another worktree or `cargo clean` must not pull the files from under a running
# server): $LEDGERSYNC_TEST_DIR, by default /var/lib/ledgersync-test as root, else
# ~/.cache/ledgersync-test. Below it: venv/ (pip: radicale), radicale/ (config, users,
# collections, log), dovecot/ (dovecot.conf, users, mail/<domain>/<user>/Maildir, log),
# postfix/ (a Postfix instance of its own: main.cf, master.cf, queue, postfix.log). Nothing
# under /etc/dovecot or /etc/postfix is read or changed. Everything there is test data: delete
# the directory (after `stop`) to start afresh.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] %s\n' "$*" >&2; exit 1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_root() { [ "$(id -u)" = 0 ]; }

RABBIT_ENV=/etc/rabbitmq/rabbitmq-env.conf
RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
RABBIT_PID=/var/lib/rabbitmq/mnesia/rabbit@localhost.pid
MARKER='# written by ledgersync scripts/services.sh'

# The loopback configuration, written only where no configuration exists yet (or where this
# script wrote it): an administrator's own files are left alone.
rabbitmq_config() {
  mkdir -p /etc/rabbitmq
  if [ ! -s "$RABBIT_ENV" ] || grep -qF "$MARKER" "$RABBIT_ENV"; then
    cat >"$RABBIT_ENV" <<EOF
$MARKER
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
export ERL_EPMD_ADDRESS=127.0.0.1
EOF
  else
    log "keeping the existing $RABBIT_ENV"
  fi
  if [ ! -s "$RABBIT_CONF" ] || grep -qF "$MARKER" "$RABBIT_CONF"; then
    cat >"$RABBIT_CONF" <<EOF
$MARKER
listeners.tcp.default = 127.0.0.1:5672
distribution.listener.interface = 127.0.0.1
loopback_users.guest = true
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
stream.listeners.tcp.1 = 127.0.0.1:5552
EOF
  else
    log "keeping the existing $RABBIT_CONF"
  fi
}

rabbitmq_install() {
  command -v rabbitmq-server >/dev/null && return
  is_root || die "RabbitMQ is not installed and nothing listens on 127.0.0.1:5672: run this script as root (it installs the Debian package rabbitmq-server), or install and start RabbitMQ on 127.0.0.1:5672 yourself"
  command -v apt-get >/dev/null || die "RabbitMQ is not installed and there is no apt-get: install RabbitMQ and start it on 127.0.0.1:5672"
  # The configuration goes first: a package that starts its service on install (systemd)
  # then starts it on loopback.
  rabbitmq_config
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -q >/dev/null
  fi
  log "installing rabbitmq-server (apt)"
  apt-get install -y -q -o Dpkg::Options::=--force-confold rabbitmq-server >/dev/null
}

rabbitmq_check() {
  command -v rabbitmqctl >/dev/null \
    || die "something listens on 127.0.0.1:5672 but rabbitmqctl is missing: the AMQP tests create their vhosts with it (install rabbitmq-server)"
  rabbitmqctl -q list_vhosts >/dev/null 2>&1 \
    || die "rabbitmqctl cannot reach the node on 127.0.0.1:5672: the AMQP tests create their vhosts with it; run the tests as root (or as the rabbitmq user)"
}

rabbitmq_start() {
  if listening 5672; then
    rabbitmq_check
    log "rabbitmq: already listening on 127.0.0.1:5672"
    return
  fi
  rabbitmq_install
  if ! listening 5672; then
    is_root || die "nothing listens on 127.0.0.1:5672 and starting RabbitMQ needs root: run this script as root, or start RabbitMQ on 127.0.0.1:5672"
    rabbitmq_config
    # Online, the plugins would bind on every interface until a restart: enable them first.
    rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_consistent_hash_exchange rabbitmq_stream >/dev/null
    log "starting rabbitmq"
    rabbitmq-server -detached
    # await_startup fails until the node has registered with epmd: wait on the pid file.
    rabbitmqctl -q wait --timeout 60 "$RABBIT_PID" \
      || die "RabbitMQ did not start within 60 s: see /var/log/rabbitmq/"
  fi
  listening 5672 || die "RabbitMQ runs but nothing listens on 127.0.0.1:5672: see $RABBIT_CONF and /var/log/rabbitmq/"
  rabbitmq_check
  log "rabbitmq: listening on 127.0.0.1:5672"
}

# --- mail and DAV servers --------------------------------------------------------------------

if [ -n "${LEDGERSYNC_TEST_DIR:-}" ]; then
  D=$LEDGERSYNC_TEST_DIR
elif is_root; then
  D=/var/lib/ledgersync-test
else
  D=${XDG_CACHE_HOME:-$HOME/.cache}/ledgersync-test
fi
MAIL_USERS="alice@example.org bob@example.org paul@example.org jayne@serenity.example kaylee@serenity.example
paul@serenity.example zoe@customer.example linda@customer.example river@customer.example"
MAIL_DOMAINS="example.org serenity.example customer.example"
DAV_USERS="alice bob paul jayne"
POSTFIX_DIR=$D/postfix

wait_port() { # port [seconds]
  local end=$((SECONDS + ${2:-30}))
  until listening "$1"; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
}
wait_closed() { # port [seconds]
  local end=$((SECONDS + ${2:-15}))
  while listening "$1"; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
}

apt_install() { # what-for, packages...
  local what=$1; shift
  is_root || die "$what is not installed: run this script as root (it installs the Debian packages $*), or install $* and start $what yourself"
  command -v apt-get >/dev/null || die "$what is not installed and there is no apt-get: install $* yourself"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -q >/dev/null
  fi
  log "installing $* (apt)"
  apt-get install -y -q -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

# Radicale from PyPI (the version the tests were measured with, not Debian's 3.1) in a venv of
# the test directory. The Debian python3 first: a pyenv or conda python on PATH may come and go.
radicale_start() {
  if listening 5232; then
    curl -s -o /dev/null -w '%{http_code}' -X PROPFIND -H 'Depth: 0' http://127.0.0.1:5232/ 2>/dev/null | grep -qE '^(207|401)$' \
      || die "something listens on 127.0.0.1:5232 but does not answer PROPFIND like a CalDAV server: stop it, or free the port"
    log "radicale: already listening on 127.0.0.1:5232"
    return
  fi
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3) || die "python3 is missing: Radicale runs on it (apt-get install python3-venv)"
  mkdir -p "$D/radicale/collections"
  if ! "$D/venv/bin/python" -c 'import radicale' 2>/dev/null; then
    if [ ! -x "$D/venv/bin/python" ] && ! "$py" -m venv "$D/venv" >/dev/null 2>&1; then
      is_root && command -v apt-get >/dev/null || die "python3 cannot create a venv: apt-get install python3-venv (as root)"
      apt_install "the python3 venv module" python3-venv
      "$py" -m venv "$D/venv"
    fi
    log "installing radicale 3.9.0 (pip, into $D/venv)"
    "$D/venv/bin/pip" install -q --disable-pip-version-check 'radicale==3.9.0' \
      || die "pip could not install radicale==3.9.0 into $D/venv"
  fi
  : >"$D/radicale/users.new"
  for u in $DAV_USERS; do printf '%s:%spw\n' "$u" "$u" >>"$D/radicale/users.new"; done
  mv "$D/radicale/users.new" "$D/radicale/users"
  cat >"$D/radicale/config" <<EOF
$MARKER
[server]
hosts = 127.0.0.1:5232
[auth]
type = htpasswd
htpasswd_filename = $D/radicale/users
htpasswd_encryption = plain
[rights]
type = owner_only
[storage]
filesystem_folder = $D/radicale/collections
[logging]
level = warning
EOF
  log "starting radicale"
  # Not `cd X && nohup Y &`: that backgrounds a subshell, and $! would not be the server.
  (cd "$D/radicale"; nohup "$D/venv/bin/python" -m radicale --config "$D/radicale/config" >>radicale.log 2>&1 & echo $! >"$D/radicale/pid")
  wait_port 5232 || die "Radicale did not start within 30 s: see $D/radicale/radicale.log"
  log "radicale: listening on 127.0.0.1:5232 (pid $(cat "$D/radicale/pid"))"
}

# The example organization's collections (config/radicale.toml): a calendar holding events and
# tasks and an address book for jayne and paul, created when missing (a PROPFIND finds them).
radicale_example_collections() {
  local u code
  exists() { # user, path
    [ "$(curl -s -o /dev/null -w '%{http_code}' -u "$1:${1}pw" -X PROPFIND -H 'Depth: 0' "http://127.0.0.1:5232$2")" = 207 ]
  }
  for u in jayne paul; do
    if ! exists "$u" "/$u/calendar/"; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -u "$u:${u}pw" -X MKCALENDAR -H 'Content-Type: application/xml' \
        --data '<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Calendar</D:displayname><C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VTODO"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>' \
        "http://127.0.0.1:5232/$u/calendar/")
      [ "$code" = 201 ] || die "MKCALENDAR /$u/calendar/ on Radicale answered $code"
    fi
    if ! exists "$u" "/$u/contacts/"; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -u "$u:${u}pw" -X MKCOL -H 'Content-Type: application/xml' \
        --data '<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>Contacts</D:displayname></D:prop></D:set></D:mkcol>' \
        "http://127.0.0.1:5232/$u/contacts/")
      [ "$code" = 201 ] || die "MKCOL /$u/contacts/ on Radicale answered $code"
    fi
  done
}

# The users of the Dovecot instance of this script (a passwd-file, read again at each login).
dovecot_users() {
  : >"$D/dovecot/users.new"
  for u in $MAIL_USERS; do printf '%s:{PLAIN}%spw::::::\n' "$u" "${u%@*}" >>"$D/dovecot/users.new"; done
  mv "$D/dovecot/users.new" "$D/dovecot/users"
}

# Dovecot with a configuration file of its own (nothing under /etc/dovecot is used).
dovecot_start() {
  if listening 1143; then
    listening 2424 || die "something listens on 127.0.0.1:1143 but nothing on 2424 (Dovecot LMTP, which Postfix delivers to): start Dovecot with LMTP on 127.0.0.1:2424"
    if grep -qsF "$MARKER" "$D/dovecot/dovecot.conf"; then
      # An instance this script started gets the users added since; one started before POP3
      # was served is started again with it.
      dovecot_users
      if listening 1110; then
        log "dovecot: already listening on 127.0.0.1:1143 (IMAP) and 1110 (POP3)"
        return
      fi
      log "dovecot: restarting the instance of this script to serve POP3 on 127.0.0.1:1110"
      dovecot -c "$D/dovecot/dovecot.conf" stop 2>/dev/null || true
      for _ in $(seq 50); do listening 1143 || break; sleep 0.2; done
    else
      listening 1110 || die "something listens on 127.0.0.1:1143 but nothing on 1110 (POP3): start Dovecot with POP3 on 127.0.0.1:1110"
      log "dovecot: already listening on 127.0.0.1:1143 (IMAP) and 1110 (POP3)"
      return
    fi
  fi
  command -v dovecot >/dev/null && [ -x /usr/lib/dovecot/lmtp ] && [ -x /usr/lib/dovecot/submission ] && [ -x /usr/lib/dovecot/pop3 ] \
    || apt_install "Dovecot (IMAP 1143, POP3 1110, LMTP 2424, submission 1587)" dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond
  is_root || die "nothing listens on 127.0.0.1:1143 and starting Dovecot needs root (it delivers as the user vmail): run this script as root"
  # Mail processes may not run as root.
  id vmail >/dev/null 2>&1 || useradd --system --home-dir "$D/dovecot/mail" --shell /usr/sbin/nologin vmail
  mkdir -p "$D/dovecot/run" "$D/dovecot/state" "$D/dovecot/mail"
  dovecot_users
  cat >"$D/dovecot/dovecot.conf" <<EOF
$MARKER
base_dir = $D/dovecot/run
state_dir = $D/dovecot/state
instance_name = ledgersync-test
log_path = $D/dovecot/dovecot.log
info_log_path = $D/dovecot/dovecot.log
protocols = imap pop3 lmtp submission
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
first_valid_uid = 100
mail_location = maildir:~/Maildir
mail_uid = vmail
mail_gid = vmail
mail_privileged_group = vmail
default_internal_user = dovecot
default_login_user = dovenull
hostname = mail.example.org
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $D/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $D/dovecot/users
  default_fields = uid=vmail gid=vmail home=$D/dovecot/mail/%d/%n
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 1143
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 1110
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 2424
  }
}
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = 1587
  }
}
submission_relay_host = 127.0.0.1
submission_relay_port = 2525
submission_relay_trusted = yes
protocol lmtp {
  postmaster_address = postmaster@example.org
}
EOF
  chown -R vmail:vmail "$D/dovecot/mail"
  doveconf -c "$D/dovecot/dovecot.conf" -n >/dev/null \
    || die "Dovecot rejects $D/dovecot/dovecot.conf (doveconf -c $D/dovecot/dovecot.conf -n says why)"
  log "starting dovecot"
  # Its stdout and stderr must not stay open on the caller's pipe (`scripts/test | tee` would
  # never end): the master keeps the descriptors it was started with.
  dovecot -c "$D/dovecot/dovecot.conf" </dev/null >>"$D/dovecot/dovecot.log" 2>&1
  wait_port 1143 && wait_port 1110 && wait_port 2424 || die "Dovecot did not start within 30 s: see $D/dovecot/dovecot.log"
  log "dovecot: IMAP 127.0.0.1:1143, POP3 1110, LMTP 2424, submission 1587"
}

# A Postfix instance of its own (config_directory $D/postfix): the administrator's
# /etc/postfix is neither read nor changed, and no listener on port 25 is created. The package
# is installed with debconf's "No configuration", so a machine whose package manager starts
# services does not start a default Postfix either.
postfix_start() {
  if listening 2525; then
    log "postfix: already listening on 127.0.0.1:2525"
    return
  fi
  if ! command -v postfix >/dev/null; then
    if is_root; then
      echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
    apt_install "Postfix (SMTP 127.0.0.1:2525)" postfix
  fi
  is_root || die "nothing listens on 127.0.0.1:2525 and starting Postfix needs root: run this script as root"
  mkdir -p "$POSTFIX_DIR/spool" "$POSTFIX_DIR/lib"
  : >"$POSTFIX_DIR/vmailbox.new"
  for u in $MAIL_USERS; do printf '%s OK\n' "$u" >>"$POSTFIX_DIR/vmailbox.new"; done
  mv "$POSTFIX_DIR/vmailbox.new" "$POSTFIX_DIR/vmailbox"
  cat >"$POSTFIX_DIR/main.cf" <<EOF
$MARKER
compatibility_level = 3.6
config_directory = $POSTFIX_DIR
queue_directory = $POSTFIX_DIR/spool
data_directory = $POSTFIX_DIR/lib
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-ledgersync-test
maillog_file = $POSTFIX_DIR/postfix.log
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.org
mydestination =
mynetworks = 127.0.0.0/8
local_transport = error:no local delivery
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = ${MAIL_DOMAINS// /, }
virtual_mailbox_maps = texthash:$POSTFIX_DIR/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:2424
default_transport = error:this test server delivers nothing off the machine
relay_transport = error:this test server delivers nothing off the machine
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
smtpd_tls_security_level = none
smtp_tls_security_level = none
message_size_limit = 10240000
EOF
  # The services of the package's master.cf, without its port 25 listener; ours on 2525.
  sed -e 's/^smtp \{1,\}inet /#&/' /usr/share/postfix/master.cf.dist >"$POSTFIX_DIR/master.cf" 2>/dev/null \
    || sed -e 's/^smtp \{1,\}inet /#&/' /etc/postfix/master.cf >"$POSTFIX_DIR/master.cf"
  printf '%s\n127.0.0.1:2525 inet n - n - - smtpd\n' "$MARKER" >>"$POSTFIX_DIR/master.cf"
  postfix -c "$POSTFIX_DIR" set-permissions >/dev/null 2>&1 || true
  postfix -c "$POSTFIX_DIR" check || die "Postfix rejects the configuration in $POSTFIX_DIR (postfix -c $POSTFIX_DIR check)"
  log "starting postfix"
  postfix -c "$POSTFIX_DIR" start </dev/null >>"$POSTFIX_DIR/postfix.log" 2>&1
  wait_port 2525 || die "Postfix did not start within 30 s: see $POSTFIX_DIR/postfix.log"
  log "postfix: listening on 127.0.0.1:2525"
}

mail_stop() {
  if [ -f "$D/radicale/pid" ] && kill -0 "$(cat "$D/radicale/pid")" 2>/dev/null; then
    kill "$(cat "$D/radicale/pid")"
    wait_closed 5232 || kill -9 "$(cat "$D/radicale/pid")"
    log "radicale stopped"
  fi
  rm -f "$D/radicale/pid"
  if [ -f "$POSTFIX_DIR/main.cf" ] && postfix -c "$POSTFIX_DIR" status >/dev/null 2>&1; then
    postfix -c "$POSTFIX_DIR" stop 2>/dev/null
    wait_closed 2525 || true
    log "postfix stopped"
  fi
  if [ -f "$D/dovecot/run/master.pid" ] && kill -0 "$(cat "$D/dovecot/run/master.pid")" 2>/dev/null; then
    dovecot -c "$D/dovecot/dovecot.conf" stop 2>/dev/null
    wait_closed 1143 || true
    log "dovecot stopped"
  fi
}

status() {
  ss -ltnp 2>/dev/null | awk 'NR==1 || /127\.0\.0\.1:(5672|15672|5552|4369|25672|1143|1587|2424|2525|5232) /' || true
}

case "${1:-start}" in
  start)
    rabbitmq_start
    dovecot_start
    postfix_start
    radicale_start
    radicale_example_collections
    status
    ;;
  status) status ;;
  stop) mail_stop ;;
  *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
