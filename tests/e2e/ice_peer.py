#!/usr/bin/python3
"""An ICE endpoint for the end-to-end tests, run inside a test network namespace with
Debian's python3 (python3-aioice: a full ICE agent, RFC 8445, independent of Karl).

  ice_peer.py agent --ufrag U --pwd P --remote-ufrag RU --remote-pwd RP
                    --candidate "<a=candidate value>" [--candidate ...] [--components 2]
                    [--remote-lite] --count N --expect M [--timeout S]
      The controlling agent: gathers its host candidates (IPv4), checks the remote
      candidates, nominates a pair, then sends N RTP packets (udp_peer.py's format) over
      component 1 while receiving up to M. Prints JSON lines:
        {"event": "connected", "local": [addr, port], "remote": [addr, port]}
        {"event": "done", "sent": N, "count", "in_order", "intact", "first_seq", "last_seq",
         "sources"}
      or {"event": "failed", "error": "..."} (exit status 1).

  ice_peer.py media --bind ADDR --port P --remote ADDR:PORT --count N --expect M
      A plain symmetric RTP endpoint (the caller): sends N packets from ADDR:P while
      receiving up to M there; prints {"sent", "count", "in_order", "intact", "sources"}.

  ice_peer.py checks --bind ADDR --remote ADDR:PORT --ufrag U --remote-ufrag RU
                     --remote-pwd RP
      Sends Binding requests made by hand: keyed with a wrong password, without
      MESSAGE-INTEGRITY, with an unknown comprehension-required attribute (0x0030), with
      FINGERPRINT broken, then a correct one; prints one JSON line with what came back
      for each (null: nothing within 1 s):
        {"wrong_password": {"class": "error", "code": 401, "fingerprint": true}, ...,
         "no_integrity": ..., "unknown_attribute": ..., "bad_fingerprint": ...,
         "good": {"class": "success", "xor_mapped": [addr, port], "integrity": true,
                  "fingerprint": true, "transaction_matches": true},
         "local": [addr, port]}
"""
import argparse
import asyncio
import json
import os
import secrets
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from udp_peer import is_probe, payload_for, rtp  # noqa: E402

import aioice  # noqa: E402
from aioice import stun  # noqa: E402


async def agent(args):
    conn = aioice.Connection(ice_controlling=True, components=args.components, use_ipv4=True,
                             use_ipv6=False)
    conn.local_username, conn.local_password = args.ufrag, args.pwd
    conn.remote_username, conn.remote_password = args.remote_ufrag, args.remote_pwd
    conn.remote_is_lite = args.remote_lite
    try:
        await conn.gather_candidates()
        for c in args.candidate:
            await conn.add_remote_candidate(aioice.Candidate.from_sdp(c))
        await conn.add_remote_candidate(None)
        await asyncio.wait_for(conn.connect(), args.timeout)
    except Exception as e:  # noqa: BLE001 - reported to the test
        print(json.dumps({"event": "failed", "error": "%s: %s" % (type(e).__name__, e)}),
              flush=True)
        await conn.close()
        return 1
    pair = conn._nominated[1]  # aioice keeps the nominated pairs by component
    print(json.dumps({"event": "connected", "local": list(pair.local_addr),
                      "remote": list(pair.remote_addr)}), flush=True)
    seqs, intact = [], True

    async def receive():
        nonlocal intact
        while len(seqs) < args.expect:
            data, component = await conn.recvfrom()
            if component != 1 or len(data) < 12 or data[0] != 0x80 or is_probe(data):
                continue
            seq = struct.unpack("!H", data[2:4])[0]
            seqs.append(seq)
            intact = intact and data[12:] == payload_for(seq)

    rx = asyncio.ensure_future(receive())
    await asyncio.sleep(args.send_delay)
    for seq in range(args.count):
        await conn.sendto(rtp(seq, 0x1CE1CE00), 1)
        await asyncio.sleep(1.0 / args.pps)
    try:
        await asyncio.wait_for(rx, args.timeout)
    except asyncio.TimeoutError:
        pass
    print(json.dumps({"event": "done", "sent": args.count, "count": len(seqs),
                      "in_order": seqs == sorted(seqs), "intact": intact,
                      "first_seq": seqs[0] if seqs else None,
                      "last_seq": seqs[-1] if seqs else None,
                      "local": list(pair.local_addr)}), flush=True)
    await conn.close()
    return 0


def binding_request(username, password, break_fingerprint=False, integrity=True, extra=b""):
    """A Binding request byte by byte (RFC 5389 §6, §15; RFC 8445 §7.1): USERNAME,
    PRIORITY, ICE-CONTROLLING, `extra` (raw attributes), MESSAGE-INTEGRITY, FINGERPRINT.
    Returns (transaction id, bytes)."""
    def attr(t, v):
        return struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4)

    tid = secrets.token_bytes(12)
    body = (attr(0x0006, username.encode()) + attr(0x0024, struct.pack("!I", 1853824767)) +
            attr(0x802A, secrets.token_bytes(8)) + extra)
    data = struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + tid + body
    if integrity:
        data += attr(0x0008, stun.message_integrity(data, password.encode()))
    data += attr(0x8028, struct.pack("!I", stun.message_fingerprint(data)))
    data = bytearray(stun.set_body_length(data, len(data) - 20))
    if break_fingerprint:
        data[-1] ^= 0xFF
    return tid, bytes(data)


