"""sierradb.node"""
