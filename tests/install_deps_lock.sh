#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/install_deps.sh when another apt/dpkg holds the locks: it must wait (retry apt-get update
# while the lists lock is held; pass DPkg::Lock::Timeout to apt-get install) instead of failing at
# once. Runs the script against stub id / dpkg-query / apt-get commands; nothing is installed.
set -euo pipefail
src="$1"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir "$work/bin"
cat > "$work/bin/id" <<'SH'
#!/bin/sh
echo 0
SH
cat > "$work/bin/dpkg-query" <<'SH'
#!/bin/sh
echo not-installed
SH
# apt-get: `update` reports a held lists lock on its first two calls; every call is logged.
cat > "$work/bin/apt-get" <<SH
#!/bin/sh
echo "apt-get \$*" >> "$work/calls.log"
case " \$* " in
  *" update "*)
    n=\$(cat "$work/n" 2>/dev/null || echo 0); echo \$((n + 1)) > "$work/n"
    if [ "\$n" -lt 2 ]; then
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
      exit 100
    fi ;;
esac
exit 0
SH
chmod +x "$work/bin/"*
PATH="$work/bin:$PATH" HYDRAGNN_APT_LOCK_POLL=0.1 bash "$src/scripts/install_deps.sh" > "$work/out.txt" 2>&1 \
  || fail "install_deps.sh failed while the lock was held briefly: $(cat "$work/out.txt")"
[ "$(grep -c ' update' "$work/calls.log")" = 3 ] || fail "apt-get update not retried: $(cat "$work/calls.log")"
grep -q "waiting" "$work/out.txt" || fail "no waiting message: $(cat "$work/out.txt")"
grep -q "install .*DPkg::Lock::Timeout=600\|DPkg::Lock::Timeout=600 install" "$work/calls.log" \
  || fail "apt-get install without DPkg::Lock::Timeout: $(cat "$work/calls.log")"
grep -q "install .*python3" "$work/calls.log" || fail "python3 not among the packages: $(cat "$work/calls.log")"

# a lock that is never released: gives up after HYDRAGNN_APT_LOCK_TIMEOUT with a message
echo -1000 > "$work/n"
if PATH="$work/bin:$PATH" HYDRAGNN_APT_LOCK_TIMEOUT=1 HYDRAGNN_APT_LOCK_POLL=0.2 bash "$src/scripts/install_deps.sh" \
  > "$work/out2.txt" 2>&1; then fail "install_deps.sh succeeded although the lock was never released"; fi
grep -q "still held after 1s" "$work/out2.txt" || fail "no give-up message: $(cat "$work/out2.txt")"
echo "install_deps lock: all checks passed"
