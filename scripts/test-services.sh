#!/usr/bin/env bash
# scripts/test-services.sh: make Redis and PostgreSQL reachable for the tests.
#
# Usage: bash scripts/test-services.sh   (also run by `make test` and `make services`)
#
# Environment (the same variables internal/testsvc reads):
#   REDIS_ADDR         host:port of Redis. Default 127.0.0.1:6379.
#   POSTGRES_DSN       URL-form DSN, postgres://[user[:password]@]host[:port]/database[?params].
#                      Default postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
#                      Host, port, user, password and database are parsed out of the URL;
#                      the query string is ignored except sslmode. The keyword form
#                      ("host=... port=...") and multi-host URLs are not supported here.
#   TEST_SERVICES_DIR  where data, pid and log files of servers this script starts are
#                      kept. Default /tmp/watermill-obs-services.
#
# For each service:
#   - reachable already: nothing is changed ("reachable");
#   - otherwise, only for a loopback address: install it from Debian's packages when the
#     server is missing (apt-get, with service start-up by maintainer scripts suppressed,
#     since there may be no systemd), start it on the requested port ("started" or
#     "installed and started"), wait up to 30 s until it answers, and for PostgreSQL make
#     sure the DSN's role and database exist and that loopback TCP logins work without a
#     password (trust entries are prepended to pg_hba.conf only of a Debian cluster this
#     script installed or started, and only when the DSN cannot log in otherwise).
#   PostgreSQL is started as the Debian cluster configured for that port (pg_lsclusters)
#   when there is one, otherwise as a throwaway cluster in $TEST_SERVICES_DIR/postgres-PORT.
# It also installs the redis-server binary when it is missing, for the tests that start
# their own Redis Cluster.
# When a service still cannot be reached, the script names it on stderr and exits non-zero.
#
# Stopping what it started:
#   Redis:      redis-cli -h HOST -p PORT shutdown nosave
#   PostgreSQL: pg_ctlcluster --skip-systemctl-redirect VER NAME stop   (Debian cluster), or
#               runuser -u postgres -- /usr/lib/postgresql/VER/bin/pg_ctl \
#                   -D "$TEST_SERVICES_DIR/postgres-PORT" -m fast stop  (throwaway cluster)
# shellcheck disable=SC2016 # single-quoted scripts for bash -c/sh -c expand their own arguments
set -euo pipefail

readonly DEFAULT_REDIS_ADDR='127.0.0.1:6379'
readonly DEFAULT_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
readonly WAIT_SECONDS=30

REDIS_ADDR=${REDIS_ADDR:-$DEFAULT_REDIS_ADDR}
POSTGRES_DSN=${POSTGRES_DSN:-$DEFAULT_POSTGRES_DSN}
SERVICES_DIR=${TEST_SERVICES_DIR:-/tmp/watermill-obs-services}

APT_UPDATED=0
POLICY_RC_CREATED=0

log() { printf '%s\n' "$*" >&2; }

die() {
	log "test-services: $*"
	exit 1
}

cleanup() {
	if ((POLICY_RC_CREATED)); then
		as_root rm -f /usr/sbin/policy-rc.d || true
	fi
}
trap cleanup EXIT

have() { command -v "$1" >/dev/null 2>&1; }

# services_dir creates $SERVICES_DIR (only when something is installed or started).
services_dir() {
	mkdir -p "$SERVICES_DIR"
	chmod 755 "$SERVICES_DIR" 2>/dev/null || true
}

# as_root runs a command as root (directly, or through passwordless sudo).
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif have sudo && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "need root (or passwordless sudo) to run: $*"
	fi
}

# as_postgres runs a command as the postgres OS user (initdb and pg_ctl refuse root).
as_postgres() {
	if ((EUID == 0)); then
		id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (is the postgresql package installed?)"
		(cd / && runuser -u postgres -- "$@")
	elif [[ $(id -un) == postgres ]]; then
		"$@"
	elif have sudo && sudo -n -u postgres true 2>/dev/null; then
		(cd / && sudo -n -u postgres -- "$@")
	else
		# Not root: a throwaway cluster simply belongs to the current user.
		"$@"
	fi
}

