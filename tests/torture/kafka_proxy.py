#!/usr/bin/env python3
"""A Kafka-protocol proxy with fault injection, in front of a real broker or cluster (issue 16).

Usage: kafka_proxy.py --broker HOST:PORT[,HOST:PORT...] [--listen HOST:PORT]
                      [--control HOST:PORT] [--ready-file FILE] [--stats FILE] [--record FILE]
                      [--seed N]

One listener per broker of --broker: the first on --listen (default 127.0.0.1:0, a free port),
the others on free ports of its host. For each client connection to a broker's listener it opens
one to that broker and forwards the length-prefixed Kafka frames both ways, remembering each
request's correlation id, API key and version. It rewrites every proxied broker's address in
Metadata and FindCoordinator responses to its listener's, so that clients keep talking through
it (versions it cannot parse are forwarded unchanged, logged and counted as "unhandled"; a broker
in the answer that is not in --broker is left unchanged and counted as "foreign_brokers": either
lets a client bypass the proxy). The faults below apply to the answers of every broker alike.

Faults, commanded on the control port (--control, default 127.0.0.1:0; one text line per command,
one line answered):
  errors CODE N    the next N Produce responses in which the broker accepted every partition
                   (error 0: it wrote the records) reach the client with CODE in every partition
                   instead (base offset, append time and log start offset -1, as a broker's error
                   answer has them). CODE: a number or a name (REQUEST_TIMED_OUT, ...; see ERRORS).
  reject CODE N    the next N Produce requests (acks != 0) are not forwarded: the proxy answers
                   each itself, in its place in the connection's answers, with CODE in every
                   partition, as a broker that refused it before writing (NOT_ENOUGH_REPLICAS,
                   NOT_LEADER_OR_FOLLOWER). Requests already sent behind it reach the broker with
                   a gap in the producer's sequence, which the broker answers with
                   OUT_OF_ORDER_SEQUENCE_NUMBER, as it would after a real refusal.
  drop N           the next N such Produce responses are never forwarded: the proxy closes the
                   client's connection (and its own to the broker) instead — an answer lost after
                   the write.
  rate CODE PCT    from now on each such Produce response gets CODE with probability PCT % (0:
                   off); the errors and drop schedule comes first.
  delay MS [JIT]   every response (any API) from now on reaches the client MS (± JIT, uniform) ms
                   after the broker sent it; per connection in order, as on one TCP stream. 0: off.
  answer KIND CODE N [TOPIC]
                   the next N answers of another API in which the broker answered something
                   without error reach the client with CODE instead, as a broker's error answer
                   has it (offsets, ids and addresses -1 / ""); TOPIC limits Metadata and
                   ListOffsets faults to that topic. KIND:
                     Metadata        every partition (of TOPIC) without an error: CODE and leader
                                     -1 (no leader, as during a leader election; e.g.
                                     LEADER_NOT_AVAILABLE)
                     MetadataTopic   every topic (TOPIC) without an error: CODE at topic level
                                     and no partitions (e.g. LEADER_NOT_AVAILABLE)
                     InitProducerId  CODE, producer id and epoch -1 (COORDINATOR_LOAD_IN_PROGRESS,
                                     CONCURRENT_TRANSACTIONS)
                     ListOffsets     every partition (of TOPIC) without an error: CODE,
                                     timestamp and offset -1 (NOT_LEADER_OR_FOLLOWER, ...)
                     FindCoordinator every coordinator found: CODE, node -1, no address
                                     (COORDINATOR_NOT_AVAILABLE)
                   An answer with nothing to fault (an error already; no such topic) passes and
                   does not consume the fault.
  pending          the scheduled errors, drops, refusals and answer faults not yet applied
  clear            drops every scheduled fault not yet applied
  stats            the counts below, as one JSON line
Answers: "ok", a number, the JSON, or "error: ..." naming what was wrong.

Every Produce request's record batches are noted (partition, producer id, epoch, base sequence,
record count) with the base offset the broker answered (also for a faulted answer: the client
never saw it). A later request carrying a batch already answered — the client's retry after an
injected fault — is counted as "resent"; if the broker answers it with the first offset it is
"resent_deduplicated" (the broker recognised the idempotent producer's sequence and wrote nothing),
with another offset "resent_appended_again" (written twice). "faulted_batches" counts the batches
in faulted or dropped answers, "faulted_batches_resent" those of them resent since, "faulted_batches_not_resent" the others and
"faulted_batches_not_resent_overtaken" those of the others behind a later batch of the same
producer and partition whose accepted answer the client got (librdkafka's idempotent producer
takes such a success as proof the earlier batches were written, and does not resend them), and
"unanswered_produce_requests" the Produce requests still in flight on a connection it closed;
"connections_by_broker" the client connections to each broker's listener; "answer_injected" the
answer faults applied ("KIND CODE_NAME": n), "answer_pending" those
scheduled and not yet applied, "produce_partitions" how many Produce requests carried how many
partitions (librdkafka 2.0.2 puts one partition in each).

On SIGTERM or SIGINT it writes the counts to --stats (JSON) and exits 0. Standard library only.
--record FILE appends the first request and response frame of each API key and version seen (hex,
one JSON object a line; for InitProducerId and FindCoordinator answers the first of each error
code) for the unit test's recorded frames.
"""
import argparse
import collections
import json
import os
import queue
import random
import signal
import socket
import struct
import sys
import threading
import time

MAX_FRAME = 64 << 20  # larger frames are refused (the broker's own default limit is 100 MB)

