"""A correct POP3 server in another style (asyncio streams, the lock released when the
session's task ends), for the server grader's tests: it must score 100."""

import argparse
import asyncio
import os
import signal

LOCKS = set()


def crlf(data):
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def stuffed(data):
    lines = data.split(b"\r\n")[:-1]
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


class Pop3:
    def __init__(self, root, users):
        self.root, self.users = root, users
        self.writers = set()

    async def session(self, reader, writer):
        self.writers.add(writer)
        owner = None
        try:
            owner = await self.dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if isinstance(owner, list) and owner:
                LOCKS.discard(owner[0])
            self.writers.discard(writer)
            writer.close()

    async def dialogue(self, reader, writer):
        holder = []  # [user] once the maildrop is locked

        def say(text):
            writer.write(text.encode() + b"\r\n")

        say("+OK asyncio POP3 ready")
        user, msgs, gone = None, None, set()
        while True:
            await writer.drain()
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                say("-ERR line too long")
                await writer.drain()
                return holder
            except asyncio.IncompleteReadError:
                return holder  # no QUIT: nothing is deleted
            words = line.decode("utf-8", "replace").split()
            cmd, args = (words[0].upper(), words[1:]) if words else ("", [])
            if cmd == "QUIT":
                if msgs is not None:
                    for n in gone:
                        os.remove(msgs[n - 1][0])
                    LOCKS.discard(user)
                    holder.clear()
                say("+OK bye")
                await writer.drain()
                return holder
            if msgs is None:
                if cmd == "USER" and len(args) == 1:
                    user = args[0]
                    say("+OK")
                elif cmd == "PASS" and user is not None:
                    pw = line.decode("utf-8", "replace").rstrip("\r\n")[5:]
                    if self.users.get(user) != pw or user in LOCKS:
                        say("-ERR denied")
                        user = None
                        continue
                    LOCKS.add(user)
                    holder.append(user)
                    files = []
                    for sub in ("new", "cur"):
                        d = os.path.join(self.root, user, sub)
                        files += [os.path.join(d, f) for f in os.listdir(d)] if os.path.isdir(d) else []
                    files.sort(key=lambda p: os.path.basename(p).encode())
                    msgs = [(p, crlf(open(p, "rb").read())) for p in files]
                    say(f"+OK {len(msgs)} messages")
                else:
                    say("-ERR log in first")
                continue

            def pick(arg):
                if not arg.isdigit() or not 1 <= int(arg) <= len(msgs) or int(arg) in gone:
                    say("-ERR no such message")
                    return None
                return int(arg)

            live = [n for n in range(1, len(msgs) + 1) if n not in gone]
            if cmd == "STAT":
                say(f"+OK {len(live)} {sum(len(msgs[n - 1][1]) for n in live)}")
            elif cmd in ("LIST", "UIDL") and not args:
                say("+OK")
                for n in live:
                    say(f"{n} {len(msgs[n - 1][1])}" if cmd == "LIST" else f"{n} {os.path.basename(msgs[n - 1][0]).split(':')[0]}")
                say(".")
            elif cmd in ("LIST", "UIDL", "RETR", "DELE", "TOP") and args:
                n = pick(args[0])
                if n is None:
                    continue
                path, data = msgs[n - 1]
                if cmd == "LIST":
                    say(f"+OK {n} {len(data)}")
                elif cmd == "UIDL":
                    say(f"+OK {n} {os.path.basename(path).split(':')[0]}")
                elif cmd == "RETR":
                    say("+OK")
                    writer.write(stuffed(data))
                elif cmd == "DELE":
                    gone.add(n)
                    say("+OK deleted")
                elif len(args) == 2 and args[1].isdigit():
                    head, sep, body = data.partition(b"\r\n\r\n")
                    keep = body.split(b"\r\n")[:-1][: int(args[1])]
                    say("+OK")
                    writer.write(stuffed(head + sep + b"".join(l + b"\r\n" for l in keep)))
                else:
                    say("-ERR usage: TOP msg n")
            elif cmd == "NOOP":
                say("+OK")
            elif cmd == "RSET":
                gone.clear()
                say("+OK")
            else:
                say("-ERR unknown command")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--users", required=True)
    a = ap.parse_args()
    users = {}
    for line in open(a.users, encoding="utf-8"):
        name, _, pw = line.rstrip("\r\n").partition(":")
        users[name] = pw
    pop = Pop3(a.maildir, users)
    server = await asyncio.start_server(pop.session, "127.0.0.1", a.port, limit=4096)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    for w in list(pop.writers):
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
