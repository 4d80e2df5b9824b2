"""sierradb.p2p"""
