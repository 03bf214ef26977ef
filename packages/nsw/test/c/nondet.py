"""The Python counterpart of nondet.c: clock, randomness and pids, and a fork.
Recorded once and replayed, the replica must print the same lines.

With --thread it also starts a thread. CPython's GIL then makes timed waits
whose clock reads depend on scheduling (FT-TCP 3.8: thread scheduling is out
of scope), so the replica may diverge; it must then say so, never print
something else silently."""
import os
import sys
import threading
import time

print("time", repr(time.time()), "monotonic", repr(time.monotonic()))
print("urandom", os.urandom(16).hex())
print("pid", os.getpid(), "ppid", os.getppid())
# Hash randomization draws its seed at startup: replayed, dict order and hashes agree.
print("hash", hash("ftcp"))
os.sys.stdout.flush()

pid = os.fork()
if pid == 0:
    print("child", os.getpid(), os.getppid(), os.urandom(4).hex(), repr(time.time()))
    os.sys.stdout.flush()
    os._exit(5)
_, status = os.waitpid(pid, 0)
print("parent forked", pid, "exit", os.waitstatus_to_exitcode(status))

if "--thread" in sys.argv:
    out = []
    t = threading.Thread(target=lambda: out.append((threading.get_native_id(), os.urandom(8).hex(), time.time())))
    t.start()
    t.join()
    print("thread", out[0][0], out[0][1], repr(out[0][2]))
print("end", repr(time.time()))
