#!/usr/bin/env bash
# Prove a Gradescope bundle in a clean root filesystem (issue #13): debootstrap a minimal Debian,
# run the bundle's setup.sh in it (as Gradescope builds its image), then run_autograder on a
# correct, a C (smtp-client, smtp-server), a Java and a Node.js (smtp-client) and an empty submission, and print each one's score and
# the start of the first failed test's feedback (in the bundle's language).  Root only; downloads
# ~150 MB.  Not part of pytest.
#
#   sudo tests/gradescope_clean_root.sh smtp-client es
#   sudo tests/gradescope_clean_root.sh smtp-server es
#
# PYTHON: the Python that builds the bundle (default: the repository's .venv, else python3).
# Behind a TLS-intercepting proxy, set PIP_CERT to the proxy's CA bundle: it is copied in.
set -euo pipefail
EXERCISE=${1:-smtp-client}
LANG_=${2:-en}
SUITE=${SUITE:-bookworm}
ROOT=$(mktemp -d /tmp/gsroot.XXXXXX)
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$HERE/.venv/bin/python" ] && PY=$HERE/.venv/bin/python
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
  # a program built on this machine is not the submission: the bundle builds it (Makefile, build.sh)
  if [ -e "$ROOT/autograder/submission/Makefile" ] || [ -e "$ROOT/autograder/submission/build.sh" ]; then
    rm -f "$ROOT/autograder/submission/run"
  fi
  chroot "$ROOT" "${ENV[@]}" bash /autograder/source/run_autograder
  "$PY" - "$ROOT/autograder/results/results.json" "${2}" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
tests = d.get("tests", [])
print(sys.argv[2], "score", d["score"], "tests", len(tests))
for line in (d.get("output") or "").splitlines()[:3]:  # the report's framing, in the bundle's language
    print("   ", line[:160])
if tests:
    print("  first test:", tests[0].get("name"))
failed = next((t for t in tests if t.get("score", 0) < t.get("max_score", 0)), None)
if failed:  # the start of the first failed test's feedback, to see the bundle's language
    print("  first failed test:", failed.get("name"))
    for line in (failed.get("output") or "").splitlines()[:4]:
        print("   ", line[:160])
PYEOF
}
SOL=$(mktemp -d); cp "$HERE"/solutions/"$EXERCISE"/*.py "$SOL"/
grade "$SOL" "reference solution"
if [ "$EXERCISE" = smtp-client ]; then
  grade "$HERE/tests/languages/smtp-client/c" "C client (Makefile)"
  grade "$HERE/tests/languages/smtp-client/java" "Java client (build.sh)"
  grade "$HERE/tests/languages/smtp-client/node" "Node.js client (run)"
fi
if [ "$EXERCISE" = smtp-server ]; then grade "$HERE/tests/servers/c_smtp" "C server (Makefile)"; fi
grade "" "empty submission"
rm -rf "$SOL"
