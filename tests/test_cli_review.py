"""Defects found by exercising every command as a first-time user would, each pinned
through the public interface (the `cli` fixture or a real subprocess)."""

from __future__ import annotations

import json
import signal

from doubles.loki import LokiDouble
from shipper_helpers import ShipperProc, append, make_events, wait_for
from upnode import kube_node  # noqa: F401  (fixture)

PUSH = "/loki/api/v1/push"


# --------------------------------------------------------------------------- kaudit ship

def _failing_loki() -> LokiDouble:
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    d.fail_next(500, times=1_000_000)  # Loki stays down for the whole test
    return d


def test_ship_sigint_while_loki_fails_keeps_the_backoff_instead_of_hammering_loki(tmp_path):
    # Before: once stopping, every retry's wait returned at once (the stop event was already
    # set), so the shutdown window was a hot loop of thousands of pushes.
    loki = _failing_loki()
    try:
        log, pos = tmp_path / "audit.log", tmp_path / "pos.json"
        append(log, make_events(5))
        proc = ShipperProc(["--path", log, "--loki-url", loki.url, "--positions", pos, "--batch-wait", "10ms",
                            "--backoff-min", "200ms", "--backoff-max", "200ms", "--shutdown-timeout", "1s"], via_kaudit=True)
        wait_for(lambda: len(loki.requests(PUSH)) >= 1, what="the first push")
        proc.p.send_signal(signal.SIGINT)
        code, err = proc.wait()
        pushes = len(loki.requests(PUSH))
    finally:
        loki.stop()
    assert code == 0, err
    assert "Traceback" not in err
    # a 1s window with 200ms between attempts: a handful of pushes, whatever the machine's speed
    assert pushes <= 15, pushes
    assert err.count("stopping with 5 entries not acknowledged") == 1, err
    assert json.loads(pos.read_text())["files"][str(log)]["offset"] == 0  # nothing acknowledged, nothing skipped


def test_ship_second_sigint_stops_at_once_during_the_shutdown_flush(tmp_path):
    loki = _failing_loki()
    try:
        log, pos = tmp_path / "audit.log", tmp_path / "pos.json"
        append(log, make_events(5))
        proc = ShipperProc(["--path", log, "--loki-url", loki.url, "--positions", pos, "--batch-wait", "10ms",
                            "--backoff-min", "1h", "--backoff-max", "1h", "--shutdown-timeout", "1h"], via_kaudit=True)
        wait_for(lambda: len(loki.requests(PUSH)) >= 1, what="the first push")
        proc.p.send_signal(signal.SIGINT)  # starts the (1h) shutdown flush
        wait_for(lambda: len(loki.requests(PUSH)) >= 2, what="the shutdown flush's push")
        proc.p.send_signal(signal.SIGINT)  # the user insists
        code, err = proc.wait(timeout=20)
    finally:
        loki.stop()
    assert code == 0, err
    assert "stopping with 5 entries not acknowledged" in err


def test_ship_path_that_is_a_directory_is_one_clear_usage_error(cli, tmp_path):
    loki = LokiDouble("3.5.0").start()
    try:
        r = cli(["ship", "--path", tmp_path, "--loki-url", loki.url, "--positions", tmp_path / "p.json", "--once"])
    finally:
        loki.stop()
    assert r.code == 2, r.err
    lines = r.err.splitlines()
    assert lines[0] == f"error: --path {tmp_path}: is a directory, not the audit log file", r.err
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert not loki.requests(), "nothing is sent before the arguments are checked"


# --------------------------------------------------------------------------- --rootfs, --host, --policy-file

def test_a_mistyped_rootfs_is_a_usage_error_and_nothing_is_created(cli, tmp_path):
    # Before: `up --rootfs /typo` wrote /typo/etc/kubernetes/audit-policy.yaml and said "changed".
    missing = tmp_path / "no-such-node"
    for argv in (["up", "--host", "local", "--rootfs", missing, "--only", "policy"],
                 ["down", "--rootfs", missing, "--no-wait"],
                 ["diff-manifest", "--rootfs", missing],
                 ["verify", "--rootfs", missing, "--loki-url", "http://127.0.0.1:1"]):
        r = cli(argv)
        assert r.code == 2, (argv, r.err)
        assert r.err.splitlines()[0] == f"error: --rootfs {missing}: no such directory", r.err
        assert "hint: " in r.err
    assert not missing.exists()
    afile = tmp_path / "a-file"
    afile.write_text("x")
    r = cli(["up", "--rootfs", afile, "--only", "policy"])
    assert r.code == 2 and f"error: --rootfs {afile}: is not a directory" in r.err


def test_verify_with_a_bad_host_spec_is_a_usage_error_not_a_failed_check(cli):
    # Before: exit 4 with a table of skipped checks and a port-forward attempt.
    r = cli(["verify", "--host", "bogus", "--loki-url", "http://127.0.0.1:1"])
    assert r.code == 2, r.err
    assert r.out == ""
    assert r.err.splitlines() == ["error: --host 'bogus' is not a host kaudit knows",
                                  "hint: write lima:NAME, ssh://user@host[:port] or local"]


def test_policy_file_that_is_a_directory_says_so(cli, tmp_path):
    for argv in (["up", "--rootfs", tmp_path, "--only", "policy", "--policy-file", tmp_path],
                 ["verify", "--rootfs", tmp_path, "--policy-file", tmp_path]):
        r = cli(argv)
        assert r.code == 2, r.err
        assert f"error: --policy-file {tmp_path}: is a directory" in r.err, r.err


