"""kaudit's own collector: tail the audit log, push to Loki. Standard library only,
so it runs from a ConfigMap on a stock python image."""
