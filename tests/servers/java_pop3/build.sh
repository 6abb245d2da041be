#!/bin/sh
# Built by the grader before the first start (../shared/contracts.md: a Makefile or build.sh).
# The sandbox limits the address space (RLIMIT_AS): the JVM reserves little here, and
# glibc must not give each JVM thread its own 64 MB malloc arena (MALLOC_ARENA_MAX).
set -e
JVM="-Xmx128m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:ReservedCodeCacheSize=32m -XX:MaxMetaspaceSize=128m -XX:-UseCompressedClassPointers"
MALLOC_ARENA_MAX=2 javac $(for o in $JVM; do printf -- '-J%s ' "$o"; done) -d classes Pop3Server.java
printf '#!/bin/sh\nMALLOC_ARENA_MAX=2 exec java %s -cp "$(dirname "$0")/classes" Pop3Server "$@"\n' "$JVM" > run
chmod +x run
