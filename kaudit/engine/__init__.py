"""The engine: phases, up/down/verify orchestration, settings. Imports adapters and core, never cli."""
