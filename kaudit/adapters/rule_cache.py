"""A cache of the packaged rule pack, so `kaudit detect` does not parse YAML on every run.

Parsing the pack with ruamel.yaml (pure Python) costs ~0.4 s, more than reading a small
audit log. The cache keeps the validated rules as plain JSON, keyed by two checksums (CRC-32
and Adler-32, 64 bits: the key of a cache, not a signature; hashlib's OpenSSL load alone
costs a tenth of a small run) of the packaged files and kaudit's version, in $KAUDIT_CACHE_DIR (default
$XDG_CACHE_HOME/kaudit or ~/.cache/kaudit; "off" disables it). A cache that cannot be
read or written is ignored: the rules are then parsed as without it.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Optional

from kaudit import __version__
from kaudit.core.detect.model import Rule, packaged_rule_files, rule_documents, rules_from_documents


def cache_dir() -> Optional[Path]:
    env = os.environ.get("KAUDIT_CACHE_DIR")
    if env == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kaudit"


def packaged_rules() -> list[Rule]:
    files = packaged_rule_files()
    data = b"\0".join([__version__.encode(), *(name.encode() + b"\0" + text.encode() for name, text in files)])
    where = cache_dir()
    path = where / f"rules-{zlib.crc32(data):08x}{zlib.adler32(data):08x}.json" if where else None
    if path is not None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return [r for name, docs in doc["files"] for r in rules_from_documents([tuple(d) for d in docs], name)]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    docs = [(name, rule_documents(text, name)) for name, text in files]
    rules = [r for name, d in docs for r in rules_from_documents(d, name)]
    if path is not None:
        import tempfile  # only when writing: its imports cost more than reading the cache

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rules-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"files": docs}, fh)
            os.replace(tmp, path)
        except OSError:
            pass
    return rules
