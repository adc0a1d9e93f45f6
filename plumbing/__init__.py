"""Shared plumbing below the services: settings, topics, Kafka clients, logging, processes.

`producer`, `processor` and `livewindows.billing` import from here; nothing here
imports from them or from the command line above (`livewindows`).
"""
