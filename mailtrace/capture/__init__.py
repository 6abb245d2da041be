"""Captures in and out: pcap/pcapng export of transcripts, and import/sniff of real traffic.

``export`` writes transcripts as well-formed TCP conversations (RFC 9293 §3.4 sequence numbers)
that Wireshark decodes as SMTP, POP or IMAP; ``pcapfile`` reads pcap/pcapng files as a stream;
``reassembly`` rebuilds each TCP conversation; ``importer`` feeds the protocol observers;
``sniff`` does the same live (with tcpdump or scapy's sniffer); ``segments`` shows the TCP
segments under the dialogue (``mailtrace show --packets``).  Only ``segments`` and the scapy
engine of ``sniff`` load scapy.
"""
