"""Grading students' servers (exercises smtp-server, pop3-server): the grader is the client.

| module | role |
| --- | --- |
| `launch.py` | start the student's server in the sandbox, wait until it listens, SIGTERM, kill what is left |
| `clients.py` | the scripted clients: send a step, read the reply through the protocol's observer |
| `runner.py` | one scenario: Maildir fixture, sessions (several at once), the Maildir afterwards |
| `watch.py` | inotify on new/: was each message renamed in from tmp/? |

The checks are in ``mailtrace/grading/checks/servers.py`` (their texts in ``knowledge/messages/grading.toml``, ``server.*``); scoring and reports are the client
grader's (``grader.score_run``, ``report``, ``classroom``).
"""
