"""A loopback port nothing listens on, for the servers a test starts (or expects to find absent)."""
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
