"""The library: config, decode, detect, track, rules, events, evidence, sinks.

Data flows one way: Frame -> sv.Detections -> tracked sv.Detections -> Violation -> Event -> CaseSink.
"""
