"""Cost of running commands and atomic writes on an SSH node: kaudit's SshHost
next to the OpenSSH client on the same loopback sshd (tests/sshd.py starts it).

Peers, each doing the same work:
- `ssh` per command: a new connection and handshake for every command (what a
  shell script calling ssh does);
- `ssh` with ControlMaster: one multiplexed connection, as Ansible uses it;
- SshHost: one paramiko connection kept open for the whole run.

Workloads: N trivial commands (`true`), and N atomic writes of a 64 KiB file
(SshHost.write_file vs `ssh host 'cat > dir/.tmp && mv -f dir/.tmp target'`).
Reports medians per operation and the ratios SshHost/peer.

    python bench/ssh_bench.py [-n 30]     # needs sshd (apt-get install openssh-server)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from sshd import running_sshd  # noqa: E402  (tests/sshd.py)


def timed(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30)
    args = ap.parse_args()
    payload = bytes(range(256)) * 256  # 64 KiB
    with running_sshd() as server, tempfile.TemporaryDirectory() as work:
        base = [
            "ssh", "-q", "-p", str(server.port), "-i", str(server.key_path),
            "-o", f"UserKnownHostsFile={server.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        ]
        target_host = f"{server.root_user}@127.0.0.1"
        control = ["-o", "ControlMaster=auto", "-o", f"ControlPath={work}/cm-%C", "-o", "ControlPersist=60"]
        target = f"{work}/manifest.yaml"
        tmp = f"{work}/.manifest.yaml.tmp"
        write_cmd = f"cat > {tmp} && chmod 600 {tmp} && sync {tmp} && mv -f {tmp} {target}"

        def ssh(extra, command, data=None):
            subprocess.run([*base, *extra, target_host, command], input=data, check=True,
                           stdout=subprocess.DEVNULL, stdin=None if data else subprocess.DEVNULL)

        host = server.host()
        host.run(["true"])  # connect once, as a kaudit run does
        ssh(control, "true")  # open the master

        results = {
            "exec": {
                "SshHost": timed(lambda: host.run(["true"]), args.n),
                "ssh (new connection)": timed(lambda: ssh([], "true"), args.n),
                "ssh (ControlMaster)": timed(lambda: ssh(control, "true"), args.n),
            },
            "atomic write 64KiB": {
                "SshHost": timed(lambda: host.write_file(target, payload, mode=0o600), args.n),
                "ssh (new connection)": timed(lambda: ssh([], write_cmd, payload), args.n),
                "ssh (ControlMaster)": timed(lambda: ssh(control, write_cmd, payload), args.n),
            },
        }
        subprocess.run([*base, *control, "-O", "exit", target_host], capture_output=True)
        host.close()
    print(f"median of {args.n} runs per operation, loopback sshd ({sys.platform})")
    for workload, rows in results.items():
        mine = rows["SshHost"]
        print(f"\n{workload}")
        for name, t in rows.items():
            ratio = "" if name == "SshHost" else f"SshHost/peer {mine / t:.2f}"
            print(f"  {name:<22} {t * 1000:>8.2f} ms  {ratio}")


if __name__ == "__main__":
    main()
