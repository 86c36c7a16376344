#!/usr/bin/env python3
"""Packet loss and delay with jitter for the torture suite's network scenarios (issue 16).

Usage: netem.py --queue N [--loss PCT] [--delay-ms MS] [--jitter-ms MS] [--seed S] [--stats FILE]

A userspace stand-in for `tc qdisc ... netem`, for kernels built without sch_netem (the
development VM's is one). It takes the packets an iptables rule sends to netfilter queue N
(`-j NFQUEUE --queue-num N --queue-bypass`), drops each with probability PCT/100 and lets the
others through after MS ± JITTER ms (uniform, per packet, so jitter reorders packets as netem's
does). It speaks nfnetlink_queue directly (no library). Run it inside the network namespace whose
rules feed the queue (`ip netns exec NS netem.py ...`).

On SIGTERM or SIGINT it lets every held packet through, writes its counts to FILE (JSON: seen,
dropped, delayed, max_held) and exits 0. While it is not running, --queue-bypass lets packets pass.
"""
import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
NF_DROP, NF_ACCEPT = 0, 1


def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


class Queue:
    """One bound netfilter queue. Single-threaded: the main loop owns it."""

    def __init__(self, num: int):
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.early = []  # packet ids read while waiting for a config ack
        self.config(attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
        self.config(attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_META)) +
                    attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 100000)))

    def send(self, msg_type: int, flags: int, body: bytes) -> None:
        self.seq += 1
        nfgen = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.num)
        payload = nfgen + body
        hdr = struct.pack("=IHHII", 16 + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                          NLM_F_REQUEST | flags, self.seq, 0)
        self.sock.send(hdr + payload)

    def config(self, body: bytes) -> None:
        """Sends a config message and waits for its ack; packets read meanwhile are kept."""
        self.send(NFQNL_MSG_CONFIG, NLM_F_ACK, body)
        want = self.seq
        for _ in range(1000):
            for kind, value, seq in self.read():
                if kind == "packet":
                    self.early.append(value)
                elif seq == want:
                    if value != 0:
                        raise OSError(-value, f"netfilter queue {self.num}: {os.strerror(-value)}")
                    return
        raise OSError(f"netfilter queue {self.num}: no answer to a config message")

    def verdict(self, packet_id: int, verdict: int) -> None:
        body = attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        self.send(NFQNL_MSG_VERDICT, 0, body)

    def read(self):
        """Messages of one read: ("packet", id, 0) or ("ack", error, seq)."""
        try:
            data = self.sock.recv(1 << 20)
        except OSError as e:  # ENOBUFS: the kernel dropped messages; the packets stay queued
            print(f"netem: queue {self.num}: {e}", file=sys.stderr)
            return
        off = 0
        while off + 16 <= len(data):
            length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                break
            if kind == NLMSG_ERROR:
                yield "ack", struct.unpack_from("=i", data, off + 16)[0], seq
            elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 16 + 4  # after the nfgenmsg
                while a + 4 <= off + length:
                    alen, akind = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if akind & 0x3FFF == NFQA_PACKET_HDR:
                        yield "packet", struct.unpack_from("!I", data, a + 4)[0], 0
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--loss", type=float, default=0.0, help="percent of packets dropped, 0..100")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stats", default=None)
    a = p.parse_args()
    if not 0 <= a.loss <= 100:
        p.error(f"--loss must be a percentage from 0 to 100, got {a.loss}")
    if a.delay_ms < 0 or a.jitter_ms < 0 or a.jitter_ms > a.delay_ms:
        p.error("--delay-ms and --jitter-ms must be >= 0, and the jitter at most the delay")
    rng = random.Random(a.seed)
    q = Queue(a.queue)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    held = []  # (due, packet id)
    seen = dropped = delayed = max_held = 0
    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.verdict(heapq.heappop(held)[1], NF_ACCEPT)
        timeout = min(0.2, max(0.0, held[0][0] - now)) if held else 0.2
        try:
            ready, _, _ = select.select([q.sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready and not q.early:
            continue
        now = time.monotonic()
        ids = q.early + ([v for kind, v, _ in q.read() if kind == "packet"] if ready else [])
        q.early = []
        for pid in ids:
            seen += 1
            if a.loss and rng.random() * 100 < a.loss:
                dropped += 1
                q.verdict(pid, NF_DROP)
            elif a.delay_ms:
                d = a.delay_ms + rng.uniform(-a.jitter_ms, a.jitter_ms)
                heapq.heappush(held, (now + d / 1000, pid))
                delayed += 1
            else:
                q.verdict(pid, NF_ACCEPT)
        max_held = max(max_held, len(held))
    for _, pid in held:
        q.verdict(pid, NF_ACCEPT)
    stats = {"seen": seen, "dropped": dropped, "delayed": delayed, "max_held": max_held}
    if a.stats:
        with open(a.stats, "w", encoding="utf-8") as f:
            json.dump(stats, f)
    print(f"netem: queue {a.queue}: {json.dumps(stats)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
