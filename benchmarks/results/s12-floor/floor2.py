"""Floor variants (session 12): CPU per cold wake-up of a plain blocking echo and a bare select.epoll echo in Python.

    python floor2.py 40 dirty plain|epoll   (compare: ../s11-floor/floor.py 40 dirty, cfloor.c)
"""
import os, socket, sys, time, resource, select
rate = float(sys.argv[1]); mode = sys.argv[2]; kind = sys.argv[3]
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    end = time.monotonic() + 10
    nxt = time.monotonic()
    junk = bytearray(4 << 20)
    while time.monotonic() < end:
        nxt += 1 / rate
        b.send(b"x" * 400)
        b.recv(4096)
        if mode == "dirty":
            for i in range(0, len(junk), 64): junk[i] = 1
        d = nxt - time.monotonic()
        if d > 0: time.sleep(d)
    b.close(); os._exit(0)
b.close()
r0 = resource.getrusage(resource.RUSAGE_SELF)
if kind == "plain":
    while True:
        d = a.recv(4096)
        if not d: break
        a.send(d)
else:
    ep = select.epoll(); ep.register(a.fileno(), select.EPOLLIN)
    a.setblocking(False)
    fin = False
    while not fin:
        for fd, ev in ep.poll(10):
            d = a.recv(4096)
            if not d: fin = True; break
            a.send(d)
r1 = resource.getrusage(resource.RUSAGE_SELF)
n = rate * 10
print(f"{kind} {mode}: {(r1.ru_utime-r0.ru_utime+r1.ru_stime-r0.ru_stime)/n*1e6:.0f} us CPU per wake")