API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
             9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
             13: "LeaveGroup", 14: "SyncGroup", 16: "ListGroups", 18: "ApiVersions",
             19: "CreateTopics", 22: "InitProducerId", 60: "DescribeCluster"}
# Kafka error codes the control port accepts by name (org.apache.kafka.common.protocol.Errors).
ERRORS = {"UNKNOWN_TOPIC_OR_PARTITION": 3, "LEADER_NOT_AVAILABLE": 5,
          "NOT_LEADER_OR_FOLLOWER": 6, "REQUEST_TIMED_OUT": 7, "NETWORK_EXCEPTION": 13,
          "COORDINATOR_LOAD_IN_PROGRESS": 14, "COORDINATOR_NOT_AVAILABLE": 15,
          "NOT_COORDINATOR": 16, "NOT_ENOUGH_REPLICAS": 19, "NOT_ENOUGH_REPLICAS_AFTER_APPEND": 20,
          "CONCURRENT_TRANSACTIONS": 51, "KAFKA_STORAGE_ERROR": 56}
ERROR_NAMES = {v: k for k, v in ERRORS.items()}
ERROR_NAMES.update({45: "OUT_OF_ORDER_SEQUENCE_NUMBER", 46: "DUPLICATE_SEQUENCE_NUMBER",
                    47: "INVALID_PRODUCER_EPOCH", 59: "UNKNOWN_PRODUCER_ID"})
PRODUCE, LIST_OFFSETS, METADATA, FIND_COORDINATOR, API_VERSIONS = 0, 2, 3, 10, 18
INIT_PRODUCER_ID = 22
# The first flexible version (compact strings and arrays, tagged fields) of the APIs parsed here.
FLEXIBLE = {PRODUCE: 9, LIST_OFFSETS: 6, METADATA: 9, FIND_COORDINATOR: 3, API_VERSIONS: 3,
            INIT_PRODUCER_ID: 2}


# The answer faults of other APIs than Produce (control: answer KIND CODE N): the kinds and the
# API whose answers each applies to.
ANSWER_FAULTS = {"Metadata": 3, "MetadataTopic": 3, "InitProducerId": 22, "FindCoordinator": 10,
                 "ListOffsets": 2}
TOPIC_APIS = (3, 2)  # the answers a TOPIC limits a fault to
ANSWER_APIS = {}
for _kind, _api in ANSWER_FAULTS.items():
    ANSWER_APIS.setdefault(_api, []).append(_kind)


class Malformed(Exception):
    """The bytes do not parse as the expected message (or a version not handled)."""


class Reader:
    """Reads Kafka primitive types from bytes; every read is bounds-checked (raises Malformed)."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Malformed(f"{n} bytes wanted at offset {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift > 28:
                raise Malformed("unsigned varint longer than 5 bytes")

    def string(self, flexible: bool):
        """A (nullable) string: int16 length, or in flexible versions uvarint length + 1."""
        n = self.uvarint() - 1 if flexible else self.int16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def array_len(self, flexible: bool) -> int:
        n = self.uvarint() - 1 if flexible else self.int32()
        if n > len(self.data):  # a length no message here can have
            raise Malformed(f"array of {n} elements in {len(self.data)} bytes")
        return n

    def tagged(self, flexible: bool) -> None:
        if flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


def enc_uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def enc_string(s, flexible: bool) -> bytes:
    if s is None:
        return enc_uvarint(0) if flexible else struct.pack(">h", -1)
    b = s.encode("utf-8")
    return (enc_uvarint(len(b) + 1) if flexible else struct.pack(">h", len(b))) + b


def request_header(body: bytes):
    """(api_key, api_version, correlation_id) of a request frame's body (without the size)."""
    if len(body) < 8:
        raise Malformed(f"request of {len(body)} bytes, shorter than its header")
    return struct.unpack(">hhi", body[:8])


def response_reader(body: bytes, api: int, version: int) -> Reader:
    """A Reader past the response header: correlation id, and (header v1: flexible versions but
    ApiVersions') its tagged fields."""
    r = Reader(body, 4)
    r.tagged(api in FLEXIBLE and version >= FLEXIBLE[api] and api != API_VERSIONS)
    return r


def rewrite_address(host, port, upstream, proxy, counts):
    """The address a client must use for broker host:port: the proxy's for the proxied broker
    (UPSTREAM and PROXY two addresses, or UPSTREAM a dict {broker address: its proxy listener's}
    and PROXY None). No address (a FindCoordinator error answer: host "", port -1) stays as it
    is."""
    routes = upstream if isinstance(upstream, dict) else {upstream: proxy}
    if (host, port) in routes:
        return routes[(host, port)]
    if not host or port < 0:
        return host, port
    counts["foreign_brokers"] += 1
    return host, port


def metadata_brokers(body: bytes, version: int):
    """The start of a Metadata response (versions 0-13): (reader, flex, start, n, brokers), the
    reader past the brokers array, `start` where that array begins, n its length as encoded (-1:
    null) and brokers a list of (node, host, port, rack, tagged bytes) as read."""
    if not 0 <= version <= 13:
        raise Malformed(f"Metadata v{version} is not handled")
    flex = version >= 9
    r = response_reader(body, METADATA, version)
    if version >= 3:
        r.int32()
    start = r.pos
    n = r.array_len(flex)
    brokers = []
    for _ in range(max(n, 0)):
        node, host, port = r.int32(), r.string(flex), r.int32()
        rack = r.string(flex) if version >= 1 else None
        t0 = r.pos
        r.tagged(flex)
        brokers.append((node, host, port, rack, body[t0:r.pos]))
    return r, flex, start, n, brokers