def describe(reply, tid, key=None):
    """What a reply is, checked with aioice's parser (which verifies FINGERPRINT)."""
    if reply is None:
        return None
    r = stun.parse_message(reply)
    out = {"fingerprint": "FINGERPRINT" in r.attributes,
           "transaction_matches": r.transaction_id == tid}
    if r.message_class == stun.Class.ERROR:
        out["class"] = "error"
        out["code"] = r.attributes.get("ERROR-CODE", (None, ""))[0]
        out["integrity"] = "MESSAGE-INTEGRITY" in r.attributes
    elif r.message_class == stun.Class.RESPONSE:
        out["class"] = "success"
        out["xor_mapped"] = list(r.attributes.get("XOR-MAPPED-ADDRESS", ()))
        try:
            stun.parse_message(reply, integrity_key=key.encode())
            out["integrity"] = "MESSAGE-INTEGRITY" in r.attributes
        except ValueError:
            out["integrity"] = False
    else:
        out["class"] = str(r.message_class)
    return out


def checks(args):
    host, _, port = args.remote.rpartition(":")
    remote = (host.strip("[]"), int(port))
    s = socket.socket(socket.AF_INET6 if ":" in remote[0] else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.bind, 0))
    username = "%s:%s" % (args.remote_ufrag, args.ufrag)
    out = {"local": list(s.getsockname()[:2])}

    def ask(data, wait):
        s.sendto(data, remote)
        s.settimeout(wait)
        try:
            reply, _ = s.recvfrom(2048)
            return reply
        except socket.timeout:
            return None

    for name, kw in (("wrong_password", {"password": "not-the-password-at-all"}),
                     ("no_integrity", {"integrity": False}),
                     ("unknown_attribute", {"extra": struct.pack("!HHI", 0x0030, 4, 7)}),
                     ("bad_fingerprint", {"break_fingerprint": True})):
        kw.setdefault("password", args.remote_pwd)
        password = kw.pop("password")
        tid, data = binding_request(username, password, **kw)
        out[name] = describe(ask(data, 1.0), tid)
    out["good"] = None
    for _ in range(5):  # UDP: retransmit like a STUN client (RFC 5389 §7.2.1)
        tid, data = binding_request(username, args.remote_pwd)
        reply = ask(data, 0.5)
        if reply is not None:
            out["good"] = describe(reply, tid, args.remote_pwd)
            break
    print(json.dumps(out), flush=True)
    return 0


def media(args):
    """Sends and receives RTP on one socket (a symmetric RTP endpoint)."""
    s = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.bind, args.port))
    host, _, port = args.remote.rpartition(":")
    remote = (host.strip("[]"), int(port))
    seqs, intact, sources = [], True, set()
    t0 = time.time()
    deadline = t0 + args.timeout
    sent = 0
    while time.time() < deadline and (sent < args.count or len(seqs) < args.expect):
        now = time.time()
        if sent < args.count and now >= t0 + sent / args.pps:
            s.sendto(rtp(sent, 0x4B41524C), remote)
            sent += 1
            continue
        wait = t0 + sent / args.pps - now if sent < args.count else deadline - now
        r, _, _ = select.select([s], [], [], max(0.0, min(wait, deadline - now)))
        if not r:
            continue
        data, src = s.recvfrom(2048)
        if len(data) < 12 or data[0] != 0x80 or is_probe(data):
            continue
        seq = struct.unpack("!H", data[2:4])[0]
        seqs.append(seq)
        intact = intact and data[12:] == payload_for(seq)
        sources.add("%s:%d" % (src[0], src[1]))
    print(json.dumps({"sent": sent, "count": len(seqs), "in_order": seqs == sorted(seqs),
                      "intact": intact, "sources": sorted(sources)}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("agent")
    a.add_argument("--ufrag", required=True)
    a.add_argument("--pwd", required=True)
    a.add_argument("--remote-ufrag", required=True)
    a.add_argument("--remote-pwd", required=True)
    a.add_argument("--candidate", action="append", required=True)
    a.add_argument("--components", type=int, default=1)
    a.add_argument("--remote-lite", action="store_true")
    a.add_argument("--count", type=int, default=200)
    a.add_argument("--expect", type=int, default=200)
    a.add_argument("--pps", type=float, default=200.0)
    a.add_argument("--send-delay", type=float, default=0.5)
    a.add_argument("--timeout", type=float, default=15.0)
    c = sub.add_parser("checks")
    c.add_argument("--bind", required=True)
    c.add_argument("--remote", required=True)
    c.add_argument("--ufrag", required=True)
    c.add_argument("--remote-ufrag", required=True)
    c.add_argument("--remote-pwd", required=True)
    m = sub.add_parser("media")
    m.add_argument("--bind", required=True)
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--remote", required=True)
    m.add_argument("--count", type=int, default=200)
    m.add_argument("--expect", type=int, default=200)
    m.add_argument("--pps", type=float, default=200.0)
    m.add_argument("--timeout", type=float, default=15.0)
    args = ap.parse_args()
    if args.mode == "agent":
        return asyncio.run(agent(args))
    if args.mode == "media":
        return media(args)
    return checks(args)


if __name__ == "__main__":
    sys.exit(main())
