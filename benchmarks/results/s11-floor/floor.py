"""Floor: CPU of a process woken N/s by a socket message, echoing it back (cold wake-ups).

    python floor.py RATE clean|dirty [asyncio|plain|epoll]

asyncio (the default, session 11): an asyncio protocol echoes (UV=1: under
uvloop, if installed).  plain and epoll (session 12): a blocking recv/send
loop, and a bare select.epoll loop, in Python.  cfloor.c is the same in C.
"""
import asyncio, os, socket, sys, time, resource, select
rate = float(sys.argv[1]); mode = sys.argv[2]; kind = sys.argv[3] if len(sys.argv) > 3 else "asyncio"
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    # child: the load: send 1 message every 1/rate, read echo; also burn some CPU between to flush caches
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
n = rate * 10
def report(r0, r1):
    label = mode if kind == "asyncio" else f"{kind} {mode}"
    print(f"{label}: {(r1.ru_utime-r0.ru_utime+r1.ru_stime-r0.ru_stime)/n*1e6:.0f} us CPU per wake (user {(r1.ru_utime-r0.ru_utime)/n*1e6:.0f})")
async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    class P(asyncio.Protocol):
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.t.write(d)
        def connection_lost(self, e): done.set_result(None)
    await loop.connect_accepted_socket(P, a)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await done
    report(r0, resource.getrusage(resource.RUSAGE_SELF))
if kind == "asyncio":
    if os.environ.get("UV"): import uvloop; uvloop.install()
    asyncio.run(main())
else:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if kind == "plain":
        while (d := a.recv(4096)):
            a.send(d)
    else:
        ep = select.epoll(); ep.register(a.fileno(), select.EPOLLIN)
        a.setblocking(False)
        while True:
            if not ep.poll(10):
                continue
            d = a.recv(4096)
            if not d:
                break
            a.send(d)
    report(r0, resource.getrusage(resource.RUSAGE_SELF))
