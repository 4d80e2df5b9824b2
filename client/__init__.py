"""sierradb.client"""
