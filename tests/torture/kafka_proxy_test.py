#!/usr/bin/env python3
"""Checks of tests/torture/kafka_proxy.py (ctest torture.kafka_proxy; a second or two).

Frames recorded from Apache Kafka 4.4.0 answering librdkafka 2.0.2 (kafka_proxy_frames.json, made
with kafka_proxy.py --record: ApiVersions v3, Metadata v4, Produce v7, FindCoordinator v2 — the
versions the aggregator's librdkafka uses with that broker; and, recorded from the aggregator in the
realkafka-proxy scenario, ListOffsets v2, InitProducerId v4 (the broker's own
COORDINATOR_LOAD_IN_PROGRESS and a producer id) and a FindCoordinator v2 answer that found a
coordinator) and frames built here for the other versions (flexible Metadata v9/v12, Produce v9,
FindCoordinator v3/v4, InitProducerId v0-5, ListOffsets v1-10). Covered: the Metadata and
FindCoordinator rewrite (the proxied broker's address replaced, a foreign broker counted, the rest
of the message intact and still parseable); Produce responses parsed and faulted in place; Produce
requests' record batches read; the proxy's own error answer (reject) for every version family; the
answer faults of other APIs (Metadata without a leader or with a topic error, InitProducerId,
ListOffsets, FindCoordinator), each on a recorded frame and on built ones of the other versions, the
rest of the message intact, an error answer left alone; unhandled versions and every truncation of a
frame raise Malformed (forwarded unchanged), never another exception. Then the proxy as a process
between a client and a scripted broker on loopback (a few lines here that answer with the recorded
frames; the real broker is the torture scenario's): the address rewrite, an injected error, a
dropped answer (connection closed), a delayed answer, a rejected request answered after the one in
flight before it, a Metadata answer fault applied once, a resent batch told apart as deduplicated or
written again, bad control commands answered with an error, the counts written at SIGTERM; and a
proxy in front of two scripted brokers: a listener for each, each broker's address rewritten to its
own listener, connections counted per broker, the same broker twice refused.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kafka_proxy as kp  # noqa: E402

failures = []


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")
        print(f"FAIL {name} {detail}")


REC = json.load(open(os.path.join(HERE, "kafka_proxy_frames.json"), encoding="utf-8"))
UPSTREAM = tuple(REC["broker"].rsplit(":", 1))
UPSTREAM = (UPSTREAM[0], int(UPSTREAM[1]))


def frame(kind, api, version):
    for f in REC["frames"]:
        if (f["kind"], f["api"], f["version"]) == (kind, api, version):
            return bytes.fromhex(f["hex"])
    raise KeyError((kind, api, version))


def labeled(label_start):
    for f in REC["frames"]:
        if f.get("label", "").startswith(label_start):
            return bytes.fromhex(f["hex"])
    raise KeyError(label_start)


def counts():
    import collections
    return collections.Counter()


def s(x, flex):
    return kp.enc_string(x, flex)


def arr(n, flex):
    return kp.enc_uvarint(n + 1) if flex else struct.pack(">i", n)


def tags(flex, raw=b""):
    return (kp.enc_uvarint(1) + kp.enc_uvarint(7) + kp.enc_uvarint(len(raw)) + raw
            if flex and raw else (b"\0" if flex else b""))


def metadata_response(version, brokers, corr=9):
    """A Metadata response (header and body) with BROKERS [(node, host, port)] and one topic."""
    flex = version >= 9
    b = struct.pack(">i", corr) + (b"\0" if flex else b"")
    if version >= 3:
        b += struct.pack(">i", 0)
    b += arr(len(brokers), flex)
    for node, host, port in brokers:
        b += struct.pack(">i", node) + s(host, flex) + struct.pack(">i", port)
        if version >= 1:
            b += s("rack-a", flex)
        b += tags(flex, b"xy")
    if version >= 2:
        b += s("cluster-1", flex)
    if version >= 1:
        b += struct.pack(">i", 1)
    b += arr(1, flex) + struct.pack(">h", 0) + s("outpost.readings", flex)
    if version >= 10:
        b += bytes(range(16))
    if version >= 1:
        b += b"\0"
    b += arr(1, flex) + struct.pack(">hii", 0, 0, 1)
    if version >= 7:
        b += struct.pack(">i", 5)
    b += arr(1, flex) + struct.pack(">i", 1) + arr(1, flex) + struct.pack(">i", 1)
    if version >= 5:
        b += arr(0, flex)
    b += tags(flex)
    if version >= 8:
        b += struct.pack(">i", -2147483648)
    b += tags(flex)
    if 8 <= version <= 10:
        b += struct.pack(">i", -2147483648)
    if version >= 13:
        b += struct.pack(">h", 0)
    b += tags(flex)
    return b


def walk_metadata(body, version):
    """Every field of a Metadata response (an independent walk of the proxy's parser: fails on a
    damaged message): the brokers [(node, host, port)] and {topic: (topic error, [(partition
    error, index, leader)])}."""
    flex = version >= 9
    r = kp.response_reader(body, kp.METADATA, version)
    if version >= 3:
        r.int32()
    brokers = []
    for _ in range(r.array_len(flex)):
        node, host, port = r.int32(), r.string(flex), r.int32()
        brokers.append((node, host, port))
        if version >= 1:
            r.string(flex)
        r.tagged(flex)
    if version >= 2:
        r.string(flex)
    if version >= 1:
        r.int32()
    topics = {}
    for _ in range(r.array_len(flex)):
        err, name = r.int16(), r.string(flex)
        if version >= 10:
            r.take(16)
        if version >= 1:
            r.int8()
        parts = []
        for _ in range(r.array_len(flex)):
            parts.append((r.int16(), r.int32(), r.int32()))
            if version >= 7:
                r.int32()
            for _ in range(2 + (version >= 5)):  # replicas, in-sync replicas, offline replicas
                for _ in range(r.array_len(flex)):
                    r.int32()
            r.tagged(flex)
        if version >= 8:
            r.int32()
        r.tagged(flex)
        topics[name] = (err, parts)
    if 8 <= version <= 10:
        r.int32()
    if version >= 13:
        r.int16()
    r.tagged(flex)
    if r.pos != len(body):
        raise kp.Malformed(f"{len(body) - r.pos} bytes left over")
    return brokers, topics


def decode_metadata(body, version):
    """The brokers and the topic names of a Metadata response (walk_metadata)."""
    brokers, topics = walk_metadata(body, version)
    return brokers, list(topics)


def metadata_partitions(body, version):
    """{topic: (topic error, [(partition error, index, leader)])} (walk_metadata)."""
    return walk_metadata(body, version)[1]


PROXY = ("proxy.longer.host.example", 40001)  # another length than the broker's host

# --- Metadata -------------------------------------------------------------------------------
body = frame("response", 3, 4)
brokers, topics = decode_metadata(body, 4)
check("recorded Metadata v4 names the broker", brokers == [(1, UPSTREAM[0], UPSTREAM[1])], brokers)
c = counts()
out = kp.rewrite_metadata(body, 4, UPSTREAM, PROXY, c)
b2, t2 = decode_metadata(out, 4)
check("Metadata v4 rewritten to the proxy", b2 == [(1, *PROXY)], b2)
check("Metadata v4 topics intact", t2 == topics and "outpost.readings" in t2, t2)
check("Metadata v4: no foreign broker", c["foreign_brokers"] == 0, c)
for v in (0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13):
    body = metadata_response(v, [(1, *UPSTREAM), (2, "10.0.0.9", 9092)])
    c = counts()
    try:
        out = kp.rewrite_metadata(body, v, UPSTREAM, PROXY, c)
        b2, t2 = decode_metadata(out, v)
    except kp.Malformed as e:
        check(f"Metadata v{v} parses", False, str(e))
        continue
    check(f"Metadata v{v} rewritten", b2 == [(1, *PROXY), (2, "10.0.0.9", 9092)], b2)
    check(f"Metadata v{v} topic intact", t2 == ["outpost.readings"], t2)
    check(f"Metadata v{v} foreign broker counted", c["foreign_brokers"] == 1, c)
# A cluster: each proxied broker's address to its own listener; another broker counted foreign.
routes = {UPSTREAM: PROXY, ("127.0.0.1", 9093): ("127.0.0.1", 40002)}
c = counts()
b2, _ = decode_metadata(kp.rewrite_metadata(metadata_response(
    9, [(1, *UPSTREAM), (2, "127.0.0.1", 9093), (3, "10.0.0.9", 9092)]), 9, routes, None, c), 9)
check("Metadata v9, a cluster: each broker to its listener",
      b2 == [(1, *PROXY), (2, "127.0.0.1", 40002), (3, "10.0.0.9", 9092)] and
      c["foreign_brokers"] == 1, (b2, c))
try:
    kp.rewrite_metadata(metadata_response(13, [(1, *UPSTREAM)]), 14, UPSTREAM, PROXY, counts())
    check("Metadata v14 refused", False, "no Malformed")
except kp.Malformed:
    pass

# --- Metadata faults: no leader (partition level), a topic error (topic level) ------------------
body = frame("response", 3, 4)  # recorded: outpost.readings, 6 partitions
out, hit = kp.fault_metadata(body, 4, 5, False)
mp = metadata_partitions(out, 4)
check("recorded Metadata v4: every partition LEADER_NOT_AVAILABLE, leader -1",
      len(hit) == 6 and mp["outpost.readings"][0] == 0 and len(mp["outpost.readings"][1]) == 6 and
      all(e == 5 and leader == -1 for e, _, leader in mp["outpost.readings"][1]) and
      len(out) == len(body), (hit, mp))
check("Metadata v4 partition fault: brokers and topics intact",
      decode_metadata(out, 4) == decode_metadata(body, 4))
out, hit = kp.fault_metadata(body, 4, 5, True, "outpost.readings")
check("recorded Metadata v4: topic LEADER_NOT_AVAILABLE with no partitions",
      hit == ["outpost.readings"] and
      metadata_partitions(out, 4) == {"outpost.readings": (5, [])} and decode_metadata(out, 4) == decode_metadata(body, 4), metadata_partitions(out, 4))
check("Metadata fault limited to another topic: nothing to fault",
      kp.fault_metadata(body, 4, 5, True, "other") == (None, None) and
      kp.fault_metadata(body, 4, 5, False, "other") == (None, None))
check("an answer already faulted is not faulted again",
      kp.fault_metadata(kp.fault_metadata(body, 4, 5, False)[0], 4, 5, False) == (None, None))
for v in (0, 1, 5, 7, 8, 9, 10, 12, 13):
    b = metadata_response(v, [(1, *UPSTREAM)])
    try:
        o1, _ = kp.fault_metadata(b, v, 5, False)
        o2, _ = kp.fault_metadata(b, v, 3, True)
        check(f"Metadata v{v} partition fault", metadata_partitions(o1, v) ==
              {"outpost.readings": (0, [(5, 0, -1)])}, metadata_partitions(o1, v))
        check(f"Metadata v{v} topic fault", metadata_partitions(o2, v) ==
              {"outpost.readings": (3, [])} and decode_metadata(o2, v)[0] == [(1, *UPSTREAM)],
              metadata_partitions(o2, v))
    except kp.Malformed as e:
        check(f"Metadata v{v} faults parse", False, str(e))

# --- InitProducerId, ListOffsets, FindCoordinator faults ----------------------------------------
ok_pid = labeled("InitProducerId v4 response, a producer id")
out, hit = kp.fault_init_producer_id(ok_pid, 4, 51)
r = kp.response_reader(out, 22, 4)
got = (r.int32(), r.int16(), r.int64(), r.int16())
r.tagged(True)
check("recorded InitProducerId v4: CONCURRENT_TRANSACTIONS, producer id and epoch -1",
      got[1:] == (51, -1, -1) and r.pos == len(out) == len(ok_pid) and hit, (got, hit))
check("recorded InitProducerId v4 error answer (the broker's COORDINATOR_LOAD_IN_PROGRESS) left",
      kp.fault_init_producer_id(labeled("InitProducerId v4 response, COORDINATOR_LOAD"), 4, 51) ==
      (None, None))
for v in (0, 1, 2, 5):
    flex = v >= 2
    b = struct.pack(">i", 8) + tags(flex) + struct.pack(">ihqh", 0, 0, 42, 3) + tags(flex)
    o, _ = kp.fault_init_producer_id(b, v, 14)
    r = kp.response_reader(o, 22, v)
    got = (r.int32(), r.int16(), r.int64(), r.int16())
    check(f"InitProducerId v{v} faulted", got[1:] == (14, -1, -1), got)

lo = labeled("ListOffsets v2 response")
out, hit = kp.fault_list_offsets(lo, 2, 6)
r = kp.response_reader(out, 2, 2)
r.int32()
r.array_len(False), r.string(False), r.array_len(False)
got = (r.int32(), r.int16(), r.int64(), r.int64())
check("recorded ListOffsets v2: NOT_LEADER_OR_FOLLOWER, timestamp and offset -1",
      hit == ["outpost.readings[0]"] and got == (0, 6, -1, -1) and len(out) == len(lo), (got, hit))
check("ListOffsets fault limited to another topic: nothing to fault",
      kp.fault_list_offsets(lo, 2, 6, "other") == (None, None))
check("ListOffsets: an error answer is not faulted again", kp.fault_list_offsets(out, 2, 6) ==
      (None, None))
for v in (1, 4, 6, 10):
    flex = v >= 6
    b = struct.pack(">i", 8) + tags(flex) + (struct.pack(">i", 0) if v >= 2 else b"")
    b += arr(1, flex) + s("t", flex) + arr(2, flex)
    for idx in (0, 1):
        b += struct.pack(">ihqq", idx, 0, 1000, 77) + (struct.pack(">i", 4) if v >= 4 else b"")
        b += tags(flex)
    b += tags(flex) + tags(flex)
    o, hit = kp.fault_list_offsets(b, v, 5)
    r = kp.response_reader(o, 2, v)
    if v >= 2:
        r.int32()
    r.array_len(flex), r.string(flex), r.array_len(flex)
    got = []
    for _ in range(2):
        got.append((r.int32(), r.int16(), r.int64(), r.int64(), r.int32() if v >= 4 else None))
        r.tagged(flex)
    r.tagged(flex), r.tagged(flex)
    check(f"ListOffsets v{v} faulted", hit == ["t[0]", "t[1]"] and r.pos == len(o) and
          got == [(i, 5, -1, -1, -1 if v >= 4 else None) for i in (0, 1)], got)

B2 = REC["broker2"].rsplit(":", 1)
fc = labeled("FindCoordinator v2 response, a coordinator found")
c = counts()
check("recorded FindCoordinator v2 success rewritten to the proxy",
      kp.rewrite_find_coordinator(fc, 2, (B2[0], int(B2[1])), PROXY, c) != fc and
      not c["foreign_brokers"])
out, hit = kp.fault_find_coordinator(fc, 2, 15)
r = kp.response_reader(out, 10, 2)
got = (r.int32(), r.int16(), r.string(False), r.int32(), r.string(False), r.int32())
check("recorded FindCoordinator v2: COORDINATOR_NOT_AVAILABLE, no address",
      got[1:] == (15, None, -1, "", -1) and r.pos == len(out) and hit, (got, hit))
check("recorded FindCoordinator v2 error answer left as it is",
      kp.fault_find_coordinator(frame("response", 10, 2), 2, 15) == (None, None))
check("the faulted FindCoordinator answer still rewrites (no address: unchanged)",
      kp.rewrite_find_coordinator(out, 2, UPSTREAM, PROXY, counts()) == out)
for v in (0, 3):
    flex = v >= 3
    b = struct.pack(">i", 3) + tags(flex) + (struct.pack(">i", 0) if v else b"")
    b += struct.pack(">h", 0) + (s("x", flex) if v else b"")
    b += struct.pack(">i", 1) + s("h", flex) + struct.pack(">i", 9) + tags(flex)
    o, _ = kp.fault_find_coordinator(b, v, 15)
    r = kp.response_reader(o, 10, v)
    if v:
        r.int32()
    got = (r.int16(), r.string(flex) if v else None, r.int32(), r.string(flex), r.int32())
    r.tagged(flex)
    check(f"FindCoordinator v{v} faulted", got == (15, None, -1, "", -1) and r.pos == len(o), got)
b = struct.pack(">i", 3) + b"\0" + struct.pack(">i", 0) + arr(2, True)
for key, err in (("g1", 0), ("g2", 15)):
    b += s(key, True) + struct.pack(">i", 1 if not err else -1) + s("h" if not err else "", True)
    b += struct.pack(">ih", 9 if not err else -1, err) + s(None, True) + tags(True)
b += tags(True)
o, hit = kp.fault_find_coordinator(b, 4, 14)
r = kp.response_reader(o, 10, 4)
r.int32()
got = []
for _ in range(r.array_len(True)):
    got.append((r.string(True), r.int32(), r.string(True), r.int32(), r.int16(), r.string(True)))
    r.tagged(True)
r.tagged(True)
check("FindCoordinator v4: the found coordinator faulted, the other left",
      got == [("g1", -1, "", -1, 14, None), ("g2", -1, "", -1, 15, None)] and r.pos == len(o) and
      len(hit) == 1, got)

# --- FindCoordinator --------------------------------------------------------------------------
body = frame("response", 10, 2)  # recorded: COORDINATOR_NOT_AVAILABLE, no address
c = counts()
check("FindCoordinator v2 error answer unchanged",
      kp.rewrite_find_coordinator(body, 2, UPSTREAM, PROXY, c) == body and not c["foreign_brokers"])
for v in (0, 1, 2, 3):
    flex = v >= 3
    b = struct.pack(">i", 3) + (b"\0" if flex else b"")
    if v >= 1:
        b += struct.pack(">i", 0)
    b += struct.pack(">h", 0) + (s(None, flex) if v >= 1 else b"")
    b += struct.pack(">i", 1) + s(UPSTREAM[0], flex) + struct.pack(">i", UPSTREAM[1]) + tags(flex)
    out = kp.rewrite_find_coordinator(b, v, UPSTREAM, PROXY, counts())
    r = kp.response_reader(out, 10, v)
    if v >= 1:
        r.int32()
    r.int16()
    if v >= 1:
        r.string(flex)
    got = (r.int32(), r.string(flex), r.int32())
    r.tagged(flex)
    check(f"FindCoordinator v{v} rewritten", got == (1, *PROXY) and r.pos == len(out), got)
b = struct.pack(">i", 3) + b"\0" + struct.pack(">i", 0) + arr(2, True)
for key in ("g1", "g2"):
    b += s(key, True) + struct.pack(">i", 1) + s(UPSTREAM[0], True) + struct.pack(">i", UPSTREAM[1])
    b += struct.pack(">h", 0) + s(None, True) + tags(True)
b += tags(True)
out = kp.rewrite_find_coordinator(b, 4, UPSTREAM, PROXY, counts())
r = kp.response_reader(out, 10, 4)
r.int32()
got = []
for _ in range(r.array_len(True)):
    got.append((r.string(True), r.int32(), r.string(True), r.int32()))
    r.int16(), r.string(True), r.tagged(True)
r.tagged(True)
check("FindCoordinator v4 rewritten", got == [("g1", 1, *PROXY), ("g2", 1, *PROXY)] and
      r.pos == len(out), got)

# --- Produce ----------------------------------------------------------------------------------
body = frame("response", 0, 7)
parts = kp.parse_produce_response(body, 7)
check("recorded Produce v7 response: one partition, accepted",
      len(parts) == 1 and parts[0]["error"] == 0 and parts[0]["base_offset"] >= 0, parts)
out = kp.fault_produce_response(body, 7, parts, 7)
p2 = kp.parse_produce_response(out, 7)
check("Produce v7 faulted: REQUEST_TIMED_OUT, offset -1",
      p2[0]["error"] == 7 and len(out) == len(body), p2)
o = parts[0]["offset_pos"]
check("Produce v7 faulted: base offset, append time, log start offset -1",
      out[o:o + 24] == b"\xff" * 24, out[o:o + 24].hex())
req = frame("request", 0, 7)
batches, acks, topics = kp.parse_produce_request(req, 7)
check("recorded Produce v7 request: acks=all, one idempotent batch",
      acks == -1 and len(batches) == 1 and batches[0][2] >= 0 and batches[0][5] > 0, batches)
check("recorded Produce v7 request: its topic", topics == [(batches[0][0], [batches[0][1]])], topics)
for v in (3, 5, 7, 8, 9, 12):
    own = kp.produce_error_response(77, v, [("t1", [0, 1]), ("t2", [5])], 19)
    got = kp.parse_produce_response(own, v)
    check(f"the proxy's own Produce v{v} answer parses",
          [(p["topic"], p["partition"], p["error"], p["base_offset"]) for p in got] ==
          [("t1", 0, 19, -1), ("t1", 1, 19, -1), ("t2", 5, 19, -1)] and own[:4] == b"\0\0\0\x4d",
          got)


def produce_response_v9(parts):
    b = struct.pack(">i", 5) + b"\0" + arr(len(parts), True)
    for topic, plist in parts:
        b += s(topic, True) + arr(len(plist), True)
        for idx, err, off in plist:
            b += struct.pack(">ihqqq", idx, err, off, -1, 0)
            b += arr(1, True) + struct.pack(">i", 0) + s("bad record", True) + tags(True)
            b += s(None, True) + tags(True, b"\0\0\0\1\0\0\0\2")
        b += tags(True)
    return b + struct.pack(">i", 0) + tags(True)


body = produce_response_v9([("t1", [(0, 0, 10), (1, 0, 20)]), ("t2", [(3, 0, 30)])])
parts = kp.parse_produce_response(body, 9)
check("Produce v9 parsed", [(p["topic"], p["partition"], p["error"], p["base_offset"])
                            for p in parts] == [("t1", 0, 0, 10), ("t1", 1, 0, 20),
                                                ("t2", 3, 0, 30)], parts)
out = kp.fault_produce_response(body, 9, parts, 56)
check("Produce v9 faulted in every partition",
      all(p["error"] == 56 and p["base_offset"] == -1 for p in kp.parse_produce_response(out, 9)))
for v in (2, 14):
    try:
        kp.parse_produce_response(body, v)
        check(f"Produce v{v} refused", False, "no Malformed")
    except kp.Malformed:
        pass

# --- Faulted batches: resent, or overtaken by a later accepted batch ---------------------------
f = kp.Faults(1)
b10, b20, other = ("t", 0, 7, 0, 10, 5), ("t", 0, 7, 0, 20, 5), ("t", 1, 7, 0, 30, 5)
ok = lambda b, off: [{"topic": b[0], "partition": b[1], "error": 0, "base_offset": off}]  # noqa
f.note_answer([b10], ok(b10, 100))
f.note_faulted([b10])
f.note_passed([other])
st = f.snapshot()
check("a faulted batch, not overtaken by another partition",
      st["faulted_batches_not_resent"] == 1 and st["faulted_batches_not_resent_overtaken"] == 0, st)
f.note_answer([b20], ok(b20, 105))
f.note_passed([b20])
st = f.snapshot()
check("a faulted batch overtaken by a later seq of its partition",
      st["faulted_batches_not_resent_overtaken"] == 1, st)
f.note_answer([b10], ok(b10, 100))
st = f.snapshot()
check("a resent faulted batch counts as resent, deduplicated",
      st["faulted_batches_not_resent"] == 0 and st["faulted_batches_not_resent_overtaken"] == 0 and
      st["faulted_batches_resent"] == 1 and st["resent_deduplicated"] == 1, st)

# --- Every truncation is Malformed, never another exception ----------------------------------
for kind, api, v, fn in (("response", 3, 4, lambda b: kp.rewrite_metadata(b, 4, UPSTREAM, PROXY,
                                                                           counts())),
                         ("response", 0, 7, lambda b: kp.parse_produce_response(b, 7)),
                         ("request", 0, 7, lambda b: kp.parse_produce_request(b, 7)),
                         ("response", 3, 4, lambda b: kp.fault_metadata(b, 4, 5, True)),
                         ("response", 2, 2, lambda b: kp.fault_list_offsets(b, 2, 6)),
                         ("InitProducerId v4 response, a", 22, 4,
                          lambda b: kp.fault_init_producer_id(b, 4, 14)),
                         ("FindCoordinator v2 response, a", 10, 2,
                          lambda b: kp.fault_find_coordinator(b, 2, 15))):
    full = labeled(kind) if kind not in ("request", "response") else frame(kind, api, v)
    bad = []
    for n in range(len(full)):
        try:
            fn(full[:n])
        except kp.Malformed:
            pass
        except Exception as e:  # noqa: BLE001 - any other exception is the failure
            bad.append((n, repr(e)))
    check(f"{kind} {api} v{v}: truncations raise Malformed", not bad, bad[:3])

# --- The proxy as a process -------------------------------------------------------------------
PRODUCE_RESP = frame("response", 0, 7)
PRODUCE_REQ = frame("request", 0, 7)


def broker(sock, offsets):
    """A scripted broker: answers Metadata with the recorded v4 response rewritten to its own
    address, Produce with the recorded v7 response carrying the next of OFFSETS."""
    meta = kp.rewrite_metadata(frame("response", 3, 4), 4, UPSTREAM, sock.getsockname(), counts())
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return

        def serve(conn=conn):
            while True:
                try:
                    body = kp.read_frame(conn)
                except OSError:
                    return
                if body is None:
                    return
                api, ver, corr = kp.request_header(body)
                if corr == 500:  # a slow answer: a request behind it waits for it
                    time.sleep(0.5)
                if api == kp.METADATA:
                    resp = meta
                else:
                    resp = bytearray(PRODUCE_RESP)
                    p = kp.parse_produce_response(PRODUCE_RESP, 7)[0]
                    struct.pack_into(">q", resp, p["offset_pos"], offsets.pop(0))
                resp = struct.pack(">i", corr) + bytes(resp[4:])
                conn.sendall(struct.pack(">i", len(resp)) + resp)

        threading.Thread(target=serve, daemon=True).start()


def with_corr(body, corr):
    return body[:4] + struct.pack(">i", corr) + body[8:]


def call(conn, body):
    conn.sendall(struct.pack(">i", len(body)) + body)
    return kp.read_frame(conn)


def ctl(addr, line):
    with socket.create_connection(addr, timeout=10) as c:
        c.sendall((line + "\n").encode())
        return c.makefile().readline().strip()


with tempfile.TemporaryDirectory() as tmp:
    bsock = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=broker, args=(bsock, [100, 100, 200, 100, 100, 100, 999]),
                     daemon=True).start()
    baddr = bsock.getsockname()
    ready = os.path.join(tmp, "ready")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "kafka_proxy.py"), "--broker",
                             "%s:%d" % baddr, "--ready-file", ready, "--stats",
                             os.path.join(tmp, "stats.json")], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        listen, control = open(ready).read().split()
        la = (listen.rsplit(":", 1)[0], int(listen.rsplit(":", 1)[1]))
        ca = (control.rsplit(":", 1)[0], int(control.rsplit(":", 1)[1]))
        c = socket.create_connection(la, timeout=10)
        meta = call(c, frame("request", 3, 4))
        check("the proxy rewrites the broker to itself", decode_metadata(meta, 4)[0] ==
              [(1, *la)], decode_metadata(meta, 4)[0])
        check("control: answer", ctl(ca, "answer Metadata LEADER_NOT_AVAILABLE 1 outpost.readings")
              == "ok" and ctl(ca, "pending") == "1")
        mp = metadata_partitions(call(c, frame("request", 3, 4)), 4)["outpost.readings"]
        check("an injected Metadata answer: no leader", mp[0] == 0 and
              all(e == 5 and leader == -1 for e, _, leader in mp[1]), mp)
        mp = metadata_partitions(call(c, frame("request", 3, 4)), 4)["outpost.readings"]
        check("the next Metadata answer passes", all(e == 0 for e, _, _ in mp[1]), mp)
        check("control: answer, clear", ctl(ca, "answer ListOffsets 6 3") == "ok" and
              ctl(ca, "pending") == "3" and ctl(ca, "clear") == "ok" and ctl(ca, "pending") == "0")
        r = kp.parse_produce_response(call(c, PRODUCE_REQ), 7)
        check("a Produce answer passes unchanged", r[0]["error"] == 0 and r[0]["base_offset"] == 100, r)
        check("control: errors", ctl(ca, "errors REQUEST_TIMED_OUT 1") == "ok")
        check("control: pending", ctl(ca, "pending") == "1")
        r = kp.parse_produce_response(call(c, PRODUCE_REQ), 7)  # the broker "deduplicates": 100
        check("an injected REQUEST_TIMED_OUT", r[0]["error"] == 7 and r[0]["base_offset"] == -1, r)
        check("control: pending consumed", ctl(ca, "pending") == "0")
        check("control: delay", ctl(ca, "delay 30 10") == "ok")
        r = kp.parse_produce_response(call(c, PRODUCE_REQ), 7)  # 200: written again
        check("a delayed answer arrives", r[0]["error"] == 0, r)
        check("control: delay off", ctl(ca, "delay 0") == "ok")
        check("control: drop", ctl(ca, "drop 1") == "ok")
        c.sendall(struct.pack(">i", len(PRODUCE_REQ)) + PRODUCE_REQ)
        check("a dropped answer closes the connection", kp.read_frame(c) is None)
        c.close()
        c = socket.create_connection(la, timeout=10)
        r = kp.parse_produce_response(call(c, PRODUCE_REQ), 7)
        check("a new connection after the drop", r[0]["base_offset"] == 100, r)
        # A rejected request behind one in flight: the proxy's answer comes after the broker's.
        c.sendall(struct.pack(">i", len(PRODUCE_REQ)) + with_corr(PRODUCE_REQ, 500))
        for _ in range(100):
            if json.loads(ctl(ca, "stats"))["requests"].get("Produce v7") == 6:
                break
            time.sleep(0.02)
        check("control: reject", ctl(ca, "reject NOT_ENOUGH_REPLICAS 1") == "ok")
        c.sendall(struct.pack(">i", len(PRODUCE_REQ)) + with_corr(PRODUCE_REQ, 501))
        a1, a2 = kp.read_frame(c), kp.read_frame(c)
        r1, r2 = kp.parse_produce_response(a1, 7), kp.parse_produce_response(a2, 7)
        check("answers in request order", a1[:4] == struct.pack(">i", 500) and
              a2[:4] == struct.pack(">i", 501), (a1[:4], a2[:4]))
        check("the broker's answer, then the proxy's NOT_ENOUGH_REPLICAS",
              r1[0]["error"] == 0 and r2[0]["error"] == 19 and r2[0]["base_offset"] == -1, (r1, r2))
        for bad in ("errors NOPE 1", "errors 7", "drop -1", "delay 10 20", "rate 7 101", "x",
                    "answer Produce 7 1", "answer InitProducerId 14 1 t", "answer Metadata 5"):
            check(f"control refuses '{bad}'", ctl(ca, bad).startswith("error: "), bad)
        st = json.loads(ctl(ca, "stats"))
        check("stats: injected", st["injected"] == {"REQUEST_TIMED_OUT": 1}, st)
        check("stats: dropped, delayed", st.get("dropped_responses") == 1 and
              st.get("delayed_responses", 0) >= 1, st)
        # The same batch (producer id, epoch, seq) answered 100, then 100 (deduplicated), 200
        # (written again), 100 (its answer dropped) and 100 (both deduplicated).
        check("stats: rejected", st["rejected"] == {"NOT_ENOUGH_REPLICAS": 1}, st)
        check("stats: answers faulted, partitions per Produce request",
              st["answer_injected"] == {"Metadata LEADER_NOT_AVAILABLE": 1} and
              st["answer_pending"] == {} and st["produce_partitions"] == {"1": 7}, st)
        check("stats: resends told apart", st.get("resent") == 5 and
              st.get("resent_deduplicated") == 4 and st.get("resent_appended_again") == 1, st)
        check("stats: faulted batches", st.get("faulted_batches") == 2 and
              st.get("faulted_batches_resent") == 2 and st["faulted_batches_not_resent"] == 0, st)
        check("stats: no unhandled version", st["unhandled"] == {} and
              st.get("metadata_rewritten") == 3, st)
        c.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    st = json.load(open(os.path.join(tmp, "stats.json")))
    check("counts written at SIGTERM", st["injected"] == {"REQUEST_TIMED_OUT": 1}, st)
    check("the proxy logged the injected fault", "answered REQUEST_TIMED_OUT" in err, err[-500:])
    bsock.close()

# --- A cluster: a listener per broker ---------------------------------------------------------
with tempfile.TemporaryDirectory() as tmp:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    for bs in socks:
        threading.Thread(target=broker, args=(bs, []), daemon=True).start()
    addrs = ["%s:%d" % bs.getsockname() for bs in socks]
    bad = subprocess.run([sys.executable, os.path.join(HERE, "kafka_proxy.py"), "--broker",
                          f"{addrs[0]},{addrs[0]}"], capture_output=True, text=True, timeout=30)
    check("the same broker twice refused", bad.returncode != 0 and "--broker" in bad.stderr,
          bad.stderr[-300:])
    ready = os.path.join(tmp, "ready")
    stats = os.path.join(tmp, "stats.json")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "kafka_proxy.py"), "--broker",
                             ",".join(addrs), "--ready-file", ready, "--stats", stats],
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        listens, _ = open(ready).read().split()
        listens = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in listens.split(",")]
        check("a listener per broker", len(listens) == 2 and listens[0] != listens[1], listens)
        for i, la in enumerate(listens):  # each scripted broker names itself only
            with socket.create_connection(la, timeout=10) as c:
                got = decode_metadata(call(c, frame("request", 3, 4)), 4)[0]
                check(f"broker {i + 1} rewritten to its own listener", got == [(1, *la)], got)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    st = json.load(open(stats))
    check("connections counted per broker", st["connections_by_broker"] ==
          {addrs[0]: 1, addrs[1]: 1} and st.get("foreign_brokers", 0) == 0, st)
    for bs in socks:
        bs.close()

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("kafka_proxy: all checks passed")