def rewrite_metadata(body: bytes, version: int, upstream, proxy, counts) -> bytes:
    """The Metadata response with the proxied broker's address replaced (versions 0-13)."""
    r, flex, start, n, brokers = metadata_brokers(body, version)
    out = bytearray(enc_uvarint(n + 1) if flex else struct.pack(">i", n))
    for node, host, port, rack, tagged in brokers:
        host, port = rewrite_address(host, port, upstream, proxy, counts)
        out += struct.pack(">i", node) + enc_string(host, flex) + struct.pack(">i", port)
        if version >= 1:
            out += enc_string(rack, flex)
        out += tagged
    return body[:start] + bytes(out) + body[r.pos:]


def rewrite_find_coordinator(body: bytes, version: int, upstream, proxy, counts) -> bytes:
    """The FindCoordinator response with the proxied broker's address replaced (versions 0-6)."""
    if not 0 <= version <= 6:
        raise Malformed(f"FindCoordinator v{version} is not handled")
    flex = version >= 3
    r = response_reader(body, FIND_COORDINATOR, version)
    if version >= 1:
        r.int32()
    if version <= 3:
        r.int16()
        if version >= 1:
            r.string(flex)
        r.int32()
        start = r.pos
        host, port = rewrite_address(r.string(flex), r.int32(), upstream, proxy, counts)
        return body[:start] + enc_string(host, flex) + struct.pack(">i", port) + body[r.pos:]
    start = r.pos
    n = r.array_len(True)
    out = bytearray(enc_uvarint(n + 1))
    for _ in range(max(n, 0)):
        out += enc_string(r.string(True), True)
        out += struct.pack(">i", r.int32())
        host, port = rewrite_address(r.string(True), r.int32(), upstream, proxy, counts)
        out += enc_string(host, True) + struct.pack(">i", port)
        t0 = r.pos
        r.int16()
        r.string(True)
        r.tagged(True)
        out += body[t0:r.pos]
    return body[:start] + bytes(out) + body[r.pos:]


def metadata_topics(body: bytes, version: int):
    """The topics of a Metadata response (versions 0-13): a list of dicts with name, error,
    error_pos, the partitions array's byte span (parts_start, parts_end) and its partitions
    [{"error", "error_pos", "leader_pos"}]; the whole message is walked (Malformed if it does not
    parse to its end)."""
    r, flex, _, _, _ = metadata_brokers(body, version)
    if version >= 2:
        r.string(flex)
    if version >= 1:
        r.int32()
    topics = []
    for _ in range(max(r.array_len(flex), 0)):
        t = {"error_pos": r.pos, "error": r.int16(), "name": r.string(flex), "partitions": []}
        if version >= 10:
            r.take(16)
        if version >= 1:
            r.int8()
        t["parts_start"] = r.pos
        for _ in range(max(r.array_len(flex), 0)):
            p = {"error_pos": r.pos, "error": r.int16(), "partition": r.int32()}
            p["leader_pos"] = r.pos
            r.int32()
            if version >= 7:
                r.int32()
            for _ in range(2 + (version >= 5)):  # replicas, ISR, offline replicas (v5+)
                for _ in range(max(r.array_len(flex), 0)):
                    r.int32()
            r.tagged(flex)
            t["partitions"].append(p)
        t["parts_end"] = r.pos
        if version >= 8:
            r.int32()
        r.tagged(flex)
        topics.append(t)
    if 8 <= version <= 10:
        r.int32()
    if version >= 13:
        r.int16()
    r.tagged(flex)
    if r.pos != len(body):
        raise Malformed(f"Metadata v{version} response: {len(body) - r.pos} bytes left over")
    return topics


def fault_metadata(body: bytes, version: int, code: int, topic_level: bool, only=None):
    """(the Metadata response faulted, what was faulted) or (None, None) when nothing is to fault.
    Partition level: every partition without an error gets CODE and leader -1 (no leader, as
    during a leader election). Topic level: every topic without an error gets CODE and no
    partitions (as a broker answers a topic it cannot serve). ONLY: that topic's only."""
    topics = [t for t in metadata_topics(body, version) if only is None or t["name"] == only]
    if topic_level:
        hit = [t for t in topics if t["error"] == 0]
        b = body
        for t in reversed(hit):  # back to front: the earlier positions stay valid
            empty = enc_uvarint(1) if version >= 9 else struct.pack(">i", 0)
            e = t["error_pos"]
            b = (b[:e] + struct.pack(">h", code) + b[e + 2:t["parts_start"]] + empty +
                 b[t["parts_end"]:])
        return (b, [t["name"] for t in hit]) if hit else (None, None)
    b = bytearray(body)
    hit = []
    for t in topics:
        for p in t["partitions"]:
            if t["error"] == 0 and p["error"] == 0:
                struct.pack_into(">h", b, p["error_pos"], code)
                struct.pack_into(">i", b, p["leader_pos"], -1)
                hit.append(f"{t['name']}[{p['partition']}]")
    return (bytes(b), hit) if hit else (None, None)


def fault_init_producer_id(body: bytes, version: int, code: int):
    """(the InitProducerId response (v0-5) answered CODE, producer id and epoch -1, as a broker's
    error answer), or (None, None) if it carries an error already."""
    if not 0 <= version <= 5:
        raise Malformed(f"InitProducerId v{version} is not handled")
    r = response_reader(body, INIT_PRODUCER_ID, version)
    r.int32()
    pos = r.pos
    if r.int16() != 0:
        r.take(10)
        return None, None
    pid, epoch = r.int64(), r.int16()
    r.tagged(version >= 2)
    if r.pos != len(body):
        raise Malformed(f"InitProducerId v{version} response: {len(body) - r.pos} bytes left over")
    b = bytearray(body)
    struct.pack_into(">hqh", b, pos, code, -1, -1)
    return bytes(b), [f"producer id {pid} epoch {epoch}"]


