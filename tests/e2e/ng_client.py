#!/usr/bin/env python3
"""A minimal client for rtpengine's ng control protocol, for the end-to-end tests.

The ng protocol is UDP datagrams "<cookie> <bencoded dictionary>"; the reply carries
the same cookie. bencode (BitTorrent's encoding): i<n>e integers, <len>:<bytes>
strings, l...e lists, d...e dictionaries with keys sorted as raw bytes.

  NgClient("127.0.0.1", 2223, netns="karl-x").request({"command": "ping"})
  -> {"result": "pong"}

  python3 ng_client.py ADDR PORT '{"command": "ping"}'   (run it with ip netns exec)
"""
import ctypes
import json
import os
import socket
import sys
import threading
import time

CLONE_NEWNET = 0x40000000


class BencodeError(ValueError):
    pass


def bencode(value):
    """Python value -> bytes. str is sent as UTF-8; bool and None are refused (bencode
    has neither; rtpengine's flags are strings)."""
    out = []

    def enc(v):
        if isinstance(v, bool) or v is None:
            raise BencodeError("bencode has no %r" % (v,))
        if isinstance(v, int):
            out.append(b"i%de" % v)
        elif isinstance(v, (bytes, bytearray)):
            out.append(b"%d:" % len(v))
            out.append(bytes(v))
        elif isinstance(v, str):
            enc(v.encode())
        elif isinstance(v, (list, tuple)):
            out.append(b"l")
            for x in v:
                enc(x)
            out.append(b"e")
        elif isinstance(v, dict):
            items = []
            for k, x in v.items():
                kb = k.encode() if isinstance(k, str) else k
                if not isinstance(kb, (bytes, bytearray)):
                    raise BencodeError("dictionary key %r is not a string" % (k,))
                items.append((bytes(kb), x))
            items.sort(key=lambda kv: kv[0])
            for i in range(1, len(items)):
                if items[i][0] == items[i - 1][0]:
                    raise BencodeError("duplicate key %r" % items[i][0])
            out.append(b"d")
            for kb, x in items:
                enc(kb)
                enc(x)
            out.append(b"e")
        else:
            raise BencodeError("cannot bencode %s" % type(v).__name__)

    enc(value)
    return b"".join(out)


def _text(b):
    """Strings come back as str when they are UTF-8 (SDP, results), else as bytes."""
    try:
        return b.decode()
    except UnicodeDecodeError:
        return b


def bdecode(data):
    """bytes -> Python value (dict keys and UTF-8 strings as str). Raises BencodeError
    on malformed input or trailing bytes."""
    if isinstance(data, str):
        data = data.encode()

    def dec(i, depth):
        if depth > 64:
            raise BencodeError("nesting too deep")
        if i >= len(data):
            raise BencodeError("truncated at %d" % i)
        c = data[i:i + 1]
        if c == b"i":
            end = data.find(b"e", i)
            if end < 0:
                raise BencodeError("unterminated integer at %d" % i)
            digits = data[i + 1:end]
            # No empty, "-", leading zeros or "-0" (BEP 3).
            if not digits or digits == b"-" or digits.startswith(b"-0") or \
                    (digits.startswith(b"0") and len(digits) > 1):
                raise BencodeError("bad integer %r at %d" % (digits, i))
            try:
                return int(digits), end + 1
            except ValueError:
                raise BencodeError("bad integer %r at %d" % (digits, i))
        if c == b"l":
            items, i = [], i + 1
            while data[i:i + 1] != b"e":
                v, i = dec(i, depth + 1)
                items.append(v)
            return items, i + 1
        if c == b"d":
            d, i = {}, i + 1
            while data[i:i + 1] != b"e":
                if not data[i:i + 1].isdigit():
                    raise BencodeError("dictionary key at %d is not a string" % i)
                k, i = dec(i, depth + 1)
                v, i = dec(i, depth + 1)
                d[k] = v
            return d, i + 1
        if c.isdigit():
            colon = data.find(b":", i)
            if colon < 0 or not data[i:colon].isdigit():
                raise BencodeError("bad string length at %d" % i)
            n = int(data[i:colon])
            if colon + 1 + n > len(data):
                raise BencodeError("string at %d runs past the end" % i)
            return _text(data[colon + 1:colon + 1 + n]), colon + 1 + n
        raise BencodeError("unexpected %r at %d" % (c, i))

    value, end = dec(0, 0)
    if end != len(data):
        raise BencodeError("%d trailing bytes" % (len(data) - end))
    return value


def netns_socket(netns, family, kind):
    """A socket living in network namespace `netns` (a name under /var/run/netns).
    setns() moves only the calling thread, so a short-lived helper thread enters the
    namespace and makes the socket; the caller's own namespace is never changed."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = {}

    def make():
        try:
            with open(os.path.join("/var/run/netns", netns)) as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "setns(%s): %s" % (netns, os.strerror(err)))
            result["sock"] = socket.socket(family, kind)
        except Exception as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


class NgError(RuntimeError):
    pass


class NgClient:
    """Sends ng requests over UDP and returns the decoded reply dictionary.

    A request is retried (same cookie: rtpengine answers a repeated cookie from its
    cache instead of running the command twice) at most `retries` more times, each try
    waiting `timeout` seconds for the reply with that cookie; replies to other cookies
    are ignored."""

    def __init__(self, host, port, netns=None, timeout=1.0, retries=2):
        self.addr = (host, int(port))
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = netns_socket(netns, fam, socket.SOCK_DGRAM) if netns else \
            socket.socket(fam, socket.SOCK_DGRAM)
        self.timeout, self.retries = timeout, retries
        self._seq = 0
        self._prefix = "%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000000)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, message):
        """message: dict with "command". Returns the reply dict; raises NgError when no
        reply came or the reply's result is "error"."""
        self._seq += 1
        cookie = ("%s_%d" % (self._prefix, self._seq)).encode()
        packet = cookie + b" " + bencode(message)
        for attempt in range(self.retries + 1):
            self.sock.sendto(packet, self.addr)
            deadline = time.time() + self.timeout
            while True:
                left = deadline - time.time()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    data, _ = self.sock.recvfrom(65535)
                except socket.timeout:
                    break
                got_cookie, sep, body = data.partition(b" ")
                if not sep or got_cookie != cookie:
                    continue  # late reply to an earlier request
                reply = bdecode(body)
                if not isinstance(reply, dict):
                    raise NgError("reply is not a dictionary: %r" % (reply,))
                if reply.get("result") == "error":
                    raise NgError("%s: %s" % (message.get("command"), reply.get("error-reason")))
                return reply
        raise NgError("no reply to %s from %s:%d after %d tries" %
                      (message.get("command"), self.addr[0], self.addr[1], self.retries + 1))

    def ping(self):
        return self.request({"command": "ping"}).get("result") == "pong"


def main():
    host, port, message = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with NgClient(host, port) as c:
        print(json.dumps(c.request(message), default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
