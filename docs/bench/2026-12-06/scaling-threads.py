"""Sample per-thread CPU of the bench's agent processes (and the broker) until they exit.

Prints, per agent process, CPU seconds by thread name (comm), from the last sample taken
before the process ended; and the broker's CPU over the agent's life.
"""
import json, os, sys, time
HZ = os.sysconf("SC_CLK_TCK")
marker, broker_pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def cpu(path):
    with open(path) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ
def ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1
known = set()
def agents():
    found = [pid for pid in known if os.path.exists(f"/proc/{pid}")]
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "log_capturer" in cmd and marker in cmd and " run" in cmd and int(pid) not in found:
            found.append(int(pid))
    if found:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) not in found and ppid(pid) in found:
                found.append(int(pid))
    known.update(found)
    return found
last = {}
broker_start = None
seen_any = False
deadline = time.time() + 600
while time.time() < deadline:
    pids = agents()
    if pids and broker_start is None:
        broker_start = cpu(f"/proc/{broker_pid}/stat"); t0 = time.time()
    if pids:
        seen_any = True
        gone = 0
        for pid in pids:
            snap = {}
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
                    snap[tid] = (comm, cpu(f"/proc/{pid}/task/{tid}/stat"))
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:120]
            except OSError:
                continue
            prev = last.get(pid, {"threads": {}})["threads"]
            prev.update(snap)   # keep threads that ended
            last[pid] = {"cmd": cmd, "threads": prev}
        broker_now = cpu(f"/proc/{broker_pid}/stat"); t1 = time.time()
    elif seen_any:
        gone = gone + 1 if "gone" in dir() else 1
        if gone > 100:  # 10 s without an agent process: the run is over
            break
    time.sleep(0.1)
result = {}
for pid, info in last.items():
    by = {}
    for comm, c in info["threads"].values():
        by[comm] = round(by.get(comm, 0) + c, 2)
    result[pid] = {"cmd": info["cmd"], "cpu_by_thread": dict(sorted(by.items(), key=lambda kv: -kv[1]))}
result["broker_cpu_s"] = round(broker_now - broker_start, 2) if broker_start is not None else None
result["agent_life_s"] = round(t1 - t0, 2) if broker_start is not None else None
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result, indent=1))
