"""Replication: one replica state machine per partition (sans-I/O), and its storage adapter."""
