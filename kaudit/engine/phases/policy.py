"""The `policy` phase: put the audit policy on the node, root-owned, mode 0600, atomically.

The policy is the packaged profile (--policy-profile) or the user's own file
(--policy-file), which is validated first: kube-apiserver refuses to start on a
bad policy, and a crash-looping apiserver is a far worse place to learn that.
The file is rewritten only when its bytes or mode differ.
"""

from __future__ import annotations

from pathlib import Path

from kaudit.core.errors import KauditError
from kaudit.engine.workflow import Outcome, UpContext

MODE = 0o600


def policy_bytes(opts) -> bytes:
    """The policy kaudit installs, validated. Raises PolicyError naming file, rule and field."""
    from kaudit.core.policy import policy_text, validate_policy

    if opts.policy_file:
        path = Path(opts.policy_file)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise KauditError(f"--policy-file {path}: cannot read it: {e.strerror}", "check the path") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise KauditError(f"--policy-file {path}: not UTF-8 text (byte {e.start})", "give an audit Policy YAML file (kaudit policy prints one)") from None
        validate_policy(text, str(path))
        return data
    return policy_text(opts.policy_profile).encode("utf-8")


def run(ctx: UpContext) -> Outcome:
    node, opts = ctx.node, ctx.options
    path = opts.spec.policy_path
    data = policy_bytes(opts)
    st = node.stat(path)
    if st is not None and node.read_file(path) == data:
        if st.mode == MODE:
            return Outcome.unchanged(f"{path} already holds {opts.policy_source()}")
        if ctx.dry_run:
            return Outcome.planned(f"would set the mode of {path} to 0600 (it is {st.mode:04o})")
        node.write_file(path, data, mode=MODE)
        return Outcome.changed(f"{path}: mode set to 0600 (was {st.mode:04o})")
    verb = "replace" if st is not None else "write"
    if st is not None:
        # kube-apiserver reads the policy only when it starts: the apiserver phase restarts
        # it, and puts these bytes back if it does not come up with the new ones
        ctx.facts.setdefault("policy_replaced", {})[node.name] = (node.read_file(path), st.mode)
    if ctx.dry_run:
        return Outcome.planned(f"would {verb} {path} with {opts.policy_source()} ({len(data)} bytes, mode 0600)")
    if st is not None:
        from kaudit.engine.phases.static_pod import make_backup

        backup = make_backup(node, ctx.facts["policy_replaced"][node.name][0], st.mode, name=path)
        ctx.ui.info(f"[policy] backed up the previous policy to {backup}")
    node.write_file(path, data, mode=MODE)
    if st is not None and "apiserver" not in (getattr(opts, "phases", None) or ("apiserver",)):
        ctx.ui.warn(f"{node.name}: kube-apiserver reads {path} only when it starts; "
                    "run kaudit up --only policy,apiserver (or restart it) to load the new policy")
    return Outcome.changed(f"{verb.replace('write', 'wrote').replace('replace', 'replaced')} {path} with {opts.policy_source()} ({len(data)} bytes, mode 0600)")


def run_down(ctx: UpContext) -> Outcome:
    """`kaudit down --remove-policy`: delete the policy file (after the apiserver stopped using it)."""
    node, opts = ctx.node, ctx.options
    path = opts.spec.policy_path
    if not getattr(opts, "remove_policy", False):
        return Outcome.skipped(f"kept {path} (--remove-policy deletes it)")
    if not node.exists(path):
        return Outcome.unchanged(f"{path} is not there")
    from kaudit.engine.phases.static_pod import read_manifest

    _, text = read_manifest(node)
    if ctx.dry_run and node.name in ctx.facts.get("unpatch_planned", ()):
        return Outcome.planned(f"would delete {path} (after the apiserver stops using it)")
    if path in text:
        raise KauditError(
            f"{node.name}: the kube-apiserver manifest still names {path}; not deleting it",
            "a flag or volume kaudit did not add refers to it; remove that from the manifest first",
        )
    if ctx.dry_run:
        return Outcome.planned(f"would delete {path}")
    node.remove(path)
    return Outcome.changed(f"deleted {path}")