def fault_list_offsets(body: bytes, version: int, code: int, only=None):
    """(the ListOffsets response (v1-10) with every partition (of topic ONLY) answered CODE,
    timestamp and offset -1 (leader epoch -1, v4+), as a broker's error answer), or (None, None)
    if none succeeded."""
    if not 1 <= version <= 10:
        raise Malformed(f"ListOffsets v{version} is not handled")
    flex = version >= 6
    r = response_reader(body, LIST_OFFSETS, version)
    if version >= 2:
        r.int32()
    spots, hit = [], []
    for _ in range(max(r.array_len(flex), 0)):
        topic = r.string(flex)
        for _ in range(max(r.array_len(flex), 0)):
            part = r.int32()
            pos = r.pos
            err = r.int16()
            r.int64(), r.int64()
            if version >= 4:
                r.int32()
            r.tagged(flex)
            if err == 0 and only in (None, topic):
                spots.append(pos)
                hit.append(f"{topic}[{part}]")
        r.tagged(flex)
    r.tagged(flex)
    if r.pos != len(body):
        raise Malformed(f"ListOffsets v{version} response: {len(body) - r.pos} bytes left over")
    if not spots:
        return None, None
    b = bytearray(body)
    for pos in spots:
        struct.pack_into(">hqq", b, pos, code, -1, -1)
        if version >= 4:
            struct.pack_into(">i", b, pos + 18, -1)
    return bytes(b), hit


def fault_find_coordinator(body: bytes, version: int, code: int):
    """(the FindCoordinator response (v0-6) with every coordinator that was found answered CODE,
    node -1, host "" and port -1, as a broker's error answer), or (None, None) if none was."""
    if not 0 <= version <= 6:
        raise Malformed(f"FindCoordinator v{version} is not handled")
    flex = version >= 3
    r = response_reader(body, FIND_COORDINATOR, version)
    if version >= 1:
        r.int32()
    none = struct.pack(">i", -1) + enc_string("", flex) + struct.pack(">i", -1)
    if version <= 3:
        pos = r.pos
        if r.int16() != 0:
            return None, None
        if version >= 1:
            r.string(flex)
        node, host, port = r.int32(), r.string(flex), r.int32()
        return (body[:pos] + struct.pack(">h", code) + (enc_string(None, flex) if version else b"")
                + none + body[r.pos:]), [f"node {node} {host}:{port}"]
    start = r.pos
    n = r.array_len(True)
    out, hit = bytearray(enc_uvarint(n + 1)), []
    for _ in range(max(n, 0)):
        key = r.string(True)
        t0 = r.pos
        node, host, port = r.int32(), r.string(True), r.int32()
        t1 = r.pos
        err = r.int16()
        r.string(True)
        t2 = r.pos
        r.tagged(True)
        out += enc_string(key, True)
        if err == 0:
            out += none + struct.pack(">h", code) + enc_string(None, True)
            hit.append(f"{key}: node {node} {host}:{port}")
        else:
            out += body[t0:t1] + body[t1:t2]
        out += body[t2:r.pos]
    return (body[:start] + bytes(out) + body[r.pos:], hit) if hit else (None, None)


def parse_produce_response(body: bytes, version: int):
    """The partitions of a Produce response (versions 3-13): a list of dicts with topic, partition,
    error, base_offset and the byte positions needed to patch them in place."""
    if not 3 <= version <= 13:
        raise Malformed(f"Produce v{version} is not handled")
    flex = version >= 9
    r = response_reader(body, PRODUCE, version)
    parts = []
    for _ in range(max(r.array_len(flex), 0)):
        topic = r.take(16).hex() if version >= 13 else r.string(flex)
        for _ in range(max(r.array_len(flex), 0)):
            p = {"topic": topic, "partition": r.int32(), "error_pos": r.pos}
            p["error"] = r.int16()
            p["offset_pos"] = r.pos
            p["base_offset"] = r.int64()
            r.int64()  # log append time (v2+)
            if version >= 5:
                r.int64()  # log start offset
            if version >= 8:
                for _ in range(max(r.array_len(flex), 0)):
                    r.int32()
                    r.string(flex)
                    r.tagged(flex)
                r.string(flex)
            r.tagged(flex)
            parts.append(p)
        r.tagged(flex)
    r.int32()  # throttle time
    r.tagged(flex)
    if r.pos != len(body):
        raise Malformed(f"Produce v{version} response: {len(body) - r.pos} bytes left over")
    return parts


def fault_produce_response(body: bytes, version: int, parts, code: int) -> bytes:
    """The response with every partition answered `code` (offsets -1, as an error answer)."""
    b = bytearray(body)
    n_times = 3 if version >= 5 else 2  # base offset, log append time, log start offset (v5+)
    for p in parts:
        struct.pack_into(">h", b, p["error_pos"], code)
        for i in range(n_times):
            struct.pack_into(">q", b, p["offset_pos"] + 8 * i, -1)
    return bytes(b)


