"""kaudit.adapters.lima (the VM provider) against the limactl double, plus its pure parsers."""

from __future__ import annotations

import json

import pytest

from kaudit.core.errors import KauditError, UsageError
from kaudit.adapters.hosts.local import LocalHost
from kaudit.adapters.lima import GiB, Lima, parse_list_json, parse_version, start_argv


def lima() -> Lima:
    return Lima(LocalHost())


def test_version_and_template_locators(fake_lima):
    v = lima().version()
    assert (v.major, v.minor, v.patch, str(v)) == (2, 2, 0, "2.2.0")
    assert v.template_locator("k8s") == "template:k8s"
    fake_lima.update(version="1.2.3")
    v1 = lima().version()
    assert v1.major == 1 and v1.template_locator("k8s") == "template://k8s"
    assert v1.template_locator("./my.yaml") == "./my.yaml"
    assert v1.template_locator("https://example.org/k8s.yaml") == "https://example.org/k8s.yaml"


@pytest.mark.parametrize("text,raw", [
    ("limactl version 2.2.0\n", "2.2.0"),
    ("limactl version 2.0.0-beta.1", "2.0.0-beta.1"),
    ("limactl version v1.2.3", "1.2.3"),
])
def test_parse_version(text, raw):
    assert str(parse_version(text)) == raw


def test_unreadable_version_is_an_error():
    with pytest.raises(KauditError):
        parse_version("limactl version HEAD-abcdef")


def test_limactl_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KauditError) as e:
        lima().version()
    assert "limactl is not installed" in str(e.value) and "brew install lima" in e.value.hint


def test_list_is_one_json_object_per_line(fake_lima):
    assert lima().list() == []  # no instances: limactl warns, exit 0
    fake_lima.add("k8s", cpus=2)
    fake_lima.add("other", status="Stopped")
    got = lima().list()
    assert [(i.name, i.status, i.cpus) for i in got] == [("k8s", "Running", 2), ("other", "Stopped", 4)]
    assert got[0].dir == fake_lima.home / "k8s"
    assert got[0].kubeconfig == fake_lima.home / "k8s/copied-from-guest/kubeconfig.yaml"
    assert got[0].memory == 4 * GiB and got[0].disk == 100 * GiB


def test_get_unmatched_instance_is_none(fake_lima):
    fake_lima.add("k8s")
    assert lima().get("nope") is None
    assert fake_lima.calls[-1] == ["list", "--json", "nope"]
    assert lima().get("k8s").status == "Running"


def test_parse_list_json_rejects_garbage():
    with pytest.raises(KauditError) as e:
        parse_list_json('{"name":"a"}\n[not json\n')
    assert "line 2" in str(e.value)
    assert [i.name for i in parse_list_json('{"name":"a","status":"Running","dir":"/x"}\n\n{"name":"b"}\n')] == ["a", "b"]


def test_start_argv_with_overrides():
    v2, v1 = parse_version("limactl version 2.2.0"), parse_version("limactl version 1.2.3")
    assert start_argv("k8s", v2) == ["limactl", "start", "--name=k8s", "--tty=false", "template:k8s"]
    assert start_argv("k8s", v1, cpus=2, memory_gib=6.5, disk_gib=50) == [
        "limactl", "start", "--name=k8s", "--tty=false", "--cpus=2", "--memory=6.5", "--disk=50", "template://k8s",
    ]


def test_create_with_overrides_then_reuse(fake_lima):
    l = lima()
    inst, plan = l.plan("k8s", cpus=2, memory="6GiB", disk=30)
    assert inst is None and plan.action == "create"
    got = l.ensure("k8s", plan)
    assert got.status == "Running" and got.cpus == 2 and got.memory == 6 * GiB and got.disk == 30 * GiB
    assert got.kubeconfig.is_file()
    assert ["start", "--name=k8s", "--tty=false", "--cpus=2", "--memory=6", "--disk=30", "template:k8s"] in fake_lima.calls
    _, again = lima().plan("k8s")
    assert again.action == "none"


def test_start_failure_shows_limactls_text(fake_lima):
    fake_lima.update(fail_start='degraded, status={Running:true Degraded:true Exiting:false Errors:[] SSHLocalPort:60022}')
    l = lima()
    _, plan = l.plan("k8s")
    with pytest.raises(KauditError) as e:
        l.ensure("k8s", plan)
    assert str(e.value).startswith("creating Lima VM k8s failed (limactl start exit 1): degraded, status={Running:true")
    assert "ha.stderr.log" in e.value.hint


def test_lima1_rejects_the_lima2_locator_so_we_never_send_it(fake_lima):
    fake_lima.update(version="1.2.3")
    # what Lima 1.x does with the 2.x form: proves the double models the difference
    from kaudit.adapters.hosts.local import LocalHost as L

    r = L().run(["limactl", "start", "--name=k8s", "--tty=false", "template:k8s"], check=False, sudo=False)
    assert r.returncode == 1 and "templates/.yaml: no such file" in r.err
    l = lima()
    _, plan = l.plan("k8s")
    assert plan.argv[-1] == "template://k8s"
    assert l.ensure("k8s", plan).status == "Running"


def test_lima2_warns_about_the_old_locator(fake_lima):
    from kaudit.adapters.hosts.local import LocalHost as L

    r = L().run(["limactl", "start", "--name=x", "--tty=false", "template://k8s"], sudo=False)
    assert "Template locator `template://k8s` should be written `template:k8s` since Lima v2.0" in r.err


def test_broken_instance_is_refused_with_a_hint(fake_lima):
    fake_lima.add("k8s", status="Broken")
    with pytest.raises(KauditError) as e:
        lima().plan("k8s")
    assert "is Broken" in str(e.value) and "kaudit destroy" in e.value.hint


@pytest.mark.parametrize("kw", [{"memory": "lots"}, {"disk": -1}, {"cpus": 0}])
def test_bad_overrides_are_usage_errors(fake_lima, kw):
    with pytest.raises(UsageError):
        lima().plan("k8s", **kw)


def test_delete(fake_lima):
    fake_lima.add("k8s")
    assert lima().delete("k8s") is True
    assert fake_lima.status("k8s") is None and not (fake_lima.home / "k8s").exists()
    assert ["delete", "--force", "--tty=false", "k8s"] in fake_lima.calls
    assert lima().delete("k8s") is False


def test_running_as_root_shows_limactls_refusal(fake_lima):
    import os

    fake_lima.update(refuse_root=True, root_uid=os.geteuid())
    with pytest.raises(KauditError) as e:
        lima().plan("k8s")
    assert str(e.value) == "limactl list k8s failed: must not run as the root user"
