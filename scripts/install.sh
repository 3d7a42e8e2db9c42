#!/usr/bin/env bash
# Idempotent setup: system packages (when root and missing) and the project venv.
# Usage: scripts/install.sh [runtime|dev|bench]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-dev}
PYTHON=${PYTHON:-python3}

# Tools the lab tests and the bench drive; only installed when missing, only as root.
apt_pkgs=(tcpdump tshark nmap nftables dnsutils netcat-openbsd iproute2 libpcap-dev curl iputils-ping
  samba smbclient slapd ldap-utils dnsmasq-base openvpn wireguard-tools openssl
  # The lab's Active Directory domain: a Samba AD DC (its provisioning templates are only a recommendation
  # of samba-ad-dc, so named here), kinit/klist, and GSSAPI for ldapsearch -Y GSSAPI.
  samba-ad-dc samba-ad-provision krb5-user libsasl2-modules-gssapi-mit libnss-winbind
  # A real syslog receiver for the export tests (UDP, TCP and, with the GnuTLS driver, TLS); the tests
  # start their own rsyslogd with a config in a temporary directory.
  rsyslog rsyslog-gnutls
  # A real browser for the web console's test, driven by Playwright through executable_path (Playwright's
  # own browser download is not needed).
  chromium
  # promtool checks every service's /metrics exposition in the tests (the Prometheus server is not run).
  prometheus
  # `vigil completion zsh` is loaded by a real zsh in the tests.
  zsh)
need_apt=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ "$what" != runtime ] && [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install: apt-get ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
    # slapd: no default directory; the lab tests configure their own in a temporary directory.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "install: not root; skipping system packages (${need_apt[*]}); lab tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.vigil-install-$what
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # Some machines carry pip settings pointing at local mirrors that may not exist; their warnings are noise.
  quiet() { grep -v "^WARNING: Location .* is ignored" || true; }
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
  case "$what" in
    runtime) extras="embedded" ;;
    dev) extras="embedded,dev" ;;
    bench) extras="embedded,dev,bench" ;;
    *) echo "unknown target $what" >&2; exit 2 ;;
  esac
  .venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 | quiet
  touch "$stamp"
fi
