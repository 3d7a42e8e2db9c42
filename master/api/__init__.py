"""The operator's API: ConsoleService over gRPC and the same operations as HTTP/JSON."""
