#!/usr/bin/env bash
# Prove a Gradescope bundle in a clean root filesystem (issue #13): debootstrap a minimal Debian,
# run the bundle's setup.sh in it (as Gradescope builds its image), then run_autograder on a
# correct, a C and an empty submission.  Root only; downloads ~150 MB.  Not part of pytest.
#
#   sudo tests/gradescope_clean_root.sh smtp-client es
#
# Behind a TLS-intercepting proxy, set PIP_CERT to the proxy's CA bundle: it is copied in.
set -euo pipefail
EXERCISE=${1:-smtp-client}
LANG_=${2:-en}
SUITE=${SUITE:-bookworm}
ROOT=$(mktemp -d /tmp/gsroot.XXXXXX)
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
cleanup() { for m in proc dev sys ""; do umount "$ROOT/$m" 2>/dev/null || true; done; rm -rf "$ROOT"; }
trap cleanup EXIT
debootstrap --variant=minbase "$SUITE" "$ROOT" http://deb.debian.org/debian >/dev/null
mount --bind "$ROOT" "$ROOT"            # "/" must be a mount point for bwrap's mount namespace
mount -t proc proc "$ROOT/proc"; mount --bind /dev "$ROOT/dev"; mount --bind /sys "$ROOT/sys"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
"$PY" -m mailtrace gradescope "$EXERCISE" --lang "$LANG_" -o "$ROOT/bundle.zip"
mkdir -p "$ROOT/autograder/source" "$ROOT/autograder/submission"
"$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$ROOT/bundle.zip" "$ROOT/autograder/source"
chmod +x "$ROOT/autograder/source/setup.sh" "$ROOT/autograder/source/run_autograder"
ENV=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)
if [ -n "${PIP_CERT:-}" ]; then cp "$PIP_CERT" "$ROOT/root/ca.crt"; ENV+=(PIP_CERT=/root/ca.crt); fi  # a path inside the new root (not-a-machine-path)
chroot "$ROOT" "${ENV[@]}" bash /autograder/source/setup.sh
grade() {
  rm -rf "$ROOT/autograder/submission" "$ROOT/autograder/results"; mkdir -p "$ROOT/autograder/submission"
  [ -n "$1" ] && cp -r "$1"/. "$ROOT/autograder/submission/"
  chroot "$ROOT" "${ENV[@]}" bash /autograder/source/run_autograder
  "$PY" -c "import json, sys; d = json.load(open(sys.argv[1])); print(sys.argv[2], 'score', d['score'], 'tests', len(d.get('tests', [])))" \
    "$ROOT/autograder/results/results.json" "${2}"
}
SOL=$(mktemp -d); cp "$HERE"/solutions/"$EXERCISE"/*.py "$SOL"/
grade "$SOL" "reference solution"
[ "$EXERCISE" = smtp-client ] && grade "$HERE/tests/languages/smtp-client/c" "C client (Makefile)"
grade "" "empty submission"
rm -rf "$SOL"
