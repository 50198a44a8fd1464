"""Local stand-ins for the SIEM receivers audit forwarding sends to, speaking real HTTP
(and, from the syslog sink's tests, TCP) on 127.0.0.1."""
