"""Per-frame stages: config, decode, detect (and zone crops), track, rules, events, evidence.

Data flows one way: Frame -> sv.Detections -> tracked sv.Detections -> Violation -> Event.
Where events go from there (spool, sinks) is the delivery package's job.
"""