def parse_produce_request(body: bytes, version: int):
    """The record batches of a Produce request (versions 3-13): a list of (topic, partition,
    producer id, producer epoch, base sequence, record count); acks; and the topics with their
    partitions, [(topic, [partition...])], in the request's order."""
    if not 3 <= version <= 13:
        raise Malformed(f"Produce v{version} is not handled")
    flex = version >= 9
    r = Reader(body, 8)
    r.string(False)  # client id: a plain nullable string in every header version
    r.tagged(flex)
    r.string(flex)  # transactional id
    acks = r.int16()
    r.int32()
    batches, topics = [], []
    for _ in range(max(r.array_len(flex), 0)):
        topic = r.take(16).hex() if version >= 13 else r.string(flex)
        topics.append((topic, []))
        for _ in range(max(r.array_len(flex), 0)):
            partition = r.int32()
            topics[-1][1].append(partition)
            n = r.uvarint() - 1 if flex else r.int32()
            records = r.take(n) if n > 0 else b""
            rr = Reader(records)
            while len(records) - rr.pos >= 61:  # a RecordBatch header (magic 2) is 61 bytes
                rr.int64()  # base offset
                length = rr.int32()
                end = rr.pos + length
                rr.int32()  # partition leader epoch
                if rr.int8() != 2:
                    raise Malformed("record batch with magic other than 2")
                rr.take(4 + 2 + 4 + 8 + 8)  # crc, attributes, last offset delta, timestamps
                pid, epoch, seq, count = rr.int64(), rr.int16(), rr.int32(), rr.int32()
                batches.append((topic, partition, pid, epoch, seq, count))
                rr.pos = end
            r.tagged(flex)
        r.tagged(flex)
    return batches, acks, topics


def produce_error_response(corr: int, version: int, topics, code: int) -> bytes:
    """A Produce response (versions 3-13) answering every partition of TOPICS with CODE, as a
    broker that refused the request before writing answers it."""
    if not 3 <= version <= 13:
        raise Malformed(f"Produce v{version} is not handled")
    flex = version >= 9
    tag = b"\0" if flex else b""
    arr = (lambda n: enc_uvarint(n + 1)) if flex else (lambda n: struct.pack(">i", n))
    b = bytearray(struct.pack(">i", corr) + tag + arr(len(topics)))
    for topic, parts in topics:
        b += bytes.fromhex(topic) if version >= 13 else enc_string(topic, flex)
        b += arr(len(parts))
        for p in parts:
            b += struct.pack(">ihqq", p, code, -1, -1)
            if version >= 5:
                b += struct.pack(">q", -1)
            if version >= 8:
                b += arr(0) + enc_string(None, flex)
            b += tag
        b += tag
    return bytes(b + struct.pack(">i", 0) + tag)


class Faults:
    """The fault schedule and the counts; shared by every connection's threads (one lock)."""

    def __init__(self, seed: int):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.schedule = collections.deque()  # ("error", code) or ("drop", None)
        self.rejects = collections.deque()   # codes for the next Produce requests, not forwarded
        self.answers = {k: collections.deque() for k in ANSWER_FAULTS}  # kind -> codes
        self.rate = (0, 0.0)  # (code, probability)
        self.delay = (0, 0)   # (ms, jitter ms)
        self.counts = collections.Counter()
        self.requests = collections.Counter()    # "Produce v7" -> n
        self.injected = collections.Counter()    # error name -> Produce responses
        self.rejected = collections.Counter()    # error name -> Produce requests not forwarded
        self.answer_injected = collections.Counter()  # "Metadata LEADER_NOT_AVAILABLE" -> n
        self.produce_partitions = collections.Counter()  # partitions in a Produce request -> n
        self.connections = collections.Counter()  # broker address -> client connections
        self.broker_errors = collections.Counter()
        self.unhandled = collections.Counter()   # "Metadata v14: why" -> n
        self.answered = {}  # (topic, partition, pid, epoch, seq) -> (count, base offset)
        self.faulted = set()  # batches whose answer was faulted, not resent yet
        self.overtaken = set()  # of those, ones behind a later batch the client saw succeed

    def note_passed(self, batches) -> None:
        """An accepted answer forwarded unchanged: faulted batches of the same producer and
        partition with a lower sequence are overtaken (the client saw a later one succeed, which
        an idempotent producer takes as proof the earlier ones were written)."""
        with self.lock:
            if not self.faulted:
                return
            for topic, part, pid, epoch, seq, _ in batches:
                for k in self.faulted:
                    if k[:4] == (topic, part, pid, epoch) and k[4] < seq:
                        self.overtaken.add(k)

    def note_faulted(self, batches) -> None:
        """Batches the client was told failed (or got no answer for) although written."""
        with self.lock:
            for topic, part, pid, epoch, seq, _ in batches:
                if pid >= 0:
                    self.faulted.add((topic, part, pid, epoch, seq))
                    self.counts["faulted_batches"] += 1

    def next_produce_fault(self):
        with self.lock:
            if self.schedule:
                return self.schedule.popleft()
            code, p = self.rate
            if code and self.rng.random() < p:
                return ("error", code)
        return None

    def next_answer_fault(self, kind):
        """(code, topic or None) to put in the next eligible answer of KIND (an ANSWER_FAULTS
        key), or None; take_answer_fault() consumes it once the answer was found eligible."""
        with self.lock:
            q = self.answers[kind]
            return q[0] if q else None

    def take_answer_fault(self, kind, fault) -> None:
        with self.lock:
            q = self.answers[kind]
            if q and q[0] == fault:
                q.popleft()
            self.answer_injected[f"{kind} {ERROR_NAMES.get(fault[0], fault[0])}"] += 1

    def pending(self) -> int:  # under lock
        return len(self.schedule) + len(self.rejects) + sum(map(len, self.answers.values()))

    def next_reject(self):
        with self.lock:
            return self.rejects.popleft() if self.rejects else None

    def delay_s(self) -> float:
        with self.lock:
            ms, jit = self.delay
            if not ms:
                return 0.0
            return max(0, ms + (self.rng.uniform(-jit, jit) if jit else 0)) / 1000

    def note_answer(self, batches, parts) -> None:
        """Each batch's answered base offset; resends compared with the first answer."""
        offsets = {(p["topic"], p["partition"]): (p["error"], p["base_offset"]) for p in parts}
        with self.lock:
            for topic, part, pid, epoch, seq, count in batches:
                err, off = offsets.get((topic, part), (None, None))
                if err != 0 or pid < 0:
                    continue
                key = (topic, part, pid, epoch, seq)
                if key in self.answered:
                    self.counts["resent"] += 1
                    if key in self.faulted:
                        self.faulted.discard(key)
                        self.overtaken.discard(key)
                        self.counts["faulted_batches_resent"] += 1
                    first_count, first_off = self.answered[key]
                    if first_count != count:
                        self.counts["resent_rebatched"] += 1
                    elif first_off == off:
                        self.counts["resent_deduplicated"] += 1
                    else:
                        self.counts["resent_appended_again"] += 1
                        log(f"a resent batch was written again: {key} first at offset {first_off}, "
                            f"now {off}")
                else:
                    self.answered[key] = (count, off)
                    if len(self.answered) > 200000:  # bounded: forget the oldest half
                        for k in list(self.answered)[:100000]:
                            del self.answered[k]

    def snapshot(self) -> dict:
        with self.lock:
            return {**dict(self.counts), "faulted_batches_not_resent": len(self.faulted),
                    "faulted_batches_not_resent_overtaken": len(self.faulted & self.overtaken),
                    "requests": dict(self.requests),
                    "injected": dict(self.injected), "broker_errors": dict(self.broker_errors),
                    "unhandled": dict(self.unhandled),
                    "pending": self.pending(),
                    "rejected": dict(self.rejected),
                    "answer_injected": dict(self.answer_injected),
                    "answer_pending": {k: len(q) for k, q in self.answers.items() if q},
                    "connections_by_broker": dict(self.connections),
                    "produce_partitions": {str(k): v for k, v in
                                           sorted(self.produce_partitions.items())},
                    "delay_ms": self.delay[0]}


