#!/usr/bin/env python3
"""Sends malformed frames out of an interface with a raw AF_PACKET socket (run in a
test network namespace). Bounded by count and time.

  flood.py IFACE DST_MAC DST_IP SRC_IP COUNT MAX_SECONDS SEED
Prints the number of frames sent.
"""
import random
import socket
import struct
import sys
import time


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def ipv4(src, dst, proto, payload, version=4, ihl=5, total=None, frag=0x4000):
    total = 20 + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 1, frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:] + payload


def main():
    iface, dst_mac, dst_ip, src_ip, count, seconds, seed = sys.argv[1:8]
    rnd = random.Random(int(seed))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src_mac = s.getsockname()[4]
    eth = mac_bytes(dst_mac) + src_mac
    deadline = time.time() + float(seconds)
    sent = 0
    for i in range(int(count)):
        if time.time() > deadline:
            break
        kind = i % 8
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 180)))
        if kind == 0:    # random bytes, any length (also shorter than an Ethernet header)
            frame = junk[: rnd.randint(1, 60)]
            frame = eth[: len(frame)] if len(frame) < 12 else eth + junk
        elif kind == 1:  # unknown ethertype
            frame = eth + b"\x88\xb5" + junk
        elif kind == 2:  # IPv4 with version 5
            frame = eth + b"\x08\x00" + ipv4(src_ip, dst_ip, 17, junk, version=5)
        elif kind == 3:  # IPv4 header claims more than the frame holds
            frame = eth + b"\x08\x00" + ipv4(src_ip, dst_ip, 17, junk, total=1400)
        elif kind == 4:  # truncated UDP header
            frame = eth + b"\x08\x00" + ipv4(src_ip, dst_ip, 17, b"\x9c\x40\x75")
        elif kind == 5:  # UDP to the RTP range, random payload, zero checksum
            udp = struct.pack("!HHHH", 40000, 30000 + rnd.randint(0, 999), 8 + len(junk), 0) + junk
            frame = eth + b"\x08\x00" + ipv4(src_ip, dst_ip, 17, udp)
        elif kind == 6:  # IPv6 ethertype with garbage
            frame = eth + b"\x86\xdd" + junk
        else:            # fragment
            udp = struct.pack("!HHHH", 40000, 30000, 8 + len(junk), 0) + junk
            frame = eth + b"\x08\x00" + ipv4(src_ip, dst_ip, 17, udp, frag=0x2000)
        if len(frame) < 14:
            frame = frame + b"\x00" * (14 - len(frame))  # the kernel needs a link header
        try:
            s.send(frame)
            sent += 1
        except OSError:
            pass
    print(sent)


if __name__ == "__main__":
    main()
