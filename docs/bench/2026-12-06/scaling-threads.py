"""CPU seconds per thread of a bench's agent processes, and of the broker while they ran.

Usage: python3 scaling-threads.py RUN_DIR BROKER_PID OUT.json, started just before
`log-capturer bench ... --out-dir RUN_DIR`. It follows the processes whose command line names
RUN_DIR and `run` (the agent; with --workers it execs into the supervisor under the same pid),
and their children (the workers), reading /proc/<pid>/task/*/stat every 0.1 s; a thread's last
reading before it ended counts. It stops 10 s after the last agent process is gone.
"""

import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


def parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def command(pid: int | str) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def main() -> None:
    marker, broker_pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    known: set[int] = set()
    threads: dict[int, dict[str, tuple[str, float]]] = {}
    commands: dict[int, str] = {}
    broker_start = broker_now = started = ended = None
    quiet_turns = 0
    deadline = time.time() + 600
    while time.time() < deadline:
        pids = [pid for pid in known if os.path.exists(f"/proc/{pid}")]
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in pids:
                continue
            try:
                cmd = command(entry)
            except OSError:
                continue
            if ("log_capturer" in cmd and marker in cmd and " run" in cmd) or parent(entry) in pids:
                pids.append(int(entry))
        known.update(pids)
        if pids:
            quiet_turns = 0
            if broker_start is None:
                broker_start, started = cpu_seconds(f"/proc/{broker_pid}/stat"), time.time()
            for pid in pids:
                try:
                    snapshot = {}
                    for tid in os.listdir(f"/proc/{pid}/task"):
                        with open(f"/proc/{pid}/task/{tid}/comm") as f:
                            name = f.read().strip()
                        snapshot[tid] = (name, cpu_seconds(f"/proc/{pid}/task/{tid}/stat"))
                    commands[pid] = command(pid)[:120] or commands.get(pid, "")  # "" once it ended
                except OSError:
                    continue  # the process ended meanwhile: its last reading stands
                threads.setdefault(pid, {}).update(snapshot)
            broker_now, ended = cpu_seconds(f"/proc/{broker_pid}/stat"), time.time()
        elif known:
            quiet_turns += 1
            if quiet_turns > 100:
                break
        time.sleep(0.1)
    result: dict[str, object] = {}
    for pid, by_tid in threads.items():
        by_name: dict[str, float] = {}
        for name, seconds in by_tid.values():
            by_name[name] = round(by_name.get(name, 0.0) + seconds, 2)
        ordered = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
        result[str(pid)] = {"cmd": commands.get(pid, ""), "cpu_by_thread": ordered}
    if broker_start is not None and broker_now is not None and started and ended:
        result["broker_cpu_s"] = round(broker_now - broker_start, 2)
        result["agent_life_s"] = round(ended - started, 2)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
