"""python -m kaudit.shipper --path /var/log/kubernetes/audit/audit.log --loki-url http://loki:3100"""

import sys

from kaudit.shipper.main import main

sys.exit(main(prog="python -m kaudit.shipper"))
