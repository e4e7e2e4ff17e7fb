#!/usr/bin/env bash
# Installs the real programs `npm run test:interop` runs against, from Debian's packages.
# Idempotent: installs only what is missing. Run as root (CI does), or with sudo.
#
#   nginx           ssl_verify_client on, in front of curl
#   nats-server     tls { verify, verify_and_map } with per-user permissions
#   etcd-server     a 3-member cluster with client and peer certificate auth
#   etcd-client     etcdctl
#   postgresql      initdb + postgres with hostssl ... cert, and psql sslmode=verify-full
#   gnutls-bin      certtool --verify, an independent chain verifier; gnutls-cli, a strict TLS client (keyUsage)
#   golang-go       builds test/interop/goverify (Go's crypto/x509), offline: stdlib only
#   curl            the nginx client
#   faketime        libfaketime: servers judging certificates at another time
#   openssl         openssl verify -x509_strict
#   systemd         systemd-analyze verify: the shipped renewal timer and service units
#   prometheus      promtool: the metrics' exposition format and the example alert rules' unit tests
#   ca-certificates update-ca-certificates: `mtlskit trust install` into the system store
#   libnss3-tools   certutil: `mtlskit trust install` into an NSS database (browsers)
#   golang-cfssl    cfssl serve: not a test, the peer `npm run bench:serve` measures mtlskit serve against
#   lego            an ACME client (issue 16): EAB registration, http-01 and tls-alpn-01 against mtlskit serve's /acme/
#   certbot         the other ACME client (issue 16): standalone http-01, renew, revoke
#   bind9           named: the DNS server lego's rfc2136 provider updates and mtlskit serve's dns-01 validator asks (issue 16)
#   sqlite3         the sqlite3 CLI: the independent reader of the ledger in test/ledger.test.ts (integrity_check, rows), and cfssl's certdb for bench:serve's cfssl+db
set -euo pipefail

need=(
  nginx:nginx
  nats-server:nats-server
  etcd:etcd-server
  etcdctl:etcd-client
  certtool:gnutls-bin
  go:golang-go
  curl:curl
  faketime:faketime
  openssl:openssl
  promtool:prometheus
  systemd-analyze:systemd
  update-ca-certificates:ca-certificates
  certutil:libnss3-tools
  cfssl:golang-cfssl
  sqlite3:sqlite3
  lego:lego
  certbot:certbot
  named:bind9
)
missing=()
for pair in "${need[@]}"; do
  cmd="${pair%%:*}" pkg="${pair#*:}"
  PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# PostgreSQL's server binaries live in /usr/lib/postgresql/N/bin, not on PATH.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-interop: everything is installed"
  exit 0
fi
echo "install-interop: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
# Packages must not start their services (nginx, etcd, postgresql) on install: the suite starts
# its own on free loopback ports. policy-rc.d is Debian's switch for that.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
