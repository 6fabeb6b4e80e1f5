"""kaudit detect: threat detection rules over Kubernetes audit events.

model.py (the rule schema and its validation), match.py (the in-process backend),
logql.py (the Loki backend: LogQL and ruler rule groups), report.py (text, JSON,
SARIF), policy_check.py (can the audit policy ever log what a rule needs?, asked of
kaudit.core.policy_eval). Audit log files are read by kaudit.adapters.audit_files, as for
`kaudit policy simulate`. rules/ is the packaged pack.
"""
