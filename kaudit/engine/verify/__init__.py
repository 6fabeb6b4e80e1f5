"""`kaudit verify`: one check per hop of the audit pipeline, from the node to a Loki query.

checks.py holds the checks (each returns a CheckResult), node.py and kube.py the
side effects they need (through the Host seam, kubectl, a port-forward),
runner.py the order and the dependencies between checks, report.py the table
and the JSON document whose schema is in schema.py.
"""
