# SPDX-License-Identifier: Apache-2.0
"""oneshot.py HOST PORT N [MSG] - N sequential one-request connections.

Each connects, sends MSG (default: the connection's number as 16 digits, so
a wrong echo shows which connect it belonged to), half-closes and must read
exactly MSG back before the server's FIN. Prints one line:
  ok=<n> fail=<n> ms=<total> worst_ms=<slowest connect> slow=<connects over 0.5 s>
and the first three failures on stderr (local port, what came back).
Used by test_22 (load balancing, canary splits) and test_36 (relay modes).
"""
import socket
import sys
import time


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fixed = sys.argv[4].encode() if len(sys.argv) > 4 else None
    ok = fail = slow = 0
    worst = 0.0
    t0 = time.monotonic()
    for i in range(n):
        msg = fixed if fixed is not None else b"%016d" % i
        t = time.monotonic()
        local = 0
        try:
            s = socket.create_connection((host, port), timeout=5)
            local = s.getsockname()[1]
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = s.recv(64)
                if not d:
                    break
                got += d
            s.close()
        except OSError as e:
            got = repr(e).encode()
        if got == msg:
            ok += 1
        else:
            fail += 1
            if fail <= 3:
                print("connect %d: local port %d got %r" % (i, local, got), file=sys.stderr)
        t = time.monotonic() - t
        worst = max(worst, t)
        slow += t > 0.5
    print("ok=%d fail=%d ms=%d worst_ms=%d slow=%d" %
          (ok, fail, (time.monotonic() - t0) * 1000, worst * 1000, slow))


if __name__ == "__main__":
    main()
