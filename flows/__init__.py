"""forewarn.flows"""
