"""forewarn.collector"""
