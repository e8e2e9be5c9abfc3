"""Chat connectors: each one an ``IConnector`` child of ``ConnectorsService``."""