is_loopback() {
	case $1 in
	localhost | ::1 | 127.*) return 0 ;;
	*) return 1 ;;
	esac
}

# parse_hostport ADDR DEFAULT_PORT sets HP_HOST and HP_PORT.
parse_hostport() {
	local s=$1 def=$2
	if [[ $s =~ ^\[([^]]+)\]:([0-9]+)$ ]]; then
		HP_HOST=${BASH_REMATCH[1]} HP_PORT=${BASH_REMATCH[2]}
	elif [[ $s =~ ^\[([^]]+)\]$ ]]; then
		HP_HOST=${BASH_REMATCH[1]} HP_PORT=$def
	elif [[ $s =~ ^([^:]*):([0-9]+)$ ]]; then
		HP_HOST=${BASH_REMATCH[1]:-127.0.0.1} HP_PORT=${BASH_REMATCH[2]}
	elif [[ $s =~ ^[^:,]*$ ]]; then
		HP_HOST=${s:-localhost} HP_PORT=$def
	else
		return 1
	fi
}

urldecode() {
	local s=${1//+/ }
	printf '%b' "${s//%/\\x}"
}

# tcp_open HOST PORT: something accepts TCP connections there.
tcp_open() {
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

tail_file() {
	if [[ -r $1 ]]; then
		log "---- last lines of $1 ----"
		tail -n 25 "$1" >&2 || true
		log "----"
	fi
}

# apt_install PKG... installs Debian packages without letting maintainer scripts start
# services (they may fail without systemd); the caller starts what it needs itself.
apt_install() {
	local apt_log="$SERVICES_DIR/apt.log"
	have apt-get || die "cannot install $* : apt-get not found (not a Debian-like system?)"
	services_dir
	log "test-services: installing $* from Debian packages (log: $apt_log)"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		POLICY_RC_CREATED=1
		as_root sh -c 'printf "#!/bin/sh\n# temporary, from scripts/test-services.sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
	fi
	local -a apt=(env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
		apt-get -q -o DPkg::Lock::Timeout=300)
	if ((!APT_UPDATED)); then
		if ! as_root "${apt[@]}" update </dev/null >>"$apt_log" 2>&1; then
			tail_file "$apt_log"
			die "apt-get update failed while installing $*"
		fi
		APT_UPDATED=1
	fi
	if ! as_root "${apt[@]}" install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"$@" </dev/null >>"$apt_log" 2>&1; then
		# A maintainer script that failed (typically starting a service without systemd)
		# leaves the packages unconfigured: finish configuring them and judge by the result.
		log "test-services: apt-get install $* failed; trying dpkg --configure -a"
		as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a </dev/null >>"$apt_log" 2>&1 || tail_file "$apt_log"
	fi
	if ((POLICY_RC_CREATED)); then
		as_root rm -f /usr/sbin/policy-rc.d
		POLICY_RC_CREATED=0
	fi
}

# ---------------------------------------------------------------------------- Redis

redis_ping() {
	local reply
	reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && IFS= read -r line <&3 && printf "%s" "$line"' \
		"$REDIS_HOST" "$REDIS_PORT" 2>/dev/null) || return 1
	[[ $reply == +PONG* ]]
}

ensure_redis() {
	local name="redis $REDIS_ADDR"
	if redis_ping; then
		echo "$name: reachable"
		return
	fi
	if tcp_open "$REDIS_HOST" "$REDIS_PORT"; then
		die "$name: the port is open but does not answer PING like an unprotected Redis; free the port or point REDIS_ADDR elsewhere"
	fi
	is_loopback "$REDIS_HOST" || die "$name: not reachable, and it is not a loopback address this script could start a server on"

	local did=started
	if ! have redis-server; then
		apt_install redis-server
		have redis-server || die "$name: redis-server is still missing after apt-get install redis-server (see $SERVICES_DIR/apt.log)"
		did="installed and started"
		if redis_ping; then # a maintainer script started it after all
			echo "$name: installed"
			return
		fi
	fi

	local dir="$SERVICES_DIR/redis-$REDIS_PORT" bind=$REDIS_HOST
	if [[ $bind == localhost ]]; then bind=127.0.0.1; fi
	services_dir
	mkdir -p "$dir"
	if ! redis-server --daemonize yes --bind "$bind" --port "$REDIS_PORT" --save "" --appendonly no \
		--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" </dev/null >>"$dir/start.log" 2>&1; then
		tail_file "$dir/start.log"
		tail_file "$dir/redis.log"
		die "$name: redis-server failed to start"
	fi
	local deadline=$((SECONDS + WAIT_SECONDS))
	until redis_ping; do
		if ((SECONDS >= deadline)); then
			tail_file "$dir/redis.log"
			die "$name: not reachable ${WAIT_SECONDS}s after starting redis-server (log: $dir/redis.log)"
		fi
		sleep 0.2
	done
	echo "$name: $did"
}

# ---------------------------------------------------------------------- PostgreSQL

parse_dsn() {
	local re='^(postgres|postgresql)://(([^@/]*)@)?([^/?#]*)(/([^?#]*))?(\?([^#]*))?$'
	[[ $POSTGRES_DSN =~ $re ]] || die "POSTGRES_DSN must be a postgres:// URL (the keyword form is not supported by this script): $(redacted_dsn)"
	local userinfo=${BASH_REMATCH[3]} hostport=${BASH_REMATCH[4]} db=${BASH_REMATCH[6]} query=${BASH_REMATCH[8]}
	if [[ $hostport == *,* ]]; then die "POSTGRES_DSN with several hosts is not supported by this script"; fi
	PG_USER=${userinfo%%:*}
	PG_PASSWORD=
	if [[ $userinfo == *:* ]]; then PG_PASSWORD=${userinfo#*:}; fi
	PG_USER=$(urldecode "$PG_USER")
	PG_PASSWORD=$(urldecode "$PG_PASSWORD")
	PG_USER=${PG_USER:-${PGUSER:-$(id -un)}}
	parse_hostport "$(urldecode "$hostport")" 5432 || die "cannot parse host:port of POSTGRES_DSN: $(redacted_dsn)"
	PG_HOST=$HP_HOST PG_PORT=$HP_PORT
	PG_DB=$(urldecode "$db")
	PG_DB=${PG_DB:-$PG_USER}
	PG_SSLMODE=prefer
	local kv
	local IFS='&'
	for kv in $query; do
		if [[ $kv == sslmode=* ]]; then PG_SSLMODE=${kv#sslmode=}; fi
	done
}

redacted_dsn() {
	# shellcheck disable=SC2001
	sed -E 's#(://[^:/@]*):[^@/]*@#\1:xxxxx@#' <<<"$POSTGRES_DSN"
}

# pg_dsn_ok: the DSN's user can log in to its database over TCP without a prompt.
# psql gets the parsed parts, not the URL, because libpq rejects pgx-only URL parameters.
pg_dsn_ok() {
	have psql || return 1
	PGPASSWORD=$PG_PASSWORD PGSSLMODE=$PG_SSLMODE PGCONNECT_TIMEOUT=3 \
		psql -X -w -q -A -t -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c 'select 1' </dev/null >/dev/null 2>&1
}

pg_ready() {
	pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

pg_wait_ready() {
	local deadline=$((SECONDS + WAIT_SECONDS))
	until pg_ready; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

have_pg_server() {
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

pg_bindir() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
	[[ -x $d ]] || return 1
	dirname "$d"
}

# find_admin sets ADMIN (a psql command line) to a superuser connection to the server.
find_admin() {
	local -a candidates=()
	ADMIN=()
	if [[ -n ${PG_SOCKET_DIR:-} ]]; then
		candidates+=("as_postgres psql -X -w -q -A -t -h $PG_SOCKET_DIR -p $PG_PORT -U postgres -d postgres")
	fi
	candidates+=("as_postgres psql -X -w -q -A -t -p $PG_PORT -d postgres")
	candidates+=("psql -X -w -q -A -t -h $PG_HOST -p $PG_PORT -U postgres -d postgres")
	local c
	for c in "${candidates[@]}"; do
		read -r -a ADMIN <<<"$c"
		if PGCONNECT_TIMEOUT=3 "${ADMIN[@]}" -c 'select 1' </dev/null >/dev/null 2>&1; then
			return 0
		fi
	done
	ADMIN=()
	return 1
}

# pg_ensure_role_db creates the DSN's role (LOGIN SUPERUSER, with the DSN's password if any)
# and database when they do not exist.
pg_ensure_role_db() {
	find_admin || {
		log "test-services: no superuser connection to PostgreSQL on port $PG_PORT to create role/database"
		return 1
	}
	"${ADMIN[@]}" -v ON_ERROR_STOP=1 -v u="$PG_USER" -v p="$PG_PASSWORD" -v d="$PG_DB" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'u', NULLIF(:'p', ''))
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'u')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'d')
\gexec
SQL
}

# pg_trust_loopback prepends trust entries for loopback TCP to pg_hba.conf and reloads.
pg_trust_loopback() {
	find_admin || return 1
	local hba marker='# added by scripts/test-services.sh: loopback logins without password for tests'
	hba=$("${ADMIN[@]}" -c 'show hba_file' </dev/null) || return 1
	[[ -n $hba ]] || return 1
	if ! grep -qF "$marker" "$hba"; then
		log "test-services: prepending loopback trust entries to $hba"
		local tmp
		tmp=$(mktemp)
		{
			printf '%s\n' "$marker" 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'
			cat "$hba"
		} >"$tmp"
		as_root sh -c 'cat "$1" >"$2"' sh "$tmp" "$hba"
		rm -f "$tmp"
	fi
	"${ADMIN[@]}" -c 'select pg_reload_conf()' </dev/null >/dev/null
	sleep 0.3
}

# pg_start_debian VER NAME starts a Debian cluster.
pg_start_debian() {
	local ver=$1 name=$2
	if ! as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start </dev/null >&2; then
		tail_file "/var/log/postgresql/postgresql-$ver-$name.log"
		die "postgres $PG_HOST:$PG_PORT: pg_ctlcluster $ver $name start failed"
	fi
}

# pg_start_throwaway starts (creating if needed) a cluster in $SERVICES_DIR/postgres-PORT.
pg_start_throwaway() {
	local bindir dir="$SERVICES_DIR/postgres-$PG_PORT" listen=$PG_HOST
	bindir=$(pg_bindir) || die "postgres $PG_HOST:$PG_PORT: no initdb under /usr/lib/postgresql/*/bin"
	PG_SOCKET_DIR=$dir
	services_dir
	if [[ -f $dir/PG_VERSION && $(<"$dir/PG_VERSION") != "$(basename "$(dirname "$bindir")")" ]]; then
		log "test-services: $dir was made by another PostgreSQL version; recreating it"
		rm -rf "$dir"
	fi
	# The marker is written only once initdb and the configuration succeeded.
	local ready="$SERVICES_DIR/postgres-$PG_PORT.ready"
	if [[ ! -f $dir/PG_VERSION || ! -f $ready ]]; then
		rm -rf "$dir" "$ready"
		mkdir -p "$dir"
		if ((EUID == 0)); then chown postgres:postgres "$dir"; fi
		chmod 700 "$dir"
		if ! as_postgres "$bindir/initdb" -D "$dir" --auth=trust --username=postgres --encoding=UTF8 --locale=C -N \
			</dev/null >"$SERVICES_DIR/initdb-$PG_PORT.log" 2>&1; then
			tail_file "$SERVICES_DIR/initdb-$PG_PORT.log"
			die "postgres $PG_HOST:$PG_PORT: initdb failed"
		fi
		as_postgres sh -c 'cat >>"$1"' sh "$dir/postgresql.conf" <<EOF
# added by scripts/test-services.sh: throwaway cluster for tests
listen_addresses = '$listen'
port = $PG_PORT
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
		touch "$ready"
	fi
	if ! as_postgres "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t "$WAIT_SECONDS" start \
		</dev/null >"$SERVICES_DIR/pg_ctl-$PG_PORT.log" 2>&1; then
		tail_file "$SERVICES_DIR/pg_ctl-$PG_PORT.log"
		tail_file "$dir/server.log"
		die "postgres $PG_HOST:$PG_PORT: pg_ctl start failed (data dir $dir)"
	fi
}

ensure_postgres() {
	parse_dsn
	local name="postgres $PG_HOST:$PG_PORT"
	if pg_dsn_ok; then
		echo "$name: reachable"
		return
	fi

	local -a pkgs=()
	local up=0 installed=0
	if tcp_open "$PG_HOST" "$PG_PORT"; then up=1; fi
	if ((!up)); then
		is_loopback "$PG_HOST" || die "$name: not reachable, and it is not a loopback address this script could start a server on"
		have_pg_server || pkgs+=(postgresql postgresql-client)
	fi
	have psql && have pg_isready || pkgs+=(postgresql-client)
	if ((${#pkgs[@]})); then
		apt_install "${pkgs[@]}"
		have psql || die "$name: psql is still missing after apt-get install ${pkgs[*]} (see $SERVICES_DIR/apt.log)"
		if ((!up)); then
			have_pg_server || die "$name: no PostgreSQL server under /usr/lib/postgresql after apt-get install (see $SERVICES_DIR/apt.log)"
			installed=1
		fi
	fi

	if ((up)); then
		# A server is there but the DSN does not log in: it may still be starting, or the
		# role/database may be missing. Do not touch its authentication settings.
		pg_wait_ready || die "$name: something listens on the port but PostgreSQL does not become ready"
		if ! pg_dsn_ok; then
			pg_ensure_role_db || true
			pg_dsn_ok || die "$name: reachable, but user '$PG_USER' cannot log in to database '$PG_DB' without a password prompt ($(redacted_dsn)); fix the server or POSTGRES_DSN"
			echo "$name: reachable (created role/database)"
			return
		fi
		echo "$name: reachable"
		return
	fi

	local started=0 cluster="" how
	if ! tcp_open "$PG_HOST" "$PG_PORT"; then # a maintainer script may have started it
		if have pg_lsclusters; then
			cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1 " " $2; exit }')
		fi
		if [[ -n $cluster ]]; then
			# shellcheck disable=SC2086
			pg_start_debian $cluster
			how="cluster ${cluster/ //}"
		else
			pg_start_throwaway
			how="throwaway cluster in $PG_SOCKET_DIR"
		fi
		started=1
	fi
	pg_wait_ready || die "$name: PostgreSQL not ready ${WAIT_SECONDS}s after starting it"
	pg_ensure_role_db || die "$name: could not create role '$PG_USER' / database '$PG_DB'"
	if ! pg_dsn_ok; then
		pg_trust_loopback || true
		pg_dsn_ok || die "$name: started, but user '$PG_USER' still cannot log in to database '$PG_DB' over TCP without a password ($(redacted_dsn))"
	fi
	if ((installed && started)); then
		echo "$name: installed and started ($how)"
	elif ((installed)); then
		echo "$name: installed"
	else
		echo "$name: started ($how)"
	fi
}

# The Redis Cluster tests start their own three-node cluster on loopback
# from the redis-server binary (internal/testsvc.RedisCluster), so the binary
# must be here even when the Redis the tests use runs elsewhere.
ensure_redis_binary() {
	if have redis-server; then
		return
	fi
	apt_install redis-server
	have redis-server || die "redis-server (for the Redis Cluster tests) is still missing after apt-get install redis-server (see $SERVICES_DIR/apt.log)"
	echo "redis-server: installed (for the Redis Cluster tests)"
}

main() {
	parse_hostport "$REDIS_ADDR" 6379 || die "cannot parse REDIS_ADDR (want host:port): $REDIS_ADDR"
	REDIS_HOST=$HP_HOST REDIS_PORT=$HP_PORT
	ensure_redis
	ensure_redis_binary
	ensure_postgres
}

main "$@"
