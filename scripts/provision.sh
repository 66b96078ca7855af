#!/usr/bin/env bash
# provision.sh makes sure the programs the tests need are installed.
#
# Usage: scripts/provision.sh NAME...    (for example: scripts/provision.sh postgres mariadb)
#
# Each NAME is a prerequisite with a check and the Debian packages that provide it
# (see describe below; add a name there and in present). Silent when everything is
# present. When something is missing and we are root with apt-get, it runs apt-get
# update once and installs the packages without recommends, keeping the packaged
# system services from starting (a policy-rc.d denies starts during the install).
# Otherwise it prints which packages to install and exits 0, so that the tests
# skip, or 1 when SPENGLER_REQUIRE_DB=1, so that CI fails.
set -euo pipefail

prog=provision
known_names="postgres mariadb chromium prometheus"

# describe NAME prints the Debian packages providing NAME, or fails for an unknown NAME.
describe() {
	case "$1" in
	postgres) echo "postgresql" ;;
	mariadb) echo "mariadb-server" ;;
	chromium) echo "chromium chromium-driver" ;;
	prometheus) echo "prometheus" ;;
	*) return 1 ;;
	esac
}

# present NAME succeeds when NAME is installed.
present() {
	case "$1" in
	postgres)
		if [[ -n "${SPENGLER_PG_BINDIR:-}" && -x "$SPENGLER_PG_BINDIR/initdb" ]]; then
			return 0
		fi
		compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
		;;
	mariadb)
		[[ -x /usr/sbin/mariadbd ]] && command -v mariadb-install-db >/dev/null
		;;
	chromium)
		command -v chromium >/dev/null && command -v chromedriver >/dev/null
		;;
	prometheus)
		command -v prometheus >/dev/null && command -v promtool >/dev/null
		;;
	*) return 1 ;;
	esac
}

if [[ $# -eq 0 ]]; then
	echo "usage: $0 NAME... (names: $known_names)" >&2
	exit 2
fi

missing_names=()
missing_pkgs=()
for name in "$@"; do
	if ! pkgs=$(describe "$name"); then
		echo "$prog: unknown name \"$name\" (names: $known_names)" >&2
		exit 2
	fi
	if ! present "$name"; then
		missing_names+=("$name")
		read -r -a list <<<"$pkgs"
		missing_pkgs+=("${list[@]}")
	fi
done
if [[ ${#missing_names[@]} -eq 0 ]]; then
	exit 0
fi

policy=/usr/sbin/policy-rc.d
policy_backup=""

# restore_policy puts back whatever policy-rc.d there was before the install.
restore_policy() {
	if [[ -n "$policy_backup" ]]; then
		mv -f "$policy_backup" "$policy"
	else
		rm -f "$policy"
	fi
}

# install_missing installs missing_pkgs with apt-get, services kept from starting.
install_missing() {
	if [[ -e "$policy" ]]; then
		policy_backup="$policy.provision-backup.$$"
		cp -p "$policy" "$policy_backup"
	fi
	trap restore_policy EXIT
	printf '#!/bin/sh\n# Written by provision.sh for an install: deny service starts.\n%s\n' \
		'exit 101' >"$policy"
	chmod 0755 "$policy"
	echo "$prog: installing ${missing_pkgs[*]} (for ${missing_names[*]})" >&2
	local status=0
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing_pkgs[@]}" || status=$?
	restore_policy
	trap - EXIT
	return "$status"
}

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
	install_missing || echo "$prog: apt-get failed" >&2
fi

still_missing=0
for name in "${missing_names[@]}"; do
	if ! present "$name"; then
		echo "$prog: $name is missing: install the Debian package(s) $(describe "$name")" \
			"(apt-get install --no-install-recommends $(describe "$name"))" >&2
		still_missing=1
	fi
done
if [[ $still_missing -eq 0 ]]; then
	exit 0
fi
if [[ "${SPENGLER_REQUIRE_DB:-}" == 1 ]]; then
	echo "$prog: SPENGLER_REQUIRE_DB=1, so this is an error" >&2
	exit 1
fi
echo "$prog: tests that need what is missing will skip (SPENGLER_REQUIRE_DB=1 makes them fail)" >&2
exit 0
