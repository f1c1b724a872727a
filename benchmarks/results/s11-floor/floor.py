"""Floor: CPU of an asyncio process woken N/s by a socket message, echoing it back (cold wake-ups)."""
import asyncio, os, socket, sys, time, resource, threading
rate = float(sys.argv[1]); mode = sys.argv[2]
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
async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    class P(asyncio.Protocol):
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.t.write(d)
        def connection_lost(self, e): done.set_result(None)
    await loop.connect_accepted_socket(P, a)
    r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.monotonic()
    await done
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = rate * 10
    print(f"{mode}: {(r1.ru_utime-r0.ru_utime+r1.ru_stime-r0.ru_stime)/n*1e6:.0f} us CPU per wake (user {(r1.ru_utime-r0.ru_utime)/n*1e6:.0f})")
import os as _o  # UV=1: the same under uvloop, if installed
if _o.environ.get("UV"): import uvloop; uvloop.install()
asyncio.run(main())
