"""A correct SMTP server in another style (asyncio streams), for the server grader's tests:
it must score 100 like the reference solution (tests/integration/test_grading_servers.py)."""

import argparse
import asyncio
import os
import signal
import time

MAX_LINE = 512


async def deliver(root, users, message):
    for user in users:
        name = f"{time.time_ns()}.{os.getpid()}.{id(message)}.{user}.asyncio"
        tmp = os.path.join(root, user, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(root, user, "new", name))


def path_of(arg, keyword):
    if not arg.upper().startswith(keyword):
        return None
    rest = arg[len(keyword):].strip()
    if not (rest.startswith("<") and ">" in rest):
        return None
    return rest[1:rest.index(">")]


class Smtp:
    def __init__(self, root, domain):
        self.root, self.domain = root, domain
        self.writers = set()

    async def session(self, reader, writer):
        self.writers.add(writer)
        try:
            await self.dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def dialogue(self, reader, writer):
        def say(text):
            writer.write(text.encode() + b"\r\n")

        say(f"220 {self.domain} asyncio SMTP")
        greeted, sender, rcpts = False, None, []
        while True:
            await writer.drain()
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                say("500 line too long")
                await writer.drain()
                return
            except asyncio.IncompleteReadError:
                return
            if len(line) > MAX_LINE:
                say("500 line too long")
                continue
            verb, _, arg = line.decode("utf-8", "replace").strip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                say("221 bye")
                await writer.drain()
                return
            if verb in ("HELO", "EHLO"):
                if not arg.strip():
                    say("501 domain needed")
                    continue
                greeted, sender, rcpts = True, None, []
                say(f"250 {self.domain}")
            elif verb in ("NOOP", "RSET"):
                if verb == "RSET":
                    sender, rcpts = None, []
                say("250 OK")
            elif verb not in ("MAIL", "RCPT", "DATA"):
                say("500 unknown command")
            elif not greeted:
                say("503 HELO first")
            elif verb == "MAIL":
                p = path_of(arg, "FROM:")
                if sender is not None:
                    say("503 nested MAIL")
                elif p is None:
                    say("501 syntax")
                else:
                    sender, rcpts = p, []
                    say("250 OK")
            elif verb == "RCPT":
                p = path_of(arg, "TO:")
                if sender is None:
                    say("503 MAIL first")
                elif not p or "@" not in p:
                    say("501 syntax")
                else:
                    local, _, dom = p.rpartition("@")
                    if dom.lower() == self.domain.lower() and local and os.path.isdir(os.path.join(self.root, local.lower())) \
                            and "/" not in local and not local.startswith("."):
                        rcpts.append(local.lower())
                        say("250 OK")
                    else:
                        say("550 no such user / relaying denied")
            else:
                if sender is None or not rcpts:
                    say("503 no recipients")
                    continue
                say("354 go ahead")
                await writer.drain()
                body = bytearray()
                while True:
                    chunk = await reader.readuntil(b"\n")
                    if chunk == b".\r\n" and (not body or body.endswith(b"\r\n")):
                        break
                    body += chunk[1:] if chunk.startswith(b".") else chunk
                await deliver(self.root, rcpts, bytes(body))
                sender, rcpts = None, []
                say("250 accepted")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--domain", default="lab.test")
    a = ap.parse_args()
    smtp = Smtp(a.maildir, a.domain)
    server = await asyncio.start_server(smtp.session, "127.0.0.1", a.port, limit=64 * 1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    for w in list(smtp.writers):
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
