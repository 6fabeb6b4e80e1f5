"""Side effects: hosts (local, Lima, SSH), kubectl, helm, Loki's HTTP API, files. Imports core only."""
