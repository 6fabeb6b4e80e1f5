"""The Alloy config: golden file parses with a real (subset) Alloy parser, blocks are
balanced, object keys are quoted, and components are wired in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit.core import render
from render_support import AlloySyntaxError, Ref, parse_alloy

DATA = Path(__file__).parent / "data" / "render"


@pytest.mark.parametrize("golden", ["alloy.alloy", "alloy-seed-sm.alloy"])
def test_golden_alloy_parses(golden):
    root = parse_alloy((DATA / golden).read_text(encoding="utf-8"))
    names = [b.name for b in root.blocks]
    assert names == ["loki.source.file", "loki.process", "loki.write"]
    src, proc, write = root.blocks
    assert src.attrs["forward_to"] == [Ref("loki.process.kubernetes_audit.receiver")]
    assert proc.attrs["forward_to"] == [Ref("loki.write.kubernetes_audit.receiver")]
    assert write.one("endpoint").attrs["url"].endswith("/loki/api/v1/push")
    # the file source reads one exact file; no file_match / glob discovery
    assert not src.blocks
    [target] = src.attrs["targets"]
    assert "*" not in target["__path__"]


def test_checker_rejects_broken_alloy():
    good = render.render_collector_config("alloy", render.CollectorSettings())
    parse_alloy(good)
    with pytest.raises(AlloySyntaxError, match="unclosed"):
        parse_alloy(good.rstrip().rstrip("}"))
    with pytest.raises(AlloySyntaxError, match="unbalanced"):
        parse_alloy(good + "}\n")
    with pytest.raises(AlloySyntaxError, match="not a quoted string"):
        parse_alloy(good.replace('"audit_level" = "level"', 'audit_level = "level"'))
    with pytest.raises(AlloySyntaxError, match="duplicate"):
        parse_alloy('x "a" {\n  v = {"k" = "1", "k" = "2"}\n}\n')
    with pytest.raises(AlloySyntaxError):
        parse_alloy('x "a" {\n  v = "unterminated\n}\n')


def test_strings_with_quotes_and_backslashes_are_escaped():
    s = render.CollectorSettings(labels=(("team", 'a "b" \\c'),), log_path="/var/log/k a/audit.log")
    root = parse_alloy(render.render_collector_config("alloy", s))
    [target] = root.one("loki.source.file").attrs["targets"]
    assert target["team"] == 'a "b" \\c' and target["__path__"] == "/var/log/k a/audit.log"
    exprs = root.one("loki.process").blocks[0].attrs["expressions"]
    assert exprs["decision"] == 'annotations."authorization.k8s.io/decision"'
