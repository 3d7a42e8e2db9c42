"""Hosts in network namespaces for tests that need real traffic: build, run tools, capture, tear down."""
