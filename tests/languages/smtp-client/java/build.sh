#!/bin/sh
# compile, then write the "run" the grader starts
set -e
javac SmtpClient.java
printf '#!/bin/sh\nexec java -cp "$(dirname "$0")" SmtpClient "$@"\n' > run
chmod +x run