def log(msg: str) -> None:
    t = time.time()
    print(f"[{time.strftime('%H:%M:%S', time.localtime(t))}.{int(t * 1000) % 1000:03d}] "
          f"kafka_proxy: {msg}", file=sys.stderr, flush=True)


def recv_exact(sock, n: int):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    """One frame's body (without its 4-byte size), or None when the peer closed."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">i", head)
    if not 0 < n <= MAX_FRAME:
        raise Malformed(f"frame size {n}")
    return recv_exact(sock, n)


class Proxy:
    def __init__(self, upstream, routes, faults: Faults, record=None):
        """Forwards to UPSTREAM (one broker); ROUTES: {each proxied broker's address: the proxy
        listener's for it}, shared by the listeners."""
        self.upstream, self.routes, self.faults = upstream, routes, faults
        self.record, self.recorded = record, set()
        self.record_lock = threading.Lock()

    def note_frame(self, kind: str, api: int, version: int, body: bytes) -> None:
        """--record: the first frame of each kind, API and version; for the InitProducerId and
        FindCoordinator (v0-3) answers, of each error code too (the first may be an error)."""
        if not self.record:
            return
        key = (kind, api, version)
        if kind == "response" and (api == INIT_PRODUCER_ID or api == FIND_COORDINATOR and
                                   version <= 3):
            try:
                r = response_reader(body, api, version)
                if api == INIT_PRODUCER_ID or version >= 1:
                    r.int32()  # throttle time
                key += (r.int16(),)
            except Malformed:
                pass
        if key in self.recorded:
            return
        with self.record_lock:
            self.recorded.add(key)
            with open(self.record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": kind, "api": api, "version": version,
                                    "hex": body.hex()}) + "\n")

    def serve(self, client) -> None:
        """Forward one client connection (three threads; returns once both ends are closed)."""
        f = self.faults
        try:
            broker = socket.create_connection(self.upstream, timeout=10)
        except OSError as e:
            log(f"cannot connect to the broker {self.upstream}: {e}")
            client.close()
            return
        broker.settimeout(None)
        for s in (client, broker):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with f.lock:
            f.counts["connections"] += 1
            f.connections["%s:%d" % self.upstream] += 1
        inflight = {}  # correlation id -> (api, version, produce batches)
        # The connection's answers in request order: [correlation id, the proxy's own answer to a
        # rejected request or None (the broker's answer, awaited)].
        order = collections.deque()
        release = [0.0]  # when the last answer queued may go (answers keep their order)
        lock = threading.Lock()

        def queue_answer(body, arrived):  # under lock
            d = f.delay_s()
            if d:
                with f.lock:
                    f.counts["delayed_responses"] += 1
            release[0] = max(release[0], arrived + d)
            out.put((release[0], body))
        out = queue.Queue()
        closed = threading.Event()

        def close_all():
            closed.set()
            for s in (client, broker):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def requests():
            try:
                while not closed.is_set():
                    body = read_frame(client)
                    if body is None:
                        break
                    api, version, corr = request_header(body)
                    batches, acks, topics = [], 0, []
                    if api == PRODUCE:
                        try:
                            batches, acks, topics = parse_produce_request(body, version)
                            with f.lock:
                                f.produce_partitions[sum(len(p) for _, p in topics)] += 1
                        except Malformed as e:
                            with f.lock:
                                f.unhandled[f"Produce v{version} request: {e}"] += 1
                    self.note_frame("request", api, version, body)
                    with f.lock:
                        f.requests[f"{API_NAMES.get(api, api)} v{version}"] += 1
                    code = f.next_reject() if api == PRODUCE and acks != 0 and topics else None
                    if code is not None:
                        answer = produce_error_response(corr, version, topics, code)
                        name = ERROR_NAMES.get(code, str(code))
                        with f.lock:
                            f.rejected[name] += 1
                        log(f"Produce v{version} request not forwarded, answered {name}: " +
                            ", ".join(f"{t}{p}" for t, p in topics))
                        with lock:
                            if order:
                                order.append([corr, answer])
                            else:
                                queue_answer(answer, time.monotonic())
                        continue
                    with lock:
                        inflight[corr] = (api, version, batches)
                        order.append([corr, None])
                    broker.sendall(struct.pack(">i", len(body)) + body)
            except (OSError, Malformed) as e:
                if not closed.is_set():
                    log(f"client side: {e}")
            close_all()

        def responses():
            try:
                while not closed.is_set():
                    body = read_frame(broker)
                    if body is None:
                        break
                    arrived = time.monotonic()
                    (corr,) = struct.unpack(">i", body[:4])
                    with lock:
                        api, version, batches = inflight.pop(corr, (None, None, []))
                        if order and order[0][0] == corr:
                            order.popleft()
                    if api is not None:
                        self.note_frame("response", api, version, body)
                    body, drop = self.handle(api, version, batches, body)
                    if drop:
                        out.put((0.0, None))
                        break
                    with lock:
                        queue_answer(body, arrived)
                        while order and order[0][1] is not None:  # the proxy's own answers next
                            queue_answer(order.popleft()[1], arrived)
            except (OSError, Malformed) as e:
                if not closed.is_set():
                    log(f"broker side: {e}")
            out.put((0.0, None))

        def sender():
            try:
                while True:
                    at, body = out.get()
                    if body is None:
                        break
                    wait = at - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    client.sendall(struct.pack(">i", len(body)) + body)
            except OSError:
                pass
            close_all()

        threads = [threading.Thread(target=t, daemon=True) for t in (requests, responses, sender)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with lock:
            lost = [b for api, _, b in inflight.values() if api == PRODUCE]
        if lost:  # requests the broker may have written; the client gets no answer
            with f.lock:
                f.counts["unanswered_produce_requests"] += len(lost)
        client.close()
        broker.close()

    def fault_answer(self, api, version, body):
        """The answer of another API than Produce with a scheduled error (ANSWER_FAULTS), if one
        is scheduled and the answer has something to fault; else unchanged."""
        f = self.faults
        for kind in ANSWER_APIS[api]:
            fault = f.next_answer_fault(kind)
            if fault is None:
                continue
            code, only = fault
            if kind.startswith("Metadata"):
                out, hit = fault_metadata(body, version, code, kind == "MetadataTopic", only)
            elif api == INIT_PRODUCER_ID:
                out, hit = fault_init_producer_id(body, version, code)
            elif api == LIST_OFFSETS:
                out, hit = fault_list_offsets(body, version, code, only)
            else:
                out, hit = fault_find_coordinator(body, version, code)
            if out is None:
                continue
            f.take_answer_fault(kind, fault)
            log(f"{API_NAMES[api]} v{version} answered {ERROR_NAMES.get(code, code)} "
                f"({kind}): " + ", ".join(hit))
            return out
        return body

    def handle(self, api, version, batches, body):
        """(the body the client gets, drop?): rewrites addresses, applies Produce faults."""
        f = self.faults
        try:
            if api == METADATA:
                body = rewrite_metadata(body, version, self.routes, None, f.counts)
                with f.lock:
                    f.counts["metadata_rewritten"] += 1
            elif api == FIND_COORDINATOR:
                body = rewrite_find_coordinator(body, version, self.routes, None, f.counts)
                with f.lock:
                    f.counts["coordinator_rewritten"] += 1
            if api in ANSWER_APIS:
                body = self.fault_answer(api, version, body)
            if api == PRODUCE:
                parts = parse_produce_response(body, version)
                f.note_answer(batches, parts)
                with f.lock:
                    f.counts["produce_responses"] += 1
                    for p in parts:
                        if p["error"]:
                            f.broker_errors[ERROR_NAMES.get(p["error"], str(p["error"]))] += 1
                if parts and all(p["error"] == 0 for p in parts):
                    fault = f.next_produce_fault()
                    where = ", ".join(f"{p['topic']}[{p['partition']}]@{p['base_offset']}"
                                      for p in parts)
                    if fault:
                        f.note_faulted(batches)
                    if fault and fault[0] == "drop":
                        with f.lock:
                            f.counts["dropped_responses"] += 1
                        log(f"Produce v{version} answer dropped, connection closed (the broker "
                            f"wrote {where})")
                        return body, True
                    if fault:
                        name = ERROR_NAMES.get(fault[1], str(fault[1]))
                        with f.lock:
                            f.injected[name] += 1
                        log(f"Produce v{version} answered {name} (the broker wrote {where})")
                        body = fault_produce_response(body, version, parts, fault[1])
                    else:
                        f.note_passed(batches)
            elif api is None:
                with f.lock:
                    f.counts["unknown_correlation"] += 1
        except Malformed as e:
            what = f"{API_NAMES.get(api, api)} v{version}: {e}"
            log(f"forwarded unchanged, not parsed: {what}")
            with f.lock:
                f.unhandled[what] += 1
        return body, False


def parse_addr(s: str, what: str):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SystemExit(f"kafka_proxy: {what} '{s}': allowed is HOST:PORT (port 0-65535)")
    return host, int(port)


def control(conn, faults: Faults) -> None:
    """Serve one control connection: a command a line, an answer a line."""
    f = conn.makefile("rw", encoding="utf-8", newline="\n")
    for line in f:
        w = line.split()
        try:
            ans = command(w, faults)
        except (ValueError, IndexError):
            ans = (f"error: '{line.strip()}': allowed are errors CODE N, reject CODE N, drop N, "
                   f"answer {'|'.join(ANSWER_FAULTS)} CODE N [TOPIC (Metadata*, ListOffsets)], "
                   "rate CODE PCT, "
                   "delay MS [JITTER_MS], pending, clear, stats")
        f.write(ans + "\n")
        f.flush()
    conn.close()


def error_code(s: str) -> int:
    code = ERRORS[s] if s in ERRORS else int(s)
    if not 1 <= code <= 32767:
        raise ValueError(s)
    return code


def command(w, faults: Faults) -> str:
    with faults.lock:
        if w[0] == "errors" and len(w) == 3 and 0 <= int(w[2]) <= 10000:
            faults.schedule.extend([("error", error_code(w[1]))] * int(w[2]))
        elif w[0] == "drop" and len(w) == 2 and 0 <= int(w[1]) <= 10000:
            faults.schedule.extend([("drop", None)] * int(w[1]))
        elif w[0] == "rate" and len(w) == 3 and 0 <= float(w[2]) <= 100:
            faults.rate = (error_code(w[1]), float(w[2]) / 100)
        elif w[0] == "delay" and len(w) in (2, 3) and 0 <= int(w[1]) <= 600000:
            jit = int(w[2]) if len(w) == 3 else 0
            if not 0 <= jit <= int(w[1]):
                raise ValueError(w[2])
            faults.delay = (int(w[1]), jit)
        elif (w[0] == "answer" and len(w) in (4, 5) and w[1] in ANSWER_FAULTS and
              0 <= int(w[3]) <= 1000 and (len(w) == 4 or ANSWER_FAULTS[w[1]] in TOPIC_APIS)):
            topic = w[4] if len(w) == 5 else None
            faults.answers[w[1]].extend([(error_code(w[2]), topic)] * int(w[3]))
        elif w[0] == "clear" and len(w) == 1:
            faults.schedule.clear()
            faults.rejects.clear()
            for q in faults.answers.values():
                q.clear()
        elif w[0] == "reject" and len(w) == 3 and 0 <= int(w[2]) <= 10000:
            faults.rejects.extend([error_code(w[1])] * int(w[2]))
        elif w == ["pending"]:
            return str(faults.pending())
        elif w == ["stats"]:
            pass
        else:
            raise ValueError(w)
    if w == ["stats"]:
        return json.dumps(faults.snapshot(), sort_keys=True)
    log("control: " + " ".join(w))
    return "ok"


def accept_loop(sock, handler) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", required=True,
                    help="the real broker, HOST:PORT, or a cluster's brokers, HOST:PORT,...")
    ap.add_argument("--listen", default="127.0.0.1:0",
                    help="the first broker's listener; the others' on free ports of its host")
    ap.add_argument("--control", default="127.0.0.1:0")
    ap.add_argument("--ready-file", help="written once listening: 'LISTEN_ADDR[,LISTEN_ADDR...] "
                    "CONTROL_ADDR' (a listener per broker, in --broker's order)")
    ap.add_argument("--stats", help="the counts (JSON), written at exit")
    ap.add_argument("--record", help="append the first frame of each API version here")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    upstreams = [parse_addr(b, "--broker") for b in a.broker.split(",")]
    if len(set(upstreams)) != len(upstreams) or len(upstreams) > 16:
        raise SystemExit(f"kafka_proxy: --broker '{a.broker}': allowed are 1..16 different "
                         "HOST:PORT, comma-separated")
    faults = Faults(a.seed)
    first = parse_addr(a.listen, "--listen")
    listens = [socket.create_server(first if i == 0 else (first[0], 0))
               for i in range(len(upstreams))]
    ctl = socket.create_server(parse_addr(a.control, "--control"))
    routes = {u: ls.getsockname()[:2] for u, ls in zip(upstreams, listens)}
    ctl_addr = "%s:%d" % ctl.getsockname()[:2]
    listen_addrs = ",".join("%s:%d" % routes[u] for u in upstreams)

    def stop(*_):
        if a.stats:
            with open(a.stats + ".tmp", "w", encoding="utf-8") as f:
                json.dump(faults.snapshot(), f, sort_keys=True)
            os.replace(a.stats + ".tmp", a.stats)
        log("stopped: " + json.dumps(faults.snapshot(), sort_keys=True))
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=accept_loop, args=(ctl, lambda c: control(c, faults)),
                     daemon=True).start()
    for u, ls in zip(upstreams, listens):
        proxy = Proxy(u, routes, faults, a.record)
        threading.Thread(target=accept_loop, args=(ls, proxy.serve), daemon=True).start()
        log("listening on %s:%d for the broker %s:%d" % (*routes[u], *u))
    log(f"control on {ctl_addr}")
    if a.ready_file:
        with open(a.ready_file + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{listen_addrs} {ctl_addr}\n")
        os.replace(a.ready_file + ".tmp", a.ready_file)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
