#!/usr/bin/env bash
# scripts/install-prometheus.sh: make prometheus and promtool available for the
# tests of deploy/ (promtool checks the configs; the live test runs a server).
#
# Usage: bash scripts/install-prometheus.sh   (run by `make test` before go test)
#
# When both are in PATH already, nothing is changed. Otherwise Debian's
# `prometheus` package (which ships both) is installed with apt-get,
# non-interactively and without recommended packages. Maintainer scripts are
# kept from starting the Prometheus service (a temporary policy-rc.d, removed
# again on exit): the tests need only the promtool binary, and there may be
# no systemd: the live test starts its own server on loopback. Running it
# twice is harmless.
#
# Exits non-zero, naming the cause on stderr, when either is still missing.
set -euo pipefail

LOG_DIR=${TEST_SERVICES_DIR:-/tmp/watermill-obs-services}
POLICY_RC_CREATED=0

log() { printf '%s\n' "$*" >&2; }

die() {
	log "install-prometheus: $*"
	exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# as_root runs a command as root, through sudo when this is not root.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif have sudo; then
		sudo -n "$@"
	else
		die "cannot run $1 as root: not root and no sudo"
	fi
}

cleanup() {
	if ((POLICY_RC_CREATED)); then
		as_root rm -f /usr/sbin/policy-rc.d || true
	fi
}
trap cleanup EXIT

if have promtool && have prometheus; then
	exit 0
fi

have apt-get || die "prometheus or promtool is missing and apt-get is not available: install Prometheus by hand"
mkdir -p "$LOG_DIR"
apt_log="$LOG_DIR/apt-prometheus.log"
log "install-prometheus: prometheus or promtool is missing; installing Debian's prometheus package (log: $apt_log)"

if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	POLICY_RC_CREATED=1
	as_root sh -c 'printf "#!/bin/sh\n# temporary, from scripts/install-prometheus.sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
fi

apt=(env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get -q -o DPkg::Lock::Timeout=300)
if ! as_root "${apt[@]}" update </dev/null >>"$apt_log" 2>&1; then
	tail -n 20 "$apt_log" >&2 || true
	die "apt-get update failed"
fi
if ! as_root "${apt[@]}" install -y --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	prometheus </dev/null >>"$apt_log" 2>&1; then
	# A maintainer script that failed (starting a service without systemd)
	# leaves the package unconfigured; promtool itself is unpacked by then.
	log "install-prometheus: apt-get install prometheus failed; trying dpkg --configure -a"
	as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a </dev/null >>"$apt_log" 2>&1 || tail -n 20 "$apt_log" >&2 || true
fi

have promtool || die "promtool is still missing after apt-get install prometheus (see $apt_log)"
have prometheus || die "prometheus is still missing after apt-get install prometheus (see $apt_log)"
log "install-prometheus: $(promtool --version 2>&1 | head -n 1)"
