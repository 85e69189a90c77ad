#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/seed-*.

Run once to (re)create the seeds; `cargo fuzz cmin` may later drop those that add no coverage.
Frame inputs start with two control bytes (see `frame_reader` in checks.rs): byte 0 picks
max_payload (low 3 bits index [0, 1, 2, 16, 125, 126, 300, 65536]), byte 1 the chunking.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MASK = b"\x37\xfa\x21\x3d"


def frame(b0, payload, mask=MASK, length_form=None):
    out = bytes([b0])
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        out += bytes([0x80 | n])
    elif form == 16:
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return out + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, "seed-" + name), "wb") as f:
        f.write(data)


# frame_reader: (max_payload index 6 = 300 bytes, 7 = 65536), then chunking.
ctl = lambda mp, chunking: bytes([mp, chunking])
write("frame_reader", "text", ctl(6, 0) + frame(0x81, b"hello"))
write("frame_reader", "binary", ctl(6, 3) + frame(0x82, bytes(range(40))))
write("frame_reader", "fragmented-text-ping", ctl(6, 0x85) + frame(0x01, b"fra") + frame(0x89, b"p")
      + frame(0x00, b"gme") + frame(0x80, b"nted"))
write("frame_reader", "fragmented-utf8-split", ctl(4, 1) + frame(0x01, "€".encode()[:1])
      + frame(0x80, "€".encode()[1:] + "ü".encode()))
write("frame_reader", "ping-pong", ctl(4, 2) + frame(0x89, b"are you there") + frame(0x8A, b""))
write("frame_reader", "close-1000", ctl(4, 0) + frame(0x88, struct.pack(">H", 1000) + b"bye")
      + frame(0x81, b"after close"))
write("frame_reader", "close-empty", ctl(3, 0x90) + frame(0x88, b""))
write("frame_reader", "len16", ctl(6, 0xBF) + frame(0x81, b"x" * 200))
write("frame_reader", "len64", ctl(7, 0xFF) + frame(0x82, b"\x00" * 300, length_form=64))
write("frame_reader", "too-large", ctl(3, 0) + frame(0x82, b"y" * 17))
write("frame_reader", "too-large-fragments", ctl(3, 4) + frame(0x02, b"a" * 10) + frame(0x80, b"b" * 10))
write("frame_reader", "unmasked", ctl(6, 0) + b"\x81\x05hello")
write("frame_reader", "bad-close-code", ctl(6, 0) + frame(0x88, struct.pack(">H", 1005)))
write("frame_reader", "invalid-utf8", ctl(6, 1) + frame(0x81, b"\xce\xba\xff"))
write("frame_reader", "mixed", ctl(6, 0xC7) + frame(0x81, b"one") + frame(0x82, b"two") + frame(0x89, b"")
      + frame(0x01, b"th") + frame(0x80, b"ree") + frame(0x88, struct.pack(">H", 4000) + "é".encode()))

# envelope
for name, text in {
    "event-full": '{"event":"chat:send","data":{"a":[1, 2]},"meta":{"traceparent":"x"},"id":7}',
    "event-min": '{"event":"ping"}',
    "event-null-data": '{"event":"ping","data":null,"id":null}',
    "event-escaped": '{"event":"a\\u0062c\\n\\"\\u00e9","data":1}',
    "request-string-id": '{"event":"q","id":"r\\u0031","data":[true,false,null,"s",-1.5e3]}',
    "request-big-id": '{"event":"q", "id" : -12345678901234567890 , "data" : {}}',
    "event-unknown-fields": '{"event":"x","data":0,"extra":{"nested":[[]]},"error":5}',
    "reply-data": '{"id":3,"data":{"ok":[true]}}',
    "reply-error": '{"id":"a","error":{"code":"nope","message":"no"}}',
    "reply-null-data-error": '{"id":1,"data":null,"error":{}}',
    "reply-no-data": '{"id":1.50}',
    "loose-json": '{"event":"x","data":[1e400,"\\ud800",-0.0]}',
    "unicode": '{"event":"チャット","data":"😀 \\ud83d\\ude00"}',
    "not-envelope-array": '["event","x"]',
    "dup-key": '{"event":"x","event":"y"}',
    "both": '{"id":1,"data":1,"error":{"code":"x"}}',
    "truncated": '{"event":',
}.items():
    write("envelope", name, text)

# upgrade_head
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
heads = {
    "rfc": f"GET /ws?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n"
           f"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "chrome": "GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
              "Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n"
              "Origin: http://localhost:8080\r\nSec-WebSocket-Version: 13\r\n"
              "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
              "Cookie: session=abc123; theme=dark\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
              "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
              "Sec-WebSocket-Protocol: v1.app\r\n\r\n",
    "firefox": "GET /ws?token=a%20b HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: Mozilla/5.0 (X11; Linux "
               "x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\n"
               "Accept-Encoding: gzip, deflate, br, zstd\r\nSec-WebSocket-Version: 13\r\n"
               "Origin: http://127.0.0.1:3000\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
               "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nConnection: keep-alive, Upgrade\r\n"
               "Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\n"
               "Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n",
    "node-ws": f"GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
               "Connection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nHost: 127.0.0.1:9001\r\n\r\n",
    "bare-lf-and-frames": f"GET /ws HTTP/1.1\nHost: a\nUpgrade: WebSocket\nConnection: upgrade\n"
                          f"Sec-WebSocket-Version:  13 \nSec-WebSocket-Key:  {KEY} \n\n\x81\x85\x00\x00\x00\x00hello",
    "plain-get": "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n",
    "post": f"POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
    "other-path": f"GET /other HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "bad-key": "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
               "Sec-WebSocket-Version: 8\r\n\r\n",
    "partial": "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websock",
    "garbage": "\x00\x01garbage\r\n\r\n",
    "too-many-headers": "GET /ws HTTP/1.1\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(65)) + "\r\n",
    "oversize": "GET /ws HTTP/1.1\r\nX-Big: " + "a" * (16 * 1024) + "\r\n\r\n",
}
for name, text in heads.items():
    write("upgrade_head", name, text.encode("latin-1"))