# --------------------------------------------------------------------------- vm status / destroy

def test_vm_status_on_a_non_lima_host_does_not_talk_about_deleting(cli):
    r = cli(["vm", "status", "--host", "local"])
    assert r.code == 2
    assert r.err.splitlines()[0] == "error: --host local: only Lima VMs (lima:NAME) can be managed here"
    hint = r.err.splitlines()[1]
    assert hint.startswith("hint: vm status and destroy work on Lima VMs"), hint


def test_destroy_on_a_non_lima_host_is_a_usage_error_even_without_limactl(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no limactl here
    r = cli(["destroy", "--host", "ssh://root@10.0.0.5", "--yes"])
    assert r.code == 2, r.err
    assert r.err.startswith("error: --host ssh://root@10.0.0.5: only Lima VMs (lima:NAME) can be managed here")


def test_ship_metrics_addr_that_is_not_host_port_is_a_usage_error(cli, tmp_path):
    # Before: ':99999' was "error: internal error: OverflowError", 'bogus' leaked int()'s message.
    log = tmp_path / "audit.log"
    append(log, make_events(1))
    for addr in (":99999", "bogus", "127.0.0.1:http"):
        r = cli(["ship", "--path", log, "--loki-url", "http://127.0.0.1:1", "--positions", tmp_path / "p.json",
                 "--once", "--metrics-addr", addr])
        assert r.code == 2, (addr, r.err)
        assert r.err.splitlines()[0] == f"error: --metrics-addr {addr}: not HOST:PORT with a port from 0 to 65535", r.err
        assert "internal error" not in r.err


def test_ship_giving_up_on_loki_version_names_the_url_it_asked(cli, tmp_path):
    # Before: "gave up asking Loki's version to http://…/loki/api/v1/push": the URL that failed is buildinfo's.
    log = tmp_path / "audit.log"
    append(log, make_events(1))
    r = cli(["ship", "--path", log, "--loki-url", "http://127.0.0.1:1", "--positions", tmp_path / "p.json",
             "--once", "--max-retries", "1", "--backoff-min", "10ms"])
    assert r.code == 1, r.err
    error = next(line for line in r.err.splitlines() if line.startswith("error: "))
    assert "gave up asking Loki's version at http://127.0.0.1:1/loki/api/v1/status/buildinfo after 2 attempts" in error, error


# --------------------------------------------------------------------------- policy validate

def test_policy_validate_hint_does_not_send_the_user_back_to_the_same_command(cli, tmp_path):
    # Before: `kaudit policy validate FILE` answered "hint: ... `kaudit policy validate FILE` lists every problem".
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Bogus\n")
    for body in (bad.read_text(), bad.read_text() + "- level: Nope\n"):
        bad.write_text(body)
        r = cli(["policy", "validate", bad])
        assert r.code == 1
        hint = r.err.splitlines()[-1]
        assert hint.startswith("hint: ") and "policy validate FILE" not in hint, hint


# --------------------------------------------------------------------------- up / down --kubeconfig

def test_up_and_down_check_kubeconfig_before_running_any_phase(cli, tmp_path):
    # Before: the phases ran and helm failed with "Kubernetes cluster unreachable: stat …" (exit 1).
    (tmp_path / "etc/kubernetes/manifests").mkdir(parents=True)
    for verb in ("up", "down"):
        r = cli([verb, "--rootfs", tmp_path, "--kubeconfig", tmp_path / "nope.conf", "--no-wait"])
        assert r.code == 2, r.err
        assert r.err.splitlines()[0] == f"error: --kubeconfig {tmp_path / 'nope.conf'}: no such file", r.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["etc", "kubernetes", "manifests"]


# --------------------------------------------------------------------------- Ctrl-C during up's wait

def test_ctrl_c_while_up_waits_exits_130_and_names_paths_that_exist_on_this_machine(kube_node, tmp_path):
    # Under --rootfs the "to go back" command named the node paths (/etc/kubernetes/...), which
    # on this machine are not the files kaudit wrote; the command must work when pasted.
    import os
    import subprocess
    import sys
    import time

    from upnode import MANIFEST

    kube_node.script([], after="never-ready")
    original = (kube_node.root / MANIFEST).read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaudit", "up", "--host", "local", "--rootfs", str(kube_node.root),
         "--only", "policy,apiserver", "--wait-timeout", "5m"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), text=True,
        # Popen children inherit SIGINT ignored from some shells; Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: (kube_node.root / MANIFEST).read_bytes() != original, what="the patched manifest")
    time.sleep(0.3)  # into the wait
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = next(l for l in err.splitlines() if "interrupted while waiting" in l)
    cp = line.split("to go back: sudo cp ", 1)[1].split()
    assert cp[1] == str(kube_node.root / MANIFEST), line
    assert os.path.isfile(cp[0]) and open(cp[0], "rb").read() == original, line


def test_empty_or_binary_inputs_get_a_hint(cli, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    for argv in (["patch-manifest", empty], ["policy", "validate", binary]):
        r = cli(argv)
        assert r.code == 1, r.err
        lines = r.err.splitlines()
        assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), r.err
        assert "Traceback" not in r.err
