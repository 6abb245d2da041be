"""The tracing proxy: a real client talks to a real server through mailtrace.

Theory of operation: mail servers speak first (RFC 5321 §3.1, RFC 1939 §4, RFC 3501 §7.1),
so for every accepted client the proxy connects upstream at once, then copies bytes verbatim
both ways.  Each direction is also fed to the protocol's *observer* (a sans-I/O parser of both
sides, ``mailtrace.protocols.base.Observer``), whose events go to a ``SessionRecorder`` and from
there to the sinks (terminal, JSONL, text, pcap).  The traffic is never changed unless
``--intercept-tls`` asks the proxy to terminate TLS on both sides (RFC 3207 §4, RFC 2595 §4,
RFC 3501 §6.2.1) so the dialogue after STARTTLS stays visible.

Modules: ``registry`` (which observer for which protocol, guessing the protocol),
``fallback`` (a line observer for unknown protocols), ``credentials`` (decoding AUTH, USER/PASS,
LOGIN for the annotation), ``relay`` (the asyncio part).
"""
