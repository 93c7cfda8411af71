#!/usr/bin/env python3
"""A media peer for the end-to-end tests, run inside a test network namespace.

  udp_peer.py send BIND_ADDR BIND_PORT DST_ADDR DST_PORT COUNT [SSRC] [PPS]
  udp_peer.py recv BIND_ADDR BIND_PORT COUNT TIMEOUT_S
  udp_peer.py probe BIND_ADDR BIND_PORT DST_ADDR DST_PORT TIMEOUT_S
      sends RTP probe packets (SSRC "PROB") until one comes back (from a peer
      running 'echo'), for waiting until the path through Karl is up both ways
  udp_peer.py echo BIND_ADDR BIND_PORT TIMEOUT_S   echoes probe packets to their source

send: RTP v2 packets (PT 0, 20 ms, 160-byte payload derived from the sequence number).
recv: prints one JSON line: {"count", "in_order", "intact", "sources", "first_seq", "last_seq"}.
"""
import json
import socket
import struct
import sys
import time


PROBE_SSRC = 0x50524F42  # "PROB": probe packets, ignored by recv


def is_probe(data):
    return len(data) >= 12 and struct.unpack("!I", data[8:12])[0] == PROBE_SSRC


def payload_for(seq):
    return bytes((seq * 7 + i) & 0xFF for i in range(160))


def rtp(seq, ssrc):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload_for(seq)


def sock_for(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((addr, int(port)))
    return s


def main():
    mode = sys.argv[1]
    if mode == "send":
        addr, port, dst, dport, count = sys.argv[2:7]
        ssrc = int(sys.argv[7]) if len(sys.argv) > 7 else 0x4B41524C
        pps = float(sys.argv[8]) if len(sys.argv) > 8 else 2000.0
        s = sock_for(addr, port)
        gap = 1.0 / pps
        t0 = time.time()
        for seq in range(int(count)):
            s.sendto(rtp(seq, ssrc), (dst, int(dport)))
            ahead = t0 + (seq + 1) * gap - time.time()
            if ahead > 0:
                time.sleep(ahead)
    elif mode == "recv":
        addr, port, count, timeout = sys.argv[2:6]
        s = sock_for(addr, port)
        deadline = time.time() + float(timeout)
        seqs, intact, sources = [], True, set()
        while len(seqs) < int(count) and time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                data, src = s.recvfrom(2048)
            except socket.timeout:
                break
            if len(data) < 12 or data[0] != 0x80 or is_probe(data):
                continue  # probe traffic
            seq = struct.unpack("!H", data[2:4])[0]
            seqs.append(seq)
            intact = intact and data[12:] == payload_for(seq)
            sources.add("%s:%d" % (src[0], src[1]))
        print(json.dumps({"count": len(seqs), "in_order": seqs == sorted(seqs),
                          "intact": intact, "sources": sorted(sources),
                          "first_seq": seqs[0] if seqs else None,
                          "last_seq": seqs[-1] if seqs else None}))
    elif mode == "probe":
        addr, port, dst, dport, timeout = sys.argv[2:7]
        s = sock_for(addr, port)
        s.settimeout(0.1)
        deadline = time.time() + float(timeout)
        seq = 0
        while time.time() < deadline:
            s.sendto(rtp(seq, PROBE_SSRC), (dst, int(dport)))
            seq += 1
            try:
                data, _ = s.recvfrom(2048)
                if is_probe(data):
                    print("ok after %d probes" % seq)
                    return 0
            except socket.timeout:
                pass
        print("timeout")
        return 1
    elif mode == "echo":
        addr, port, timeout = sys.argv[2:5]
        s = sock_for(addr, port)
        deadline = time.time() + float(timeout)
        while time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                data, src = s.recvfrom(2048)
            except socket.timeout:
                break
            if is_probe(data):
                s.sendto(data, src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
