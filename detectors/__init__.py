"""forewarn.detectors"""
