"""forewarn.dashboards"""
