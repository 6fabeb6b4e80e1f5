"""LimaHost through the limactl double: argv reaches the guest unchanged, exit codes, limactl's own errors."""

from __future__ import annotations

import pytest

from kaudit.core.errors import CommandError, KauditError, UsageError
from kaudit.adapters.hosts import open_host
from kaudit.adapters.hosts.lima import LimaHost, limactl_fatal

TRICKY = ["a b", "it's", '"double"', "$(echo pwned)", "`id`", "*", "x\ny", "back\\slash", "", "-n", "A=$HOME", ";", "|&>"]


def test_tricky_arguments_reach_the_guest_unchanged(fake_lima):
    fake_lima.add("k8s")
    host = open_host("lima:k8s")
    assert isinstance(host, LimaHost) and host.name == "lima:k8s"
    for sudo in (True, False):
        r = host.run(["printf", "%s\\0", *TRICKY], sudo=sudo)
        assert r.stdout.split(b"\0")[:-1] == [t.encode() for t in TRICKY]
    # limactl quotes leading KEY=value arguments only after the '=': we always lead with sudo/env,
    # so even such an argv arrives literally (env then treats it as an assignment, as sudo would)
    r = host.run(["A=$(echo x) `id`", "printenv", "A"], sudo=False)
    assert r.out == "$(echo x) `id`\n"


def test_runs_as_sudo_in_workdir_root(fake_lima, tmp_path):
    fake_lima.add("k8s")
    host = LimaHost("k8s")
    assert host.run(["pwd"]).out == "/\n"
    call = fake_lima.calls[-1]
    assert call[:6] == ["shell", "--tty=false", "--workdir", "/", "k8s", "--"]
    assert call[6:] == ["sudo", "-n", "--", "pwd"]


def test_exit_code_stdout_stderr_and_input(fake_lima):
    fake_lima.add("k8s")
    host = LimaHost("k8s")
    r = host.run(["sh", "-c", "cat; echo err >&2; exit 7"], input=b"in\n", check=False)
    assert (r.returncode, r.out, r.err) == (7, "in\n", "err\n")
    with pytest.raises(CommandError) as e:
        host.run(["false"])
    assert e.value.returncode == 1 and "lima:k8s" in str(e.value)


def test_generic_file_ops_go_through_the_guest(fake_lima, tmp_path):
    fake_lima.add("k8s")
    host = LimaHost("k8s")
    target = tmp_path / "etc/kubernetes/audit-policy.yaml"
    host.write_file(str(target), b"rules: []\n", mode=0o600)
    assert target.read_bytes() == b"rules: []\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    assert host.read_file(str(target)) == b"rules: []\n"
    assert [p.name for p in target.parent.iterdir()] == ["audit-policy.yaml"]


def test_stopped_instance_is_limactls_error_with_hint(fake_lima):
    fake_lima.add("k8s", status="Stopped")
    with pytest.raises(KauditError) as e:
        LimaHost("k8s").run(["true"], check=False)
    assert str(e.value) == 'lima:k8s: limactl shell failed: instance "k8s" is stopped, run `limactl start k8s` to start the instance'
    assert e.value.hint == "start it: limactl start k8s"


def test_missing_instance_says_how_to_create_it(fake_lima):
    with pytest.raises(KauditError) as e:
        LimaHost("nope").run(["true"])
    assert 'instance "nope" does not exist' in str(e.value)
    assert "kaudit up --host lima:nope --only vm" in e.value.hint


def test_ssh_failure_255_is_an_error_not_an_exit_code(fake_lima):
    fake_lima.add("k8s")
    fake_lima.update(ssh_down=True)
    with pytest.raises(KauditError) as e:
        LimaHost("k8s").run(["true"], check=False)
    assert "exit 255" in str(e.value) and "Connection refused" in str(e.value)


def test_limactl_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KauditError) as e:
        LimaHost("k8s").run(["true"])
    assert "limactl is not installed" in str(e.value) and "lima-vm.io" in e.value.hint


def test_limactl_fatal_parses_logrus_lines():
    assert limactl_fatal('time="2026-01-01T00:00:00Z" level=fatal msg="instance \\"k8s\\" does not exist"\n') == 'instance "k8s" does not exist'
    assert limactl_fatal("FATA[0000] must not run as the root user\n") == "must not run as the root user"
    assert limactl_fatal("plain stderr\n") is None


@pytest.mark.parametrize("spec", ["lima:", "lima:a b", "lima:-x", "lima:k8s/../x", "limo:k8s", "k8s"])
def test_bad_lima_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        open_host(spec)
