#!/usr/bin/env bash
# Installs the Debian programs the interop tests and benchmarks drive as real peers.
# Idempotent: only missing packages are installed; apt's lists are refreshed at most once per run.
set -euo pipefail

PACKAGES=(
  clamav clamav-daemon clamdscan clamav-testfiles   # engine oracle, clamd backend, test corpus
  curl openssl                                      # HTTPS clients
  iptables iproute2                                 # transparent mode in a network namespace
  mitmproxy                                         # benchmark peer (mitmdump)
  zip unzip bzip2 cpio p7zip-full gcab mscompress arj   # archive fixtures built by real tools (unpack tests)
  swaks libio-socket-ssl-perl libauthen-sasl-perl   # SMTP client for the mail gateway tests (TLS, AUTH)
  chromium                                          # headless browser for page tests (playwright-core drives it)
  vsftpd lftp                                       # FTP(S) gateway tests: the server (inetd mode, own config) and a client
  stunnel4                                          # mTLS tunnel: client-mode interop and the bench peer
  c-icap libc-icap-mod-virus-scan squid             # ICAP: c-icap-client and Squid as clients, c-icap virus_scan as bench peer
  postgresql                                        # registry/event store tests start private clusters (initdb)
  redis-server                                      # shared verdict cache: tests start redis-server on an ephemeral port
  postfix                                           # SMTP bench: the real MTA behind the gateway (a private instance per run)
)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: apt-get not found; install these packages by hand: ${PACKAGES[*]}" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-peers: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-peers: all peers present"
  exit 0
fi
echo "install-peers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# postfix: no system configuration (the bench writes its own); its service is stopped below.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections 2>/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The clamav packages start their daemons; tests start their own clamd with a generated database.
systemctl stop clamav-daemon clamav-freshclam 2>/dev/null || true
# vsftpd's package starts a daemon on port 21; FTP tests start their own vsftpd per connection.
systemctl disable --now vsftpd 2>/dev/null || true
systemctl disable --now postfix 2>/dev/null || true
# Squid and c-icap start as system services too; tests run their own on ephemeral loopback ports.
for svc in squid c-icap; do
  systemctl disable --now "$svc" 2>/dev/null || { service "$svc" stop 2>/dev/null; update-rc.d "$svc" disable 2>/dev/null; } || true
done
# redis-server's package starts the system instance; cache tests run their own.
systemctl disable --now redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true
# Likewise PostgreSQL: tests run initdb in a temp dir on an ephemeral port; the system cluster stays off.
systemctl disable --now postgresql 2>/dev/null || service postgresql stop 2>/dev/null || true
echo "install-peers: done"
