#!/usr/bin/env python3
"""mime-compose exercise: write one MIME message by hand.

    python mime_compose.py --from ADDR --to ADDR --subject TEXT --text-file PATH
                           [--attach FILE]... --out PATH

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade mime-compose mime_compose.py
"""

import argparse
import sys


def main():
    p = argparse.ArgumentParser(description="Write a MIME message.")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--text-file", required=True)
    p.add_argument("--attach", action="append", default=[])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    # TODO: headers (RFC 2047 subject), text/plain or multipart/mixed with base64 attachments,
    # CRLF line endings, lines of at most 998 characters, 7-bit clean; write args.out in "wb".
    return 1


if __name__ == "__main__":
    sys.exit(main())
