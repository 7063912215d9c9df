"""forewarn.alerts"""
