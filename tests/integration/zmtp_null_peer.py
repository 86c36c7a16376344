#!/usr/bin/env python3
"""A plaintext ZeroMQ peer: speaks ZMTP 3.0 with the NULL mechanism (no CURVE) as a DEALER.

Usage: zmtp_null_peer.py PORT
Sends the greeting, the READY command and one "ping" message, then reads until the server closes
the connection or 3 s pass. Prints "closed" when the server dropped the connection without sending
any message frame, "message" if it sent one (which a CURVE-only server must never do), and
"timeout" if the connection stayed open.
"""
import socket
import struct
import sys
import time


def main() -> int:
    port = int(sys.argv[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    prop = lambda k, v: bytes([len(k)]) + k + struct.pack(">I", len(v)) + v
    ready = b"\x05READY" + prop(b"Socket-Type", b"DEALER")
    got = b""
    try:
        s.sendall(greeting)
        s.sendall(bytes([0x04, len(ready)]) + ready)
        s.sendall(b"\x00\x04ping")  # one message frame, no MORE flag
    except OSError:
        pass  # the server may close as soon as it sees the NULL mechanism
    deadline = time.time() + 3
    try:
        while time.time() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        print("timeout")
        return 0
    except OSError:
        pass
    # After the 64-byte greeting, a message frame has flags 0x00/0x01/0x02/0x03 (commands: 0x04+).
    rest = got[64:]
    while len(rest) >= 2:
        flags = rest[0]
        size = rest[1] if not flags & 0x02 else struct.unpack(">Q", rest[1:9])[0]
        head = 2 if not flags & 0x02 else 9
        if not flags & 0x04:
            print("message")
            return 0
        rest = rest[head + size:]
    print("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
